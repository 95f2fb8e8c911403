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
                vec![format!("watching {dirs} directories for the inputs of {targets} targets; Ctrl-C stops")]
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
            Event::ConfigReloaded { added, removed, changed, services_added, services_removed, services_changed } => {
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
                vec![format!("kiln.toml reloaded: {what}")]
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
            Event::StreamLagged { dropped } => vec![format!(
                "kiln: … {dropped} events not shown here: output came faster than it could be shown \
                 (every line is in .kiln/logs/)"
            )],
            _ => Vec::new(),
        }
    }
}

/// Up to three paths, then how many more.
fn list(paths: &[String]) -> String {
    match paths.len() {
        0 => "(rescan)".into(),
        1..=3 => paths.join(", "),
        n => format!("{} and {} more", paths[..3].join(", "), n - 3),
    }
}
