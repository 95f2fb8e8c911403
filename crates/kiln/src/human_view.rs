//! Plain human output of a run: one line per finished target, the output of failures, the
//! closing count. A subscriber of the event stream like every other view.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::time::Duration;

use kiln_config::format_duration;
use kiln_engine::{Event, NoticeLevel, RunSummary, TargetStatus};

/// Lines of a failed target's output shown under its line.
const FAILURE_TAIL: usize = 20;

pub struct HumanView<W: Write> {
    out: W,
    tails: HashMap<String, VecDeque<String>>,
}

impl<W: Write> HumanView<W> {
    pub fn new(out: W) -> Self {
        HumanView { out, tails: HashMap::new() }
    }

    /// Renders one event; write errors (a closed pipe) are ignored.
    pub fn on_event(&mut self, event: &Event) {
        match event {
            Event::TargetStarted { target, .. } => {
                self.tails.insert(target.clone(), VecDeque::new());
            }
            Event::TargetOutput { target, line, .. } => {
                let tail = self.tails.entry(target.clone()).or_default();
                if tail.len() == FAILURE_TAIL {
                    tail.pop_front();
                }
                tail.push_back(line.clone());
            }
            Event::TargetFinished { target, status, duration_ms, reason, log, .. } => {
                let duration = format_duration(Duration::from_millis(*duration_ms));
                let _ = writeln!(self.out, "{:>7} {target} {duration} — {reason}", status.as_str());
                let tail = self.tails.remove(target);
                if *status == TargetStatus::Failed {
                    for line in tail.iter().flatten() {
                        let _ = writeln!(self.out, "        │ {line}");
                    }
                    if let Some(log) = log {
                        let _ = writeln!(self.out, "        └ full log: {log}");
                    }
                }
            }
            Event::Notice { level, message } => {
                let prefix = match level {
                    NoticeLevel::Info => "kiln",
                    NoticeLevel::Warning => "warning",
                };
                let _ = writeln!(self.out, "{prefix}: {message}");
            }
            _ => {}
        }
    }

    pub fn flush(&mut self) {
        let _ = self.out.flush();
    }

    /// The closing line: `N built, N cached, N fresh, N failed, N skipped in 1.23s`.
    pub fn summary(&mut self, s: &RunSummary) {
        let _ = writeln!(
            self.out,
            "{} built, {} cached, {} fresh, {} failed, {} skipped in {:.2}s{}",
            s.built,
            s.cached,
            s.fresh,
            s.failed,
            s.skipped,
            s.duration.as_secs_f64(),
            if s.interrupted { " (interrupted)" } else { "" }
        );
        let _ = self.out.flush();
    }
}
