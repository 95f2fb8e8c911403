//! The events sink: every event of the bus POSTed, in order, as a structured CloudEvents 1.0
//! JSON event (`cloud_event.rs`) to `--events-sink URL`, else `$K_SINK`, else
//! `settings.events_sink`.
//!
//! How it works: a subscriber of the bus like any view. A reader task turns each event into
//! its CloudEvent and queues it; a sender task POSTs the queue's head over one kept-alive
//! connection (`sink_client.rs`) and decides after each attempt (`sink_retry.rs`): delivered,
//! try again later (backoff, `Retry-After`), or given up. Nothing here ever waits on the
//! engine or makes it wait: the queue is bounded ([`QUEUE_EVENTS`] events, [`QUEUE_BYTES`]
//! bytes), and an event that finds it full is dropped. Output lines (`target.output`,
//! `service.output`) may fill half of it at most, as on the bus: a flood of output leaves
//! room for the changes of state around it.
//!
//! Every event not delivered (queue full, given up, left at the end) is counted in
//! [`EventsSink::dropped`], which `GET /metrics` adds to `kiln_events_dropped_total`; the
//! first one is said once, as a `run.notice` warning naming the sink, why and what to do.
//! Events this subscriber missed on the bus itself arrive as one `stream.lagged`, which is
//! forwarded like any event and counted by the bus (so not twice).
//!
//! At the end ([`EventsSink::finish`]) the sink is given at most [`FLUSH_TIME`] to take what
//! was published so far, and nothing when it is known to be down (its last attempt got no
//! answer: refused, reset, timed out), so that a dead sink does not add its grace to every
//! `kiln build` and every Ctrl-C; a wait longer than [`SAY_WAIT_AFTER`] is said. What is
//! left then is counted as dropped, and if any event was not delivered in the whole run, one
//! warning says the total (the run's last word about the sink, whatever was said before).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use kiln_config::{SinkUrl, SinkUrlError};
use kiln_engine::{Event, EventBus, NoticeLevel, Subscription};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::cloud_event::{CloudEvent, source_of};
use crate::sink_client::SinkClient;
use crate::sink_retry::{Link, Next};

/// Events waiting for the sink at most.
pub const QUEUE_EVENTS: usize = 4096;
/// Bytes of CloudEvents waiting for the sink at most.
pub const QUEUE_BYTES: usize = 8 << 20;
/// How long the end of `kiln up` or `kiln build` waits for the sink to take what is queued.
pub const FLUSH_TIME: Duration = Duration::from_secs(2);
/// A wait at the end longer than this is said (`kiln: giving the events sink … up to 2 s …`).
pub const SAY_WAIT_AFTER: Duration = Duration::from_millis(500);
/// The environment variable naming a sink (below `--events-sink`, above the settings).
pub const ENV_VAR: &str = "K_SINK";

/// Which sink, if any: the flag, else `$K_SINK` (empty counts as unset), else the settings.
pub fn choose(
    flag: Option<&str>,
    env: Option<&str>,
    settings: Option<&SinkUrl>,
) -> Result<Option<SinkUrl>, SinkUrlError> {
    if let Some(flag) = flag {
        return SinkUrl::parse(flag, "--events-sink").map(Some);
    }
    if let Some(env) = env.filter(|e| !e.is_empty()) {
        return SinkUrl::parse(env, "$K_SINK").map(Some);
    }
    Ok(settings.cloned())
}

/// The sink of this run, started on `bus` (from within the runtime), if one is named.
pub fn start_for(
    flag: Option<&str>,
    config: &kiln_config::Config,
    bus: &Arc<EventBus>,
) -> Result<Option<EventsSink>, SinkUrlError> {
    let env = std::env::var(ENV_VAR).ok();
    let url = choose(flag, env.as_deref(), config.settings.events_sink.as_ref())?;
    Ok(url.map(|url| EventsSink::start(url, &config.root, bus.clone())))
}

pub struct EventsSink {
    shared: Arc<Shared>,
    bus: Arc<EventBus>,
    reader: JoinHandle<()>,
    sender: JoinHandle<()>,
}

struct Shared {
    url: String,
    queue: Mutex<Queue>,
    /// Wakes the sender: something was queued.
    work: Notify,
    /// Wakes [`EventsSink::finish`]: an event was read, delivered or given up.
    progress: Notify,
    dropped: Arc<AtomicU64>,
    reported: AtomicBool,
    /// What the last attempt that failed came to, for the warning at the end.
    last_failure: Mutex<Option<String>>,
    /// Why the last event given up was, for the warning at the end.
    last_drop: Mutex<Option<String>>,
    /// The last attempt got no answer at all: the end does not wait for this sink.
    unreachable: AtomicBool,
    /// Events published after this `seq` are not sent (the end began before them).
    stop_after: AtomicU64,
    bus: Arc<EventBus>,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<CloudEvent>,
    bytes: usize,
    /// Of those, output lines.
    output_items: usize,
    output_bytes: usize,
    /// The sender is working on one taken from `items`.
    in_flight: bool,
    /// The `seq` of the last event the reader took from the bus.
    read_seq: u64,
}

impl Shared {
    fn new(url: String, bus: Arc<EventBus>) -> Shared {
        Shared {
            url,
            queue: Mutex::new(Queue::default()),
            work: Notify::new(),
            progress: Notify::new(),
            dropped: Arc::new(AtomicU64::new(0)),
            reported: AtomicBool::new(false),
            last_failure: Mutex::new(None),
            last_drop: Mutex::new(None),
            unreachable: AtomicBool::new(false),
            stop_after: AtomicU64::new(u64::MAX),
            bus,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().expect("sink queue lock is never poisoned")
    }

    fn offer(&self, seq: u64, event: CloudEvent) {
        let mut q = self.lock();
        q.read_seq = q.read_seq.max(seq);
        if seq > self.stop_after.load(Ordering::Relaxed) {
            // Published while kiln ends (the end's own notices): not waited for, not sent.
            drop(q);
            self.progress.notify_waiters();
            return;
        }
        let len = event.body.len();
        let output = event.is_output();
        let full = q.items.len() >= QUEUE_EVENTS
            || q.bytes + len > QUEUE_BYTES
            || (output && (q.output_items >= QUEUE_EVENTS / 2 || q.output_bytes + len > QUEUE_BYTES / 2));
        if full {
            drop(q);
            let why = format!(
                "the queue of events waiting for the sink is full ({QUEUE_EVENTS} events or {} MiB): the sink takes events more slowly than kiln makes them",
                QUEUE_BYTES >> 20
            );
            self.give_up(&event, &why, true);
        } else {
            q.bytes += len;
            if output {
                q.output_items += 1;
                q.output_bytes += len;
            }
            q.items.push_back(event);
            drop(q);
            self.work.notify_one();
        }
        self.progress.notify_waiters();
    }

    /// Counts an event not delivered; the first one is said, once.
    fn give_up(&self, event: &CloudEvent, why: &str, going_on: bool) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        *self.last_drop.lock().expect("sink drop lock is never poisoned") = Some(why.to_string());
        self.report(&format!("event {} ({}) was not delivered: {why}", event.id, event.kind), going_on);
    }

    /// Says `what` as a warning, unless something was said before.
    fn report(&self, what: &str, going_on: bool) {
        if self.reported.swap(true, Ordering::Relaxed) {
            return;
        }
        let url = &self.url;
        let then = if going_on {
            "; kiln goes on sending later events and counts every one not delivered in kiln_events_dropped_total (GET /metrics) without another warning"
        } else {
            " (counted in kiln_events_dropped_total)"
        };
        self.bus.publish(Event::Notice {
            level: NoticeLevel::Warning,
            message: format!(
                "events sink {url}: {what}{then}\n  = check that a CloudEvents receiver runs at {url} and answers 2xx to a POST of application/cloudevents+json"
            ),
        });
    }

    /// Keeps what an attempt came to, if it failed (`None` once one succeeds).
    fn attempted(&self, outcome: &crate::sink_retry::Outcome, delivered: bool) {
        use crate::sink_retry::Outcome;
        let why = match outcome {
            _ if delivered => None,
            Outcome::NoAnswer(why) => Some(why.clone()),
            Outcome::Answered { status, .. } => Some(format!("HTTP {status}")),
        };
        *self.last_failure.lock().expect("sink failure lock is never poisoned") = why;
        self.unreachable.store(matches!(outcome, Outcome::NoAnswer(_)), Ordering::Relaxed);
        self.progress.notify_waiters();
    }

    /// Events published up to `target` not yet delivered nor given up.
    fn pending(&self, target: u64) -> u64 {
        let q = self.lock();
        q.items.len() as u64 + u64::from(q.in_flight) + target.saturating_sub(q.read_seq)
    }

    /// The run's last word about the sink, if any event was not delivered: the total, why,
    /// and (unless a warning said it before) what to do.
    fn summary(&self, left: u64, within: Duration) -> Option<String> {
        let total = self.dropped.load(Ordering::Relaxed);
        if total == 0 {
            return None;
        }
        let url = &self.url;
        let events = if total == 1 { "1 event was".to_string() } else { format!("{total} events were") };
        let mut text = format!("{events} not delivered to {url}");
        let failure = self.last_failure.lock().expect("sink failure lock is never poisoned").clone();
        if left > 0 {
            let when = if self.unreachable.load(Ordering::Relaxed) {
                "given up at once as the sink does not answer".to_string()
            } else {
                format!("after the {} s the sink gets at the end", within.as_secs_f64())
            };
            let of = if left == total { "all".to_string() } else { format!("{left} of them") };
            text.push_str(&format!(": {of} still waiting when kiln ended, {when}"));
            if let Some(why) = failure {
                text.push_str(&format!("; the last failed attempt: {why}"));
            }
        } else if let Some(why) = self.last_drop.lock().expect("sink drop lock is never poisoned").clone() {
            text.push_str(&format!(": the last one because {why}"));
        }
        if !self.reported.swap(true, Ordering::Relaxed) {
            text.push_str(&format!(
                "\n  = check that a CloudEvents receiver runs at {url} and answers 2xx to a POST of application/cloudevents+json"
            ));
        }
        Some(text)
    }

    /// The next event to send, waiting for one.
    async fn next(&self) -> CloudEvent {
        loop {
            let waiting = self.work.notified();
            {
                let mut q = self.lock();
                if let Some(event) = q.items.pop_front() {
                    q.bytes -= event.body.len();
                    if event.is_output() {
                        q.output_items -= 1;
                        q.output_bytes -= event.body.len();
                    }
                    q.in_flight = true;
                    return event;
                }
            }
            waiting.await;
        }
    }

    fn done(&self) {
        self.lock().in_flight = false;
        self.progress.notify_waiters();
    }
}

impl EventsSink {
    /// Subscribes to `bus` and starts delivering to `url` the events of the project at
    /// `root`. Call from within the runtime.
    pub fn start(url: SinkUrl, root: &std::path::Path, bus: Arc<EventBus>) -> EventsSink {
        let shared = Arc::new(Shared::new(url.url.clone(), bus.clone()));
        let reader = tokio::spawn(read(bus.subscribe(), shared.clone(), source_of(root), session_id()));
        let sender = tokio::spawn(send(SinkClient::new(url), shared.clone()));
        EventsSink { shared, bus, reader, sender }
    }

    /// Events not delivered so far (what `kiln_events_dropped_total` adds).
    pub fn dropped(&self) -> Arc<AtomicU64> {
        self.shared.dropped.clone()
    }

    /// Gives the sink at most `within` to take every event published so far, and nothing
    /// when its last attempt got no answer, then stops; what is left is counted as dropped.
    /// A wait longer than [`SAY_WAIT_AFTER`] is said, and so is the total of events not
    /// delivered, if any. Call before the bus is closed, so that both reach the views.
    pub async fn finish(self, within: Duration) {
        let target = self.bus.last_seq();
        self.shared.stop_after.store(target, Ordering::Relaxed);
        let started = tokio::time::Instant::now();
        let deadline = started + within;
        let mut said = within <= SAY_WAIT_AFTER;
        loop {
            let progress = self.shared.progress.notified();
            tokio::pin!(progress);
            progress.as_mut().enable();
            {
                let q = self.shared.lock();
                if q.read_seq >= target && q.items.is_empty() && !q.in_flight {
                    break;
                }
            }
            if self.shared.unreachable.load(Ordering::Relaxed) {
                break;
            }
            let until = if said { deadline } else { started + SAY_WAIT_AFTER };
            if tokio::time::timeout_at(until, progress).await.is_err() {
                if said {
                    break;
                }
                said = true;
                let pending = self.shared.pending(target);
                let events = if pending == 1 { "1 event".to_string() } else { format!("{pending} events") };
                self.bus.publish(Event::Notice {
                    level: NoticeLevel::Info,
                    message: format!(
                        "giving the events sink {} up to {} s for {events}",
                        self.shared.url,
                        within.as_secs_f64()
                    ),
                });
            }
        }
        self.reader.abort();
        self.sender.abort();
        let left = self.shared.pending(target);
        self.shared.dropped.fetch_add(left, Ordering::Relaxed);
        if let Some(message) = self.shared.summary(left, within) {
            self.bus.publish(Event::Notice { level: NoticeLevel::Warning, message });
        }
    }
}

async fn read(mut events: Subscription, shared: Arc<Shared>, source: String, session: String) {
    while let Some(envelope) = events.recv().await {
        let event = CloudEvent::new(&envelope, &source, &session);
        shared.offer(envelope.seq, event);
    }
}

async fn send(mut client: SinkClient, shared: Arc<Shared>) {
    let mut link = Link::Up;
    loop {
        let event = shared.next().await;
        let mut attempt = 1;
        loop {
            let outcome = client.post(&event.body).await;
            let next = link.step(attempt, &outcome, SystemTime::now());
            shared.attempted(&outcome, next == Next::Delivered);
            match next {
                Next::Delivered => break,
                Next::Retry(wait) => {
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Next::Drop(why) => {
                    shared.give_up(&event, &why, true);
                    break;
                }
            }
        }
        shared.done();
    }
}

/// This run's part of every CloudEvent `id`: 16 random hex digits, or, if the system has no
/// randomness to give, the time and pid (ids need to be unique, not secret).
fn session_id() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let mixed = (nanos as u64) ^ (u64::from(std::process::id()) << 40);
        bytes = mixed.to_be_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> SinkUrl {
        SinkUrl::parse(text, "x").expect("valid")
    }

    #[test]
    fn the_flag_wins_over_the_variable_over_the_settings() {
        let settings = url("http://settings:1/");
        let chosen = |flag, env| choose(flag, env, Some(&settings)).expect("valid").map(|u| u.host);
        assert_eq!(chosen(Some("http://flag:1/"), Some("http://env:1/")), Some("flag".into()));
        assert_eq!(chosen(None, Some("http://env:1/")), Some("env".into()));
        assert_eq!(chosen(None, Some("")), Some("settings".into()), "an empty variable is unset");
        assert_eq!(chosen(None, None), Some("settings".into()));
        assert_eq!(choose(None, None, None), Ok(None));
        let err = choose(None, Some("https://env/"), None).expect_err("https");
        assert!(err.message.contains("$K_SINK"), "{}", err.message);
    }

    fn event(seq: u64, bytes: usize) -> CloudEvent {
        CloudEvent { id: format!("s-{seq}"), kind: "dev.kiln.target.finished".into(), body: "x".repeat(bytes) }
    }

    fn line(seq: u64) -> CloudEvent {
        CloudEvent { id: format!("s-{seq}"), kind: "dev.kiln.service.output".into(), body: "x".repeat(100) }
    }

    #[test]
    fn a_full_queue_drops_counts_and_says_so_once() {
        let bus = Arc::new(EventBus::new());
        let mut views = bus.subscribe();
        let shared = Shared::new("http://sink/".into(), bus.clone());
        for seq in 1..=QUEUE_EVENTS as u64 + 3 {
            shared.offer(seq, event(seq, 10));
        }
        assert_eq!(shared.lock().items.len(), QUEUE_EVENTS);
        assert_eq!(shared.dropped.load(Ordering::Relaxed), 3);
        assert_eq!(shared.lock().read_seq, QUEUE_EVENTS as u64 + 3);
        let Some(notice) = views.try_recv() else { panic!("a warning") };
        let Event::Notice { level: NoticeLevel::Warning, message } = &notice.event else { panic!("{notice:?}") };
        assert!(
            message.starts_with(&format!(
                "events sink http://sink/: event s-{} (dev.kiln.target.finished) was not delivered: the queue",
                QUEUE_EVENTS + 1
            )),
            "{message}"
        );
        assert!(views.try_recv().is_none(), "said once");
    }

    #[test]
    fn output_lines_leave_half_the_queue_to_changes_of_state() {
        let shared = Shared::new("http://sink/".into(), Arc::new(EventBus::new()));
        let flood = QUEUE_EVENTS as u64;
        for seq in 1..=flood {
            shared.offer(seq, line(seq));
        }
        assert_eq!(shared.dropped.load(Ordering::Relaxed), flood / 2, "lines past half are dropped");
        shared.offer(flood + 1, event(flood + 1, 100));
        assert_eq!(
            shared.lock().items.back().map(|e| e.id.clone()),
            Some(format!("s-{}", flood + 1)),
            "room for state"
        );
    }

    #[test]
    fn the_queue_is_bounded_in_bytes_too() {
        let shared = Shared::new("http://sink/".into(), Arc::new(EventBus::new()));
        let big = QUEUE_BYTES / 4;
        for seq in 1..=5 {
            shared.offer(seq, event(seq, big));
        }
        assert_eq!((shared.lock().items.len(), shared.dropped.load(Ordering::Relaxed)), (4, 1));
    }

    #[test]
    fn the_end_says_the_total_with_the_hint_only_if_not_said_before() {
        let shared = Shared::new("http://sink/".into(), Arc::new(EventBus::new()));
        assert_eq!(shared.summary(0, FLUSH_TIME), None, "all delivered: nothing to say");
        shared.dropped.store(1, Ordering::Relaxed);
        shared.unreachable.store(true, Ordering::Relaxed);
        *shared.last_failure.lock().expect("lock") = Some("cannot connect".into());
        let first = shared.summary(1, FLUSH_TIME).expect("a summary");
        assert_eq!(
            first,
            "1 event was not delivered to http://sink/: all still waiting when kiln ended, given up at once as the sink does not answer; the last failed attempt: cannot connect\n  = check that a CloudEvents receiver runs at http://sink/ and answers 2xx to a POST of application/cloudevents+json"
        );
        shared.dropped.store(54, Ordering::Relaxed);
        shared.unreachable.store(false, Ordering::Relaxed);
        assert_eq!(
            shared.summary(4, FLUSH_TIME).expect("a summary"),
            "54 events were not delivered to http://sink/: 4 of them still waiting when kiln ended, after the 2 s the sink gets at the end; the last failed attempt: cannot connect",
            "the hint was said"
        );
    }

    #[test]
    fn events_published_once_the_end_began_are_not_sent_nor_counted() {
        let shared = Shared::new("http://sink/".into(), Arc::new(EventBus::new()));
        shared.offer(1, event(1, 10));
        shared.stop_after.store(1, Ordering::Relaxed);
        shared.offer(2, event(2, 10));
        let queued = shared.lock().items.len();
        assert_eq!((queued, shared.pending(1)), (1, 1));
        assert_eq!(shared.dropped.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn session_ids_are_16_hex_digits() {
        let (a, b) = (session_id(), session_id());
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
