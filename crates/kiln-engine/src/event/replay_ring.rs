//! The bus's memory of recent events, so that a client that reconnects (an `EventSource`
//! sending `Last-Event-ID: N`) gets what it missed instead of a gap.
//!
//! In: every event the bus publishes, in `seq` order. Out: for a number `N`, the events
//! after `N` that are still kept, preceded by one `stream.lagged` with the count of those
//! that are not (then the client re-reads status). Bounded twice: at most
//! [`ReplayLimits::events`] events and [`ReplayLimits::bytes`] bytes (an event's weight is
//! its size in JSON plus that of its envelope); the oldest go first. An event heavier than
//! the whole byte bound alone is not kept (and everything before it goes): the ring stays
//! a run of consecutive numbers, so "after N" is exact.
//!
//! It lives in the bus, under the bus's lock, rather than in a subscriber of its own: a
//! subscriber's queue may drop events (its bounds) and runs behind the bus, so between
//! what it had stored and what a new subscription receives there could be a gap. Here,
//! [`EventBus::subscribe_since`](crate::EventBus::subscribe_since) reads the ring and
//! subscribes at one instant: the replay ends at the last event published, the
//! subscription starts with the next one.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::event::{Envelope, Event};

/// How much a replay ring keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayLimits {
    pub events: usize,
    pub bytes: usize,
}

impl ReplayLimits {
    /// What `kiln up` keeps: 10,000 events, 8 MiB.
    pub const DEFAULT: ReplayLimits = ReplayLimits { events: 10_000, bytes: 8 << 20 };
}

/// Recent events, oldest first.
#[derive(Debug)]
pub struct ReplayRing {
    limits: ReplayLimits,
    items: VecDeque<(Arc<Envelope>, usize)>,
    bytes: usize,
    /// The number of the newest event no longer kept (0: none was ever let go).
    forgotten: u64,
}

impl ReplayRing {
    pub fn new(limits: ReplayLimits) -> ReplayRing {
        ReplayRing { limits, items: VecDeque::new(), bytes: 0, forgotten: 0 }
    }

    /// Keeps `envelope` (the next in `seq` order), letting the oldest go as needed.
    pub fn push(&mut self, envelope: &Arc<Envelope>) {
        let weight = weight(envelope);
        if weight > self.limits.bytes || self.limits.events == 0 {
            self.items.clear();
            self.bytes = 0;
            self.forgotten = envelope.seq;
            return;
        }
        while self.items.len() >= self.limits.events || self.bytes + weight > self.limits.bytes {
            let Some((old, w)) = self.items.pop_front() else { break };
            self.bytes -= w;
            self.forgotten = old.seq;
        }
        self.bytes += weight;
        self.items.push_back((envelope.clone(), weight));
    }

    /// What a client that has seen every event up to `after` missed, as far as it is kept,
    /// with `last` the number of the last event published: one `stream.lagged` (numbered
    /// as the newest event it stands for, stamped `ts`) if some are no longer kept, then
    /// the events after `after`. A number beyond `last` is of another session (numbers
    /// start at 1 in each): read as 0.
    pub fn since(&self, after: u64, last: u64, ts: &str) -> Vec<Arc<Envelope>> {
        let after = if after > last { 0 } else { after };
        let mut out = Vec::new();
        if after < self.forgotten {
            let dropped = self.forgotten - after;
            out.push(Arc::new(Envelope {
                event: Event::StreamLagged { dropped },
                ts: ts.to_string(),
                seq: self.forgotten,
            }));
        }
        let start = self.items.partition_point(|(e, _)| e.seq <= after);
        out.extend(self.items.range(start..).map(|(e, _)| e.clone()));
        out
    }

    /// Events and bytes kept now.
    #[cfg(test)]
    fn kept(&self) -> (usize, usize) {
        (self.items.len(), self.bytes)
    }
}

/// What an event weighs in the ring: its JSON's length and its envelope's size (a line's
/// JSON is taken as its text and some: lines are most events, and are not serialized here).
fn weight(envelope: &Envelope) -> usize {
    let fixed = std::mem::size_of::<Envelope>() + envelope.ts.len() + 64;
    match &envelope.event {
        Event::TargetOutput { target: name, line, .. } | Event::ServiceOutput { service: name, line, .. } => {
            fixed + name.len() + line.len()
        }
        event => {
            let mut counter = Counter(0);
            serde_json::to_writer(&mut counter, event).expect("events serialize");
            fixed + counter.0
        }
    }
}

/// Counts what is written to it.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Stream;

    fn env(seq: u64, event: Event) -> Arc<Envelope> {
        Arc::new(Envelope { event, ts: "2026-12-01T00:00:00.000Z".into(), seq })
    }

    fn queued(seq: u64) -> Arc<Envelope> {
        env(seq, Event::TargetQueued { target: format!("t{seq}"), deps: vec![], estimate_ms: None })
    }

    fn line(seq: u64, len: usize) -> Arc<Envelope> {
        env(
            seq,
            Event::ServiceOutput { service: "s".into(), replica: 0, stream: Stream::Stdout, line: "x".repeat(len) },
        )
    }

    fn seqs(v: &[Arc<Envelope>]) -> Vec<u64> {
        v.iter().map(|e| e.seq).collect()
    }

    fn lagged(v: &[Arc<Envelope>]) -> Option<u64> {
        match v.first().map(|e| &e.event) {
            Some(Event::StreamLagged { dropped }) => Some(*dropped),
            _ => None,
        }
    }

    #[test]
    fn replays_what_came_after_the_number_given() {
        let mut ring = ReplayRing::new(ReplayLimits { events: 10, bytes: 1 << 20 });
        for seq in 1..=5 {
            ring.push(&queued(seq));
        }
        assert_eq!(seqs(&ring.since(2, 5, "")), vec![3, 4, 5]);
        assert_eq!(seqs(&ring.since(0, 5, "")), vec![1, 2, 3, 4, 5], "from the start, nothing lost");
        assert!(ring.since(5, 5, "").is_empty(), "up to date");
    }

    #[test]
    fn keeps_at_most_its_count_and_says_what_a_client_missed() {
        let mut ring = ReplayRing::new(ReplayLimits { events: 3, bytes: 1 << 20 });
        for seq in 1..=10 {
            ring.push(&queued(seq));
        }
        assert_eq!(ring.kept().0, 3);
        let got = ring.since(2, 10, "now");
        assert_eq!(lagged(&got), Some(5), "3..=7 are gone");
        assert_eq!(seqs(&got), vec![7, 8, 9, 10], "the lag is numbered as the last event it stands for");
        assert_eq!(got[0].ts, "now");
        assert_eq!(seqs(&ring.since(7, 10, "")), vec![8, 9, 10], "exactly at the edge: nothing missed");
        assert_eq!(lagged(&ring.since(6, 10, "")), Some(1));
    }

    #[test]
    fn keeps_at_most_its_bytes() {
        let limits = ReplayLimits { events: 1000, bytes: 64 * 1024 };
        let mut ring = ReplayRing::new(limits);
        for seq in 1..=200 {
            ring.push(&line(seq, 1000));
        }
        let (n, bytes) = ring.kept();
        assert!(bytes <= limits.bytes, "{bytes}");
        assert!(n > 10 && n < 64, "{n} lines of 1000 bytes");
        let got = ring.since(0, 200, "");
        assert_eq!(lagged(&got), Some(200 - n as u64));
        assert_eq!(got.len(), n + 1);
        assert_eq!(got.last().map(|e| e.seq), Some(200));
    }

    #[test]
    fn an_event_heavier_than_the_ring_is_not_kept_and_leaves_no_hole() {
        let mut ring = ReplayRing::new(ReplayLimits { events: 100, bytes: 4096 });
        ring.push(&queued(1));
        ring.push(&line(2, 10_000));
        ring.push(&queued(3));
        let got = ring.since(0, 3, "");
        assert_eq!(lagged(&got), Some(2));
        assert_eq!(seqs(&got), vec![2, 3]);
        assert_eq!(seqs(&ring.since(2, 3, "")), vec![3]);
    }

    #[test]
    fn a_number_of_another_session_replays_from_the_start() {
        let mut ring = ReplayRing::new(ReplayLimits { events: 2, bytes: 1 << 20 });
        for seq in 1..=3 {
            ring.push(&queued(seq));
        }
        let got = ring.since(5000, 3, "");
        assert_eq!(lagged(&got), Some(1));
        assert_eq!(seqs(&got), vec![1, 2, 3]);
    }

    #[test]
    fn the_weight_of_a_state_change_is_its_json() {
        let small = weight(&queued(1));
        let big = weight(&env(
            1,
            Event::WatchChanged { paths: (0..100).map(|i| format!("src/file{i:03}.rs")).collect(), targets: vec![] },
        ));
        assert!(big > small + 100 * 15, "{small} {big}");
    }
}
