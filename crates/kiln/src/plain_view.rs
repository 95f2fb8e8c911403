//! Plain output: the human lines, one after another, with no control codes. Used when the
//! output is not a terminal, when `CI` is set, or with `--progress plain`.

use std::io::Write;

use kiln_engine::Event;

use crate::human_lines::HumanLines;
use crate::view_out::ViewOut;

pub struct PlainView<W: Write> {
    out: ViewOut<W>,
    lines: HumanLines,
}

impl<W: Write> PlainView<W> {
    pub fn new(out: W, verbose: bool) -> Self {
        PlainView { out: ViewOut::new(out), lines: HumanLines::new(verbose) }
    }

    /// A line that is no event's (the dashboard's URL).
    pub fn line(&mut self, text: &str) {
        if !self.out.is_closed() {
            self.out.line(text);
        }
    }

    /// Renders one event. Once the output is gone (a closed pipe, a terminal that hung up)
    /// nothing more is rendered.
    pub fn on_event(&mut self, event: &Event) {
        if self.out.is_closed() {
            return;
        }
        for line in self.lines.lines_for(event) {
            self.out.line(&line);
        }
    }

    pub fn flush(&mut self) {
        self.out.flush();
    }

    pub fn finish(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view_out::testing::Failing;

    #[test]
    fn a_terminal_that_hung_up_is_written_to_once_and_never_panics() {
        let mut view = PlainView::new(Failing::hung_up(), false);
        for target in ["a", "b", "c"] {
            view.on_event(&Event::TargetQueued { target: target.into(), deps: vec![], estimate_ms: None });
            view.on_event(&Event::TargetStarted { target: target.into(), attempt: 1, slot: 0 });
            view.on_event(&Event::TargetFinished {
                target: target.into(),
                status: kiln_engine::TargetStatus::Built,
                duration_ms: 1,
                key: None,
                reason: "no previous build".into(),
                log: None,
                saved_ms: None,
                cache: None,
            });
            view.flush();
        }
        view.finish();
        assert_eq!(view.out.get_ref().attempts, 1);
    }
}
