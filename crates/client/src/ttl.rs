//! Message expiry (issue 15, `docs/protocol.md` §5 "TTL"): a message sent
//! with a time to live that is not shown to a recipient by its deadline is
//! reported `expired` to its sender and dropped by the broker. This module
//! holds the pure rules: reading a TTL as users write it (`30s`, `10m`,
//! `2h`, `1d`, or a number of seconds), and what a resend of a message
//! still in the outbox carries (the TTL that remains of the one given at
//! the original send, or nothing at all once less than [`MIN_TTL`] is
//! left: the message is then expired here, never sent).

use std::time::Duration;

use crate::error::{BadInput, ClientError};

/// The shortest time to live the broker takes.
pub const MIN_TTL: Duration = Duration::from_secs(1);

/// [`MIN_TTL`] in milliseconds, as `send.ttl_ms` carries it.
pub const MIN_TTL_MS: u64 = 1000;

/// Reads a time to live: a number of seconds (`90`), or a duration as
/// `30s`, `10m`, `2h`, `1d`, `1h 30m` (humantime's syntax). Less than
/// [`MIN_TTL`] is refused. Its upper bound is the broker's retention,
/// which only the broker knows (it refuses more as `malformed`).
pub fn parse_ttl(text: &str) -> Result<Duration, ClientError> {
    let text = text.trim();
    let bad = |reason: &str| {
        ClientError::BadInput(BadInput::Ttl {
            input: text.to_owned(),
            reason: reason.to_owned(),
        })
    };
    let ttl = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| bad("too large"))?
    } else {
        humantime::parse_duration(text).map_err(|e| bad(&e.to_string()))?
    };
    check_ttl(ttl).map_err(|_| bad("shorter than 1 s"))
}

/// Refuses a time to live below [`MIN_TTL`].
pub fn check_ttl(ttl: Duration) -> Result<Duration, ClientError> {
    if ttl < MIN_TTL {
        return Err(ClientError::BadInput(BadInput::Ttl {
            input: format!("{} ms", ttl.as_millis()),
            reason: "shorter than 1 s".into(),
        }));
    }
    Ok(ttl)
}

/// A time to live in milliseconds, as `send.ttl_ms` carries it.
pub fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
}

/// What a resend of an outbox message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resend {
    /// Send it, with this `ttl_ms` (none: the broker's retention).
    Send(Option<u64>),
    /// Its deadline is past, or less than [`MIN_TTL`] remains: not sent,
    /// expired here.
    Expired,
}

/// What a message whose deadline (unix ms, this device's clock, fixed at
/// its original send) is `deadline_ms` is resent with at `now`: the TTL
/// that remains, when that is at least [`MIN_TTL`].
pub fn resend(deadline_ms: Option<u64>, now: u64) -> Resend {
    match deadline_ms {
        None => Resend::Send(None),
        Some(deadline) => match deadline.checked_sub(now) {
            Some(left) if left >= MIN_TTL_MS => Resend::Send(Some(left)),
            _ => Resend::Expired,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ttl_is_seconds_or_a_duration_of_at_least_one_second() {
        let ok = |s: &str| parse_ttl(s).unwrap();
        assert_eq!(ok("1s"), Duration::from_secs(1));
        assert_eq!(ok("30s"), Duration::from_secs(30));
        assert_eq!(ok("10m"), Duration::from_secs(600));
        assert_eq!(ok("2h"), Duration::from_secs(7200));
        assert_eq!(ok("1d"), Duration::from_secs(86_400));
        assert_eq!(ok("1h 30m"), Duration::from_secs(5400));
        assert_eq!(ok(" 90 "), Duration::from_secs(90));
        assert_eq!(ok("1500ms"), Duration::from_millis(1500));
        for bad in ["", "0", "0s", "999ms", "soon", "-5s", "10 parsecs"] {
            let e = parse_ttl(bad).unwrap_err();
            assert!(
                matches!(e, ClientError::BadInput(BadInput::Ttl { .. })),
                "{bad:?}: {e}"
            );
            assert_eq!(e.kind(), crate::error_kind::ErrorKind::Usage, "{bad:?}");
        }
        assert!(check_ttl(Duration::from_millis(999)).is_err());
        assert_eq!(ttl_ms(Duration::from_secs(2)), 2000);
    }

    #[test]
    fn a_resend_carries_what_remains_of_the_original_ttl() {
        // No TTL: the broker's retention, however late.
        assert_eq!(resend(None, u64::MAX), Resend::Send(None));
        // Sent at 10 000 with 30 s: resent at 25 000, 15 s remain.
        assert_eq!(resend(Some(40_000), 25_000), Resend::Send(Some(15_000)));
        // Exactly one second left is still sent.
        assert_eq!(resend(Some(40_000), 39_000), Resend::Send(Some(1000)));
        // Less than a second left, the deadline itself, or after it:
        // expired here, never sent.
        assert_eq!(resend(Some(40_000), 39_001), Resend::Expired);
        assert_eq!(resend(Some(40_000), 40_000), Resend::Expired);
        assert_eq!(resend(Some(40_000), 90_000), Resend::Expired);
    }
}
