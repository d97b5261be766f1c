//! Order statistics of measured samples (pure): nearest-rank percentiles, medians, maxima.

use serde::Serialize;

/// Summary of one set of samples, in the unit they were taken in.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub n: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub min: f64,
}

/// Nearest-rank percentile `p` (0..=100) of `sorted` (ascending); `None` when empty.
pub fn percentile_sorted(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let p = p.clamp(0.0, 100.0);
    // Nearest rank: the smallest value with at least p% of the samples at or below it.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let idx = rank.saturating_sub(1).min(sorted.len() - 1);
    sorted.get(idx).copied()
}

/// Sorts a copy of `samples` (NaNs dropped) and summarises it; `None` when nothing is left.
pub fn summarize(samples: &[f64]) -> Option<Summary> {
    let mut v: Vec<f64> = samples.iter().copied().filter(|x| !x.is_nan()).collect();
    v.sort_by(f64::total_cmp);
    Some(Summary {
        n: v.len(),
        p50: percentile_sorted(&v, 50.0)?,
        p99: percentile_sorted(&v, 99.0)?,
        max: *v.last()?,
        min: *v.first()?,
    })
}

/// Median of `samples` (nearest rank, so always one of the samples); `None` when empty.
pub fn median(samples: &[f64]) -> Option<f64> {
    summarize(samples).map(|s| s.p50)
}

/// Largest sample; `None` when empty.
pub fn max(samples: &[f64]) -> Option<f64> {
    summarize(samples).map(|s| s.max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = summarize(&v).unwrap();
        assert_eq!(
            (s.p50, s.p99, s.max, s.min, s.n),
            (50.0, 99.0, 100.0, 1.0, 100)
        );
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[]), None);
        assert_eq!(max(&[f64::NAN, 4.0, 7.0]), Some(7.0));
        assert_eq!(percentile_sorted(&[5.0], 99.0), Some(5.0));
    }

    proptest! {
        #[test]
        fn percentiles_are_ordered_samples(v in proptest::collection::vec(-1e6f64..1e6, 1..300)) {
            let s = summarize(&v).unwrap();
            prop_assert!(s.min <= s.p50 && s.p50 <= s.p99 && s.p99 <= s.max);
            prop_assert!(v.contains(&s.p50) && v.contains(&s.p99));
            let below = v.iter().filter(|x| **x <= s.p50).count();
            prop_assert!(below * 2 >= v.len());
        }
    }
}
