//! A child's output as bytes: what each read brought (for the log, exactly as written) and the
//! lines it completed (for events), without assuming UTF-8, bounded in memory.
//!
//! Invalid UTF-8, NUL bytes, a missing final newline and a line of many megabytes are all
//! output like any other. Reading never holds more than [`CHUNK`] bytes read plus
//! [`LINE_HELD`] bytes of an unfinished line: a longer line is handed on with its first
//! [`LINE_HELD`] bytes (the log has all of it). The log gets every read at once, so what a
//! quiet service printed last is on disk even while its line is unfinished.

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::event::Stream;

/// The most read at once.
pub const CHUNK: usize = 64 * 1024;
/// The most of one line held for its event.
pub const LINE_HELD: usize = 64 * 1024;

/// What one read brought.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The bytes as written, for the log.
    pub raw: Vec<u8>,
    /// The lines it completed, as text (invalid UTF-8 replaced, the `\r` of `\r\n` and the
    /// `\n` left out); a line cut at [`LINE_HELD`] bytes says so.
    pub lines: Vec<String>,
}

/// Reads a stream as [`Chunk`]s.
pub struct ChunkReader<R> {
    reader: R,
    pub stream: Stream,
    /// The unfinished line, at most [`LINE_HELD`] bytes.
    line: Vec<u8>,
    /// Bytes of the unfinished line past what is held (its event is already out).
    overflow: u64,
    done: bool,
    buf: Box<[u8]>,
}

/// The text of a line's bytes, without a copy when they are valid UTF-8 (the usual case).
fn text(mut bytes: Vec<u8>) -> String {
    if bytes.last() == Some(&b'\r') {
        bytes.pop();
    }
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

impl<R: AsyncRead + Unpin> ChunkReader<R> {
    pub fn new(reader: R, stream: Stream) -> Self {
        ChunkReader {
            reader,
            stream,
            line: Vec::new(),
            overflow: 0,
            done: false,
            buf: vec![0; CHUNK].into_boxed_slice(),
        }
    }

    /// What the next read brings, or `None` after the end (a read error ends the stream
    /// like its end does). At the end, an unfinished line is a line.
    pub async fn next(&mut self) -> Option<Chunk> {
        if self.done {
            return None;
        }
        // A flood fills every read: each counts against the task's budget, so it cannot
        // starve the dispatcher and the signal handler of the worker thread.
        tokio::task::consume_budget().await;
        let n = self.reader.read(&mut self.buf).await.unwrap_or(0);
        let raw = self.buf[..n].to_vec();
        let mut lines = Vec::new();
        if n == 0 {
            self.done = true;
            if !self.line.is_empty() {
                lines.push(text(std::mem::take(&mut self.line)));
            }
            return (!lines.is_empty()).then_some(Chunk { raw, lines });
        }
        let mut rest = raw.as_slice();
        while !rest.is_empty() {
            let end = memchr::memchr(b'\n', rest);
            let (part, after) = match end {
                Some(at) => (&rest[..at], &rest[at + 1..]),
                None => (rest, &[][..]),
            };
            let room = LINE_HELD.saturating_sub(self.line.len());
            if self.overflow > 0 || part.len() > room {
                // Too long to hold: its event goes now, with what is held.
                if self.overflow == 0 {
                    self.line.extend_from_slice(&part[..room]);
                    let mut t = text(std::mem::take(&mut self.line));
                    t.push_str(" … [a longer line: the log has all of it]");
                    lines.push(t);
                }
                self.overflow += part.len() as u64;
            } else {
                self.line.extend_from_slice(part);
            }
            if end.is_some() {
                if self.overflow == 0 {
                    lines.push(text(std::mem::take(&mut self.line)));
                }
                self.overflow = 0;
            }
            rest = after;
        }
        Some(Chunk { raw, lines })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `input` in reads of `size` bytes.
    async fn chunks(input: &[u8], size: usize) -> Vec<Chunk> {
        let (mut w, r) = tokio::io::duplex(size);
        let data = input.to_vec();
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let _ = w.write_all(&data).await;
        });
        let mut reader = ChunkReader::new(r, Stream::Stdout);
        let mut out = Vec::new();
        while let Some(c) = reader.next().await {
            out.push(c);
        }
        writer.await.expect("writer");
        out
    }

    fn lines(chunks: &[Chunk]) -> Vec<String> {
        chunks.iter().flat_map(|c| c.lines.clone()).collect()
    }

    fn raw(chunks: &[Chunk]) -> Vec<u8> {
        chunks.iter().flat_map(|c| c.raw.clone()).collect()
    }

    #[tokio::test]
    async fn invalid_utf8_nul_crlf_and_a_missing_final_newline_are_lines_like_any_other() {
        let input = b"ok\r\nbad \xff\xfe byte\nnul \0 here\nno end";
        for size in [1, 3, 4096] {
            let got = chunks(input, size).await;
            assert_eq!(lines(&got), ["ok", "bad \u{fffd}\u{fffd} byte", "nul \0 here", "no end"], "reads of {size}");
            assert_eq!(raw(&got), input, "the log keeps every byte, \\r included");
        }
    }

    #[tokio::test]
    async fn a_huge_line_is_one_event_with_its_first_bytes_and_the_log_has_all_of_it() {
        let mut input = vec![b'a'; 10 * 1024 * 1024 + 5];
        input.push(b'\n');
        input.extend_from_slice(b"next\n");
        let got = chunks(&input, CHUNK).await;
        assert!(got.iter().all(|c| c.raw.len() <= CHUNK));
        let l = lines(&got);
        assert_eq!(l.len(), 2, "{:?}", l.iter().map(String::len).collect::<Vec<_>>());
        assert!(l[0].starts_with(&"a".repeat(LINE_HELD)) && l[0].ends_with("the log has all of it]"));
        assert_eq!(l[1], "next");
        assert_eq!(raw(&got), input);
    }

    #[tokio::test]
    async fn what_is_read_is_handed_on_before_the_line_ends() {
        // The start of a line with no newline yet comes back as raw bytes at once.
        let (mut w, r) = tokio::io::duplex(1024);
        use tokio::io::AsyncWriteExt;
        w.write_all(b"done\nwaiting for inp").await.expect("write");
        let mut reader = ChunkReader::new(r, Stream::Stdout);
        let first = reader.next().await.expect("a chunk");
        assert_eq!(first.raw, b"done\nwaiting for inp");
        assert_eq!(first.lines, ["done"]);
        drop(w);
        let last = reader.next().await.expect("the end");
        assert_eq!(last.lines, ["waiting for inp"]);
        assert!(reader.next().await.is_none());
    }
}
