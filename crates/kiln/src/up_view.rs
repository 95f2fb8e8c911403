//! `kiln up` on a terminal: a compact table of targets and services (phase, ready replicas,
//! restarts, last build) redrawn in place below the scrolling log lines, like the live
//! progress of `kiln build`.

use std::io::Write;

use kiln_engine::Event;

use crate::human_lines::HumanLines;
use crate::live_view::fit;
use crate::status_view::StatusView;

pub struct UpView<W: Write> {
    out: W,
    lines: HumanLines,
    status: StatusView,
    width: usize,
    drawn: usize,
    scroll: Vec<String>,
}

impl<W: Write> UpView<W> {
    pub fn new(out: W, width: usize, verbose: bool) -> Self {
        UpView {
            out,
            lines: HumanLines::new(verbose).colored(std::env::var_os("NO_COLOR").is_none()),
            status: StatusView::default(),
            width: width.max(20),
            drawn: 0,
            scroll: Vec::new(),
        }
    }

    pub fn on_event(&mut self, event: &Event, ts: &str) {
        self.status.on_event(event, ts);
        self.scroll.extend(self.lines.lines_for(event));
    }

    fn table(&self) -> Vec<String> {
        let mut rows = vec![format!("  {:─<1$}", "", self.width.saturating_sub(4).min(60))];
        for (name, t) in &self.status.targets {
            rows.push(format!("  target  {name:<14} {:<9} {}", t.status, t.reason));
        }
        for (name, s) in &self.status.services {
            let phase = s.replicas.values().map(|r| r.phase.as_str()).next().unwrap_or("pending");
            rows.push(format!(
                "  service {name:<14} {phase:<9} {}/{} ready · {} restarts",
                s.ready, s.desired, s.restarts
            ));
        }
        rows
    }

    /// Prints what scrolled and redraws the table under it.
    pub fn redraw(&mut self) {
        let table = self.table();
        let mut buf = String::new();
        if self.drawn > 0 {
            buf.push_str(&format!("\r\x1b[{}A", self.drawn));
        }
        for line in self.scroll.drain(..).chain(table.iter().cloned()) {
            buf.push_str("\x1b[2K");
            buf.push_str(&fit(&line, self.width));
            buf.push('\n');
        }
        buf.push_str("\x1b[J");
        self.drawn = table.len();
        let _ = self.out.write_all(buf.as_bytes());
        let _ = self.out.flush();
    }

    /// Leaves the last table on screen and what scrolled above it.
    pub fn finish(&mut self) {
        self.redraw();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_engine::{Phase, TargetStatus};

    #[test]
    fn the_table_follows_targets_and_services() {
        let mut v = UpView::new(Vec::new(), 80, false);
        v.on_event(
            &Event::TargetFinished {
                target: "api".into(),
                status: TargetStatus::Built,
                duration_ms: 5,
                key: None,
                reason: "api/server.c changed".into(),
                log: None,
                saved_ms: None,
            },
            "t",
        );
        for replica in 0..2 {
            v.on_event(
                &Event::ServicePhase {
                    service: "api".into(),
                    replica,
                    phase: Phase::Ready,
                    reason: "probe passed".into(),
                    restarts: 0,
                    next_try_ms: None,
                },
                "t",
            );
        }
        v.redraw();
        let text = String::from_utf8(v.out.clone()).expect("utf-8");
        assert!(text.contains("  target  api            built     api/server.c changed\n"), "{text:?}");
        assert!(text.contains("  service api            ready     2/2 ready · 0 restarts\n"), "{text:?}");
        v.out.clear();
        v.redraw();
        let text = String::from_utf8(v.out.clone()).expect("utf-8");
        assert!(text.starts_with("\r\x1b[3A"), "redrawn in place: {text:?}");
    }
}
