//! Restart backoff for crashed services: 1 s, doubling up to 5 min, with jitter; a replica
//! that stayed ready for 10 min starts over from 1 s. Pure: the caller supplies the
//! restart count and a jitter source.

use std::time::Duration;

/// The schedule.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    /// Ready this long, and the next crash counts as the first again.
    pub reset_after: Duration,
    /// Up to this fraction of the delay is added at random, so replicas do not restart in step.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(300),
            reset_after: Duration::from_secs(600),
            jitter: 0.1,
        }
    }
}

impl Backoff {
    /// The delay before restart number `restarts` (0 for the first), with `unit` in 0..1
    /// choosing the jitter.
    pub fn delay(&self, restarts: u32, unit: f64) -> Duration {
        let doubled = self.base.saturating_mul(2u32.saturating_pow(restarts.min(20)));
        let capped = doubled.min(self.max);
        capped + capped.mul_f64(self.jitter * unit.clamp(0.0, 1.0))
    }

    /// The restart count to use after a replica was ready for `ready_for`.
    pub fn after_ready(&self, restarts: u32, ready_for: Duration) -> u32 {
        if ready_for >= self.reset_after { 0 } else { restarts }
    }
}

/// A cheap jitter source in 0..1 (not for anything but spreading restarts).
pub fn jitter_unit() -> f64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    f64::from(nanos % 1000) / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_one_second_up_to_five_minutes() {
        let b = Backoff { jitter: 0.0, ..Backoff::default() };
        let delays: Vec<u64> = (0..11).map(|n| b.delay(n, 0.5).as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(b.delay(1000, 0.0), Duration::from_secs(300));
    }

    #[test]
    fn jitter_adds_at_most_a_tenth() {
        let b = Backoff::default();
        assert_eq!(b.delay(2, 0.0), Duration::from_secs(4));
        assert_eq!(b.delay(2, 1.0), Duration::from_millis(4400));
    }

    #[test]
    fn ten_minutes_ready_resets_the_count() {
        let b = Backoff::default();
        assert_eq!(b.after_ready(7, Duration::from_secs(599)), 7);
        assert_eq!(b.after_ready(7, Duration::from_secs(600)), 0);
    }
}
