//! How many event streams (`GET /api/events`) the control API keeps open at once.
//!
//! A stream is a request that never ends, so each holds one of the server's connections
//! busy for as long as its client stays (`connection_limit.rs` never evicts a busy one).
//! Without a bound of their own, 64 dashboard tabs, or 64 clients that stopped reading,
//! would take every connection and lock the commands out, `kiln down` included. So at most
//! [`MAX_STREAMS`] are open, half the connections: a new stream over the bound ends the
//! oldest one (whose client, an EventSource, reconnects and resumes with `Last-Event-ID`
//! if it is still there).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Event streams open at once.
pub const MAX_STREAMS: usize = 32;

/// The open streams, oldest first.
#[derive(Default)]
pub struct StreamSlots {
    open: Mutex<Open>,
}

/// The last id given, and each open stream's id with what tells it to end.
type Open = (u64, VecDeque<(u64, Arc<Notify>)>);

/// One open stream's place; ends it when dropped.
pub struct StreamSlot {
    id: u64,
    evicted: Arc<Notify>,
    slots: Arc<StreamSlots>,
}

impl StreamSlots {
    /// A place for a new stream, ending the oldest one if every place is taken.
    pub fn open(slots: &Arc<StreamSlots>) -> StreamSlot {
        let mut guard = slots.open.lock().expect("stream slots lock is never poisoned");
        let (next, open) = &mut *guard;
        *next += 1;
        let id = *next;
        while open.len() >= MAX_STREAMS {
            if let Some((_, oldest)) = open.pop_front() {
                oldest.notify_one();
            }
        }
        let evicted = Arc::new(Notify::new());
        open.push_back((id, evicted.clone()));
        StreamSlot { id, evicted, slots: slots.clone() }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.open.lock().expect("stream slots lock is never poisoned").1.len()
    }
}

impl StreamSlot {
    /// Resolves once a newer stream took this one's place.
    pub async fn evicted(&self) {
        self.evicted.notified().await;
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut guard = self.slots.open.lock().expect("stream slots lock is never poisoned");
        guard.1.retain(|(id, _)| *id != self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stream_over_the_bound_ends_the_oldest_and_a_closed_one_frees_its_place() {
        let slots = Arc::new(StreamSlots::default());
        let mut open: Vec<StreamSlot> = (0..MAX_STREAMS).map(|_| StreamSlots::open(&slots)).collect();
        assert_eq!(slots.len(), MAX_STREAMS);
        let newest = StreamSlots::open(&slots);
        assert_eq!(slots.len(), MAX_STREAMS);
        // The oldest was told to end (at once: the permit is kept), the others were not.
        tokio::time::timeout(std::time::Duration::from_secs(1), open[0].evicted()).await.expect("the oldest ends");
        let second = tokio::time::timeout(std::time::Duration::from_millis(1), open[1].evicted()).await;
        assert!(second.is_err(), "only the oldest ends");
        drop(open.remove(5));
        assert_eq!(slots.len(), MAX_STREAMS - 1);
        drop(newest);
        drop(open);
        assert_eq!(slots.len(), 0);
    }
}
