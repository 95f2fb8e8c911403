//! Events: the contract of what kiln publishes, the bus that carries them, and the gate that
//! holds a round's events back until something is not fresh.

pub mod event_bus;
pub mod event_gate;
pub mod replay_ring;
pub mod schema;
pub mod timestamp;

pub use event_bus::{EventBus, Received, Subscription};
pub use replay_ring::ReplayLimits;
pub use schema::{CacheLookup, Envelope, Event, Latency, NoticeLevel, Phase, RestartCause, Stream, TargetStatus};
