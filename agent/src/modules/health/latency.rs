//! The latency bound of a probe (pure): the latencies of its successful probes over a window
//! (the last N, or those of a duration), their p95 (nearest rank) and whether it is above
//! `latency_p95`, which makes the check `slow` while its status stays what it is.

use std::collections::VecDeque;
use std::time::Duration;

use crate::config::{LatencyWindow, LATENCY_MIN_SAMPLES};

/// A duration window keeps at most this many samples.
pub const MAX_SAMPLES: usize = 1000;

/// The window of one check. Times are offsets from the module's start (`since_start`).
#[derive(Debug, Clone, PartialEq)]
pub struct Latencies {
    window: LatencyWindow,
    bound: Duration,
    samples: VecDeque<(Duration, Duration)>,
    /// Current verdict; kept while the window holds too few samples to judge.
    pub slow: bool,
    /// The p95 of the last judgement.
    pub p95: Option<Duration>,
}

impl Latencies {
    pub fn new(bound: Duration, window: LatencyWindow) -> Self {
        Latencies {
            window,
            bound,
            samples: VecDeque::new(),
            slow: false,
            p95: None,
        }
    }

    pub fn bound(&self) -> Duration {
        self.bound
    }

    /// Samples needed before the p95 is judged.
    fn min_samples(&self) -> usize {
        match self.window {
            LatencyWindow::Probes(n) => (n as usize).clamp(1, LATENCY_MIN_SAMPLES),
            LatencyWindow::Duration(_) => LATENCY_MIN_SAMPLES,
        }
    }

    /// Records a successful probe's `latency` at `at` and judges the window again.
    pub fn record(&mut self, at: Duration, latency: Duration) {
        self.samples.push_back((at, latency));
        let cap = match self.window {
            LatencyWindow::Probes(n) => (n as usize).clamp(1, MAX_SAMPLES),
            LatencyWindow::Duration(_) => MAX_SAMPLES,
        };
        while self.samples.len() > cap {
            self.samples.pop_front();
        }
        self.judge(at);
    }

    /// Drops samples older than a duration window at `now` and judges what is left.
    pub fn judge(&mut self, now: Duration) {
        if let LatencyWindow::Duration(d) = self.window {
            while self
                .samples
                .front()
                .is_some_and(|(t, _)| now.saturating_sub(*t) > d)
            {
                self.samples.pop_front();
            }
        }
        if self.samples.len() < self.min_samples() {
            return;
        }
        let p = p95(self.samples.iter().map(|(_, l)| *l));
        self.p95 = p;
        if let Some(p) = p {
            self.slow = p > self.bound;
        }
    }

    /// Samples in the window.
    pub fn samples(&self) -> usize {
        self.samples.len()
    }
}

/// The 95th percentile by nearest rank: the smallest sample at least 95 % of the samples are
/// at or below. `None` without samples.
pub fn p95(samples: impl Iterator<Item = Duration>) -> Option<Duration> {
    let mut v: Vec<Duration> = samples.collect();
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let rank = (v.len() * 95).div_ceil(100);
    v.get(rank.saturating_sub(1)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn nearest_rank() {
        assert_eq!(p95(std::iter::empty()), None);
        assert_eq!(p95([MS(7)].into_iter()), Some(MS(7)));
        // 20 samples: the 19th smallest.
        let twenty = (1..=20).map(MS);
        assert_eq!(p95(twenty), Some(MS(19)));
        // 100 samples: the 95th.
        assert_eq!(p95((1..=100).rev().map(MS)), Some(MS(95)));
    }

    #[test]
    fn slow_after_the_window_fills_with_slow_probes_and_back() {
        let mut l = Latencies::new(MS(250), LatencyWindow::Probes(5));
        let mut t = Duration::ZERO;
        let mut step = |l: &mut Latencies, ms: u64| {
            t += Duration::from_secs(1);
            l.record(t, MS(ms));
            l.slow
        };
        for _ in 0..4 {
            assert!(!step(&mut l, 900), "not judged before 5 samples");
        }
        assert!(step(&mut l, 10), "p95 of 5 samples is the largest");
        assert_eq!(l.p95, Some(MS(900)));
        for _ in 0..3 {
            assert!(step(&mut l, 10));
        }
        assert!(!step(&mut l, 10), "the last slow sample left the window");
        assert_eq!(l.samples(), 5);
    }

    #[test]
    fn a_duration_window_forgets_old_samples_and_keeps_its_verdict_when_thin() {
        let mut l = Latencies::new(MS(100), LatencyWindow::Duration(Duration::from_secs(10)));
        for i in 0..6 {
            l.record(Duration::from_secs(i), MS(500));
        }
        assert!(l.slow);
        // 30 s later only one fast sample is in the window: too few to judge, still slow.
        l.record(Duration::from_secs(36), MS(5));
        assert_eq!(l.samples(), 1);
        assert!(l.slow);
        for i in 37..41 {
            l.record(Duration::from_secs(i), MS(5));
        }
        assert!(!l.slow);
    }

    proptest! {
        #[test]
        fn p95_is_a_sample_with_95_percent_at_or_below(
            xs in proptest::collection::vec(0u64..10_000, 1..300),
        ) {
            let p = p95(xs.iter().copied().map(MS)).expect("samples");
            prop_assert!(xs.iter().any(|x| MS(*x) == p));
            let at_or_below = xs.iter().filter(|x| MS(**x) <= p).count();
            prop_assert!(at_or_below * 100 >= xs.len() * 95);
            let below = xs.iter().filter(|x| MS(**x) < p).count();
            prop_assert!(below * 100 < xs.len() * 95);
        }

        #[test]
        fn a_count_window_never_holds_more_than_n_and_judges_only_what_it_holds(
            n in 1u32..30,
            xs in proptest::collection::vec(0u64..1000, 0..100),
        ) {
            let mut l = Latencies::new(MS(500), LatencyWindow::Probes(n));
            for (i, x) in xs.iter().enumerate() {
                l.record(Duration::from_secs(i as u64), MS(*x));
                prop_assert!(l.samples() <= n as usize);
                let start = (i + 1).saturating_sub(n as usize);
                let window = &xs[start..=i];
                if window.len() >= (n as usize).min(LATENCY_MIN_SAMPLES) {
                    let want = p95(window.iter().copied().map(MS)).expect("p");
                    prop_assert_eq!(l.p95, Some(want));
                    prop_assert_eq!(l.slow, want > MS(500));
                }
            }
        }
    }
}
