//! The lines a human reads about a run, from its events: one per finished target (status,
//! duration, reason), the last lines of a failed target's output and where its log is,
//! notices, and with `--verbose` every output line. Plain and live views both print these.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use kiln_config::format_duration;
use kiln_engine::{Event, NoticeLevel, RunSummary, TargetStatus};

use crate::run_report::RunReport;

/// Lines of a failed target's output shown under its line.
pub const FAILURE_TAIL: usize = 20;

#[derive(Default)]
pub struct HumanLines {
    verbose: bool,
    tails: HashMap<String, VecDeque<String>>,
    report: RunReport,
}

impl HumanLines {
    pub fn new(verbose: bool) -> Self {
        HumanLines { verbose, ..HumanLines::default() }
    }

    /// The lines this event adds to the scrolling output.
    pub fn lines_for(&mut self, event: &Event) -> Vec<String> {
        self.report.on_event(event);
        match event {
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
            _ => Vec::new(),
        }
    }

    /// The summary and the closing line: `N built, N cached, N fresh, N failed, N skipped in 1.23s`.
    pub fn closing(&self, s: &RunSummary) -> Vec<String> {
        let mut lines = self.report.render();
        lines.push(format!(
            "{} built, {} cached, {} fresh, {} failed, {} skipped in {:.2}s{}",
            s.built,
            s.cached,
            s.fresh,
            s.failed,
            s.skipped,
            s.duration.as_secs_f64(),
            if s.interrupted { " (interrupted)" } else { "" }
        ));
        lines
    }
}
