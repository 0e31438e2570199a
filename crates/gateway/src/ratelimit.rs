//! Each API key's request rate: one token bucket per key (proto's
//! [`TokenBucket`]), so one busy or runaway script slows only itself. A
//! refusal is a 429 problem with `Retry-After`.

use std::collections::HashMap;
use std::sync::Mutex;

use claudemesh_proto::ratelimit::TokenBucket;
use claudemesh_proto::sync::lock;

use crate::problem::Problem;

/// Requests per second and burst, for every key alike.
#[derive(Debug)]
pub struct KeyRates {
    per_sec: u32,
    burst: u32,
    buckets: Mutex<HashMap<String, TokenBucket>>,
}

impl KeyRates {
    /// `per_sec` sustained, `burst` at once, per key.
    pub fn new(per_sec: u32, burst: u32) -> Self {
        KeyRates {
            per_sec,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from the key named `prefix`.
    pub fn take(&self, prefix: &str) -> Result<(), Problem> {
        let mut buckets = lock(&self.buckets);
        let bucket = buckets
            .entry(prefix.to_owned())
            .or_insert_with(|| TokenBucket::new(self.per_sec, self.burst));
        bucket
            .take()
            .map_err(|wait_ms| Problem::rate_limited(wait_ms.div_ceil(1000)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_is_slowed_the_others_are_not() {
        let rates = KeyRates::new(1, 3);
        for _ in 0..3 {
            assert!(rates.take("cmk_a").is_ok());
        }
        let p = rates.take("cmk_a").unwrap_err();
        assert_eq!((p.status, p.retry_after), (429, Some(1)));
        assert!(rates.take("cmk_b").is_ok());
    }
}
