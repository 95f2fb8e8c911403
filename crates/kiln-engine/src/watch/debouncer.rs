//! Debouncing file events: a trailing quiet window with a maximum wait.
//!
//! In: changed paths as they arrive, with the time. Out: one batch of distinct paths once
//! no event came for `window`, or once `max_wait` has passed since the first event of the
//! batch, whichever is sooner, so that a file written every 10 ms still produces a batch
//! every `max_wait`. Pure: the caller supplies the clock.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;

/// A settled set of changes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Batch {
    /// Root-relative paths that changed.
    pub paths: BTreeSet<String>,
    /// Events were lost (queue overflow): everything must be looked at again.
    pub rescan: bool,
    /// When its first event arrived (set when it is taken).
    pub first: Option<Instant>,
}

#[derive(Debug)]
pub struct Debouncer {
    window: Duration,
    max_wait: Duration,
    first: Option<Instant>,
    last: Option<Instant>,
    /// Not before this: something outside the files (a git checkout) is still writing.
    held_until: Option<Instant>,
    pending: Batch,
}

impl Debouncer {
    pub fn new(window: Duration, max_wait: Duration) -> Debouncer {
        Debouncer { window, max_wait, first: None, last: None, held_until: None, pending: Batch::default() }
    }

    pub fn set_window(&mut self, window: Duration) {
        self.window = window;
    }

    /// Records changes seen at `now`.
    pub fn add(&mut self, now: Instant, paths: impl IntoIterator<Item = String>, rescan: bool) {
        let mut any = rescan;
        for p in paths {
            any = true;
            self.pending.paths.insert(p);
        }
        self.pending.rescan |= rescan;
        if !any {
            return;
        }
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    /// When the pending batch becomes due, if there is one.
    pub fn deadline(&self) -> Option<Instant> {
        let (first, last) = (self.first?, self.last?);
        let due = (last + self.window).min(first + self.max_wait);
        Some(self.held_until.map_or(due, |h| h.max(due)))
    }

    /// Holds the pending batch back for another quiet window from `now`: a writer that
    /// works through many files (a git checkout) is not finished yet.
    pub fn hold(&mut self, now: Instant) {
        self.held_until = Some(now + self.window);
    }

    /// The pending batch, if it is due at `now`.
    pub fn take_due(&mut self, now: Instant) -> Option<Batch> {
        if self.deadline().is_none_or(|d| d > now) {
            return None;
        }
        let first = self.first.take();
        self.last = None;
        self.held_until = None;
        Some(Batch { first, ..std::mem::take(&mut self.pending) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| (*s).to_string()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_settles_into_one_batch_after_the_quiet_window() {
        let mut d = Debouncer::new(Duration::from_millis(100), Duration::from_secs(1));
        let t0 = Instant::now();
        d.add(t0, paths(&["a"]), false);
        tokio::time::advance(Duration::from_millis(50)).await;
        d.add(Instant::now(), paths(&["b", "a"]), false);
        assert_eq!(d.take_due(Instant::now()), None, "still inside the window");
        assert_eq!(d.deadline(), Some(t0 + Duration::from_millis(150)));
        tokio::time::advance(Duration::from_millis(100)).await;
        let batch = d.take_due(Instant::now()).expect("due");
        assert_eq!(batch.paths.into_iter().collect::<Vec<_>>(), vec!["a", "b"]);
        assert_eq!(d.deadline(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_stream_still_produces_a_batch_every_max_wait() {
        let mut d = Debouncer::new(Duration::from_millis(100), Duration::from_secs(1));
        let mut batches = 0;
        for i in 0..300 {
            d.add(Instant::now(), [format!("f{}", i % 3)], false);
            tokio::time::advance(Duration::from_millis(10)).await;
            if d.take_due(Instant::now()).is_some() {
                batches += 1;
            }
        }
        assert_eq!(batches, 3, "3 s of writes every 10 ms give a batch per second");
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_batch_waits_for_another_window() {
        let mut d = Debouncer::new(Duration::from_millis(100), Duration::from_secs(1));
        d.add(Instant::now(), paths(&["a"]), false);
        tokio::time::advance(Duration::from_millis(100)).await;
        d.hold(Instant::now());
        assert_eq!(d.take_due(Instant::now()), None);
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(d.take_due(Instant::now()).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn overflow_is_carried_as_a_rescan() {
        let mut d = Debouncer::new(Duration::from_millis(100), Duration::from_secs(1));
        let first = Instant::now();
        d.add(first, Vec::new(), true);
        tokio::time::advance(Duration::from_millis(100)).await;
        assert_eq!(
            d.take_due(Instant::now()),
            Some(Batch { paths: BTreeSet::new(), rescan: true, first: Some(first) })
        );
    }
}
