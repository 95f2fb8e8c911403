//! `--json`: every event as one JSON object per line on stdout.

use std::io::Write;

use kiln_engine::Envelope;

use crate::view_out::ViewOut;

pub struct JsonView<W: Write> {
    /// Closed when stdout goes away (a broken pipe, a terminal that hung up): from then on
    /// nothing is serialized or written.
    out: ViewOut<W>,
}

impl<W: Write> JsonView<W> {
    pub fn new(out: W) -> Self {
        JsonView { out: ViewOut::new(out) }
    }

    pub fn on_event(&mut self, envelope: &Envelope) {
        if self.out.is_closed() {
            return;
        }
        self.out.line(&serde_json::to_string(envelope).expect("events always serialize"));
    }

    /// A line that is not an event of the bus (`api.listening`, which carries the token).
    pub fn line(&mut self, value: &serde_json::Value) {
        if !self.out.is_closed() {
            self.out.line(&value.to_string());
        }
    }

    pub fn flush(&mut self) {
        self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view_out::testing::Failing;

    #[test]
    fn a_closed_stdout_is_written_to_once_and_never_panics() {
        let mut view =
            JsonView::new(Failing { attempts: 0, error: || std::io::Error::from_raw_os_error(nix::libc::EPIPE) });
        for seq in 0..3 {
            view.on_event(&Envelope {
                seq,
                ts: "2026-12-01T00:00:00.000Z".into(),
                event: kiln_engine::Event::WatchStarted { dirs: 1, targets: 1 },
            });
            view.flush();
        }
        assert_eq!(view.out.get_ref().attempts, 1);
    }
}
