//! Mapping on every core. The core maps one item at a time and holds no threads; items map
//! independently, so here a batch is split across a pool of threads and the outcomes come back
//! in item order: the output does not depend on the number of cores. The pool's threads get the
//! main thread's stack size, so an expression that nests deeply behaves the same as when it
//! mapped on the main thread.

use std::sync::OnceLock;

use rayon::prelude::*;

use crate::core::mapping::{ItemOutcome, Mappings, Spread, spread_map};
use crate::core::model::RawItem;

/// The main thread's stack on Linux; rayon's default (2 MiB) would overflow sooner.
const STACK_BYTES: usize = 8 << 20;

/// Fewer items than this per task cost more in hand-over than they gain.
const MIN_ITEMS_PER_TASK: usize = 8;

fn pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("mapping-{i}"))
            .stack_size(STACK_BYTES)
            .build()
            .ok()
    })
    .as_ref()
}

/// Maps `items` with `mappings` on every core; the outcomes are in the items' order.
pub fn map_items(mappings: &Mappings, items: &[RawItem]) -> Vec<ItemOutcome> {
    spread_map(&EveryCore, items, |item| mappings.map_item(item))
}

/// Spreads independent jobs over every core: mapping items, and `tidemark map`'s reading and
/// writing of them. Without a pool (its threads could not start) the jobs run on this thread.
pub struct EveryCore;

impl Spread for EveryCore {
    fn each(&self, count: usize, job: &(dyn Fn(usize) + Sync)) {
        match pool() {
            Some(pool) if pool.current_num_threads() > 1 && count > MIN_ITEMS_PER_TASK => {
                pool.install(|| {
                    (0..count)
                        .into_par_iter()
                        .with_min_len(MIN_ITEMS_PER_TASK)
                        .for_each(job);
                });
            }
            _ => (0..count).for_each(job),
        }
    }

    /// `a` on a thread of the pool, `b` on the other threads and on that one once `a` is done:
    /// the pool's threads stay the only ones busy, whatever `a` and `b` spread themselves.
    fn both(&self, a: &mut (dyn FnMut() + Send), b: &mut (dyn FnMut() + Send)) {
        match pool() {
            Some(pool) if pool.current_num_threads() > 1 => {
                pool.install(|| rayon::join(a, b));
            }
            _ => {
                a();
                b();
            }
        }
    }
}
