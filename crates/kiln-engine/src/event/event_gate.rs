//! Holding a run's events back until the run turns out to do something.
//!
//! Watch mode builds after every settled change, and most changes (a touch, a save with the
//! same bytes) change no key. A gated run publishes into a private bus; the first time an
//! evaluation is anything but `fresh`, the gate opens: the prelude (`watch.changed`) goes
//! out, then everything held, then everything after, in order. A run that stays fresh
//! throughout publishes nothing, and its caller says `watch.unchanged` instead. One
//! evaluation pass serves as both the content gate and the build.

use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::event::event_bus::Subscription;
use crate::event::{Event, EventBus};

pub struct EventGate {
    held: Arc<EventBus>,
    rx: Option<Subscription>,
    target: Arc<EventBus>,
    prelude: Option<Event>,
    forwarder: Option<JoinHandle<()>>,
}

impl EventGate {
    pub fn new(target: Arc<EventBus>, prelude: Event) -> EventGate {
        let held = Arc::new(EventBus::new());
        let rx = Some(held.subscribe());
        EventGate { held, rx, target, prelude: Some(prelude), forwarder: None }
    }

    /// The bus the run publishes to.
    pub fn bus(&self) -> Arc<EventBus> {
        self.held.clone()
    }

    pub fn is_open(&self) -> bool {
        self.forwarder.is_some()
    }

    /// Lets everything through from now on, prelude first.
    pub fn open(&mut self) {
        let Some(mut rx) = self.rx.take() else { return };
        if let Some(prelude) = self.prelude.take() {
            self.target.publish(prelude);
        }
        let target = self.target.clone();
        self.forwarder = Some(tokio::spawn(async move {
            while let Some(envelope) = rx.recv().await {
                target.publish(envelope.event.clone());
            }
        }));
    }

    /// Ends the run's stream; returns whether anything was let through.
    pub async fn finish(self) -> bool {
        self.held.close();
        match self.forwarder {
            Some(f) => {
                let _ = f.await;
                true
            }
            None => false,
        }
    }
}
