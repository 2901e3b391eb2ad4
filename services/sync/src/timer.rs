//! The scheduler's notion of time, injectable so interval tests move time by hand instead of
//! sleeping. Source loops, the heartbeat, the config poll and circuit-breaker cool-downs all
//! read it; network timeouts and retry backoffs deliberately do not (they use real time, so a
//! paused test clock never fires them early).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::watch;

/// Monotonic time since the timer's start, and sleeping until a point of it.
pub trait Timer: Send + Sync + fmt::Debug {
    /// Time elapsed since the timer started.
    fn now(&self) -> Duration;
    /// Completes once [`Timer::now`] has reached `deadline`.
    fn sleep_until(&self, deadline: Duration) -> BoxFuture<'static, ()>;
}

/// Shared timer handle.
pub type SharedTimer = Arc<dyn Timer>;

/// Real time (tokio's clock, so `tokio::time::pause` also applies).
#[derive(Debug, Clone, Copy)]
pub struct TokioTimer {
    start: tokio::time::Instant,
}

impl TokioTimer {
    /// Starts now.
    #[must_use]
    pub fn new() -> Self {
        Self {
            start: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioTimer {
    fn default() -> Self {
        Self::new()
    }
}

impl Timer for TokioTimer {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn sleep_until(&self, deadline: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep_until(self.start + deadline))
    }
}

/// Time that moves only when told to (tests): sleepers wake when [`ManualTimer::advance`]
/// passes their deadline.
#[derive(Clone)]
pub struct ManualTimer {
    now: Arc<watch::Sender<Duration>>,
}

impl ManualTimer {
    /// Starts at zero.
    #[must_use]
    pub fn new() -> Self {
        Self {
            now: Arc::new(watch::Sender::new(Duration::ZERO)),
        }
    }

    /// Moves time forward by `by`, waking every sleeper whose deadline has passed.
    pub fn advance(&self, by: Duration) {
        self.now.send_modify(|now| *now += by);
    }
}

impl Default for ManualTimer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ManualTimer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualTimer")
            .field("now", &*self.now.borrow())
            .finish()
    }
}

impl Timer for ManualTimer {
    fn now(&self) -> Duration {
        *self.now.borrow()
    }

    fn sleep_until(&self, deadline: Duration) -> BoxFuture<'static, ()> {
        let mut rx = self.now.subscribe();
        // Holding the sender keeps `changed` from failing while the sleeper waits.
        let keep = self.now.clone();
        Box::pin(async move {
            let _keep = keep;
            while *rx.borrow_and_update() < deadline {
                if rx.changed().await.is_err() {
                    futures::future::pending::<()>().await;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_sleepers_wake_only_when_time_passes_their_deadline() {
        let t = ManualTimer::new();
        let mut early = tokio::spawn(t.sleep_until(Duration::from_secs(60)));
        t.advance(Duration::from_secs(59));
        tokio::task::yield_now().await;
        assert!(futures::poll!(&mut early).is_pending());
        t.advance(Duration::from_secs(1));
        early.await.ok();
        assert_eq!(t.now(), Duration::from_secs(60));
        // A deadline in the past completes at once.
        t.sleep_until(Duration::from_secs(1)).await;
    }
}
