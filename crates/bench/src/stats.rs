//! Latency samples and their percentiles. Every sample is kept (a run is
//! bounded, so at most a few million `u64`s) and sorted once at the end:
//! exact percentiles, no histogram rounding.

use serde::Serialize;

/// Latency samples in nanoseconds.
#[derive(Debug, Default, Clone)]
pub struct Samples(Vec<u64>);

/// Percentiles of a set of samples, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// How many samples.
    pub samples: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// Arithmetic mean.
    pub mean_ms: f64,
}

impl Samples {
    /// Room for `n` samples.
    pub fn with_capacity(n: usize) -> Self {
        Samples(Vec::with_capacity(n))
    }

    /// Adds one sample.
    pub fn push(&mut self, ns: u64) {
        self.0.push(ns);
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: Samples) {
        self.0.extend(other.0);
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Percentiles (nearest rank); `None` without samples.
    pub fn summary(mut self) -> Option<Summary> {
        if self.0.is_empty() {
            return None;
        }
        self.0.sort_unstable();
        let v = &self.0;
        let rank = |p: f64| -> f64 {
            // Nearest rank: the smallest sample with at least p of them <= it.
            let n = v.len();
            let r = ((p * n as f64).ceil() as usize).clamp(1, n);
            ms(v[r - 1])
        };
        let sum: u128 = v.iter().map(|&x| u128::from(x)).sum();
        Some(Summary {
            samples: v.len() as u64,
            p50_ms: rank(0.50),
            p90_ms: rank(0.90),
            p99_ms: rank(0.99),
            max_ms: ms(v[v.len() - 1]),
            mean_ms: (sum as f64 / v.len() as f64) / 1e6,
        })
    }
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut s = Samples::default();
        for i in 1..=100u64 {
            s.push(i * 1_000_000);
        }
        let sum = s.summary().unwrap();
        assert_eq!(sum.samples, 100);
        assert_eq!(sum.p50_ms, 50.0);
        assert_eq!(sum.p90_ms, 90.0);
        assert_eq!(sum.p99_ms, 99.0);
        assert_eq!(sum.max_ms, 100.0);
        assert!((sum.mean_ms - 50.5).abs() < 1e-9);
    }

    #[test]
    fn one_sample_and_none() {
        let mut s = Samples::default();
        assert!(s.clone().summary().is_none());
        s.push(2_500_000);
        let sum = s.summary().unwrap();
        assert_eq!((sum.p50_ms, sum.p99_ms, sum.max_ms), (2.5, 2.5, 2.5));
    }
}
