//! A rolling restart of one service, as pure decisions: its replicas restart one at a time,
//! the next once the previous new one has settled (ready, or given up: failed, completed,
//! backing off) or after [`ROLL_WAIT`], so the service keeps serving throughout.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::event::Phase;

/// How long a rolling restart waits for a new replica to settle before moving on.
pub const ROLL_WAIT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
struct Current {
    replica: u32,
    /// It has left its old process behind (`starting` seen).
    restarted: bool,
    deadline: Instant,
}

#[derive(Debug, Clone, Default)]
pub struct Rollout {
    queue: VecDeque<u32>,
    current: Option<Current>,
    /// When the latest of its new replicas began (`starting`).
    last_started: Option<Instant>,
}

impl Rollout {
    pub fn new(replicas: impl IntoIterator<Item = u32>) -> Rollout {
        Rollout { queue: replicas.into_iter().collect(), current: None, last_started: None }
    }

    /// The replica to restart now, if it is its turn.
    pub fn next(&mut self, now: Instant) -> Option<u32> {
        if self.current.is_some() {
            return None;
        }
        let replica = self.queue.pop_front()?;
        self.current = Some(Current { replica, restarted: false, deadline: now + ROLL_WAIT });
        Some(replica)
    }

    /// A replica changed phase.
    pub fn observe(&mut self, replica: u32, phase: Phase, now: Instant) {
        let Some(c) = self.current.as_mut().filter(|c| c.replica == replica) else { return };
        if phase == Phase::Starting {
            c.restarted = true;
            self.last_started = Some(now);
        } else if c.restarted
            && matches!(phase, Phase::Ready | Phase::Failed | Phase::Completed | Phase::Backoff | Phase::Stopped)
        {
            self.current = None;
        }
    }

    /// A replica is gone (scaled down): it is not waited for.
    pub fn forget(&mut self, replica: u32) {
        self.queue.retain(|r| *r != replica);
        if self.current.as_ref().is_some_and(|c| c.replica == replica) {
            self.current = None;
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.current.as_ref().map(|c| c.deadline)
    }

    /// Time is up for the current replica: move on.
    pub fn on_deadline(&mut self, now: Instant) {
        if self.current.as_ref().is_some_and(|c| c.deadline <= now) {
            self.current = None;
        }
    }

    /// When the latest of its new replicas began.
    pub fn last_started(&self) -> Option<Instant> {
        self.last_started
    }

    pub fn is_done(&self) -> bool {
        self.current.is_none() && self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_at_a_time_each_after_the_previous_is_ready_again() {
        let now = Instant::now();
        let mut r = Rollout::new([0, 1, 2]);
        assert_eq!(r.next(now), Some(0));
        assert_eq!(r.next(now), None, "1 waits for 0");
        r.observe(0, Phase::Ready, now);
        assert_eq!(r.next(now), None, "the old process being ready does not count");
        r.observe(0, Phase::Stopping, now);
        r.observe(0, Phase::Starting, now);
        r.observe(0, Phase::Ready, now);
        assert_eq!(r.next(now), Some(1));
        r.observe(1, Phase::Starting, now);
        r.observe(1, Phase::Backoff, now);
        assert_eq!(r.next(now), Some(2), "a replica that gave up does not hold the others");
        let later = now + Duration::from_millis(40);
        r.observe(2, Phase::Starting, later);
        r.observe(2, Phase::Ready, later);
        assert_eq!(r.next(now), None);
        assert!(r.is_done());
        assert_eq!(r.last_started(), Some(later), "when the last new replica began");
    }

    #[tokio::test(start_paused = true)]
    async fn a_replica_that_never_settles_is_given_up_on_after_the_wait() {
        let now = Instant::now();
        let mut r = Rollout::new([0, 1]);
        assert_eq!(r.next(now), Some(0));
        r.observe(0, Phase::Starting, now);
        assert_eq!(r.deadline(), Some(now + ROLL_WAIT));
        r.on_deadline(now + ROLL_WAIT - Duration::from_millis(1));
        assert_eq!(r.next(now), None);
        r.on_deadline(now + ROLL_WAIT);
        assert_eq!(r.next(now + ROLL_WAIT), Some(1));
        r.forget(1);
        assert!(r.is_done(), "a scaled-down replica is not waited for");
    }
}
