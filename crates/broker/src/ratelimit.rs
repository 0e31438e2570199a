//! A token bucket for the broker's rates (TM10): frames per connection and
//! per member, presence changes per connection, membership-log entries per
//! member. It is a few lines of arithmetic; the shared ones sit behind their
//! owner's mutex ([`MemberBuckets`]: a member's frames and bytes, all its
//! sessions together). governor's keyed limiters solve a harder problem at
//! the cost of a dozen dependencies.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use claudemesh_crypto::PublicKey;

/// Tokens refill at `rate` per second up to `burst`; each frame takes one.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate_per_sec: u32, burst: u32) -> Self {
        TokenBucket {
            rate: f64::from(rate_per_sec.max(1)),
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            last: Instant::now(),
        }
    }

    /// A full bucket refilled at `per_hour` tokens an hour (slow rates, such
    /// as membership-log entries).
    pub fn per_hour(per_hour: u32, burst: u32) -> Self {
        TokenBucket {
            rate: f64::from(per_hour.max(1)) / 3600.0,
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            last: Instant::now(),
        }
    }

    /// Takes a token at `now`, or says how many milliseconds until one is free.
    pub fn take_at(&mut self, now: Instant) -> Result<(), u64> {
        self.take_n_at(1, now)
    }

    /// Takes `n` tokens at `now` (all or none), or says how many milliseconds
    /// until they are there. More than the burst is never there: the wait
    /// is then the time to a full bucket.
    pub fn take_n_at(&mut self, n: u32, now: Instant) -> Result<(), u64> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        let want = f64::from(n.max(1));
        if self.tokens >= want {
            self.tokens -= want;
            Ok(())
        } else {
            let wait = (want.min(self.burst) - self.tokens).max(0.0) / self.rate;
            Err(((wait * 1000.0).ceil() as u64).max(1))
        }
    }

    /// Takes a token now.
    pub fn take(&mut self) -> Result<(), u64> {
        self.take_at(Instant::now())
    }

    /// Takes `n` tokens now.
    pub fn take_n(&mut self, n: u32) -> Result<(), u64> {
        self.take_n_at(n, Instant::now())
    }
}

/// What one member may send this broker, all its sessions together.
#[derive(Debug, Clone, Copy)]
pub struct MemberRates {
    /// Frames per second, sustained.
    pub frames_per_sec: u32,
    /// Frames at once.
    pub frames_burst: u32,
    /// Bytes of frames per second, sustained (what a member can make the
    /// broker store and forward).
    pub bytes_per_sec: u32,
    /// Bytes at once (at least one frame).
    pub bytes_burst: u32,
}
/// Each member's frame and byte buckets, shared by all its sessions on
/// this broker (TM10).
#[derive(Debug, Default)]
pub struct MemberBuckets {
    rates: Mutex<HashMap<PublicKey, (TokenBucket, TokenBucket)>>,
}

impl MemberBuckets {
    /// Takes one frame of `bytes` from `member`'s buckets (frames and
    /// bytes), which all its sessions on this broker share; both or neither;
    /// `Err` with the milliseconds until there is room.
    pub fn take(&self, member: &PublicKey, limits: &MemberRates, bytes: usize) -> Result<(), u64> {
        let mut rates = self.rates.lock().unwrap_or_else(|p| p.into_inner());
        let (frames, volume) = rates.entry(*member).or_insert_with(|| {
            (
                TokenBucket::new(limits.frames_per_sec, limits.frames_burst),
                TokenBucket::new(limits.bytes_per_sec, limits.bytes_burst),
            )
        });
        let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
        let (mut f, mut v) = (frames.clone(), volume.clone());
        f.take().and(v.take_n(bytes.min(limits.bytes_burst)))?;
        (*frames, *volume) = (f, v);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 3);
        b.last = t0;
        for _ in 0..3 {
            assert!(b.take_at(t0).is_ok());
        }
        let wait = b.take_at(t0).unwrap_err();
        assert_eq!(wait, 100);
        assert!(b.take_at(t0 + Duration::from_millis(100)).is_ok());
        assert!(b.take_at(t0 + Duration::from_millis(100)).is_err());
    }

    #[test]
    fn several_tokens_at_once_all_or_none_and_slow_rates() {
        let t0 = Instant::now();
        let mut b = TokenBucket::per_hour(3600, 5);
        b.last = t0;
        assert!(b.take_n_at(4, t0).is_ok());
        // 2 wanted, 1 there: nothing taken, a second to wait.
        assert_eq!(b.take_n_at(2, t0), Err(1000));
        assert!(b.take_n_at(1, t0).is_ok());
        // More than the burst: the wait is to a full bucket.
        assert_eq!(b.take_n_at(50, t0), Err(5000));
    }
}
