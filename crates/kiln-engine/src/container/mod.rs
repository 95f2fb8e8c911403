//! The container engine's CLI (podman or docker): finding it, naming and labelling what kiln
//! creates, building images, and the build context of an image target.

pub mod engine;
pub mod image_context;
