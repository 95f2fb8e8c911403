//! `kiln up` on a terminal: a compact table of targets and services (phase, ready replicas,
//! restarts, last build, the last update's save-to-ready breakdown) pinned to the top of the
//! screen, with the log lines scrolling below it. The terminal's scrolling region is set to
//! the lines under the table, so logs scroll there while the table is redrawn in place; it
//! is reset when `kiln up` ends.

use std::io::Write;

use kiln_engine::Envelope;

use crate::human_lines::{HumanLines, Scroll};
use crate::live_view::{fit, lines_to_show};
use crate::status_view::{StatusView, short_image, update_breakdown};
use crate::view_out::ViewOut;

pub struct UpView<W: Write> {
    /// Closed when the terminal goes away (it hung up): nothing is drawn from then on.
    out: ViewOut<W>,
    lines: HumanLines,
    status: StatusView,
    width: usize,
    height: usize,
    /// Rows the table takes now (the scrolling region starts below them).
    table_rows: usize,
    scroll: Scroll,
    /// The table's first row (`dashboard: URL`): printed above the table, it would be drawn
    /// over as the table grows.
    header: Option<String>,
}

impl<W: Write> UpView<W> {
    pub fn new(out: W, (width, height): (usize, usize), verbose: bool) -> Self {
        UpView {
            out: ViewOut::new(out),
            lines: HumanLines::new(verbose).colored(std::env::var_os("NO_COLOR").is_none()),
            status: StatusView::default(),
            width: width.max(20),
            height: height.max(8),
            table_rows: 0,
            scroll: Scroll::default(),
            header: None,
        }
    }

    /// Puts `line` at the top of the table, where it stays in sight.
    pub fn with_header(mut self, line: String) -> Self {
        self.header = Some(line);
        self
    }

    pub fn on_envelope(&mut self, envelope: &Envelope) {
        self.status.on_envelope(envelope);
        let lines = self.lines.lines_for(&envelope.event);
        self.scroll.extend(lines_to_show(&envelope.event, lines, self.width));
    }

    #[cfg(test)]
    pub fn on_event(&mut self, event: &kiln_engine::Event, ts: &str) {
        self.on_envelope(&Envelope { event: event.clone(), ts: ts.to_string(), seq: 0 });
    }

    fn table(&self) -> Vec<String> {
        let mut rows: Vec<String> = self.header.iter().map(|h| format!("  {h}")).collect();
        for (name, t) in &self.status.targets {
            rows.push(format!("  target  {name:<14} {:<9} {}", t.status, t.reason));
        }
        for (name, s) in &self.status.services {
            let image = s.image.as_deref().map(|i| format!(" · {}", short_image(i))).unwrap_or_default();
            let update = s
                .last_update
                .as_ref()
                .map(|u| format!(" · last update {}", update_breakdown(&u.latency_ms)))
                .unwrap_or_default();
            rows.push(format!(
                "  service {name:<14} {:<9} {}/{} ready · {} restarts{image}{update}",
                s.phase, s.ready, s.desired, s.restarts
            ));
        }
        rows.push(format!("  {:─<1$}", "", self.width.saturating_sub(4).min(60)));
        rows
    }

    /// Prints what scrolled into the region under the table, then redraws the table.
    pub fn redraw(&mut self) {
        if self.out.is_closed() {
            self.scroll.clear();
            return;
        }
        let mut table = self.table();
        // Leave at least a few lines for the logs.
        table.truncate(self.height.saturating_sub(4));
        let mut buf = String::new();
        if table.len() != self.table_rows {
            // The table grew or shrank: move the scrolling region and start it empty.
            self.table_rows = table.len();
            buf.push_str(&format!(
                "\x1b[{};{}r\x1b[{};1H\x1b[J",
                self.table_rows + 1,
                self.height,
                self.table_rows + 1
            ));
        }
        for line in self.scroll.take() {
            buf.push_str(&fit(&line, self.width));
            buf.push_str("\r\n");
        }
        // Save the cursor, draw the table at the top, come back.
        buf.push_str("\x1b7");
        for (i, row) in table.iter().enumerate() {
            buf.push_str(&format!("\x1b[{};1H\x1b[2K{}", i + 1, fit(row, self.width)));
        }
        buf.push_str("\x1b8");
        self.out.write(buf.as_bytes());
        self.out.flush();
    }

    /// Prints what is left and gives the whole screen back to the terminal.
    pub fn finish(&mut self) {
        self.redraw();
        self.out.write(format!("\x1b[r\x1b[{};1H", self.height).as_bytes());
        self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_engine::{Event, Phase, TargetStatus};

    #[test]
    fn the_table_follows_targets_and_services() {
        let mut v = UpView::new(Vec::new(), (80, 24), false);
        v.on_event(
            &Event::TargetFinished {
                target: "api".into(),
                status: TargetStatus::Built,
                duration_ms: 5,
                key: None,
                reason: "api/server.c changed".into(),
                log: None,
                saved_ms: None,
                cache: None,
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
                    image: None,
                    replicas: 2,
                    cause: None,
                },
                "t",
            );
        }
        v.redraw();
        let text = String::from_utf8(v.out.get_ref().clone()).expect("utf-8");
        assert!(text.starts_with("\x1b[4;24r"), "the logs scroll below the table: {text:?}");
        assert!(text.contains("\x1b[1;1H\x1b[2K  target  api            built     api/server.c changed"), "{text:?}");
        assert!(text.contains("\x1b[2;1H\x1b[2K  service api            ready     2/2 ready · 0 restarts"), "{text:?}");
        v.out.get_mut().clear();
        v.redraw();
        let text = String::from_utf8(v.out.get_ref().clone()).expect("utf-8");
        assert!(text.starts_with("\x1b7\x1b[1;1H"), "redrawn in place, region unchanged: {text:?}");
    }

    #[test]
    fn a_warning_is_wrapped_whole_into_the_log_region() {
        let mut v = UpView::new(Vec::new(), (40, 24), false);
        let message = "events sink http://127.0.0.1:19000/: 3 events were not delivered\n  = check that a CloudEvents receiver runs at http://127.0.0.1:19000/";
        v.on_event(&Event::Notice { level: kiln_engine::NoticeLevel::Warning, message: message.into() }, "t");
        v.redraw();
        let text = String::from_utf8(v.out.get_ref().clone()).expect("utf-8");
        let logs = text.split("\x1b7").next().expect("the logs come before the table");
        let logs = logs.rsplit("\x1b[J").next().expect("after the region is set");
        let lines: Vec<&str> = logs.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert!(lines.iter().all(|l| l.chars().count() < 40 && !l.ends_with('…')), "{lines:?}");
        assert!(lines.len() >= 4 && lines.iter().any(|l| l.contains("= check that")), "{lines:?}");
        assert!(lines.last().expect("lines").ends_with("19000/"), "{lines:?}");
    }

    #[test]
    fn a_terminal_that_hung_up_is_written_to_once_and_never_panics() {
        let mut v = UpView::new(crate::view_out::testing::Failing::hung_up(), (80, 24), false);
        v.on_event(&Event::Notice { level: kiln_engine::NoticeLevel::Info, message: "x".into() }, "t");
        for _ in 0..3 {
            v.redraw();
        }
        v.finish();
        assert_eq!(v.out.get_ref().attempts, 1);
    }
}
