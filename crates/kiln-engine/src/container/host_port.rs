//! The host ports a container publishes (`ports` in kiln.toml), checked before it starts.
//!
//! The engine fails a container whose published host port another process holds, but a
//! readiness probe run from the host reaches that other process and passes: the replica
//! would be `ready` with no container behind it. So before a fresh start kiln binds each
//! explicit host port itself for a moment; one in use is tried again for up to
//! [`RELEASE_WAIT`] (the previous attempt's container may still be letting it go), then the
//! start fails saying which port, and what to do. Ports the engine chooses (`"8080"`,
//! `"127.0.0.1::8080"`), UDP ports and ranges are left to the engine.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::time::Duration;

/// How long a host port in use is waited for before the start fails.
pub const RELEASE_WAIT: Duration = Duration::from_secs(1);

/// The host address of one `ports` entry, when it names an explicit TCP host port:
/// `"19770:8080"` → 0.0.0.0:19770, `"127.0.0.1:19770:8080/tcp"` → 127.0.0.1:19770,
/// `"[::1]:19770:8080"` → [::1]:19770.
pub fn host_address(entry: &str) -> Option<SocketAddr> {
    let (mapping, protocol) = entry.rsplit_once('/').unwrap_or((entry, "tcp"));
    if !protocol.eq_ignore_ascii_case("tcp") {
        return None;
    }
    // What precedes the last `:` is the host side; the container port follows.
    let (host, _container) = mapping.rsplit_once(':')?;
    let (ip, port) = match host.rsplit_once(':') {
        Some((ip, port)) => {
            let ip = ip.trim_start_matches('[').trim_end_matches(']');
            let ip: IpAddr = if ip.is_empty() { Ipv4Addr::UNSPECIFIED.into() } else { ip.parse().ok()? };
            (ip, port)
        }
        None => (Ipv4Addr::UNSPECIFIED.into(), host),
    };
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    Some(SocketAddr::new(ip, port))
}

/// Checks that every explicit host port of `entries` is free, waiting up to [`RELEASE_WAIT`]
/// for one in use; the error says which port of `service` is taken and what to do.
pub async fn check_free(entries: &[String], service: &str) -> Result<(), String> {
    for address in entries.iter().filter_map(|e| host_address(e)) {
        let deadline = tokio::time::Instant::now() + RELEASE_WAIT;
        loop {
            match TcpListener::bind(address) {
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(format!(
                            "port {address} (`ports` of service `{service}`) is already in use by another process: stop \
                             it, or change `ports`"
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                // Not ours to decide (an address this host lacks, a privileged port): the
                // engine says what it makes of it.
                Err(_) => break,
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_tcp_host_ports_are_found_in_every_form() {
        let addr = |s: &str| host_address(s).map(|a| a.to_string());
        assert_eq!(addr("19770:8080").as_deref(), Some("0.0.0.0:19770"));
        assert_eq!(addr("127.0.0.1:19770:8080").as_deref(), Some("127.0.0.1:19770"));
        assert_eq!(addr("127.0.0.1:19770:8080/tcp").as_deref(), Some("127.0.0.1:19770"));
        assert_eq!(addr("[::1]:19770:8080").as_deref(), Some("[::1]:19770"));
        assert_eq!(addr(":19770:8080").as_deref(), Some("0.0.0.0:19770"));
        for chosen_by_the_engine in ["8080", "127.0.0.1::8080", "19770:8080/udp", "19770-19771:8080-8081", "0:80"] {
            assert_eq!(addr(chosen_by_the_engine), None, "{chosen_by_the_engine}");
        }
    }

    #[tokio::test]
    async fn a_port_held_by_another_process_fails_after_the_release_wait() {
        let held = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = held.local_addr().expect("addr").port();
        let started = std::time::Instant::now();
        let err = check_free(&[format!("127.0.0.1:{port}:80")], "web").await.expect_err("in use");
        assert_eq!(
            err,
            format!(
                "port 127.0.0.1:{port} (`ports` of service `web`) is already in use by another process: stop it, or \
                 change `ports`"
            )
        );
        assert!(started.elapsed() >= RELEASE_WAIT, "waited for it to be released first");
        drop(held);
        assert_eq!(check_free(&[format!("127.0.0.1:{port}:80"), "8080".into()], "web").await, Ok(()));
    }
}
