//! Talking to a running `kiln up` from another terminal: `.kiln/api.json` says where and
//! with which token; a plain HTTP/1.1 request over a loopback socket does the rest. Answers
//! are read as HTTP/1.1 frames them: by `Content-Length`, chunked, or to the end.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use crate::api_server::ApiInfo;

/// How long a request may take to be answered (not the event stream, which is open-ended).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest answer head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// Why a command could not talk to `kiln up`.
pub enum ClientError {
    /// No `kiln up` is running in this project.
    NotRunning,
    Io(String),
}

impl ClientError {
    pub fn message(&self) -> String {
        match self {
            ClientError::NotRunning => "no `kiln up` is running in this project (start one with `kiln up`)".into(),
            ClientError::Io(e) => format!("cannot reach `kiln up`: {e}"),
        }
    }
}

fn io(e: impl std::fmt::Display) -> ClientError {
    ClientError::Io(e.to_string())
}

pub fn info(kiln_dir: &Path) -> Result<ApiInfo, ClientError> {
    let text = std::fs::read_to_string(kiln_dir.join("api.json")).map_err(|_| ClientError::NotRunning)?;
    let info: ApiInfo = serde_json::from_str(&text).map_err(|_| ClientError::NotRunning)?;
    // A crashed `kiln up` leaves its api.json behind; its pid tells.
    if !is_alive(info.pid) {
        return Err(ClientError::NotRunning);
    }
    Ok(info)
}

/// Whether a process exists and is not a zombie (a killed kiln whose parent has not reaped it).
fn is_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // The state follows the command name, which is in parentheses and may contain spaces.
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z" | "X"))
}

fn connect(info: &ApiInfo, method: &str, path: &str) -> Result<TcpStream, ClientError> {
    let mut stream = TcpStream::connect(&info.address).map_err(|e| match e.kind() {
        std::io::ErrorKind::ConnectionRefused => ClientError::NotRunning,
        _ => io(e),
    })?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        info.address, info.token
    );
    stream.write_all(request.as_bytes()).map_err(io)?;
    Ok(stream)
}

/// An answer's status code and how its body is framed.
struct Head {
    code: u16,
    chunked: bool,
    length: Option<u64>,
}

fn read_head(reader: &mut impl BufRead) -> Result<Head, ClientError> {
    let mut head = Head { code: 0, chunked: false, length: None };
    let mut total = 0;
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line).map_err(io)?;
        total += n;
        if n == 0 {
            return Err(io("the connection closed before the answer's head ended"));
        }
        if total > MAX_HEAD {
            return Err(io("the answer's head is too long"));
        }
        let text = line.trim_end();
        if head.code == 0 {
            head.code = text
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| io(format!("not an HTTP answer: {text:?}")))?;
            continue;
        }
        if text.is_empty() {
            return Ok(head);
        }
        if let Some((name, value)) = text.split_once(':') {
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "transfer-encoding" => head.chunked = value.to_ascii_lowercase().contains("chunked"),
                "content-length" => head.length = value.parse().ok(),
                _ => {}
            }
        }
    }
}

/// The body of an answer, unframed.
fn body<'a, R: BufRead + 'a>(reader: R, head: &Head) -> Box<dyn Read + 'a> {
    if head.chunked {
        Box::new(Chunked { reader, left: 0, done: false })
    } else if let Some(n) = head.length {
        Box::new(reader.take(n))
    } else {
        Box::new(reader)
    }
}

/// A chunked body (RFC 9112 §7.1): each chunk's size in hex on a line, the chunk, CRLF;
/// a size of 0 ends it (trailers are skipped).
struct Chunked<R> {
    reader: R,
    left: u64,
    done: bool,
}

impl<R: BufRead> Chunked<R> {
    fn line(&mut self) -> std::io::Result<String> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the chunked answer was cut short"));
        }
        Ok(line)
    }
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.left == 0 && !self.done {
            let line = self.line()?;
            let size = line.trim().split(';').next().unwrap_or("");
            self.left = u64::from_str_radix(size, 16).map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("bad chunk size {size:?}"))
            })?;
            if self.left == 0 {
                self.done = true;
                while !self.line()?.trim().is_empty() {}
            }
        }
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        let want = usize::try_from(self.left).unwrap_or(usize::MAX).min(buf.len());
        let n = self.reader.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the chunked answer was cut short"));
        }
        self.left -= n as u64;
        if self.left == 0 {
            // The CRLF after the chunk's data.
            self.line()?;
        }
        Ok(n)
    }
}

/// One request; returns the status code and body.
pub fn request(info: &ApiInfo, method: &str, path: &str) -> Result<(u16, String), ClientError> {
    let stream = connect(info, method, path)?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT)).map_err(io)?;
    let mut reader = BufReader::new(stream);
    let head = read_head(&mut reader)?;
    let mut text = String::new();
    body(reader, &head).read_to_string(&mut text).map_err(io)?;
    Ok((head.code, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(answer: &str) -> (u16, String) {
        let mut reader = BufReader::new(answer.as_bytes());
        let head = read_head(&mut reader).unwrap_or_else(|e| panic!("{}", e.message()));
        let mut text = String::new();
        body(reader, &head).read_to_string(&mut text).expect("body");
        (head.code, text)
    }

    #[test]
    fn reads_answers_framed_every_way() {
        assert_eq!(read("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello and more"), (200, "hello".into()));
        assert_eq!(
            read(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nid: 1\r\n3;x=y\r\nabc\r\n0\r\nx-trailer: 1\r\n\r\n"
            ),
            (200, "id: 1abc".into())
        );
        assert_eq!(read("HTTP/1.1 404 Not Found\r\n\r\n{}"), (404, "{}".into()));
    }

    #[test]
    fn a_cut_chunked_answer_is_an_error() {
        let mut reader = BufReader::new("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\na\r\nabc".as_bytes());
        let head = read_head(&mut reader).unwrap_or_else(|e| panic!("{}", e.message()));
        assert!(body(reader, &head).read_to_string(&mut String::new()).is_err());
    }
}
