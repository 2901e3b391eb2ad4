//! Capped exponential backoff with jitter, shared by the gateway reconnects, result-push
//! retries and integration HTTP retries.

use std::time::Duration;

/// Delays `initial, 2·initial, 4·initial, …` capped at `max`, each drawn uniformly from the
/// upper half of its step ("equal jitter"), so many clients that failed together do not retry
/// together and no delay is ever below half its step.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A fresh backoff.
    #[must_use]
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial: initial.max(Duration::from_millis(1)),
            max: max.max(initial),
            attempt: 0,
        }
    }

    /// The step (cap of the next delay) without jitter.
    #[must_use]
    pub fn step(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(30)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The next delay; each call moves one step up.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.step();
        self.attempt = self.attempt.saturating_add(1);
        let half = step / 2;
        let spread = u64::try_from((step - half).as_millis()).unwrap_or(u64::MAX);
        let jitter = if spread == 0 {
            0
        } else {
            rand::random::<u64>() % (spread + 1)
        };
        half + Duration::from_millis(jitter)
    }

    /// Back to the first step (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Failed attempts since the last reset.
    #[must_use]
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_stay_in_the_upper_half_of_each_step() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1_000));
        let steps = [100, 200, 400, 800, 1_000, 1_000];
        for step in steps {
            let d = b.next_delay();
            let step = Duration::from_millis(step);
            assert!(d >= step / 2 && d <= step, "{d:?} for step {step:?}");
        }
        b.reset();
        assert_eq!(b.step(), Duration::from_millis(100));
    }

    #[test]
    fn many_attempts_never_overflow() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        for _ in 0..200 {
            assert!(b.next_delay() <= Duration::from_secs(60));
        }
    }
}
