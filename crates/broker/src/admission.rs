//! What the broker knows of a connection before its hello, and the caps
//! that apply then: where it comes from ([`Origin`]: its IP address, and
//! whether it is local, which decides who may create meshes by default),
//! and how many connections one address may hold open without having said
//! hello ([`PendingByAddress`]), so one host cannot tie up the broker with
//! handshakes it never finishes.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;

/// Headers a reverse proxy adds: a connection that carries one came through
/// a proxy, so its loopback peer address says nothing about the client.
const FORWARDING_HEADERS: [&str; 3] = ["forwarded", "x-forwarded-for", "x-real-ip"];

/// Where a connection comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// The TCP peer's address.
    pub ip: IpAddr,
    /// A loopback peer with no forwarding header: a client on this machine.
    pub local: bool,
}

impl Origin {
    /// The origin of a connection from `peer` whose upgrade request carried
    /// `headers`.
    pub fn new(peer: SocketAddr, headers: &HeaderMap) -> Self {
        let ip = canonical(peer.ip());
        let forwarded = FORWARDING_HEADERS.iter().any(|h| headers.contains_key(*h));
        Origin {
            ip,
            local: ip.is_loopback() && !forwarded,
        }
    }
}

/// An IPv4 address mapped into IPv6 counts as the IPv4 address (a dual-stack
/// listener would otherwise give one host two counts).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Connections per address that have not said hello yet.
#[derive(Debug, Default, Clone)]
pub struct PendingByAddress(Arc<Mutex<HashMap<IpAddr, usize>>>);

/// Counts one connection of an address until its hello succeeds or it ends.
#[derive(Debug)]
pub struct PendingGuard {
    owner: PendingByAddress,
    ip: IpAddr,
}

impl PendingByAddress {
    /// Counts a new connection from `ip`, or `None` if `ip` already holds
    /// `max` connections that have not said hello.
    pub fn enter(&self, ip: IpAddr, max: usize) -> Option<PendingGuard> {
        let mut counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(PendingGuard {
            owner: self.clone(),
            ip,
        })
    }

    /// Connections from `ip` waiting for their hello now.
    pub fn count(&self, ip: IpAddr) -> usize {
        let counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        counts.get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        let mut counts = self.owner.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_holds_at_most_max_pending_connections() {
        let pending = PendingByAddress::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let g1 = pending.enter(a, 2).unwrap();
        let _g2 = pending.enter(a, 2).unwrap();
        assert!(pending.enter(a, 2).is_none());
        assert!(pending.enter(b, 2).is_some());
        drop(g1);
        assert_eq!(pending.count(a), 1);
        assert!(pending.enter(a, 2).is_some());
    }

    #[test]
    fn only_an_unforwarded_loopback_peer_is_local() {
        let none = HeaderMap::new();
        let mut proxied = HeaderMap::new();
        proxied.insert("x-forwarded-for", "203.0.113.7".parse().unwrap());
        let lo: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let lo6: SocketAddr = "[::1]:5000".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:5000".parse().unwrap();
        let far: SocketAddr = "203.0.113.7:5000".parse().unwrap();
        assert!(Origin::new(lo, &none).local);
        assert!(Origin::new(lo6, &none).local);
        assert!(Origin::new(mapped, &none).local);
        assert_eq!(
            Origin::new(mapped, &none).ip,
            "127.0.0.1".parse::<IpAddr>().unwrap()
        );
        assert!(!Origin::new(lo, &proxied).local);
        assert!(!Origin::new(far, &none).local);
    }
}
