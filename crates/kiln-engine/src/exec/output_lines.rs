//! A child's output as bytes: split into lines without assuming UTF-8, bounded in memory.
//!
//! Invalid UTF-8, NUL bytes, a missing final newline and a line of many megabytes are all
//! output like any other. A line is handed on in pieces of at most [`PIECE`] bytes, so
//! reading never holds more than that; the log keeps every byte, and the event carries the
//! first piece's text (lossily converted, cut on the bus).

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, BufReader};

use crate::event::Stream;

/// The most of one line held at once.
pub const PIECE: usize = 64 * 1024;

/// Some bytes of a line of output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub stream: Stream,
    /// Without the line's end (`\n`, or `\r\n`).
    pub bytes: Vec<u8>,
    /// Whether this piece starts a line (false: it continues a long one).
    pub starts_line: bool,
    /// Whether the line ended with a newline here (false: it goes on in the next piece, or
    /// the output ended without one).
    pub newline: bool,
}

impl Piece {
    /// The text an event carries: the bytes as UTF-8, invalid sequences replaced (without a
    /// copy when they are valid, the usual case).
    pub fn into_text(self) -> String {
        String::from_utf8(self.bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    /// The bytes as they were written, line end included (for the log).
    pub fn raw(&self) -> impl Iterator<Item = &[u8]> {
        [self.bytes.as_slice(), if self.newline { b"\n" } else { b"" }].into_iter()
    }
}

/// Reads a stream as [`Piece`]s.
pub struct PieceReader<R> {
    reader: BufReader<R>,
    stream: Stream,
    starts_line: bool,
}

impl<R: AsyncRead + Unpin> PieceReader<R> {
    pub fn new(reader: R, stream: Stream) -> Self {
        PieceReader { reader: BufReader::with_capacity(PIECE, reader), stream, starts_line: true }
    }

    /// Whether no read bytes wait to be split (the next piece needs a read).
    pub fn drained(&self) -> bool {
        self.reader.buffer().is_empty()
    }

    /// The next piece, or `None` at the end. A read error ends the stream like its end does.
    pub async fn next(&mut self) -> Option<Piece> {
        let mut piece = next_piece(&mut self.reader, self.stream, self.starts_line).await?;
        self.starts_line = piece.newline;
        if piece.newline && piece.bytes.last() == Some(&b'\r') {
            piece.bytes.pop();
        }
        Some(piece)
    }
}

async fn next_piece(reader: &mut (impl AsyncBufRead + Unpin), stream: Stream, starts_line: bool) -> Option<Piece> {
    let mut bytes = Vec::new();
    loop {
        let available = match reader.fill_buf().await {
            Ok(b) => b,
            Err(_) => &[],
        };
        if available.is_empty() {
            // The end: what is left is a last line without its newline.
            return (!bytes.is_empty()).then_some(Piece { stream, bytes, starts_line, newline: false });
        }
        let room = PIECE - bytes.len();
        let window = &available[..available.len().min(room)];
        if let Some(at) = window.iter().position(|b| *b == b'\n') {
            bytes.extend_from_slice(&window[..at]);
            reader.consume(at + 1);
            return Some(Piece { stream, bytes, starts_line, newline: true });
        }
        let taken = window.len();
        bytes.extend_from_slice(window);
        reader.consume(taken);
        if bytes.len() == PIECE {
            return Some(Piece { stream, bytes, starts_line, newline: false });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pieces(input: &[u8]) -> Vec<Piece> {
        let mut reader = PieceReader::new(input, Stream::Stdout);
        let mut out = Vec::new();
        while let Some(p) = reader.next().await {
            out.push(p);
        }
        out
    }

    #[tokio::test]
    async fn invalid_utf8_nul_and_a_missing_final_newline_are_lines_like_any_other() {
        let got = pieces(b"ok\r\nbad \xff\xfe byte\nnul \0 here\nno end").await;
        let texts: Vec<String> = got.iter().cloned().map(Piece::into_text).collect();
        assert_eq!(texts, ["ok", "bad \u{fffd}\u{fffd} byte", "nul \0 here", "no end"]);
        assert_eq!(got[1].bytes, b"bad \xff\xfe byte");
        assert!(got[..3].iter().all(|p| p.newline && p.starts_line));
        assert!(!got[3].newline);
    }

    #[tokio::test]
    async fn a_huge_line_comes_in_bounded_pieces_and_the_bytes_are_all_kept() {
        let mut input = vec![b'a'; 10 * 1024 * 1024 + 5];
        input.push(b'\n');
        input.extend_from_slice(b"next\n");
        let got = pieces(&input).await;
        assert!(got.iter().all(|p| p.bytes.len() <= PIECE));
        assert!(got[0].starts_line && !got[1].starts_line);
        let joined: Vec<u8> = got.iter().flat_map(|p| p.raw().flatten().copied().collect::<Vec<_>>()).collect();
        assert_eq!(joined, input);
        let last = got.last().expect("a last piece");
        assert_eq!((last.clone().into_text().as_str(), last.starts_line), ("next", true));
    }

    #[tokio::test]
    async fn a_line_of_exactly_one_piece_then_its_newline() {
        let mut input = vec![b'b'; PIECE];
        input.push(b'\n');
        let got = pieces(&input).await;
        let joined: Vec<u8> = got.iter().flat_map(|p| p.raw().flatten().copied().collect::<Vec<_>>()).collect();
        assert_eq!(joined, input);
    }
}
