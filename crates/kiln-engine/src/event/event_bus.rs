//! The one event stream. Every view of kiln (terminal, JSON lines, HTTP and traces)
//! subscribes here; the engine only publishes and never prints.
//!
//! Publishing never waits for a subscriber, and no subscriber can make kiln's memory grow
//! without bound. Each subscriber has a queue of its own, bounded twice:
//!
//! - output lines (`target.output`, `service.output`) are dropped for a subscriber whose
//!   queued output passes [`OUTPUT_BYTES`]: a chatty service cannot fill memory behind a
//!   terminal, a pipe or an HTTP client that does not keep up;
//! - any event is dropped once [`QUEUE_EVENTS`] are queued (a client that never reads).
//!
//! Changes of state are never dropped below that second bound, which no ordinary burst
//! reaches, so a view that falls behind on output still knows every target's and service's
//! state. Where events were dropped, the subscriber receives one `stream.lagged` with the
//! count it missed, in order (right where the gap is); it should re-read status.
//!
//! An output line's text is cut at [`LINE_LIMIT`] bytes on the bus (the log on disk keeps
//! every byte), so one event is never large.
//!
//! A bus made [`EventBus::with_replay`] also keeps the most recent events (`replay_ring.rs`),
//! and [`EventBus::subscribe_since`] starts a subscription with those after a number.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;

use crate::event::replay_ring::{ReplayLimits, ReplayRing};
use crate::event::timestamp::rfc3339;
use crate::event::{Envelope, Event};

/// Bytes of output lines a subscriber may have queued; lines past it are dropped for it.
pub const OUTPUT_BYTES: usize = 1 << 20;
/// Events a subscriber may have queued; anything past it is dropped for it.
pub const QUEUE_EVENTS: usize = 65_536;
/// Bytes of one output line carried on the bus; the rest is cut (the log keeps it).
pub const LINE_LIMIT: usize = 16 * 1024;

/// Publishes events to every subscriber.
#[derive(Default)]
pub struct EventBus {
    seq: AtomicU64,
    /// Events dropped for any subscriber so far (each drop for each subscriber counted).
    dropped: AtomicU64,
    subscribers: Mutex<Subscribers>,
}

#[derive(Default)]
struct Subscribers {
    list: Vec<Arc<Shared>>,
    /// Closed: a subscription made now ends at once (an HTTP client arriving at shutdown).
    closed: bool,
    /// The last timestamp written and its millisecond: a burst of events within one
    /// millisecond formats it once.
    last_ms: u128,
    last_ts: String,
    /// Recent events, if this bus keeps them.
    replay: Option<ReplayRing>,
}

impl Subscribers {
    fn timestamp(&mut self) -> String {
        let now = SystemTime::now();
        let ms = now.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        if ms != self.last_ms || self.last_ts.is_empty() {
            self.last_ms = ms;
            self.last_ts = rfc3339(now);
        }
        self.last_ts.clone()
    }
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    /// Wakes an async receiver.
    notify: Notify,
    /// Wakes a blocking receiver (a view on a thread of its own).
    ready: Condvar,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Arc<Envelope>>,
    output_bytes: usize,
    /// Events dropped since the last `stream.lagged` was queued.
    dropped: u64,
    last_dropped_seq: u64,
    closed: bool,
    /// Receivers blocked in [`Subscription::recv_timeout`] now.
    waiting: usize,
}

impl Queue {
    /// The `stream.lagged` for drops not yet reported, if any.
    fn take_lagged(&mut self, ts: &str) -> Option<Arc<Envelope>> {
        (self.dropped > 0).then(|| {
            let dropped = std::mem::take(&mut self.dropped);
            Arc::new(Envelope {
                event: Event::StreamLagged { dropped },
                ts: ts.to_string(),
                seq: self.last_dropped_seq,
            })
        })
    }

    fn pop(&mut self) -> Option<Arc<Envelope>> {
        if let Some(envelope) = self.items.pop_front() {
            self.output_bytes -= output_cost(&envelope.event);
            return Some(envelope);
        }
        // Drops at the very end (nothing was queued after them) are reported all the same.
        self.take_lagged(&rfc3339(SystemTime::now()))
    }
}

/// What an output line weighs in a queue (zero for anything else).
fn output_cost(event: &Event) -> usize {
    match event {
        Event::TargetOutput { line, .. } | Event::ServiceOutput { line, .. } => line.len() + 64,
        _ => 0,
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().expect("event queue lock is never poisoned")
    }

    /// Queues it, or drops it (and says so: `false`) when the queue is full.
    fn offer(&self, envelope: &Arc<Envelope>) -> bool {
        let cost = output_cost(&envelope.event);
        let mut q = self.lock();
        let full = q.items.len() >= QUEUE_EVENTS || (cost > 0 && q.output_bytes + cost > OUTPUT_BYTES);
        if full {
            q.dropped += 1;
            q.last_dropped_seq = envelope.seq;
            return false;
        }
        let was_empty = q.items.is_empty();
        if let Some(lagged) = q.take_lagged(&envelope.ts) {
            q.items.push_back(lagged);
        }
        q.output_bytes += cost;
        q.items.push_back(envelope.clone());
        drop(q);
        // A receiver drains its queue before it waits again: only the first event after it
        // found the queue empty needs to wake it (a flood costs no wake-up per line).
        if was_empty {
            self.notify.notify_one();
            self.ready.notify_one();
        }
        true
    }

    fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_one();
        self.ready.notify_one();
    }
}

/// A subscriber's end of the bus: every event published after [`EventBus::subscribe`], in
/// order, with `stream.lagged` where some had to be dropped. Ends after [`EventBus::close`]
/// once drained.
pub struct Subscription {
    shared: Arc<Shared>,
}

/// What a blocking receive with a time limit got.
#[derive(Debug)]
pub enum Received {
    Event(Arc<Envelope>),
    TimedOut,
    Closed,
}

impl Subscription {
    /// The next event, or `None` once the bus is closed and this queue drained.
    pub async fn recv(&mut self) -> Option<Arc<Envelope>> {
        loop {
            {
                let mut q = self.shared.lock();
                if let Some(envelope) = q.pop() {
                    return Some(envelope);
                }
                if q.closed {
                    return None;
                }
            }
            // `notify_one` keeps a permit when nobody waits, so an event offered between the
            // check above and this wait is not missed.
            self.shared.notify.notified().await;
        }
    }

    /// The next event if one is queued.
    pub fn try_recv(&mut self) -> Option<Arc<Envelope>> {
        self.shared.lock().pop()
    }

    /// Blocks the calling thread for the next event, at most `limit`.
    pub fn recv_timeout(&mut self, limit: Duration) -> Received {
        let deadline = std::time::Instant::now() + limit;
        let mut q = self.shared.lock();
        loop {
            if let Some(envelope) = q.pop() {
                return Received::Event(envelope);
            }
            if q.closed {
                return Received::Closed;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Received::TimedOut;
            }
            q.waiting += 1;
            q = self.shared.ready.wait_timeout(q, left).expect("event queue lock is never poisoned").0;
            q.waiting -= 1;
        }
    }

    /// Whether nothing is queued (a view flushes its output then).
    pub fn is_empty(&self) -> bool {
        let q = self.shared.lock();
        q.items.is_empty() && q.dropped == 0
    }
}

impl EventBus {
    pub fn new() -> Self {
        Self::default()
    }

    /// A bus that also keeps the most recent events within `limits`, for
    /// [`EventBus::subscribe_since`].
    pub fn with_replay(limits: ReplayLimits) -> Self {
        let bus = Self::default();
        bus.subscribers.lock().expect("event bus lock is never poisoned").replay = Some(ReplayRing::new(limits));
        bus
    }

    /// A new receiver of every event published from now on.
    pub fn subscribe(&self) -> Subscription {
        let mut subs = self.subscribers.lock().expect("event bus lock is never poisoned");
        Self::subscribe_locked(&mut subs)
    }

    fn subscribe_locked(subs: &mut Subscribers) -> Subscription {
        let shared = Arc::new(Shared::default());
        if subs.closed {
            shared.lock().closed = true;
        } else {
            subs.list.push(shared.clone());
        }
        Subscription { shared }
    }

    /// For a client that has seen the events up to number `after`: those after it that are
    /// still kept (first a `stream.lagged` with the count of those that are not; a bus
    /// without replay keeps none), and a receiver of every event after them. Taken at one
    /// instant: no event is in both, none falls between.
    pub fn subscribe_since(&self, after: u64) -> (Vec<Arc<Envelope>>, Subscription) {
        let mut subs = self.subscribers.lock().expect("event bus lock is never poisoned");
        let last = self.seq.load(Ordering::Relaxed);
        let ts = subs.timestamp();
        let missed = match &subs.replay {
            Some(ring) => ring.since(after, last, &ts),
            None if after < last => {
                vec![Arc::new(Envelope { event: Event::StreamLagged { dropped: last - after }, ts, seq: last })]
            }
            None => Vec::new(),
        };
        (missed, Self::subscribe_locked(&mut subs))
    }

    pub fn publish(&self, event: Event) {
        let event = cut_line(event);
        let mut subs = self.subscribers.lock().expect("event bus lock is never poisoned");
        // Numbered under the lock so that every subscriber sees increasing `seq`.
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let envelope = Arc::new(Envelope { event, ts: subs.timestamp(), seq });
        if let Some(ring) = subs.replay.as_mut() {
            ring.push(&envelope);
        }
        // A subscription that was dropped is the only other holder gone.
        subs.list.retain(|s| Arc::strong_count(s) > 1);
        let dropped = subs.list.iter().filter(|s| !s.offer(&envelope)).count();
        if dropped > 0 {
            self.dropped.fetch_add(dropped as u64, Ordering::Relaxed);
        }
    }

    /// Events dropped so far, summed over every subscriber (each one's `stream.lagged`
    /// counts): what `kiln_events_dropped_total` reports.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The `seq` of the last event published (0 before the first): a subscriber that has
    /// taken every event up to it has seen everything published so far.
    pub fn last_seq(&self) -> u64 {
        // Taken under the lock, as `publish` numbers: an event being published now is either
        // counted and queued for every subscriber, or neither.
        let _subs = self.subscribers.lock().expect("event bus lock is never poisoned");
        self.seq.load(Ordering::Relaxed)
    }

    /// Ends every subscription once drained.
    pub fn close(&self) {
        let mut subs = self.subscribers.lock().expect("event bus lock is never poisoned");
        subs.closed = true;
        for s in subs.list.drain(..) {
            s.close();
        }
    }
}

/// What ends a line cut on the bus.
pub const CUT_NOTE: &str = " … [cut at 16 KiB: the log has the whole line]";

/// An output line longer than [`LINE_LIMIT`] is cut (at a character boundary), with a note.
fn cut_line(mut event: Event) -> Event {
    if let Event::TargetOutput { line, .. } | Event::ServiceOutput { line, .. } = &mut event
        && line.len() > LINE_LIMIT
    {
        let mut end = LINE_LIMIT;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
        line.push_str(CUT_NOTE);
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, Stream};

    fn queued(i: usize) -> Event {
        Event::TargetQueued { target: format!("t{i}"), deps: vec![], estimate_ms: None }
    }

    fn output(line: String) -> Event {
        Event::ServiceOutput { service: "s".into(), replica: 0, stream: Stream::Stdout, line }
    }

    fn drain(rx: &mut Subscription) -> Vec<Arc<Envelope>> {
        std::iter::from_fn(|| rx.try_recv()).collect()
    }

    #[test]
    fn subscribers_see_every_event_in_order() {
        let bus = EventBus::new();
        let mut rx = bus.subscribe();
        for i in 0..3 {
            bus.publish(queued(i));
        }
        bus.close();
        let seqs: Vec<u64> = drain(&mut rx).iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![1, 2, 3]);
    }

    #[test]
    fn a_subscriber_that_never_reads_holds_a_bounded_amount_of_output_then_learns_what_it_missed() {
        let bus = EventBus::new();
        let mut slow = bus.subscribe();
        let line = "x".repeat(1000);
        let lines = 10 * OUTPUT_BYTES / line.len();
        for _ in 0..lines {
            bus.publish(output(line.clone()));
        }
        // A change of state after the flood still arrives, right after the gap's report.
        bus.publish(queued(0));
        bus.close();
        let got = drain(&mut slow);
        let kept = got.iter().filter(|e| matches!(e.event, Event::ServiceOutput { .. })).count();
        assert!(kept * (line.len() + 64) <= OUTPUT_BYTES, "kept {kept} lines");
        assert!(kept > 0);
        let n = got.len();
        assert!(
            matches!(got[n - 2].event, Event::StreamLagged { dropped } if dropped as usize == lines - kept),
            "{:?}",
            got[n - 2].event
        );
        assert_eq!(bus.dropped_total() as usize, lines - kept, "the bus counts what it dropped");
        assert!(matches!(got[n - 1].event, Event::TargetQueued { .. }));
    }

    #[test]
    fn a_reader_that_keeps_up_loses_nothing_and_sees_no_lag() {
        let bus = EventBus::new();
        let mut rx = bus.subscribe();
        let mut seen = 0;
        for _ in 0..10_000 {
            bus.publish(output("y".repeat(500)));
            seen += drain(&mut rx).len();
        }
        assert_eq!(seen, 10_000);
    }

    #[test]
    fn drops_at_the_end_are_reported_when_the_stream_closes() {
        let bus = EventBus::new();
        let mut rx = bus.subscribe();
        for _ in 0..(2 * OUTPUT_BYTES / 100) {
            bus.publish(output("z".repeat(100)));
        }
        bus.close();
        let got = drain(&mut rx);
        assert!(matches!(got.last().map(|e| &e.event), Some(Event::StreamLagged { dropped }) if *dropped > 0));
        assert!(rx.is_empty());
    }

    #[test]
    fn states_are_bounded_too() {
        let bus = EventBus::new();
        let mut rx = bus.subscribe();
        for i in 0..(QUEUE_EVENTS + 10) {
            bus.publish(queued(i));
        }
        let got = drain(&mut rx);
        assert_eq!(got.len(), QUEUE_EVENTS + 1);
        assert!(matches!(got.last().map(|e| &e.event), Some(Event::StreamLagged { dropped: 10 })));
    }

    #[test]
    fn a_long_line_is_cut_on_the_bus_at_a_character_boundary() {
        let bus = EventBus::new();
        let mut rx = bus.subscribe();
        bus.publish(output("é".repeat(LINE_LIMIT)));
        let got = drain(&mut rx);
        let Event::ServiceOutput { line, .. } = &got[0].event else { panic!("{:?}", got[0].event) };
        assert!(line.len() < LINE_LIMIT + 64);
        assert!(line.ends_with(CUT_NOTE) && line.starts_with("éé"), "{}", &line[line.len() - 60..]);
    }

    #[test]
    fn a_dropped_subscription_is_forgotten() {
        let bus = EventBus::new();
        drop(bus.subscribe());
        bus.publish(queued(0));
        assert!(bus.subscribers.lock().expect("lock").list.is_empty());
    }

    #[test]
    fn a_blocking_receiver_wakes_for_an_event_from_another_thread() {
        let bus = Arc::new(EventBus::new());
        let mut rx = bus.subscribe();
        let shared = rx.shared.clone();
        let publisher = bus.clone();
        let t = std::thread::spawn(move || {
            // Published once the receiver is asleep: only a wake-up can bring it back early.
            while shared.lock().waiting == 0 {
                std::thread::yield_now();
            }
            publisher.publish(queued(1));
        });
        let asked = std::time::Instant::now();
        let got = rx.recv_timeout(Duration::from_secs(120));
        assert!(asked.elapsed() < Duration::from_secs(60), "woken by the time limit, not by the event");
        t.join().expect("publisher thread");
        assert!(matches!(got, Received::Event(e) if matches!(e.event, Event::TargetQueued { .. })));
        bus.close();
        assert!(matches!(rx.recv_timeout(Duration::from_secs(30)), Received::Closed));
    }

    #[tokio::test]
    async fn an_async_receiver_wakes_for_an_event_and_for_the_close() {
        let bus = Arc::new(EventBus::new());
        let mut rx = bus.subscribe();
        let publisher = bus.clone();
        let receiver = tokio::spawn(async move {
            let first = rx.recv().await;
            let end = rx.recv().await;
            (first, end)
        });
        // The receiver runs up to its wait before this task goes on (one thread).
        tokio::task::yield_now().await;
        publisher.publish(queued(2));
        bus.close();
        let (first, end) = tokio::time::timeout(Duration::from_secs(60), receiver)
            .await
            .expect("woken, not left waiting")
            .expect("receiver task");
        assert!(matches!(first.map(|e| e.seq), Some(1)));
        assert!(end.is_none());
    }

    #[test]
    fn a_subscription_since_a_number_has_no_gap_and_no_duplicate_while_events_flow() {
        let bus = Arc::new(EventBus::with_replay(ReplayLimits { events: 100_000, bytes: 64 << 20 }));
        let publisher = bus.clone();
        let t = std::thread::spawn(move || {
            for i in 0..20_000 {
                publisher.publish(queued(i));
            }
        });
        // Reconnections at random points of the flood, each from where the last one was.
        let mut seen = 0u64;
        while seen < 20_000 {
            let (missed, mut rx) = bus.subscribe_since(seen);
            assert!(missed.iter().all(|e| !matches!(e.event, Event::StreamLagged { .. })), "the ring keeps all");
            let mut got: Vec<u64> = missed.iter().map(|e| e.seq).collect();
            got.extend(std::iter::from_fn(|| rx.try_recv()).take(100).map(|e| e.seq));
            let want: Vec<u64> = (seen + 1..=seen + got.len() as u64).collect();
            assert_eq!(got, want, "after {seen}");
            seen += got.len() as u64;
            std::thread::yield_now();
        }
        t.join().expect("publisher");
    }

    #[test]
    fn a_subscription_since_a_number_older_than_the_ring_starts_with_the_lag() {
        let bus = EventBus::with_replay(ReplayLimits { events: 5, bytes: 1 << 20 });
        for i in 0..20 {
            bus.publish(queued(i));
        }
        let (missed, mut rx) = bus.subscribe_since(3);
        assert!(matches!(missed[0].event, Event::StreamLagged { dropped: 12 }), "{:?}", missed[0]);
        assert_eq!(missed.iter().skip(1).map(|e| e.seq).collect::<Vec<_>>(), vec![16, 17, 18, 19, 20]);
        bus.publish(queued(20));
        assert_eq!(rx.try_recv().map(|e| e.seq), Some(21));
        // Without a ring, every earlier event is missed.
        let plain = EventBus::new();
        plain.publish(queued(0));
        plain.publish(queued(1));
        let (missed, _rx) = plain.subscribe_since(1);
        assert!(matches!(missed[..], [ref e] if matches!(e.event, Event::StreamLagged { dropped: 1 })));
        assert!(plain.subscribe_since(2).0.is_empty());
    }

    #[test]
    fn a_subscription_made_after_the_close_ends_at_once() {
        let bus = EventBus::new();
        bus.close();
        let mut late = bus.subscribe();
        assert!(matches!(late.recv_timeout(Duration::from_secs(60)), Received::Closed));
    }
}
