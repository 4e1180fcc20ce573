//! Order statistics over samples.

use serde::{Deserialize, Serialize};

/// Median, 99th percentile, minimum and maximum of a set of samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// Median.
    pub p50: f64,
    /// 99th percentile (nearest rank).
    pub p99: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
}

impl Summary {
    /// Summarises `samples` (which need not be sorted). `None` if empty.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        let mut sorted: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let rank = |q: f64| -> f64 {
            // Nearest rank: ceil(q * n), within 1..=n (the cast saturates).
            #[allow(clippy::cast_possible_truncation)]
            let index = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
            sorted.get(index).copied().unwrap_or(f64::NAN)
        };
        (n > 0).then(|| Summary {
            n,
            p50: rank(0.5),
            p99: rank(0.99),
            min: sorted.first().copied().unwrap_or(f64::NAN),
            max: sorted.last().copied().unwrap_or(f64::NAN),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let s = Summary::of(&samples).unwrap();
        assert_eq!((s.n, s.p50, s.p99, s.min, s.max), (100, 50.0, 99.0, 1.0, 100.0));
        assert_eq!(Summary::of(&[3.0]).unwrap().p99, 3.0);
        assert!(Summary::of(&[]).is_none());
    }
}
