//! Property tests of the alert state machine's `step` with arbitrary (flapping) input.

use super::*;
use proptest::prelude::*;

/// Runs one alert through `step` with a condition sampled every second; returns the
/// transitions as (time, state).
fn simulate(t: &Timing, holds: &[bool]) -> Vec<(i64, State)> {
    let mut view = AlertView::default();
    let mut clear = None;
    let mut out = Vec::new();
    for (i, h) in holds.iter().enumerate() {
        let now = i as i64 * 1000;
        if let Some(s) = step(&view, *h, &mut clear, t, now) {
            view.state = Some(s);
            view.since_unix_ms = now;
            if s == State::Firing {
                view.firings.push(now);
            }
            out.push((now, s));
        }
    }
    out
}

fn timing() -> impl Strategy<Value = Timing> {
    (0i64..6, 0i64..6, 1i64..30, 1u32..5).prop_map(|(f, r, w, n)| Timing {
        for_ms: f * 1000,
        resolve_after_ms: r * 1000,
        flap_window_ms: w * 1000,
        flap_max: n,
    })
}

proptest! {
    /// Whatever the input, no flap window holds more than `flap_max` firings, so receivers
    /// get at most 2 × flap_max notifications (firing + resolved) per window.
    #[test]
    fn flapping_input_never_exceeds_the_allowed_notifications(
        t in timing(),
        holds in proptest::collection::vec(any::<bool>(), 1..300),
    ) {
        let ts = simulate(&t, &holds);
        let firings: Vec<i64> = ts.iter().filter(|(_, s)| *s == State::Firing).map(|(at, _)| *at).collect();
        for (i, f) in firings.iter().enumerate() {
            let in_window = firings[..=i].iter().filter(|g| **g > f - t.flap_window_ms).count();
            prop_assert!(in_window <= t.flap_max as usize, "{in_window} firings in a window at {f}: {ts:?}");
        }
        // Notified: firing, and resolved right after firing (a cleared pending is quiet).
        let notified: Vec<i64> = ts
            .iter()
            .enumerate()
            .filter(|(i, (_, s))| {
                *s == State::Firing || (*s == State::Resolved && *i > 0 && ts[i - 1].1 == State::Firing)
            })
            .map(|(_, (at, _))| *at)
            .collect();
        for at in &notified {
            let notes = notified.iter().filter(|x| **x > at - t.flap_window_ms && *x <= at).count();
            prop_assert!(notes <= 2 * t.flap_max as usize, "{notes} notifications in a window: {ts:?}");
        }
    }

    /// A firing transition always follows at least `for` of continuous condition.
    #[test]
    fn pending_never_fires_before_for(
        t in timing(),
        holds in proptest::collection::vec(any::<bool>(), 1..300),
    ) {
        let ts = simulate(&t, &holds);
        for (at, s) in &ts {
            if *s != State::Firing { continue; }
            let tick = (*at / 1000) as usize;
            let need = (t.for_ms / 1000) as usize;
            prop_assert!(tick >= need);
            prop_assert!(holds[tick - need..=tick].iter().all(|h| *h), "fired at {at} without {} ms: {ts:?}", t.for_ms);
        }
    }

    /// Once the condition clears for good, every firing alert resolves (within the longer
    /// of resolve_after and the flap window).
    #[test]
    fn every_firing_resolves_when_the_condition_clears(
        t in timing(),
        mut holds in proptest::collection::vec(any::<bool>(), 1..200),
    ) {
        let settle = (t.resolve_after_ms.max(t.flap_window_ms) / 1000) as usize + 2;
        holds.extend(std::iter::repeat_n(false, settle));
        let ts = simulate(&t, &holds);
        if let Some((_, last)) = ts.last() {
            prop_assert_eq!(*last, State::Resolved, "{:?}", ts);
        }
    }
}
