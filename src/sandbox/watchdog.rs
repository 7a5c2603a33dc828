//! A per-item time limit for mapping evaluation. jaq cannot be interrupted, so a runaway
//! expression (`last(repeat(1))`) would otherwise hang a sync forever with no hint of why.
//! Each thread that maps items owns a slot saying which item it is on, since when, and which
//! expression it is interpreting; one watchdog thread checks the slots and, when an item has run
//! past the limit, hands the message naming the item and the expression to the ending the
//! binary supplied ([`observer`]), which ends the process with exit 1. The stuck evaluation
//! cannot be stopped any other way, and ending before anything is written guarantees that a plan
//! built from a partial mapping is never applied. `watch` maps in a child process
//! ([`worker`](super::worker)), so there only the child ends. The core learns nothing of this:
//! mappings call the [`Observer`] they were loaded with. The fast path costs one uncontended lock
//! per item and one relaxed store per interpreted expression.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crate::core::mapping::Observer;
use crate::core::model::RawItem;

/// The default time one item may take to map. Real mappings take microseconds per item even on
/// large CloudFormation templates; 5 s leaves three orders of magnitude for slow machines and
/// huge items while still turning a hang into a prompt, named failure.
pub const DEFAULT_LIMIT: Duration = Duration::from_secs(5);

/// Overrides [`DEFAULT_LIMIT`] in milliseconds (read once); for tests and unusual mappings.
pub const LIMIT_ENV: &str = "TIDEMARK_EVAL_TIMEOUT_MS";

struct Slot {
    /// Milliseconds since [`base`] plus one when the current item started; 0 when idle.
    started: AtomicU64,
    /// The id of the expression being interpreted; 0 when none.
    expr: AtomicUsize,
    /// The current item, described for the message, and its mappings' expression texts. Ending
    /// an item takes this lock, so the watchdog never reports an item that has already finished.
    item: Mutex<Current>,
}

#[derive(Default)]
struct Current {
    label: String,
    expressions: Option<Arc<[String]>>,
}

static SLOTS: Mutex<Vec<Arc<Slot>>> = Mutex::new(Vec::new());
/// How the process ends when an item runs past the limit; supplied by the binary.
static END: OnceLock<fn(&str) -> !> = OnceLock::new();

thread_local! {
    static SLOT: Arc<Slot> = {
        let slot = Arc::new(Slot {
            started: AtomicU64::new(0),
            expr: AtomicUsize::new(0),
            item: Mutex::new(Current::default()),
        });
        SLOTS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(slot.clone());
        slot
    };
}

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    u64::try_from(base().elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The limit in force: [`LIMIT_ENV`] when set to a positive number of milliseconds.
pub fn limit() -> Duration {
    static LIMIT: OnceLock<Duration> = OnceLock::new();
    *LIMIT.get_or_init(|| parse_limit(std::env::var(LIMIT_ENV).ok().as_deref()))
}

fn parse_limit(value: Option<&str>) -> Duration {
    value
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_LIMIT)
}

/// The observer that puts the time limit on mappings loaded with it. When an item overruns,
/// `end` receives the message naming it and must end the process (the first `end` given wins).
pub fn observer(end: fn(&str) -> !) -> Arc<dyn Observer> {
    END.get_or_init(|| end);
    Arc::new(Watchdog)
}

struct Watchdog;

impl Observer for Watchdog {
    fn item_started(&self, item: &RawItem, expressions: &Arc<[String]>) {
        start_watchdog();
        SLOT.with(|slot| {
            {
                let mut current = slot.item.lock().unwrap_or_else(PoisonError::into_inner);
                current.label.clear();
                crate::core::model::write_item_label(
                    &mut current.label,
                    &item.identifier,
                    &item.account,
                    &item.region,
                    &item.kind,
                );
                if !current
                    .expressions
                    .as_ref()
                    .is_some_and(|e| Arc::ptr_eq(e, expressions))
                {
                    current.expressions = Some(expressions.clone());
                }
            }
            slot.expr.store(0, Ordering::Relaxed);
            slot.started.store(now_ms() + 1, Ordering::Release);
        });
    }

    fn evaluating(&self, id: usize) {
        SLOT.with(|slot| slot.expr.store(id, Ordering::Relaxed));
    }

    fn item_finished(&self) {
        SLOT.with(|slot| {
            let _held = slot.item.lock().unwrap_or_else(PoisonError::into_inner);
            slot.started.store(0, Ordering::Release);
        });
    }
}

/// The message for an item that ran past the limit.
fn timeout_message(item: &str, expression: Option<&str>, limit: Duration) -> String {
    let what = match expression {
        Some(text) => format!("expression `{text}`"),
        None => "its mapping".to_owned(),
    };
    format!(
        "mapping {item}: {what} did not finish within {} ms; jq evaluation cannot be \
         interrupted, so mapping stopped and nothing was written (set {LIMIT_ENV} to allow longer)",
        limit.as_millis()
    )
}

fn start_watchdog() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        let limit = limit();
        let limit_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        let tick = (limit / 4).clamp(Duration::from_millis(5), Duration::from_millis(250));
        base();
        let spawned = std::thread::Builder::new()
            .name("mapping-watchdog".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(tick);
                    if let Some(message) = overdue(limit, limit_ms).into_iter().next()
                        && let Some(end) = END.get()
                    {
                        end(&message);
                    }
                }
            });
        // Without a watchdog mapping still works, only without the limit.
        if let Err(e) = spawned {
            eprintln!("warning: no mapping time limit: cannot start its thread: {e}");
        }
    });
}

/// The messages for the slots whose item has run past the limit.
fn overdue(limit: Duration, limit_ms: u64) -> Vec<String> {
    let slots: Vec<Arc<Slot>> = SLOTS.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let now = now_ms();
    let mut found = Vec::new();
    for slot in slots {
        let started = slot.started.load(Ordering::Acquire);
        if started == 0 || now.saturating_sub(started - 1) <= limit_ms {
            continue;
        }
        let current = slot.item.lock().unwrap_or_else(PoisonError::into_inner);
        // The item may have finished between the load and the lock.
        if slot.started.load(Ordering::Acquire) != started {
            continue;
        }
        let id = slot.expr.load(Ordering::Relaxed);
        let expression = id
            .checked_sub(1)
            .and_then(|i| current.expressions.as_ref()?.get(i).cloned());
        found.push(timeout_message(
            &current.label,
            expression.as_deref(),
            limit,
        ));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_five_seconds_unless_a_positive_override_is_given() {
        assert_eq!(parse_limit(None), DEFAULT_LIMIT);
        assert_eq!(parse_limit(Some("250")), Duration::from_millis(250));
        assert_eq!(parse_limit(Some("0")), DEFAULT_LIMIT);
        assert_eq!(parse_limit(Some("soon")), DEFAULT_LIMIT);
    }

    #[test]
    fn the_timeout_message_names_the_item_and_the_expression() {
        let text = timeout_message(
            "item b1 (account 1, region r, kind K)",
            Some("last(repeat(1))"),
            Duration::from_millis(200),
        );
        assert!(
            text.contains("item b1 (account 1, region r, kind K)"),
            "{text}"
        );
        assert!(text.contains("`last(repeat(1))`"), "{text}");
        assert!(text.contains("200 ms"), "{text}");
    }

    #[test]
    fn a_finished_item_is_never_reported_and_a_running_one_is() {
        let item = RawItem {
            account: "111".into(),
            account_name: None,
            region: "eu-west-1".into(),
            kind: "AWS::S3::Bucket".into(),
            identifier: "stuck-bucket".into(),
            model: None,
            properties: serde_json::json!({}),
        };
        let expressions: Arc<[String]> = vec!["last(repeat(1))".to_owned()].into();
        let watchdog = Watchdog;
        watchdog.item_started(&item, &expressions);
        watchdog.evaluating(1);
        // Pretend the item started long ago by checking against a zero limit.
        std::thread::sleep(Duration::from_millis(2));
        let found = overdue(Duration::ZERO, 0);
        assert!(
            found
                .iter()
                .any(|m| m.contains("stuck-bucket") && m.contains("`last(repeat(1))`")),
            "{found:?}"
        );
        watchdog.item_finished();
        let after = overdue(Duration::ZERO, 0);
        assert!(
            !after.iter().any(|m| m.contains("stuck-bucket")),
            "{after:?}"
        );
    }
}
