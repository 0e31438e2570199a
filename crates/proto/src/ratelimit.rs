//! A token bucket: `rate` tokens a second up to `burst`, each request
//! takes one (or `n`), and a refusal says how long until there is room.
//! The broker's rates (TM10) and the gateway's per-key rate use it. It is a
//! few lines of arithmetic; governor's keyed limiters solve a harder
//! problem at the cost of a dozen dependencies.

use std::time::Instant;

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
