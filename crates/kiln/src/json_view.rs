//! `--json`: every event as one JSON object per line on stdout.

use std::io::Write;

use kiln_engine::Envelope;

pub struct JsonView<W: Write> {
    out: W,
    /// Set when stdout is closed (a broken pipe): stop writing, quietly.
    closed: bool,
}

impl<W: Write> JsonView<W> {
    pub fn new(out: W) -> Self {
        JsonView { out, closed: false }
    }

    pub fn on_event(&mut self, envelope: &Envelope) {
        if self.closed {
            return;
        }
        let line = serde_json::to_string(envelope).expect("events always serialize");
        if writeln!(self.out, "{line}").is_err() {
            self.closed = true;
        }
    }

    pub fn flush(&mut self) {
        if !self.closed && self.out.flush().is_err() {
            self.closed = true;
        }
    }
}
