//! What the broker knows of a connection before its hello, and the caps
//! that apply then: where it comes from ([`Origin`]: the client's address —
//! through a trusted reverse proxy, the one the proxy saw — and whether it
//! is local, which decides who may create meshes by default), and how many
//! connections one address and everyone together may hold open without
//! having said hello ([`PendingByAddress`]), so no one can tie up the broker
//! with handshakes they never finish.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// Headers a reverse proxy adds: a connection that carries one came through
/// a proxy, so its loopback peer address says nothing about the client.
const FORWARDING_HEADERS: [&str; 3] = ["forwarded", "x-forwarded-for", "x-real-ip"];

/// The proxies trusted by default to say who their client is: this
/// machine's (a Caddy or nginx in front of the broker on the same host).
pub fn default_trusted_proxies() -> Vec<IpNet> {
    ["127.0.0.0/8", "::1/128"]
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// Where a connection comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// The client's address: the TCP peer's, or — when that peer is a
    /// trusted proxy that says — the address the proxy saw.
    pub ip: IpAddr,
    /// A loopback peer with no forwarding header: a client on this machine.
    pub local: bool,
}

impl Origin {
    /// The origin of a connection from `peer` whose upgrade request carried
    /// `headers`, trusting the forwarding headers only of `trusted` peers.
    pub fn new(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> Self {
        let peer_ip = canonical(peer.ip());
        let forwarded = FORWARDING_HEADERS.iter().any(|h| headers.contains_key(*h));
        let client = if forwarded && trusted.iter().any(|n| n.contains(&peer_ip)) {
            forwarded_client(headers).unwrap_or(peer_ip)
        } else {
            peer_ip
        };
        Origin {
            ip: client,
            local: peer_ip.is_loopback() && !forwarded,
        }
    }

    /// What the per-address cap counts: an IPv4 address, or an IPv6 /64
    /// (one subscriber's usual allocation, which it could otherwise cycle
    /// through at will).
    pub fn cap_key(&self) -> IpAddr {
        match self.ip {
            IpAddr::V6(v6) => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
            v4 => v4,
        }
    }
}

/// The client address a trusted proxy gives: the last entry of
/// `X-Forwarded-For` (the one that proxy appended; earlier ones come from
/// the client and could be anything), else `X-Real-IP`, else the last
/// `for=` of `Forwarded`.
fn forwarded_client(headers: &HeaderMap) -> Option<IpAddr> {
    let last_of = |name: &str, split: &dyn Fn(&str) -> Option<String>| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| {
                v.split(',')
                    .map(str::trim)
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .filter_map(|item| split(&item))
            .filter_map(|item| parse_ip(&item))
            .next_back()
    };
    last_of("x-forwarded-for", &|s| Some(s.to_owned()))
        .or_else(|| last_of("x-real-ip", &|s| Some(s.to_owned())))
        .or_else(|| {
            last_of("forwarded", &|s| {
                s.split(';')
                    .map(str::trim)
                    .find_map(|kv| kv.strip_prefix("for=").or_else(|| kv.strip_prefix("For=")))
                    .map(|v| v.trim_matches('"').to_owned())
            })
        })
        .map(canonical)
}

/// An address as a proxy writes it: bare, `[v6]`, or with a port.
fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            s.strip_prefix('[')
                .and_then(|r| r.split(']').next())
                .and_then(|v| v.parse().ok())
        })
}

/// An IPv4 address mapped into IPv6 counts as the IPv4 address (a dual-stack
/// listener would otherwise give one host two counts).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

#[derive(Debug, Default)]
struct Counts {
    by_address: HashMap<IpAddr, usize>,
    total: usize,
}

/// Connections that have not said hello yet, per address and in all.
#[derive(Debug, Default, Clone)]
pub struct PendingByAddress(Arc<Mutex<Counts>>);

/// Counts one connection of an address until its hello succeeds or it ends.
#[derive(Debug)]
pub struct PendingGuard {
    owner: PendingByAddress,
    key: IpAddr,
}

/// Why a connection was not admitted before its hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingRefusal {
    /// Its address holds as many as it may.
    Address,
    /// The broker holds as many as it takes from everyone.
    Total,
}

impl PendingByAddress {
    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a new connection of `origin`, unless its address already
    /// holds `per_address` connections that have not said hello, or all
    /// addresses together hold `total`.
    pub fn enter(
        &self,
        origin: &Origin,
        per_address: usize,
        total: usize,
    ) -> Result<PendingGuard, PendingRefusal> {
        let key = origin.cap_key();
        let mut counts = self.lock();
        if counts.total >= total {
            return Err(PendingRefusal::Total);
        }
        let n = counts.by_address.entry(key).or_insert(0);
        if *n >= per_address {
            return Err(PendingRefusal::Address);
        }
        *n += 1;
        counts.total += 1;
        Ok(PendingGuard {
            owner: self.clone(),
            key,
        })
    }

    /// Connections of `ip`'s address waiting for their hello now.
    pub fn count(&self, ip: IpAddr) -> usize {
        let key = Origin { ip, local: false }.cap_key();
        self.lock().by_address.get(&key).copied().unwrap_or(0)
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        let mut counts = self.owner.lock();
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.by_address.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.by_address.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(peer: &str, headers: &[(&'static str, &str)]) -> Origin {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(*k, v.parse().unwrap());
        }
        Origin::new(peer.parse().unwrap(), &map, &default_trusted_proxies())
    }

    #[test]
    fn an_address_holds_at_most_max_pending_connections_and_everyone_at_most_total() {
        let pending = PendingByAddress::default();
        let a = origin("10.0.0.1:1", &[]);
        let b = origin("10.0.0.2:1", &[]);
        let g1 = pending.enter(&a, 2, 3).unwrap();
        let _g2 = pending.enter(&a, 2, 3).unwrap();
        assert_eq!(pending.enter(&a, 2, 3).err(), Some(PendingRefusal::Address));
        let _g3 = pending.enter(&b, 2, 3).unwrap();
        assert_eq!(pending.enter(&b, 2, 3).err(), Some(PendingRefusal::Total));
        drop(g1);
        assert_eq!(pending.count(a.ip), 1);
        assert!(pending.enter(&a, 2, 3).is_ok());
    }

    #[test]
    fn ipv6_addresses_count_by_their_slash_64() {
        let pending = PendingByAddress::default();
        let one = origin("[2001:db8:1:2::1]:1", &[]);
        let other = origin("[2001:db8:1:2:ffff::9]:1", &[]);
        let elsewhere = origin("[2001:db8:1:3::1]:1", &[]);
        let _g = pending.enter(&one, 1, 10).unwrap();
        assert_eq!(
            pending.enter(&other, 1, 10).err(),
            Some(PendingRefusal::Address)
        );
        assert!(pending.enter(&elsewhere, 1, 10).is_ok());
    }

    #[test]
    fn only_an_unforwarded_loopback_peer_is_local() {
        assert!(origin("127.0.0.1:5000", &[]).local);
        assert!(origin("[::1]:5000", &[]).local);
        assert!(origin("[::ffff:127.0.0.1]:5000", &[]).local);
        assert_eq!(
            origin("[::ffff:127.0.0.1]:5000", &[]).ip,
            "127.0.0.1".parse::<IpAddr>().unwrap()
        );
        assert!(!origin("127.0.0.1:5000", &[("x-forwarded-for", "203.0.113.7")]).local);
        assert!(!origin("203.0.113.7:5000", &[]).local);
    }

    #[test]
    fn a_trusted_proxy_names_the_client_and_nobody_else_can() {
        // Behind a proxy on this machine: the last entry is what it saw.
        let via = origin(
            "127.0.0.1:5000",
            &[("x-forwarded-for", "10.9.9.9, 203.0.113.7")],
        );
        assert_eq!(via.ip, "203.0.113.7".parse::<IpAddr>().unwrap());
        let real_ip = origin("127.0.0.1:5000", &[("x-real-ip", "198.51.100.4")]);
        assert_eq!(real_ip.ip, "198.51.100.4".parse::<IpAddr>().unwrap());
        let rfc = origin(
            "[::1]:5000",
            &[(
                "forwarded",
                "for=192.0.2.60;proto=https, for=\"[2001:db8::1]:443\"",
            )],
        );
        assert_eq!(rfc.ip, "2001:db8::1".parse::<IpAddr>().unwrap());
        // A remote client's own header is not believed.
        let spoof = origin("203.0.113.7:5000", &[("x-forwarded-for", "127.0.0.1")]);
        assert_eq!(spoof.ip, "203.0.113.7".parse::<IpAddr>().unwrap());
        assert!(!spoof.local);
    }
}
