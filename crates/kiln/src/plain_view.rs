//! Plain output: the human lines, one after another, with no control codes. Used when the
//! output is not a terminal, when `CI` is set, or with `--progress plain`.

use std::io::Write;

use kiln_engine::Event;

use crate::human_lines::HumanLines;

pub struct PlainView<W: Write> {
    out: W,
    lines: HumanLines,
}

impl<W: Write> PlainView<W> {
    pub fn new(out: W, verbose: bool) -> Self {
        PlainView { out, lines: HumanLines::new(verbose) }
    }

    /// Renders one event; write errors (a closed pipe) are ignored.
    pub fn on_event(&mut self, event: &Event) {
        for line in self.lines.lines_for(event) {
            let _ = writeln!(self.out, "{line}");
        }
    }

    pub fn flush(&mut self) {
        let _ = self.out.flush();
    }

    pub fn finish(&mut self) {
        self.flush();
    }
}
