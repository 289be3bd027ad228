//! A byte-rate limiter shared by the tasks of one background activity (scrubbing, replication).

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Paces callers so that together they consume at most `rate` bytes per second (0 = unlimited).
/// A burst of up to `BURST` worth of time is allowed after an idle period.
#[derive(Debug)]
pub struct Throttle {
    rate: u64,
    /// When the bytes granted so far are "paid for"; shared by all callers.
    next: Mutex<Instant>,
}

const BURST: Duration = Duration::from_millis(100);

impl Throttle {
    pub fn new(rate: u64) -> Throttle {
        Throttle {
            rate,
            next: Mutex::new(Instant::now()),
        }
    }

    /// Waits until `bytes` more may be moved.
    pub async fn consume(&self, bytes: u64) {
        if self.rate == 0 || bytes == 0 {
            return;
        }
        let cost = Duration::from_secs_f64(bytes as f64 / self.rate as f64);
        let until = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let floor = now.checked_sub(BURST).unwrap_or(now);
            *next = (*next).max(floor) + cost;
            *next
        };
        if until > Instant::now() {
            tokio::time::sleep_until(until).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn paces_to_the_rate() {
        let t = Throttle::new(1000);
        let start = Instant::now();
        for _ in 0..10 {
            t.consume(500).await;
        }
        let took = start.elapsed();
        // 5000 bytes at 1000 B/s: about 5 s, minus at most the burst allowance.
        assert!(
            took >= Duration::from_millis(4800) && took <= Duration::from_millis(5100),
            "{took:?}"
        );
        let unlimited = Throttle::new(0);
        let start = Instant::now();
        unlimited.consume(1 << 40).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
