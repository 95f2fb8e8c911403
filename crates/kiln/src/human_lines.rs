//! The lines a human reads about a run, from its events: one per finished target (status,
//! duration, reason), the last lines of a failed target's output and where its log is,
//! notices, and with `--verbose` every output line. Plain and live views both print these.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use kiln_config::format_duration;
use kiln_engine::{Event, NoticeLevel, TargetStatus};

use crate::run_report::RunReport;

/// Lines of a failed target's output shown under its line.
pub const FAILURE_TAIL: usize = 20;

#[derive(Default)]
pub struct HumanLines {
    verbose: bool,
    /// Colour each service's prefix (a terminal that wants colour).
    color: bool,
    tails: HashMap<String, VecDeque<String>>,
    report: RunReport,
}

impl HumanLines {
    pub fn new(verbose: bool) -> Self {
        HumanLines { verbose, ..HumanLines::default() }
    }

    /// Colours the `name[replica]` prefix of service lines, one colour per service.
    pub fn colored(mut self, color: bool) -> Self {
        self.color = color;
        self
    }

    fn prefix(&self, service: &str, replica: u32) -> String {
        if !self.color {
            return format!("{service}[{replica}]");
        }
        const COLORS: [u8; 6] = [36, 33, 35, 32, 34, 31];
        let hash = service.bytes().fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(usize::from(b)));
        format!("\x1b[{}m{service}[{replica}]\x1b[0m", COLORS[hash % COLORS.len()])
    }

    /// The lines this event adds to the scrolling output.
    pub fn lines_for(&mut self, event: &Event) -> Vec<String> {
        self.report.on_event(event);
        match event {
            Event::RunStarted { .. } => {
                self.report = RunReport::default();
                Vec::new()
            }
            Event::RunFinished { built, cached, fresh, failed, skipped, duration_ms, interrupted, .. } => {
                let mut lines = self.report.render();
                lines.push(format!(
                    "{built} built, {cached} cached, {fresh} fresh, {failed} failed, {skipped} skipped in {:.2}s{}",
                    Duration::from_millis(*duration_ms).as_secs_f64(),
                    if *interrupted { " (interrupted)" } else { "" }
                ));
                lines
            }
            Event::ServiceOutput { service, replica, line, .. } => {
                vec![format!("{} │ {line}", self.prefix(service, *replica))]
            }
            Event::ServicePhase { service, replica, phase, reason, .. } => {
                vec![format!("{} {} — {reason}", self.prefix(service, *replica), phase.as_str())]
            }
            Event::WatchStarted { dirs, targets } => {
                let dirs = if *dirs == 1 { "1 directory".to_string() } else { format!("{dirs} directories") };
                vec![format!(
                    "watching {dirs} for the inputs of {targets} {}; Ctrl-C stops",
                    plural(u64::try_from(*targets).unwrap_or(u64::MAX), "target")
                )]
            }
            Event::WatchChanged { paths, targets } => {
                vec![format!(
                    "changed: {} → {}",
                    list(paths),
                    if targets.is_empty() { "no target".into() } else { targets.join(", ") }
                )]
            }
            Event::WatchUnchanged { paths } => {
                vec![format!("unchanged: {} (same content, nothing to do)", list(paths))]
            }
            Event::ConfigReloaded {
                added,
                removed,
                changed,
                services_added,
                services_removed,
                services_changed,
                files,
            } => {
                let mut parts = Vec::new();
                for (what, names) in [
                    ("added", added),
                    ("removed", removed),
                    ("changed", changed),
                    ("added service", services_added),
                    ("removed service", services_removed),
                    ("changed service", services_changed),
                ] {
                    if !names.is_empty() {
                        parts.push(format!("{what} {}", names.join(", ")));
                    }
                }
                let what = if parts.is_empty() { "nothing changed".to_string() } else { parts.join("; ") };
                let file = if files.is_empty() { "kiln.toml".to_string() } else { files.join(", ") };
                vec![format!("configuration reloaded ({file} changed): {what}")]
            }
            Event::ConfigInvalid { message } => {
                let mut lines: Vec<String> = message.lines().map(str::to_string).collect();
                lines.push("kiln.toml has errors: still running the previous configuration".into());
                lines
            }
            Event::TargetStarted { target, .. } => {
                self.tails.insert(target.clone(), VecDeque::new());
                Vec::new()
            }
            Event::TargetOutput { target, line, .. } => {
                let tail = self.tails.entry(target.clone()).or_default();
                if tail.len() == FAILURE_TAIL {
                    tail.pop_front();
                }
                tail.push_back(line.clone());
                if self.verbose { vec![format!("{target} │ {line}")] } else { Vec::new() }
            }
            Event::TargetFinished { target, status, duration_ms, reason, log, .. } => {
                let duration = format_duration(Duration::from_millis(*duration_ms));
                let mut lines = vec![format!("{:>7} {target} {duration} — {reason}", status.as_str())];
                let tail = self.tails.remove(target);
                if *status == TargetStatus::Failed {
                    lines.extend(tail.iter().flatten().map(|l| format!("        │ {l}")));
                    if let Some(log) = log {
                        lines.push(format!("        └ full log: {log}"));
                    }
                }
                lines
            }
            Event::Notice { level, message } => {
                let prefix = match level {
                    NoticeLevel::Info => "kiln",
                    NoticeLevel::Warning => "warning",
                };
                vec![format!("{prefix}: {message}")]
            }
            Event::NetworkCreated { network, duration_ms } => {
                vec![format!("kiln: created the network {network} ({})", ms_text(*duration_ms))]
            }
            Event::NetworkRemoved { network } => vec![format!("kiln: removed the network {network}")],
            Event::ServiceSynced { service, replica, error: Some(why), .. } => {
                vec![format!("✗ {} sync failed: {why}", self.prefix(service, *replica))]
            }
            Event::ServiceSynced { service, replica, files, deleted, duration_ms, .. } if self.verbose => {
                vec![format!(
                    "{} synced {files} {}, deleted {deleted} in {duration_ms} ms",
                    self.prefix(service, *replica),
                    plural(*files, "file")
                )]
            }
            Event::UpdateFallback { service, target, path, reason } => {
                let why = match reason.as_str() {
                    "a `rebuild` rule matched" => "a `rebuild` rule matches it".to_string(),
                    "no sync rule matched" => "no sync rule matches it".to_string(),
                    r if r.starts_with("a file the image holds was deleted") => {
                        return vec![format!(
                            "↻ {service}: rebuilding {target}: {path} was deleted, and a new container from the current image would still hold it"
                        )];
                    }
                    other => other.to_string(),
                };
                vec![format!("↻ {service}: rebuilding {target}: {path} changed and {why}")]
            }
            Event::UpdateCompleted { cause, services, targets, how, files, latency_ms } => {
                let who = services.join(", ");
                let total = ms_text(latency_ms.total);
                let line = match how.as_str() {
                    "synced" => format!(
                        "✓ {who} synced {} {} in {} (save → ready {total})",
                        files.unwrap_or(cause.len() as u64),
                        plural(files.unwrap_or(cause.len() as u64), "file"),
                        ms_text(latency_ms.deploy)
                    ),
                    "restarted" => format!(
                        "✓ {who} restarted in {} (save → ready {total})",
                        ms_text(latency_ms.deploy + latency_ms.ready)
                    ),
                    _ => format!(
                        "✓ {who} runs the new build of {}: built in {}, replaced in {} (save → ready {total})",
                        targets.join(", "),
                        ms_text(latency_ms.build),
                        ms_text(latency_ms.deploy + latency_ms.ready)
                    ),
                };
                vec![line]
            }
            Event::StreamLagged { dropped } => vec![format!(
                "kiln: … {dropped} events not shown here: output came faster than it could be shown \
                 (every line is in .kiln/logs/)"
            )],
            _ => Vec::new(),
        }
    }
}

fn plural(n: u64, word: &str) -> String {
    if n == 1 { word.to_string() } else { format!("{word}s") }
}

/// Milliseconds for people: `14 ms`, `2.31 s`.
fn ms_text(ms: u64) -> String {
    if ms < 1000 { format!("{ms} ms") } else { format!("{:.2} s", ms as f64 / 1000.0) }
}

/// Up to three paths, then how many more.
fn list(paths: &[String]) -> String {
    match paths.len() {
        0 => "(rescan)".into(),
        1..=3 => paths.join(", "),
        n => format!("{} and {} more", paths[..3].join(", "), n - 3),
    }
}

/// Lines waiting to be drawn on a live view, at most [`Scroll::KEPT`]: when events come
/// faster than the terminal draws, the oldest go (they would scroll past unread anyway; the
/// logs keep them) and one line says how many.
#[derive(Default)]
pub struct Scroll {
    lines: VecDeque<String>,
    skipped: usize,
}

impl Scroll {
    pub const KEPT: usize = 1000;

    pub fn extend(&mut self, lines: impl IntoIterator<Item = String>) {
        for line in lines {
            if self.lines.len() == Self::KEPT {
                self.lines.pop_front();
                self.skipped += 1;
            }
            self.lines.push_back(line);
        }
    }

    pub fn clear(&mut self) {
        self.lines.clear();
        self.skipped = 0;
    }

    /// What to draw now, the note of skipped lines first.
    pub fn take(&mut self) -> Vec<String> {
        let mut out = Vec::with_capacity(self.lines.len() + 1);
        if self.skipped > 0 {
            out.push(format!("kiln: … {} lines scrolled past unshown (every line is in .kiln/logs/)", self.skipped));
            self.skipped = 0;
        }
        out.extend(self.lines.drain(..));
        out
    }
}

#[cfg(test)]
mod scroll_tests {
    use super::*;

    #[test]
    fn a_scroll_keeps_the_newest_lines_and_counts_the_rest() {
        let mut s = Scroll::default();
        s.extend((0..Scroll::KEPT + 5).map(|i| i.to_string()));
        let lines = s.take();
        assert_eq!(lines.len(), Scroll::KEPT + 1);
        assert!(lines[0].starts_with("kiln: … 5 lines scrolled past"), "{}", lines[0]);
        assert_eq!(lines[1], "5");
        assert!(s.take().is_empty());
    }
}

#[cfg(test)]
mod plural_tests {
    use super::*;

    /// Regression: `kiln up` began with "watching 1 directories for the inputs of 1 targets".
    #[test]
    fn the_watch_line_says_one_directory_and_one_target() {
        let mut lines = HumanLines::new(false);
        assert_eq!(
            lines.lines_for(&Event::WatchStarted { dirs: 1, targets: 1 }),
            ["watching 1 directory for the inputs of 1 target; Ctrl-C stops"]
        );
        assert_eq!(
            lines.lines_for(&Event::WatchStarted { dirs: 5, targets: 0 }),
            ["watching 5 directories for the inputs of 0 targets; Ctrl-C stops"]
        );
    }
}
