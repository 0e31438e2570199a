//! Which `Host` headers the gateway answers: only names of its own
//! listener. A web page elsewhere can point a DNS name it controls at
//! 127.0.0.1 (DNS rebinding) and then talk to a loopback service as if it
//! were same-origin; the browser still sends that name as `Host`, so a
//! gateway that answers only its own names is out of that page's reach.

use std::net::{IpAddr, SocketAddr};

/// The `Host` values a listener answers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedHosts {
    /// A TCP listener: these `host:port` forms (lower case).
    Names(Vec<String>),
    /// A Unix socket: no web page can open one, so any `Host` (or none).
    Any,
}

impl AllowedHosts {
    /// The names of a TCP listener on `addr`: its address, `localhost`
    /// when it is a loopback address, and `extra` names from the
    /// configuration (`--allow-host`, e.g. a name a TLS certificate holds).
    /// An unspecified address (`0.0.0.0`, `::`) is answered by the names
    /// given in `extra` and the loopback names only.
    pub fn for_tcp(addr: SocketAddr, extra: &[String]) -> Self {
        let port = addr.port();
        let mut names = Vec::new();
        let mut add = |host: String| {
            let h = format!("{}:{port}", host.to_ascii_lowercase());
            if !names.contains(&h) {
                names.push(h);
            }
        };
        let ip = addr.ip();
        if ip.is_loopback() || ip.is_unspecified() {
            add("localhost".into());
            add("127.0.0.1".into());
            add("[::1]".into());
        }
        if !ip.is_unspecified() {
            add(bracketed(ip));
        }
        for name in extra {
            add(name.trim().to_owned());
        }
        AllowedHosts::Names(names)
    }

    /// Whether a request with this `Host` header is answered. Without a
    /// port the name matches only when the listener is on the scheme's
    /// default port (80 for http, 443 for https).
    pub fn allows(&self, host: Option<&str>, tls: bool) -> bool {
        let names = match self {
            AllowedHosts::Any => return true,
            AllowedHosts::Names(names) => names,
        };
        let Some(host) = host.map(str::trim).filter(|h| !h.is_empty()) else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        let with_port = if has_port(&host) {
            host
        } else {
            format!("{host}:{}", if tls { 443 } else { 80 })
        };
        names.contains(&with_port)
    }
}

/// An IP as a `Host` header writes it (IPv6 in brackets).
fn bracketed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// Whether `host` ends in `:port` (an IPv6 literal's colons are inside
/// its brackets).
fn has_port(host: &str) -> bool {
    match host.rfind(':') {
        Some(i) => !host[..i].ends_with(':') && host.rfind(']').is_none_or(|b| b < i),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_only_with_the_listeners_port() {
        let allowed = AllowedHosts::for_tcp("127.0.0.1:7901".parse().unwrap(), &[]);
        for ok in [
            "127.0.0.1:7901",
            "localhost:7901",
            "LOCALHOST:7901",
            "[::1]:7901",
        ] {
            assert!(allowed.allows(Some(ok), false), "{ok}");
        }
        for bad in [
            None,
            Some(""),
            Some("127.0.0.1"),
            Some("127.0.0.1:7902"),
            Some("evil.example:7901"),
            Some("localhost.evil.example:7901"),
            Some("[::1]"),
        ] {
            assert!(!allowed.allows(bad, false), "{bad:?}");
        }
    }

    #[test]
    fn other_addresses_and_configured_names() {
        let allowed = AllowedHosts::for_tcp(
            "[fd00::5]:443".parse().unwrap(),
            &["Gateway.Example".into()],
        );
        assert!(allowed.allows(Some("[fd00::5]:443"), true));
        assert!(allowed.allows(Some("gateway.example"), true));
        assert!(!allowed.allows(Some("gateway.example"), false));
        assert!(!allowed.allows(Some("localhost:443"), true));
        let any = AllowedHosts::for_tcp("0.0.0.0:7901".parse().unwrap(), &["box.lan".into()]);
        assert!(any.allows(Some("box.lan:7901"), false));
        assert!(any.allows(Some("localhost:7901"), false));
        assert!(!any.allows(Some("0.0.0.0:7901"), false));
        assert!(AllowedHosts::Any.allows(None, false));
    }
}
