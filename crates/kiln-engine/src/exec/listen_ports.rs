//! The TCP ports a process group listens on, read from `/proc` (Linux): the processes of the
//! group (`/proc/PID/stat`), their sockets (`/proc/PID/fd`), and those of the sockets that
//! listen (`/proc/net/tcp`, `/proc/net/tcp6`). What kiln cannot read (another user's
//! process, a system without `/proc`) is left out, never an error.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

/// The addresses the processes of the group led by `pgid` listen on, sorted and without
/// repeats (`127.0.0.1:8080`, `[::]:9000`).
pub fn listening_ports(pgid: u32) -> Vec<String> {
    let Ok(group) = i32::try_from(pgid) else { return Vec::new() };
    if group <= 1 {
        return Vec::new();
    }
    let mut inodes = BTreeSet::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // `pid (comm) state ppid pgrp …`: comm may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(") ") else { continue };
        if rest.split(' ').nth(2).and_then(|f| f.parse::<i32>().ok()) != Some(group) {
            continue;
        }
        for fd in std::fs::read_dir(entry.path().join("fd")).into_iter().flatten().flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else { continue };
            if let Some(inode) = target.to_str().and_then(|t| t.strip_prefix("socket:[")?.strip_suffix(']')) {
                inodes.insert(inode.to_string());
            }
        }
    }
    if inodes.is_empty() {
        return Vec::new();
    }
    let mut found = BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
            if fields.len() > 9
                && fields[3] == "0A"
                && inodes.contains(fields[9])
                && let Some(addr) = parse_address(fields[1])
            {
                found.insert(addr);
            }
        }
    }
    found.into_iter().map(|a| a.to_string()).collect()
}

/// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6): the address in 32-bit words
/// of the host's byte order (little-endian here), the port in hex.
fn parse_address(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    // Each 32-bit word as the kernel printed it, from memory in network order.
    let word = |i: usize| u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok().map(u32::to_le_bytes);
    match ip.len() {
        8 => Some(SocketAddr::new(Ipv4Addr::from(word(0)?).into(), port)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            Some(SocketAddr::new(Ipv6Addr::from(bytes).into(), port))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_kernels_addresses() {
        assert_eq!(parse_address("0100007F:1F90"), Some("127.0.0.1:8080".parse().expect("addr")));
        assert_eq!(parse_address("00000000:4A38"), Some("0.0.0.0:19000".parse().expect("addr")));
        assert_eq!(parse_address("00000000000000000000000001000000:0050"), Some("[::1]:80".parse().expect("addr")));
        assert_eq!(parse_address("zz:1"), None);
    }

    #[test]
    fn finds_a_listening_socket_of_a_real_process_group() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let me = nix::unistd::getpgrp().as_raw().cast_unsigned();
        let ports = listening_ports(me);
        assert!(ports.contains(&format!("127.0.0.1:{port}")), "{ports:?}");
        drop(listener);
    }
}
