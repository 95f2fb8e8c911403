//! The container engine: its CLI (podman or docker) for finding it, naming and labelling
//! what kiln creates, building images, the project network its containers share, and the
//! build context of an image target; its Docker-compatible HTTP API for live update (copying files into a running container and
//! running commands in it).

pub mod engine;
pub mod engine_api;
pub mod host_port;
pub mod image_context;
pub mod leftovers;
pub mod network;
pub mod sync_batch;
