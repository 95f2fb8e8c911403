//! Where CloudEvents go: `settings.events_sink`, `--events-sink URL` or `$K_SINK`. One
//! `http://HOST[:PORT][/PATH]` URL, checked before anything runs, so that a typo is an error
//! at its value (or at start-up, for the flag and the variable) rather than a warning per
//! event later.
//!
//! Only plain HTTP: kiln carries no TLS client (its HTTP is for loopback and the local
//! network). An `https://` URL is refused with what to do instead.

use crate::address::{Problem, split_host_port};

/// A checked sink URL, split into what a client needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkUrl {
    /// The URL as written.
    pub url: String,
    /// The host as it is connected to: a name, an IPv4 address, or an IPv6 address without
    /// its brackets.
    pub host: String,
    pub port: u16,
    /// The `Host` header: the authority as written.
    pub authority: String,
    /// The request target: the path and query, `/` when there is none.
    pub path: String,
}

/// Why a sink URL was refused: what is wrong, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkUrlError {
    pub message: String,
    pub help: Option<String>,
}

impl std::fmt::Display for SinkUrlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        if let Some(help) = &self.help {
            write!(f, " ({help})")?;
        }
        Ok(())
    }
}

const EXAMPLE: &str = "for example `http://127.0.0.1:9000/events`";

impl SinkUrl {
    /// Checks `text`, named `what` in messages (`--events-sink`, `$K_SINK`).
    pub fn parse(text: &str, what: &str) -> Result<SinkUrl, SinkUrlError> {
        Self::check(text, what).map_err(|p| SinkUrlError { message: p.message, help: p.help })
    }

    /// Like [`SinkUrl::parse`], with where in `text` the problem is (for a span).
    pub(crate) fn check(text: &str, what: &str) -> Result<SinkUrl, Problem> {
        let problem = |message: String, label: &str, help: Option<&str>, at: Option<std::ops::Range<usize>>| Problem {
            message,
            label: label.to_string(),
            help: help.map(str::to_string),
            at,
        };
        let Some((scheme, rest)) = text.split_once("://") else {
            return Err(problem(format!("{what} must be an http:// URL"), "not an http:// URL", Some(EXAMPLE), None));
        };
        if scheme.eq_ignore_ascii_case("https") {
            return Err(problem(
                format!("https:// is not supported in {what}"),
                "https is not supported",
                Some(
                    "kiln posts events over plain HTTP only: use the sink's plain-HTTP port (`http://…`), or put a local proxy that speaks TLS onward in front of it",
                ),
                Some(0..scheme.len()),
            ));
        }
        if !scheme.eq_ignore_ascii_case("http") {
            return Err(problem(
                format!("{what} must be an http:// URL, not {scheme}://"),
                "not an http:// URL",
                Some(EXAMPLE),
                Some(0..scheme.len()),
            ));
        }
        let start = scheme.len() + 3;
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        let whole = Some(start..start + authority.len());
        if authority.contains('@') {
            return Err(problem(
                format!("{what} holds credentials"),
                "credentials are not supported",
                Some("kiln sends no credentials: give the URL without `user@`"),
                whole,
            ));
        }
        let (host, port) = split_host_port(authority)
            .map_err(|why| problem(format!("bad host in {what}"), why, Some(EXAMPLE), whole.clone()))?;
        if host.is_empty() {
            return Err(problem(format!("{what} has no host"), "no host after `http://`", Some(EXAMPLE), whole));
        }
        let port = match port {
            None => 80,
            Some((digits, at)) => {
                let at = Some(start + at..start + at + digits.len());
                let value = (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| digits.parse::<u32>().unwrap_or(u32::MAX));
                match value {
                    None => {
                        return Err(problem(
                            format!("`{digits}` in {what} is not a port number"),
                            "not a port number",
                            Some("ports are numbers from 1 to 65535"),
                            at,
                        ));
                    }
                    Some(p @ 1..=65535) => u16::try_from(p).unwrap_or(u16::MAX),
                    Some(_) => {
                        return Err(problem(
                            format!("port {digits} in {what} is out of range"),
                            "ports are 1 to 65535",
                            None,
                            at,
                        ));
                    }
                }
            }
        };
        let after = &rest[end..];
        // The fragment is never sent.
        let path = after.split('#').next().unwrap_or_default();
        let path = if path.is_empty() {
            "/".to_string()
        } else if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        if let Some(bad) = path.find(|c: char| c.is_ascii_control() || c == ' ' || !c.is_ascii()) {
            let at = start + end + bad;
            return Err(problem(
                format!("{what} has a character a URL cannot hold"),
                "not allowed in a URL",
                Some("percent-encode it, like `%20` for a space"),
                Some(at..at + path[bad..].chars().next().map_or(1, char::len_utf8)),
            ));
        }
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        Ok(SinkUrl { url: text.to_string(), host, port, authority: authority.to_string(), path })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SinkUrl, String> {
        SinkUrl::parse(text, "`events_sink`").map_err(|e| e.message)
    }

    #[test]
    fn splits_what_a_client_needs() {
        let u = parse("http://127.0.0.1:9000/events?x=1#frag").expect("valid");
        assert_eq!(
            (u.host.as_str(), u.port, u.authority.as_str(), u.path.as_str()),
            ("127.0.0.1", 9000, "127.0.0.1:9000", "/events?x=1")
        );
        let u = parse("http://sink.local").expect("valid");
        assert_eq!((u.host.as_str(), u.port, u.path.as_str()), ("sink.local", 80, "/"));
        let u = parse("http://[::1]:8080").expect("valid");
        assert_eq!((u.host.as_str(), u.authority.as_str()), ("::1", "[::1]:8080"));
        assert_eq!(parse("HTTP://h:1?q").expect("valid").path, "/?q");
    }

    #[test]
    fn refuses_what_it_cannot_post_to() {
        assert_eq!(parse("https://h/"), Err("https:// is not supported in `events_sink`".into()));
        assert_eq!(parse("127.0.0.1:9000"), Err("`events_sink` must be an http:// URL".into()));
        assert_eq!(parse("ftp://h/"), Err("`events_sink` must be an http:// URL, not ftp://".into()));
        assert_eq!(parse("http:///x"), Err("`events_sink` has no host".into()));
        assert_eq!(parse("http://h:0/"), Err("port 0 in `events_sink` is out of range".into()));
        assert_eq!(parse("http://h:http/"), Err("`http` in `events_sink` is not a port number".into()));
        assert_eq!(parse("http://u:p@h/"), Err("`events_sink` holds credentials".into()));
        assert_eq!(parse("http://h/a b"), Err("`events_sink` has a character a URL cannot hold".into()));
    }

    #[test]
    fn points_at_the_port() {
        let p = SinkUrl::check("http://h:99999/", "x").expect_err("out of range");
        assert_eq!(p.at, Some(9..14));
    }
}
