//! How many connections the control API holds at once, and which one goes when it is full.
//!
//! At most `cap` connections are open (each holds a permit of a semaphore, so kiln's file
//! descriptors stay bounded). A connection is *idle* while it has no request in flight: it
//! was just accepted and is waiting for a request head, or it is a kept-alive connection
//! between requests. A new connection that finds every slot taken evicts the connection
//! that has been idle the longest and takes its slot; only when every slot is busy (a
//! request in flight on each, say 64 event streams) is it refused. So a flood of half-open
//! connections (opened, nothing sent) cannot lock out a client that sends its request: the
//! flood only evicts itself, and the header read timeout closes what is left of it. A
//! connection is busy from the moment its request head has been read until the last byte
//! of the response body has been handed on.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// How long a new connection waits for the slot of the one it evicted: the evicted
/// connection's task only has to notice and drop its socket.
const EVICTION_WAIT: Duration = Duration::from_secs(2);

/// The open connections of one server.
pub struct ConnectionLimit {
    permits: Arc<Semaphore>,
    registry: Mutex<Registry>,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    next_ticket: u64,
    conns: HashMap<u64, Conn>,
    /// Idle connections by the order they became idle (the first is the longest idle).
    idle: BTreeMap<u64, u64>,
}

struct Conn {
    in_flight: usize,
    /// Whether a request has arrived on it (so an answer may still be on its way out).
    served: bool,
    /// Its key in `idle` while it is idle.
    ticket: Option<u64>,
    evicted: bool,
    evict: Arc<Notify>,
}

/// One admitted connection. Dropping it frees the slot.
pub struct Slot {
    handle: SlotHandle,
    evict: Arc<Notify>,
    _permit: OwnedSemaphorePermit,
}

/// What a connection's requests use to say they are in flight.
#[derive(Clone)]
pub struct SlotHandle {
    limit: Arc<ConnectionLimit>,
    id: u64,
}

/// A request in flight; the connection is idle again once every one is dropped.
pub struct Busy {
    handle: SlotHandle,
}

impl ConnectionLimit {
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(ConnectionLimit { permits: Arc::new(Semaphore::new(cap)), registry: Mutex::default() })
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().expect("connection registry lock is never poisoned")
    }

    /// A slot for a new connection: a free one, or the one of the longest idle connection
    /// (which is told to close). `None` when every connection is busy.
    pub async fn admit(self: &Arc<Self>) -> Option<Slot> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Some(self.slot(permit));
        }
        self.evict_longest_idle()?;
        let permit = tokio::time::timeout(EVICTION_WAIT, self.permits.clone().acquire_owned()).await.ok()?.ok()?;
        Some(self.slot(permit))
    }

    fn slot(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Slot {
        let evict = Arc::new(Notify::new());
        let mut r = self.registry();
        let (id, ticket) = (r.next_id, r.next_ticket);
        r.next_id += 1;
        r.next_ticket += 1;
        r.idle.insert(ticket, id);
        r.conns.insert(
            id,
            Conn { in_flight: 0, served: false, ticket: Some(ticket), evicted: false, evict: evict.clone() },
        );
        Slot { handle: SlotHandle { limit: self.clone(), id }, evict, _permit: permit }
    }

    /// Tells the longest idle connection to close; `None` if none is idle.
    fn evict_longest_idle(&self) -> Option<()> {
        let mut r = self.registry();
        let (_, id) = r.idle.pop_first()?;
        let conn = r.conns.get_mut(&id).expect("an idle connection is registered");
        conn.ticket = None;
        conn.evicted = true;
        // Stored if its task is not waiting yet: it sees it at its next look.
        conn.evict.notify_one();
        Some(())
    }

    /// How many connections are idle now.
    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.registry().idle.len()
    }
}

impl Slot {
    pub fn handle(&self) -> SlotHandle {
        self.handle.clone()
    }

    /// Whether a request has arrived on this connection.
    pub fn has_served(&self) -> bool {
        self.handle.limit.registry().conns.get(&self.handle.id).is_some_and(|c| c.served)
    }

    /// Completes when a newer connection took this one's slot: the connection must close.
    pub async fn evicted(&self) {
        self.evict.notified().await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut r = self.handle.limit.registry();
        if let Some(conn) = r.conns.remove(&self.handle.id)
            && let Some(ticket) = conn.ticket
        {
            r.idle.remove(&ticket);
        }
    }
}

impl SlotHandle {
    /// A request has arrived on this connection: it is busy until the guard is dropped.
    pub fn busy(&self) -> Busy {
        let mut r = self.limit.registry();
        if let Some(conn) = r.conns.get_mut(&self.id) {
            conn.in_flight += 1;
            conn.served = true;
            if let Some(ticket) = conn.ticket.take() {
                r.idle.remove(&ticket);
            }
        }
        Busy { handle: self.clone() }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut r = self.handle.limit.registry();
        let ticket = r.next_ticket;
        let Some(conn) = r.conns.get_mut(&self.handle.id) else { return };
        conn.in_flight -= 1;
        if conn.in_flight == 0 && !conn.evicted {
            conn.ticket = Some(ticket);
            r.next_ticket += 1;
            r.idle.insert(ticket, self.handle.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_new_connection_evicts_the_longest_idle_one() {
        let limit = ConnectionLimit::new(2);
        let first = limit.admit().await.expect("free slot");
        let second = limit.admit().await.expect("free slot");
        assert_eq!(limit.idle_count(), 2);
        // The first one's task closes its connection when told to.
        let closing = tokio::spawn(async move {
            first.evicted().await;
            drop(first);
        });
        let third = limit.admit().await.expect("the first one's slot");
        closing.await.expect("the first connection was told to close");
        assert_eq!(limit.idle_count(), 2);
        drop((second, third));
        assert_eq!(limit.idle_count(), 0);
    }

    #[tokio::test]
    async fn busy_connections_are_not_evicted_and_a_full_house_refuses() {
        let limit = ConnectionLimit::new(2);
        let (a, b) = (limit.admit().await.expect("slot"), limit.admit().await.expect("slot"));
        let (busy_a, busy_b) = (a.handle().busy(), b.handle().busy());
        assert_eq!(limit.idle_count(), 0);
        assert!(limit.admit().await.is_none(), "every connection has a request in flight");
        // Once a's request is done, a is idle again, and the longest idle.
        drop(busy_a);
        let closing = tokio::spawn(async move {
            a.evicted().await;
            drop(a);
        });
        let c = limit.admit().await.expect("a's slot");
        closing.await.expect("a was told to close");
        drop((busy_b, b, c));
    }

    #[tokio::test]
    async fn the_order_is_by_how_long_a_connection_has_been_idle() {
        let limit = ConnectionLimit::new(2);
        let (a, b) = (limit.admit().await.expect("slot"), limit.admit().await.expect("slot"));
        // a serves a request and is idle again after b: b has been idle longer.
        drop(a.handle().busy());
        let closing = tokio::spawn(async move {
            b.evicted().await;
            drop(b);
        });
        let _c = limit.admit().await.expect("b's slot");
        closing.await.expect("b was told to close, not a");
        drop(a);
    }
}
