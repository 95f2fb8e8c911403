//! What the events sink does after each attempt to POST one event: done, try again after a
//! while, or give the event up. Pure: (state, what the attempt came to, now) → next.
//!
//! How it works:
//! - a 2xx answer delivers the event;
//! - 429 and 503 are tried again after `Retry-After` (seconds or an HTTP date; at most
//!   [`MAX_RETRY_AFTER`]) but never sooner than the backoff: a `Retry-After: 0` or a date
//!   past does not turn the attempts into a burst; the backoff alone when the header is
//!   absent or unreadable;
//! - 408, 425 and the other 5xx, and no answer at all (refused, reset, timed out), are tried
//!   again after the backoff: [`FIRST_BACKOFF`] doubling up to [`MAX_BACKOFF`];
//! - any other answer (4xx, a redirect, 1xx) gives the event up at once: sending it again
//!   would be refused again;
//! - an event is tried at most [`MAX_ATTEMPTS`] times (about 8 s of backoff in all).
//!
//! The link between attempts is a state: `Up` while the sink answers, `Down` once an event
//! was given up because nothing answered. While `Down` each event is tried once, without
//! retries, so that a sink that is gone costs one failed connection per event rather than
//! 8 s each (the queue behind it would only fill); the first answer of any kind brings the
//! link back `Up`.

use std::time::{Duration, SystemTime};

/// Attempts per event while the sink answers.
pub const MAX_ATTEMPTS: u32 = 6;
/// The wait after the first failed attempt; it doubles after each one.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(250);
pub const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// The longest `Retry-After` honoured: a sink asking for more gets this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The sink answered: the status, its `Retry-After` header, the start of its body.
    Answered { status: u16, retry_after: Option<String>, body: String },
    /// No answer: the connection failed or the request timed out.
    NoAnswer(String),
}

/// What to do next with the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Delivered,
    /// Try it again after this long.
    Retry(Duration),
    /// Give it up, for this reason (said to the user once).
    Drop(String),
}

/// Whether the sink has been answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Up,
    /// An event was given up because nothing answered: each event gets one attempt.
    Down,
}

/// The backoff after failed attempt `attempt` (1-based).
pub fn backoff(attempt: u32) -> Duration {
    FIRST_BACKOFF.saturating_mul(1 << attempt.saturating_sub(1).min(16)).min(MAX_BACKOFF)
}

/// `Retry-After` as seconds (`120`) or an HTTP date, from `now`; `None` when unreadable.
pub fn retry_after(text: &str, now: SystemTime) -> Option<Duration> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(text.parse().unwrap_or(u64::MAX)).min(MAX_RETRY_AFTER));
    }
    let at = kiln_engine::parse_http_date(text)?;
    Some(at.duration_since(now).unwrap_or_default().min(MAX_RETRY_AFTER))
}

impl Link {
    /// After attempt `attempt` (1-based) of one event came to `outcome` at `now`.
    pub fn step(&mut self, attempt: u32, outcome: &Outcome, now: SystemTime) -> Next {
        let last = attempt >= MAX_ATTEMPTS || *self == Link::Down;
        match outcome {
            Outcome::NoAnswer(why) => {
                if last {
                    let tries = if attempt == 1 { "1 attempt".to_string() } else { format!("{attempt} attempts") };
                    let why = match self {
                        Link::Down => format!("the sink is still not answering ({why})"),
                        Link::Up => format!("no answer after {tries}: {why}"),
                    };
                    *self = Link::Down;
                    Next::Drop(why)
                } else {
                    Next::Retry(backoff(attempt))
                }
            }
            Outcome::Answered { status, retry_after: header, body } => {
                *self = Link::Up;
                let status = *status;
                if (200..300).contains(&status) {
                    return Next::Delivered;
                }
                let retried = matches!(status, 408 | 425 | 429) || (500..600).contains(&status);
                if !retried {
                    let what = if (300..400).contains(&status) {
                        format!("the sink answered HTTP {status} (kiln does not follow redirects: give the final URL)")
                    } else {
                        format!("the sink refused it with HTTP {status}")
                    };
                    return Next::Drop(with_body(what, body));
                }
                if attempt >= MAX_ATTEMPTS {
                    return Next::Drop(with_body(format!("HTTP {status} after {attempt} attempts"), body));
                }
                let wait = match status {
                    429 | 503 => header.as_deref().and_then(|h| retry_after(h, now)),
                    _ => None,
                };
                // Never sooner than the backoff: `Retry-After: 0` is not an invitation to hammer.
                Next::Retry(wait.map_or(backoff(attempt), |w| w.max(backoff(attempt))))
            }
        }
    }
}

fn with_body(what: String, body: &str) -> String {
    let body = body.trim();
    if body.is_empty() { what } else { format!("{what}: {body}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: SystemTime = SystemTime::UNIX_EPOCH;

    fn answered(status: u16, retry_after: Option<&str>) -> Outcome {
        Outcome::Answered { status, retry_after: retry_after.map(str::to_string), body: String::new() }
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let waits: Vec<u64> = (1..=8).map(|a| backoff(a).as_millis() as u64).collect();
        assert_eq!(waits, [250, 500, 1000, 2000, 4000, 8000, 8000, 8000]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(retry_after("2", NOW), Some(Duration::from_secs(2)));
        assert_eq!(retry_after(" 0 ", NOW), Some(Duration::ZERO));
        assert_eq!(retry_after("999999999999999999999", NOW), Some(MAX_RETRY_AFTER));
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_770);
        assert_eq!(retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now), Some(Duration::from_secs(7)));
        let later = now + Duration::from_secs(60);
        assert_eq!(retry_after("Sun, 06 Nov 1994 08:49:37 GMT", later), Some(Duration::ZERO), "a date past");
        assert_eq!(retry_after("soon", NOW), None);
        assert_eq!(retry_after("-1", NOW), None);
    }

    #[test]
    fn a_2xx_delivers_and_4xx_gives_up_at_once() {
        let mut link = Link::Up;
        assert_eq!(link.step(1, &answered(202, None), NOW), Next::Delivered);
        let refused = Outcome::Answered { status: 400, retry_after: None, body: "missing id\n".into() };
        assert_eq!(link.step(1, &refused, NOW), Next::Drop("the sink refused it with HTTP 400: missing id".into()));
        let Next::Drop(why) = link.step(1, &answered(308, None), NOW) else { panic!("a redirect is not followed") };
        assert!(why.contains("does not follow redirects"), "{why}");
        assert_eq!(link, Link::Up);
    }

    #[test]
    fn retry_after_is_honoured_on_429_and_503_only() {
        let mut link = Link::Up;
        assert_eq!(link.step(1, &answered(429, Some("3")), NOW), Next::Retry(Duration::from_secs(3)));
        assert_eq!(link.step(2, &answered(503, Some("1")), NOW), Next::Retry(Duration::from_secs(1)));
        assert_eq!(link.step(3, &answered(429, Some("later")), NOW), Next::Retry(backoff(3)), "unreadable: backoff");
        assert_eq!(link.step(1, &answered(500, Some("30")), NOW), Next::Retry(backoff(1)), "not on a 500");
        assert_eq!(link.step(4, &answered(429, Some("1")), NOW), Next::Retry(backoff(4)), "the backoff is longer");
        assert_eq!(
            link.step(MAX_ATTEMPTS, &answered(429, Some("1")), NOW),
            Next::Drop(format!("HTTP 429 after {MAX_ATTEMPTS} attempts"))
        );
    }

    #[test]
    fn retry_after_zero_or_a_date_past_waits_the_backoff_still() {
        let mut link = Link::Up;
        let past = "Sun, 06 Nov 1994 08:49:37 GMT";
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777 + 3600);
        for attempt in 1..MAX_ATTEMPTS {
            assert_eq!(link.step(attempt, &answered(429, Some("0")), now), Next::Retry(backoff(attempt)));
            assert_eq!(link.step(attempt, &answered(503, Some(past)), now), Next::Retry(backoff(attempt)));
        }
        let waits: Duration = (1..MAX_ATTEMPTS).map(backoff).sum();
        assert!(waits >= Duration::from_secs(7), "6 attempts take the backoff's {waits:?}, not a burst");
    }

    #[test]
    fn no_answer_retries_then_marks_the_link_down_where_each_event_gets_one_try() {
        let mut link = Link::Up;
        let refused = Outcome::NoAnswer("connection refused".into());
        for attempt in 1..MAX_ATTEMPTS {
            assert_eq!(link.step(attempt, &refused, NOW), Next::Retry(backoff(attempt)));
        }
        assert_eq!(
            link.step(MAX_ATTEMPTS, &refused, NOW),
            Next::Drop(format!("no answer after {MAX_ATTEMPTS} attempts: connection refused"))
        );
        assert_eq!(link, Link::Down);
        assert_eq!(
            link.step(1, &refused, NOW),
            Next::Drop("the sink is still not answering (connection refused)".into())
        );
        // Any answer brings it back: a 429 then waits as asked.
        assert_eq!(link.step(1, &answered(429, Some("2")), NOW), Next::Retry(Duration::from_secs(2)));
        assert_eq!(link, Link::Up);
    }
}
