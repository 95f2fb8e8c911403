//! Ports, `host:port` addresses and probe URLs as written in kiln.toml, checked before
//! anything runs: what the engine would only find out when a container fails to start or a
//! probe can never pass.
//!
//! Each check takes the text as written and returns where in it the problem is, so the
//! caret can point at the port rather than the whole string. `${KILN_REPLICA}` (or
//! `$KILN_REPLICA`) is filled in for every replica, as the supervisor does, and each result
//! is checked: `"6553${KILN_REPLICA}"` is fine for one replica and out of range for ten.

use std::ops::Range;

/// A mistake in a piece of text: what is wrong, the label under the caret, a hint, and the
/// byte range inside the text (`None`: the whole value).
#[derive(Debug, PartialEq)]
pub(crate) struct Problem {
    pub message: String,
    pub label: String,
    pub help: Option<String>,
    pub at: Option<Range<usize>>,
}

impl Problem {
    fn new(message: String, label: &str, help: Option<&str>, at: Option<Range<usize>>) -> Self {
        Problem { message, label: label.to_string(), help: help.map(str::to_string), at }
    }
}

const MAPPING_HELP: &str = "write `HOST:CONTAINER`, `IP:HOST:CONTAINER` or `CONTAINER` (optionally with `/tcp` or `/udp`), ports from 1 to 65535";

/// What the supervisor runs for replica `replica`.
fn fill_replica(text: &str, replica: u32) -> String {
    let n = replica.to_string();
    text.replace("${KILN_REPLICA}", &n).replace("$KILN_REPLICA", &n)
}

/// One port (`8080`), or with `range` a range (`8000-8010`), at byte `offset` of the value.
fn check_port(field: &str, offset: usize, replicas: u32, range: bool, what: &str) -> Result<(), Problem> {
    let at = || Some(offset..offset + field.len());
    if field.is_empty() {
        return Err(Problem::new(format!("missing port in {what}"), "no port here", Some(MAPPING_HELP), at()));
    }
    for replica in 0..replicas.max(1) {
        let filled = fill_replica(field, replica);
        let for_replica = if filled == field { String::new() } else { format!(" (for replica {replica})") };
        let (low, high) = match filled.split_once('-') {
            Some((low, high)) if range => (low, high),
            _ => (filled.as_str(), filled.as_str()),
        };
        let mut bounds = [0u32; 2];
        for (slot, text) in bounds.iter_mut().zip([low, high]) {
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Problem::new(
                    format!("`{filled}` in {what} is not a port number"),
                    "not a port number",
                    Some("ports are numbers from 1 to 65535"),
                    at(),
                ));
            }
            // Anything too long for a u32 is out of range as well.
            *slot = text.parse().unwrap_or(u32::MAX);
            if !(1..=65535).contains(slot) {
                return Err(Problem::new(
                    format!("port {text}{for_replica} in {what} is out of range"),
                    "ports are 1 to 65535",
                    None,
                    at(),
                ));
            }
        }
        if bounds[0] > bounds[1] {
            return Err(Problem::new(
                format!("port range `{filled}`{for_replica} in {what} ends before it starts"),
                "an empty range",
                Some("write the lower port first, like `8000-8010`"),
                at(),
            ));
        }
    }
    Ok(())
}

/// A `ports` entry as the container engine's `-p` takes it: `[IP:][HOST]:CONTAINER[/PROTO]`
/// or `CONTAINER[/PROTO]`, where ports may be ranges and IP may be `[v6]`.
pub(crate) fn check_port_mapping(text: &str, replicas: u32, what: &str) -> Result<(), Problem> {
    let (spec, proto) = match text.rsplit_once('/') {
        Some((spec, proto)) => (spec, Some(proto)),
        None => (text, None),
    };
    if let Some(proto) = proto
        && !matches!(proto, "tcp" | "udp" | "sctp")
    {
        let start = spec.len() + 1;
        return Err(Problem::new(
            format!("unknown protocol `{proto}` in {what}"),
            "not tcp, udp or sctp",
            Some(MAPPING_HELP),
            Some(start..text.len()),
        ));
    }
    // An IPv6 address in brackets holds colons of its own: set it aside first.
    let (ports, ports_at) = match spec.strip_prefix('[') {
        Some(rest) => match rest.split_once("]:") {
            Some((_, ports)) => (ports, spec.len() - ports.len()),
            None => {
                return Err(Problem::new(
                    format!("`{text}` in {what} is not a port mapping"),
                    "expected `[IPv6]:HOST:CONTAINER`",
                    Some(MAPPING_HELP),
                    None,
                ));
            }
        },
        None => (spec, 0),
    };
    let fields: Vec<&str> = ports.split(':').collect();
    let bracketed = spec.starts_with('[');
    let (host, container) = match fields.as_slice() {
        [container] if !bracketed => (None, *container),
        [host, container] => (Some(*host), *container),
        [_ip, host, container] if !bracketed => (Some(*host), *container),
        _ => {
            return Err(Problem::new(
                format!("`{text}` in {what} is not a port mapping"),
                "not `[IP:]HOST:CONTAINER`",
                Some(MAPPING_HELP),
                None,
            ));
        }
    };
    let container_at = ports_at + ports.len() - container.len();
    if let Some(host) = host {
        let host_at = container_at - 1 - host.len();
        // `IP::CONTAINER` lets the engine pick the host port.
        let picked = host.is_empty() && (fields.len() == 3 || bracketed);
        if !picked {
            check_port(host, host_at, replicas, true, what)?;
        }
    }
    check_port(container, container_at, replicas, true, what)
}

/// A port as written and its byte offset in the text it was split from.
pub(crate) type PortAt<'a> = Option<(&'a str, usize)>;

/// Splits `host:port` (or `[v6]:port`); the port's byte offset comes with it.
pub(crate) fn split_host_port(authority: &str) -> Result<(&str, PortAt<'_>), &'static str> {
    if let Some(rest) = authority.strip_prefix('[') {
        let Some(close) = rest.find(']') else { return Err("an IPv6 address without its `]`") };
        let after = &rest[close + 1..];
        return match after.strip_prefix(':') {
            Some(port) => Ok((&authority[..close + 2], Some((port, authority.len() - port.len())))),
            None if after.is_empty() => Ok((authority, None)),
            None => Err("text after the IPv6 address"),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, _)) if host.contains(':') => Err("an IPv6 address needs brackets, like `[::1]:8080`"),
        Some((host, port)) => Ok((host, Some((port, host.len() + 1)))),
        None => Ok((authority, None)),
    }
}

/// `ready.tcp`: `HOST:PORT`, connected to as written.
pub(crate) fn check_host_port(text: &str, replicas: u32, what: &str) -> Result<(), Problem> {
    const HELP: &str = "write `HOST:PORT`, like `127.0.0.1:5432` or `localhost:6379`";
    let (host, port) = split_host_port(text)
        .map_err(|why| Problem::new(format!("`{text}` in {what} is not `HOST:PORT`"), why, Some(HELP), None))?;
    let Some((port, port_at)) = port else {
        return Err(Problem::new(format!("{what} needs `HOST:PORT`, found `{text}`"), "no port", Some(HELP), None));
    };
    if host.is_empty() {
        return Err(Problem::new(format!("{what} has no host"), "no host before `:`", Some(HELP), None));
    }
    check_port(port, port_at, replicas, false, what)
}

/// `ready.http`: an `http://` URL with a host (and, if given, a valid port). HTTPS is not
/// spoken by the probe, so it is named as unsupported rather than failing at every period.
pub(crate) fn check_http_url(text: &str, replicas: u32, what: &str) -> Result<(), Problem> {
    const EXAMPLE: &str = "for example `http://127.0.0.1:8080/health`";
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err(Problem::new(format!("{what} must be an http:// URL"), "not an http:// URL", Some(EXAMPLE), None));
    };
    if scheme.eq_ignore_ascii_case("https") {
        return Err(Problem::new(
            format!("https:// URLs are not supported in {what}"),
            "https is not supported",
            Some(
                "the probe speaks plain HTTP: probe a plain-HTTP port (`http://…`), or check that the TLS port accepts connections with `tcp = \"HOST:PORT\"`",
            ),
            None,
        ));
    }
    if scheme != "http" {
        return Err(Problem::new(
            format!("{what} must be an http:// URL, not {scheme}://"),
            "not an http:// URL",
            Some(EXAMPLE),
            Some(0..scheme.len()),
        ));
    }
    let start = scheme.len() + 3;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let (host, port) = split_host_port(authority)
        .map_err(|why| Problem::new(format!("bad host in {what}"), why, Some(EXAMPLE), None))?;
    if host.is_empty() || host.contains('@') {
        return Err(Problem::new(
            format!("{what} has no host"),
            if host.is_empty() { "no host after `http://`" } else { "credentials are not supported" },
            Some(EXAMPLE),
            Some(start..start + authority.len()),
        ));
    }
    match port {
        Some((port, at)) => check_port(port, start + at, replicas, false, what),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(text: &str) -> Result<(), String> {
        check_port_mapping(text, 1, "ports").map_err(|p| p.message)
    }

    #[test]
    fn port_mappings() {
        for ok in [
            "8080:80",
            "80",
            "127.0.0.1:8080:80",
            "127.0.0.1::80",
            "8000-8010:8000-8010",
            "53:53/udp",
            "[::1]:8080:80",
            "1808${KILN_REPLICA}:8080",
        ] {
            assert_eq!(mapping(ok), Ok(()), "{ok}");
        }
        assert_eq!(mapping("70000:80"), Err("port 70000 in ports is out of range".into()));
        assert_eq!(mapping("8080:0"), Err("port 0 in ports is out of range".into()));
        assert_eq!(mapping("99999999999:80"), Err("port 99999999999 in ports is out of range".into()));
        assert_eq!(mapping("web:80"), Err("`web` in ports is not a port number".into()));
        assert_eq!(mapping(":80"), Err("missing port in ports".into()));
        assert_eq!(mapping("8080:80/tpc"), Err("unknown protocol `tpc` in ports".into()));
        assert_eq!(mapping("1:2:3:4"), Err("`1:2:3:4` in ports is not a port mapping".into()));
        assert_eq!(mapping("9000-8000:80"), Err("port range `9000-8000` in ports ends before it starts".into()));
    }

    #[test]
    fn problems_point_at_the_port() {
        let p = check_port_mapping("127.0.0.1:70000:80", 1, "ports").expect_err("out of range");
        assert_eq!(p.at, Some(10..15));
        let p = check_port_mapping("8080:65536", 1, "ports").expect_err("out of range");
        assert_eq!(p.at, Some(5..10));
        let p = check_http_url("http://localhost:99999/x", 1, "ready.http").expect_err("out of range");
        assert_eq!(p.at, Some(17..22));
    }

    #[test]
    fn the_replica_number_is_filled_in_for_each_replica() {
        assert_eq!(check_port_mapping("6553${KILN_REPLICA}:80", 6, "ports"), Ok(()));
        let p = check_port_mapping("6553${KILN_REPLICA}:80", 7, "ports").expect_err("65536");
        assert_eq!(p.message, "port 65536 (for replica 6) in ports is out of range");
        assert_eq!(check_host_port("127.0.0.1:900$KILN_REPLICA", 2, "tcp"), Ok(()));
    }

    #[test]
    fn probe_urls() {
        let url = |t: &str| check_http_url(t, 1, "`ready.http`").map_err(|p| p.message);
        for ok in ["http://127.0.0.1:8080/health", "http://localhost", "http://[::1]:80/", "http://host?x=1"] {
            assert_eq!(url(ok), Ok(()), "{ok}");
        }
        assert_eq!(url("https://127.0.0.1/health"), Err("https:// URLs are not supported in `ready.http`".into()));
        assert_eq!(url("127.0.0.1:8080/health"), Err("`ready.http` must be an http:// URL".into()));
        assert_eq!(url("ftp://x/"), Err("`ready.http` must be an http:// URL, not ftp://".into()));
        assert_eq!(url("http:///health"), Err("`ready.http` has no host".into()));
        assert_eq!(url("http://h:0/"), Err("port 0 in `ready.http` is out of range".into()));
        assert_eq!(url("http://h:x/"), Err("`x` in `ready.http` is not a port number".into()));
    }

    #[test]
    fn tcp_addresses() {
        let tcp = |t: &str| check_host_port(t, 1, "`ready.tcp`").map_err(|p| p.message);
        for ok in ["127.0.0.1:5432", "localhost:1", "[::1]:65535"] {
            assert_eq!(tcp(ok), Ok(()), "{ok}");
        }
        assert_eq!(tcp("127.0.0.1"), Err("`ready.tcp` needs `HOST:PORT`, found `127.0.0.1`".into()));
        assert_eq!(tcp(":80"), Err("`ready.tcp` has no host".into()));
        assert_eq!(tcp("h:65536"), Err("port 65536 in `ready.tcp` is out of range".into()));
        assert_eq!(tcp("::1:80"), Err("`::1:80` in `ready.tcp` is not `HOST:PORT`".into()));
    }
}
