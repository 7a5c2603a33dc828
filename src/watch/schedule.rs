//! When the daemon syncs: the interval, one queued follow-up at most, and backoff after failures.
//! Pure bookkeeping over `Instant`s so it can be tested with paused time and no config at all.

use std::time::Duration;

use tokio::time::Instant;

/// First retry after a failed sync. Long enough not to hammer a throttled API, short enough that a
/// blip (a dropped connection, a locked catalog) heals within seconds.
pub const BACKOFF_BASE: Duration = Duration::from_secs(5);
/// Retries never wait longer than this, nor longer than the resync interval.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// How a sync gets its raw items.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// List every scope from the source.
    Full,
    /// Re-map the raw items cached from the last listing (a mapping-only edit).
    Remap,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Remap => "remap",
        }
    }

    /// A full listing covers what a re-map would do, so it wins when both are queued.
    fn merge(a: Option<Mode>, b: Mode) -> Mode {
        match (a, b) {
            (Some(Mode::Full), _) | (_, Mode::Full) => Mode::Full,
            _ => Mode::Remap,
        }
    }
}

/// The wait before retry number `failures` (1 = the first retry): doubling from
/// [`BACKOFF_BASE`], capped by [`BACKOFF_MAX`] and by the resync interval.
pub fn backoff(failures: u32, interval: Duration) -> Duration {
    let cap = BACKOFF_MAX.min(interval).max(Duration::from_secs(1));
    let exp = failures.saturating_sub(1).min(16);
    BACKOFF_BASE.saturating_mul(1u32 << exp).min(cap)
}

/// Decides which sync runs next and when. Never more than one sync runs; requests that arrive
/// while one runs collapse into a single follow-up.
#[derive(Debug)]
pub struct Scheduler {
    interval: Duration,
    next_full: Instant,
    pending: Option<Mode>,
    running: bool,
    failures: u32,
    retry_at: Option<Instant>,
}

impl Scheduler {
    /// A scheduler that wants a full sync right away (the sync at start).
    pub fn new(now: Instant, interval: Duration) -> Scheduler {
        Scheduler {
            interval,
            next_full: now + interval,
            pending: Some(Mode::Full),
            running: false,
            failures: 0,
            retry_at: None,
        }
    }

    /// Queues a sync (a reload). A user's edit should not wait out a failure's backoff.
    pub fn request(&mut self, mode: Mode) {
        self.pending = Some(Mode::merge(self.pending, mode));
        self.retry_at = None;
    }

    /// A reload changed `resync.interval`: the next full sync is due that long after the last.
    pub fn set_interval(&mut self, interval: Duration) {
        if interval != self.interval {
            self.next_full = self.next_full - self.interval + interval;
            self.interval = interval;
        }
    }

    pub fn is_running(&self) -> bool {
        self.running
    }

    pub fn pending(&self) -> Option<Mode> {
        self.pending
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Queues the interval's full sync when it is due (even while a sync runs: it then follows).
    pub fn tick(&mut self, now: Instant) {
        if now >= self.next_full {
            self.pending = Some(Mode::merge(self.pending, Mode::Full));
            self.next_full = now + self.interval;
        }
    }

    /// The sync to start now, if any; the caller must then call [`Scheduler::started`].
    pub fn due(&mut self, now: Instant) -> Option<Mode> {
        self.tick(now);
        if self.running || self.retry_at.is_some_and(|at| now < at) {
            return None;
        }
        self.pending
    }

    pub fn started(&mut self, mode: Mode, now: Instant) {
        self.running = true;
        self.pending = None;
        self.retry_at = None;
        if mode == Mode::Full {
            self.next_full = now + self.interval;
        }
    }

    /// Records how a sync ended; a failure is retried (merged with anything queued) after a backoff.
    pub fn finished(&mut self, mode: Mode, ok: bool, now: Instant) {
        self.running = false;
        if ok {
            self.failures = 0;
        } else {
            self.failures += 1;
            self.pending = Some(Mode::merge(self.pending, mode));
            self.retry_at = Some(now + backoff(self.failures, self.interval));
        }
    }

    /// When the loop must wake up next to call [`Scheduler::due`] (besides events). `None` while
    /// a sync runs: nothing can start before it ends, and its end wakes the loop. An interval
    /// deadline that passes meanwhile would otherwise be a past instant that wakes the loop again
    /// and again for as long as the sync lasts; [`Scheduler::due`] queues that full sync at the
    /// end.
    pub fn next_wakeup(&self) -> Option<Instant> {
        match (self.running, self.pending, self.retry_at) {
            (true, _, _) => None,
            (false, Some(_), Some(at)) => Some(at.min(self.next_full)),
            (false, _, _) => Some(self.next_full),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[tokio::test(start_paused = true)]
    async fn a_scheduler_syncs_at_start_and_then_every_interval() {
        let start = Instant::now();
        let mut s = Scheduler::new(start, HOUR);
        assert_eq!(s.due(start), Some(Mode::Full));
        s.started(Mode::Full, start);
        s.finished(Mode::Full, true, start + Duration::from_secs(10));
        assert_eq!(s.due(start + Duration::from_secs(10)), None);
        assert_eq!(s.next_wakeup(), Some(start + HOUR));
        tokio::time::advance(HOUR).await;
        assert_eq!(s.due(Instant::now()), Some(Mode::Full));
    }

    #[tokio::test(start_paused = true)]
    async fn requests_during_a_sync_collapse_into_one_follow_up() {
        let start = Instant::now();
        let mut s = Scheduler::new(start, Duration::from_secs(60));
        s.started(Mode::Full, start);
        s.request(Mode::Remap);
        s.request(Mode::Remap);
        tokio::time::advance(Duration::from_secs(61)).await;
        // The interval passed while the sync ran: the follow-up becomes one full sync.
        assert_eq!(
            s.due(Instant::now()),
            None,
            "nothing starts while a sync runs"
        );
        s.finished(Mode::Full, true, Instant::now());
        assert_eq!(s.due(Instant::now()), Some(Mode::Full));
        s.started(Mode::Full, Instant::now());
        s.finished(Mode::Full, true, Instant::now());
        assert_eq!(s.due(Instant::now()), None, "only one follow-up was queued");
    }

    #[tokio::test(start_paused = true)]
    async fn no_deadline_wakes_the_loop_while_a_sync_outlasts_the_interval() {
        let start = Instant::now();
        let interval = Duration::from_secs(60);
        let mut s = Scheduler::new(start, interval);
        s.started(Mode::Full, start);
        tokio::time::advance(3 * interval).await;
        assert_eq!(s.due(Instant::now()), None);
        assert_eq!(s.next_wakeup(), None, "a deadline while the sync runs");
        s.finished(Mode::Full, true, Instant::now());
        assert_eq!(
            s.due(Instant::now()),
            Some(Mode::Full),
            "the interval that passed is owed"
        );
        s.started(Mode::Full, Instant::now());
        s.finished(Mode::Full, true, Instant::now());
        assert_eq!(s.next_wakeup(), Some(Instant::now() + interval));
    }

    #[tokio::test(start_paused = true)]
    async fn a_remap_request_stays_a_remap_when_nothing_else_is_queued() {
        let start = Instant::now();
        let mut s = Scheduler::new(start, HOUR);
        s.started(Mode::Full, start);
        s.finished(Mode::Full, true, start);
        s.request(Mode::Remap);
        assert_eq!(s.due(Instant::now()), Some(Mode::Remap));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_sync_is_retried_with_growing_backoff() {
        let start = Instant::now();
        let mut s = Scheduler::new(start, HOUR);
        let mut waits = Vec::new();
        for _ in 0..8 {
            let now = Instant::now();
            assert_eq!(s.due(now), Some(Mode::Full));
            s.started(Mode::Full, now);
            s.finished(Mode::Full, false, now);
            assert_eq!(s.due(now), None, "a failed sync is not retried at once");
            let wait = s.next_wakeup().expect("a retry is due") - now;
            tokio::time::advance(wait - Duration::from_millis(1)).await;
            assert_eq!(
                s.due(Instant::now()),
                None,
                "retried before its backoff ran out"
            );
            tokio::time::advance(Duration::from_millis(1)).await;
            waits.push(wait);
        }
        assert_eq!(waits[0], BACKOFF_BASE);
        assert_eq!(waits[1], BACKOFF_BASE * 2);
        assert!(waits.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(*waits.last().expect("waits"), BACKOFF_MAX);
        s.started(Mode::Full, Instant::now());
        s.finished(Mode::Full, true, Instant::now());
        assert_eq!(s.failures(), 0);
        assert_eq!(s.due(Instant::now()), None);
    }

    #[test]
    fn backoff_never_exceeds_the_interval() {
        let interval = Duration::from_secs(30);
        assert!((1..40).all(|n| backoff(n, interval) <= interval));
        assert_eq!(backoff(1, interval), BACKOFF_BASE);
    }

    #[tokio::test(start_paused = true)]
    async fn an_edit_during_backoff_is_tried_at_once() {
        let start = Instant::now();
        let mut s = Scheduler::new(start, HOUR);
        s.started(Mode::Full, start);
        s.finished(Mode::Full, false, start);
        assert_eq!(s.due(start), None);
        s.request(Mode::Remap);
        assert_eq!(
            s.due(start),
            Some(Mode::Full),
            "the failed full sync is still owed"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_shorter_interval_brings_the_next_full_sync_forward() {
        let start = Instant::now();
        let mut s = Scheduler::new(start, HOUR);
        s.started(Mode::Full, start);
        s.finished(Mode::Full, true, start);
        s.set_interval(Duration::from_secs(60));
        assert_eq!(s.next_wakeup(), Some(start + Duration::from_secs(60)));
    }
}
