//! Where a view writes: a terminal, a pipe or a file, any of which can go away while kiln
//! runs. A closed pipe fails with EPIPE (SIGPIPE is ignored, so it is an error, not a
//! death); a terminal that hung up fails every write with EIO. `println!` panics on either,
//! so views never use it: they write here, and the first lasting failure closes the output
//! for good. From then on nothing is written (or formatted) and kiln carries on: a
//! `kiln up` whose terminal closed still stops its services and cleans up.
//!
//! A write that would block (a non-blocking descriptor shared with another program) or was
//! interrupted is not lasting: the output stays open for the next one.

use std::io::{ErrorKind, Write};

pub struct ViewOut<W: Write> {
    inner: W,
    closed: bool,
}

impl<W: Write> ViewOut<W> {
    pub fn new(inner: W) -> Self {
        ViewOut { inner, closed: false }
    }

    /// Whether an earlier write failed for good: callers may skip the work of rendering.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Writes all of `bytes`, or closes the output if the write fails for good.
    pub fn write(&mut self, bytes: &[u8]) {
        if !self.closed {
            let result = self.inner.write_all(bytes);
            self.note(result);
        }
    }

    /// Writes `line` and a newline.
    pub fn line(&mut self, line: &str) {
        if !self.closed {
            let result = self.inner.write_all(line.as_bytes()).and_then(|()| self.inner.write_all(b"\n"));
            self.note(result);
        }
    }

    pub fn flush(&mut self) {
        if !self.closed {
            let result = self.inner.flush();
            self.note(result);
        }
    }

    fn note(&mut self, result: std::io::Result<()>) {
        if let Err(e) = result
            && !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted)
        {
            self.closed = true;
        }
    }

    #[cfg(test)]
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    #[cfg(test)]
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }
}

/// Test writers: one that fails like a terminal that hung up, counting the attempts.
#[cfg(test)]
pub mod testing {
    use std::io::Write;

    /// Fails every write and flush with `kind` (EIO by default, as a hung-up terminal).
    pub struct Failing {
        pub attempts: usize,
        pub error: fn() -> std::io::Error,
    }

    impl Failing {
        pub fn hung_up() -> Failing {
            Failing { attempts: 0, error: || std::io::Error::from_raw_os_error(nix::libc::EIO) }
        }
    }

    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            self.attempts += 1;
            Err((self.error)())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            self.attempts += 1;
            Err((self.error)())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::Failing;
    use super::*;

    #[test]
    fn a_hung_up_terminal_closes_the_output_after_one_attempt() {
        let mut out = ViewOut::new(Failing::hung_up());
        out.line("one");
        out.write(b"two");
        out.flush();
        assert!(out.is_closed());
        assert_eq!(out.get_ref().attempts, 1, "nothing is tried after the first lasting failure");
    }

    #[test]
    fn a_broken_pipe_closes_it_too() {
        let mut out =
            ViewOut::new(Failing { attempts: 0, error: || std::io::Error::from(std::io::ErrorKind::BrokenPipe) });
        out.line("one");
        assert!(out.is_closed());
    }

    #[test]
    fn a_write_that_would_block_leaves_it_open() {
        let mut out =
            ViewOut::new(Failing { attempts: 0, error: || std::io::Error::from(std::io::ErrorKind::WouldBlock) });
        out.line("one");
        out.line("two");
        assert!(!out.is_closed());
        assert_eq!(out.get_ref().attempts, 2);
    }
}
