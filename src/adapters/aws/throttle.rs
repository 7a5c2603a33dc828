//! Request pacing per (account, region) and retry backoff with jitter.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// The longest wait between two requests to one (account, region), whatever rate is
/// configured: a rate below one a minute is a mistake (a listing of one region would take
/// hours), and a wait too long for a `Duration` or an `Instant` would panic.
const MAX_INTERVAL: Duration = Duration::from_secs(60);

/// A token bucket that holds one token: requests are spaced evenly at the configured rate.
/// A burst allowance would let every scope of a freshly started account fire at once, which is
/// exactly the spike that draws Cloud Control's throttling.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    interval: Duration,
    next: Mutex<Option<Instant>>,
}

impl TokenBucket {
    pub(crate) fn new(requests_per_second: f64) -> TokenBucket {
        let rate = if requests_per_second.is_finite() && requests_per_second > 0.0 {
            requests_per_second
        } else {
            1.0
        };
        TokenBucket {
            interval: Duration::try_from_secs_f64(1.0 / rate)
                .unwrap_or(MAX_INTERVAL)
                .min(MAX_INTERVAL),
            next: Mutex::new(None),
        }
    }

    /// Waits for this caller's turn. Turns are reserved in arrival order without holding the lock
    /// while sleeping.
    pub(crate) async fn acquire(&self) {
        let now = Instant::now();
        let slot = self.reserve(now);
        if slot > now {
            tokio::time::sleep_until(slot).await;
        }
    }

    /// The instant this caller may send at, reserving the one after it for the next caller.
    fn reserve(&self, now: Instant) -> Instant {
        match self.next.lock() {
            Ok(mut next) => {
                let slot = next.map_or(now, |n| n.max(now));
                *next = Some(slot + self.interval);
                slot
            }
            // A poisoned lock only means another task panicked mid-update; pacing is best effort.
            Err(_) => now,
        }
    }
}

/// Attempts for one request, the first included, before its scope fails.
pub(crate) const MAX_ATTEMPTS: u32 = 8;
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(10);

/// "Full jitter" backoff: a random wait between zero and base·2ⁿ (capped), so that the scopes
/// that were throttled together do not retry together.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1u32 << attempt.min(16))
        .min(BACKOFF_CAP);
    // At least a little wait: a zero draw would retry into the same throttle at once.
    ceiling.mul_f64(0.1 + 0.9 * random_unit())
}

/// A number in [0, 1) that differs between calls and processes; jitter needs no better.
fn random_unit() -> f64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x = STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed) ^ seed;
    // splitmix64 finaliser
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 0..20 {
            let d = backoff(attempt);
            let ceiling = BACKOFF_BASE
                .saturating_mul(1u32 << attempt.min(16))
                .min(BACKOFF_CAP);
            assert!(
                d <= ceiling && d >= ceiling.mul_f64(0.1),
                "{attempt}: {d:?}"
            );
        }
    }

    #[test]
    fn the_bucket_spaces_requests_at_its_rate() {
        let bucket = TokenBucket::new(10.0);
        let start = Instant::now();
        let slots: Vec<Duration> = (0..5).map(|_| bucket.reserve(start) - start).collect();
        let expected: Vec<Duration> = (0..5).map(|i| Duration::from_millis(100 * i)).collect();
        assert_eq!(slots, expected);
        // A caller arriving after a quiet spell goes at once.
        let later = start + Duration::from_secs(10);
        assert_eq!(bucket.reserve(later), later);
    }

    #[test]
    fn rates_too_slow_or_too_fast_for_a_duration_are_clamped() {
        for rate in [1e-300, 1e-19, f64::MIN_POSITIVE / 4.0] {
            assert_eq!(TokenBucket::new(rate).interval, MAX_INTERVAL, "{rate:e}");
        }
        assert_eq!(TokenBucket::new(f64::MAX).interval, Duration::ZERO);
    }
}
