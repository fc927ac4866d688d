//! Retry delays: exponential backoff to a cap, with "equal jitter".
//!
//! One type for every retry loop (the consumer runtime's nacks, the delivery worker's failed
//! attempts), so they grow, cap and spread the same way.
//!
//! The jitter is "equal jitter" measured down from the ceiling: attempt `n` waits between half
//! and all of `min(max, base · 2^(n−1))`. Half the wait is kept because a retry that comes at
//! once (as full jitter allows) hits a dependency that has just failed again and, for the
//! embedded bus, holds the whole group in a hot loop; the other half is spread so that many
//! events failing together (a database restart) do not all come back in the same instant.
//! Measured down rather than up, a jitter of zero is the plain exponential delay and no delay
//! ever exceeds `max`.
//!
//! This module draws no random numbers: the caller passes the jitter fraction (a random draw
//! in production, a constant in tests), as it passes `now` elsewhere in this crate.

use std::time::Duration;

/// Exponential backoff from `base`, doubling per attempt, never above `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling after the first failed attempt.
    pub base: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Backoff {
    /// The delay's upper bound after failed attempt number `attempt` (1-based; 0 counts as 1):
    /// `base · 2^(attempt−1)`, at most `max`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.base.saturating_mul(1u32 << doublings).min(self.max)
    }

    /// The delay after failed attempt number `attempt`: the [`ceiling`](Backoff::ceiling) less
    /// `jitter` times half of it. `jitter` is a fraction in `[0, 1)` (values outside, NaN
    /// included, are clamped), so the delay lies in `(ceiling / 2, ceiling]`.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let ceiling = self.ceiling(attempt);
        let jitter = if jitter.is_nan() { 0.0 } else { jitter.clamp(0.0, 1.0) };
        ceiling.saturating_sub((ceiling / 2).mul_f64(jitter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff { base: Duration::from_millis(100), max: Duration::from_secs(1) };

    fn ms(d: Duration) -> u128 {
        d.as_millis()
    }

    #[test]
    fn the_ceiling_doubles_from_the_base_to_the_cap() {
        let got: Vec<_> = (1..=6).map(|a| ms(B.ceiling(a))).collect();
        assert_eq!(got, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(B.ceiling(0), B.base, "attempt 0 counts as the first");
        assert_eq!(B.ceiling(32), B.max, "large attempts stay capped");
        assert_eq!(B.ceiling(u32::MAX), B.max, "no overflow");
        let huge = Backoff { base: Duration::MAX, max: Duration::MAX };
        assert_eq!(huge.ceiling(5), Duration::MAX, "saturates instead of overflowing");
    }

    #[test]
    fn zero_jitter_is_the_ceiling() {
        for attempt in 0..40 {
            assert_eq!(B.delay(attempt, 0.0), B.ceiling(attempt), "attempt {attempt}");
        }
    }

    #[test]
    fn jitter_takes_off_at_most_half() {
        assert_eq!(ms(B.delay(1, 0.5)), 75);
        assert_eq!(ms(B.delay(3, 0.25)), 350);
        assert_eq!(ms(B.delay(9, 0.5)), 750, "jitter applies below the cap too");
        // A fixed sequence of fractions across [0, 1), as a seeded generator would give.
        let fractions = (0..1000).map(|i| f64::from(i) / 1000.0);
        for (i, jitter) in fractions.enumerate() {
            let attempt = u32::try_from(i % 12).expect("small") + 1;
            let (delay, ceiling) = (B.delay(attempt, jitter), B.ceiling(attempt));
            assert!(delay <= ceiling, "never above the ceiling: {delay:?} > {ceiling:?}");
            assert!(delay > ceiling / 2, "more than half of it: {delay:?} vs {ceiling:?}");
            assert!(delay <= B.max, "never above the cap");
        }
    }

    #[test]
    fn jitter_spreads_and_grows_with_the_attempt() {
        assert!(B.delay(2, 0.9) < B.delay(2, 0.1), "a larger fraction waits less");
        // Below the cap, the shortest wait of the next attempt is the longest of this one.
        for attempt in 1..4 {
            assert_eq!(B.delay(attempt + 1, 1.0), B.delay(attempt, 0.0), "attempt {attempt}");
        }
    }

    #[test]
    fn fractions_outside_the_range_are_clamped() {
        assert_eq!(B.delay(2, -3.0), B.ceiling(2));
        assert_eq!(B.delay(2, f64::NAN), B.ceiling(2));
        assert_eq!(B.delay(2, 7.0), B.ceiling(2) / 2);
    }
}
