//! How a service's log keeps its lines: one record per line, with when it was printed and on
//! which stream, so that `kiln logs` can show times (`--timestamps`), interleave replicas
//! and services in the order their lines came, and never mix half a stdout line with half a
//! stderr line.
//!
//! A record is one line of the file: `TIME TAG BYTES\n`. `TIME` is RFC 3339 in UTC with
//! microseconds (fixed width, so records sort as text); `TAG` is `o` or `e` for a stdout or
//! stderr line that ends there, `O` or `E` for the part of a line still unfinished when it
//! was read (the rest follows in later records of the same stream: a quiet service's last
//! words are on disk at once, and a line of many megabytes is many records), and `k` for
//! what kiln itself says there (an attempt's start and end). `BYTES` are the line's bytes as
//! printed: any byte but `\n`, invalid UTF-8, NUL and `\r` included. A line of the file that
//! is not a record (the cut marker a read of the tail starts with) is shown as it is.

use std::time::SystemTime;

use crate::event::Stream;

/// Where a record's bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Origin {
    Stdout,
    Stderr,
    /// A line kiln wrote (an attempt started or ended).
    Kiln,
    /// A line of the file that is not a record.
    Raw,
}

impl From<Stream> for Origin {
    fn from(s: Stream) -> Origin {
        match s {
            Stream::Stdout => Origin::Stdout,
            Stream::Stderr => Origin::Stderr,
        }
    }
}

/// `2026-11-22T10:04:05.123456Z`: what a record starts with.
pub fn record_time(t: SystemTime) -> String {
    let ms = crate::event::timestamp::rfc3339(t);
    let micros = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().subsec_micros() % 1000;
    // `…05.123Z` → `…05.123456Z`.
    format!("{}{micros:03}Z", &ms[..ms.len() - 1])
}

/// The width of [`record_time`]'s text.
const TIME_LEN: usize = "2026-11-22T10:04:05.123456Z".len();

/// Appends to `out` the records for one read of `stream` at `time`: one per line it ends, and
/// one for an unfinished rest.
pub fn encode_output(out: &mut Vec<u8>, time: &str, stream: Stream, raw: &[u8]) {
    let (ended, unfinished) = match stream {
        Stream::Stdout => (b'o', b'O'),
        Stream::Stderr => (b'e', b'E'),
    };
    out.reserve(raw.len() + (memchr::memchr_iter(b'\n', raw).count() + 1) * (TIME_LEN + 4));
    let mut rest = raw;
    while !rest.is_empty() {
        let (line, tag, after) = match memchr::memchr(b'\n', rest) {
            Some(at) => (&rest[..at], ended, &rest[at + 1..]),
            None => (rest, unfinished, &[][..]),
        };
        out.extend_from_slice(time.as_bytes());
        out.extend_from_slice(&[b' ', tag, b' ']);
        out.extend_from_slice(line);
        out.push(b'\n');
        rest = after;
    }
}

/// The record of a line kiln writes into a log (no `\n` in `text`).
pub fn encode_note(time: &str, text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(TIME_LEN + 4 + text.len());
    out.extend_from_slice(time.as_bytes());
    out.extend_from_slice(b" k ");
    out.extend(text.bytes().map(|b| if b == b'\n' { b' ' } else { b }));
    out.push(b'\n');
    out
}

/// One line as the log keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When its first bytes were read; `None` for a line that is not a record.
    pub time: Option<String>,
    pub origin: Origin,
    /// Its bytes, without the `\n`.
    pub bytes: Vec<u8>,
    /// Whether it ended with a `\n` (the last line of a log may not have, yet).
    pub ended: bool,
}

/// One line of the file, taken apart.
fn parse(line: &[u8]) -> Option<(&str, u8, &[u8])> {
    if line.len() < TIME_LEN + 3 || line[TIME_LEN] != b' ' || line[TIME_LEN + 2] != b' ' {
        return None;
    }
    let time = std::str::from_utf8(&line[..TIME_LEN]).ok()?;
    let shaped = time.as_bytes()[4] == b'-' && time.as_bytes()[10] == b'T' && time.ends_with('Z');
    let tag = line[TIME_LEN + 1];
    (shaped && b"oeOEk".contains(&tag)).then_some((time, tag, &line[TIME_LEN + 3..]))
}

/// Turns a log's bytes, given in any pieces, back into its lines.
#[derive(Debug, Default)]
pub struct Decoder {
    /// A line of the file not complete yet (the writer is mid-record).
    partial: Vec<u8>,
    /// Per stream (stdout, stderr), the line unfinished so far and when it started.
    open: [Option<(String, Vec<u8>)>; 2],
    /// Not records: plain output (a target's log), every line [`Origin::Raw`].
    plain: bool,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// A decoder of plain output (a target's log), which has no records.
    pub fn plain() -> Decoder {
        Decoder { plain: true, ..Decoder::default() }
    }

    /// The lines completed by `bytes`, pushed to `out`.
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<LogLine>) {
        while let Some(at) = memchr::memchr(b'\n', bytes) {
            if self.partial.is_empty() {
                self.record(&bytes[..at], out);
            } else {
                self.partial.extend_from_slice(&bytes[..at]);
                let line = std::mem::take(&mut self.partial);
                self.record(&line, out);
            }
            bytes = &bytes[at + 1..];
        }
        self.partial.extend_from_slice(bytes);
    }

    /// The end of the log: what is left unfinished becomes lines (without their `\n`).
    pub fn finish(&mut self, out: &mut Vec<LogLine>) {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            if self.plain {
                out.push(LogLine { time: None, origin: Origin::Raw, bytes: line, ended: false });
            } else {
                self.record(&line, out);
            }
        }
        for (i, origin) in [(0, Origin::Stdout), (1, Origin::Stderr)] {
            if let Some((time, bytes)) = self.open[i].take() {
                out.push(LogLine { time: Some(time), origin, bytes, ended: false });
            }
        }
    }

    fn record(&mut self, line: &[u8], out: &mut Vec<LogLine>) {
        let Some((time, tag, bytes)) = parse(line).filter(|_| !self.plain) else {
            out.push(LogLine { time: None, origin: Origin::Raw, bytes: line.to_vec(), ended: true });
            return;
        };
        let (slot, origin) = match tag {
            b'o' | b'O' => (0, Origin::Stdout),
            b'e' | b'E' => (1, Origin::Stderr),
            _ => {
                out.push(LogLine {
                    time: Some(time.to_string()),
                    origin: Origin::Kiln,
                    bytes: bytes.to_vec(),
                    ended: true,
                });
                return;
            }
        };
        let open = &mut self.open[slot];
        match open {
            Some((_, held)) => held.extend_from_slice(bytes),
            None => *open = Some((time.to_string(), bytes.to_vec())),
        }
        if tag.is_ascii_lowercase() {
            let (time, bytes) = open.take().expect("set above");
            out.push(LogLine { time: Some(time), origin, bytes, ended: true });
        }
    }
}

/// A whole log's lines.
#[cfg(test)]
fn decode(bytes: &[u8]) -> Vec<LogLine> {
    let mut d = Decoder::new();
    let mut out = Vec::new();
    d.feed(bytes, &mut out);
    d.finish(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_come_back_with_their_bytes_times_and_streams_however_the_file_is_read() {
        let t1 = "2026-12-01T10:00:00.000001Z";
        let t2 = "2026-12-01T10:00:00.000002Z";
        let mut file = encode_note(t1, "started `web`");
        encode_output(&mut file, t1, Stream::Stdout, b"one\r\nbad \xff\0 byte\nhalf ");
        encode_output(&mut file, t2, Stream::Stderr, b"oops\n");
        encode_output(&mut file, t2, Stream::Stdout, b"done\nno end");
        let want = vec![
            LogLine { time: Some(t1.into()), origin: Origin::Kiln, bytes: b"started `web`".to_vec(), ended: true },
            LogLine { time: Some(t1.into()), origin: Origin::Stdout, bytes: b"one\r".to_vec(), ended: true },
            LogLine { time: Some(t1.into()), origin: Origin::Stdout, bytes: b"bad \xff\0 byte".to_vec(), ended: true },
            LogLine { time: Some(t2.into()), origin: Origin::Stderr, bytes: b"oops".to_vec(), ended: true },
            LogLine { time: Some(t1.into()), origin: Origin::Stdout, bytes: b"half done".to_vec(), ended: true },
            LogLine { time: Some(t2.into()), origin: Origin::Stdout, bytes: b"no end".to_vec(), ended: false },
        ];
        assert_eq!(decode(&file), want);
        for size in [1, 7, 64] {
            let mut d = Decoder::new();
            let mut got = Vec::new();
            for piece in file.chunks(size) {
                d.feed(piece, &mut got);
            }
            d.finish(&mut got);
            assert_eq!(got, want, "read {size} bytes at a time");
        }
    }

    #[test]
    fn a_line_that_is_not_a_record_is_kept_as_it_is() {
        let mut file = b"[kiln: earlier output was cut]\n".to_vec();
        encode_output(&mut file, &record_time(SystemTime::now()), Stream::Stdout, b"x\n");
        let lines = decode(&file);
        assert_eq!(lines[0].origin, Origin::Raw);
        assert_eq!(lines[0].bytes, b"[kiln: earlier output was cut]");
        assert_eq!((lines[1].origin, lines[1].bytes.as_slice()), (Origin::Stdout, &b"x"[..]));
        assert_eq!(lines[1].time.as_ref().map(String::len), Some(TIME_LEN));
    }
}
