//! The one event stream. Every view of kiln (terminal, JSON lines, HTTP and traces)
//! subscribes here; the engine only publishes and never prints.
//!
//! Events are delivered to every subscriber in order and never dropped: each subscriber has
//! an unbounded queue, so a slow view delays nothing in the engine.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use tokio::sync::mpsc;

use crate::event::timestamp::rfc3339;
use crate::event::{Envelope, Event};

/// Publishes events to every subscriber.
#[derive(Default)]
pub struct EventBus {
    seq: AtomicU64,
    subscribers: Mutex<Vec<mpsc::UnboundedSender<std::sync::Arc<Envelope>>>>,
}

impl EventBus {
    pub fn new() -> Self {
        Self::default()
    }

    /// A new receiver of every event published from now on.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<std::sync::Arc<Envelope>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.subscribers.lock().expect("event bus lock is never poisoned").push(tx);
        rx
    }

    pub fn publish(&self, event: Event) {
        let mut subs = self.subscribers.lock().expect("event bus lock is never poisoned");
        // Numbered under the lock so that every subscriber sees increasing `seq`.
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let envelope = std::sync::Arc::new(Envelope { event, ts: rfc3339(SystemTime::now()), seq });
        subs.retain(|tx| tx.send(envelope.clone()).is_ok());
    }

    /// Drops every subscriber's sender so their receivers end once drained.
    pub fn close(&self) {
        self.subscribers.lock().expect("event bus lock is never poisoned").clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    #[test]
    fn subscribers_see_every_event_in_order() {
        let bus = EventBus::new();
        let mut rx = bus.subscribe();
        for i in 0..3 {
            bus.publish(Event::TargetQueued { target: format!("t{i}"), deps: vec![], estimate_ms: None });
        }
        bus.close();
        let mut seqs = Vec::new();
        while let Ok(e) = rx.try_recv() {
            seqs.push(e.seq);
        }
        assert_eq!(seqs, vec![1, 2, 3]);
    }
}
