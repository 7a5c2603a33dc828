//! Hot reload: what a new config changes, file system events on the config and mapping files, and
//! the debounce that turns a burst of events (an editor's save, a ConfigMap swap) into one reload.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::config::Config;

/// What a successfully loaded config changes compared with the running one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Same files, same contents: nothing to do.
    Unchanged,
    /// `integration`, `catalog` or `shard` changed: only a restart may change the owner or the catalog.
    NeedsRestart { sections: Vec<&'static str> },
    /// Everything else may change while running.
    Apply {
        source: bool,
        mappings: bool,
        /// `resync` or `watch` (or only formatting and comments) changed.
        settings: bool,
    },
}

/// Compares section hashes; pure so it is tested without files.
pub fn classify(running: &Config, loaded: &Config) -> Change {
    if running.hash == loaded.hash {
        return Change::Unchanged;
    }
    let (old, new) = (&running.section_hashes, &loaded.section_hashes);
    let mut sections = Vec::new();
    if old.integration != new.integration {
        sections.push("integration");
    }
    if old.catalog != new.catalog {
        sections.push("catalog");
    }
    // A replica that changed its share while running would hand accounts over without the
    // others changing theirs: shards change only by restarting every replica (see README).
    if running.shard_setting != loaded.shard_setting {
        sections.push("shard");
    }
    if !sections.is_empty() {
        return Change::NeedsRestart { sections };
    }
    Change::Apply {
        source: old.source != new.source,
        mappings: old.mappings != new.mappings,
        settings: running.resync_interval != loaded.resync_interval
            || running.watch_cache_limit_mib != loaded.watch_cache_limit_mib,
    }
}

/// Forwards one reload signal after `delay` has passed with no new event. Ends when `events`
/// closes. A reload already waiting in `reloads` absorbs the next one: it reads the files afresh.
pub async fn debounce(
    mut events: mpsc::UnboundedReceiver<()>,
    reloads: mpsc::Sender<()>,
    delay: Duration,
) {
    while events.recv().await.is_some() {
        loop {
            match tokio::time::timeout(delay, events.recv()).await {
                Ok(Some(())) => continue,
                Ok(None) => {
                    let _ = reloads.try_send(());
                    return;
                }
                Err(_) => break,
            }
        }
        if reloads.is_closed() {
            return;
        }
        let _ = reloads.try_send(());
    }
}

/// The paths a config names, and the directories watched to see them change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchSet {
    /// The config file and every mapping file and folder, made absolute: `notify` reports events
    /// under the absolute form of a relative watch (the default `-c tidemark.yaml`), so relative
    /// paths here would never match one.
    pub paths: BTreeSet<PathBuf>,
    /// Their parent directories, and the named folders themselves. Parents are watched rather
    /// than the files, because editors and Kubernetes replace files by rename: a watch on the old
    /// inode would go quiet.
    pub dirs: BTreeSet<PathBuf>,
}

impl WatchSet {
    pub fn new(paths: &[PathBuf]) -> WatchSet {
        let mut set = WatchSet::default();
        for path in paths {
            // `absolute` fails only for an empty path or when the working directory is gone;
            // then the path as named is the best there is.
            let path = std::path::absolute(path).unwrap_or_else(|_| path.clone());
            if let Some(parent) = path.parent() {
                set.dirs.insert(parent.to_path_buf());
            }
            if path.is_dir() {
                set.dirs.insert(path.clone());
            }
            set.paths.insert(path);
        }
        set
    }

    /// Whether an event on `path` may change the config: the path itself, a file in a watched
    /// folder, an ancestor of a watched path, or a Kubernetes `..data`-style swap entry.
    pub fn is_relevant(&self, path: &Path) -> bool {
        let hidden_swap = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(".."));
        let blueprints = path.file_name().is_some_and(|n| n == "blueprints.json")
            && path.parent().is_some_and(|p| self.dirs.contains(p));
        hidden_swap
            || blueprints
            || self.paths.iter().any(|w| {
                path == w
                    || path.parent() == Some(w.as_path())
                    || (w.starts_with(path) && path != Path::new(""))
            })
    }
}

/// Watches a [`WatchSet`] with `notify` and sends `()` for every relevant event.
pub struct FsWatcher {
    watcher: RecommendedWatcher,
    set: Arc<Mutex<WatchSet>>,
    armed: BTreeSet<PathBuf>,
}

impl FsWatcher {
    pub fn new(events: mpsc::UnboundedSender<()>) -> notify::Result<FsWatcher> {
        let set = Arc::new(Mutex::new(WatchSet::default()));
        let filter = Arc::clone(&set);
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let Ok(event) = res else {
                // An overflowed or failed watch may have lost an event: reload to be safe.
                let _ = events.send(());
                return;
            };
            if matches!(event.kind, EventKind::Access(_)) {
                return;
            }
            let set = filter.lock().unwrap_or_else(PoisonError::into_inner);
            if event.paths.iter().any(|p| set.is_relevant(p)) {
                let _ = events.send(());
            }
        })?;
        Ok(FsWatcher {
            watcher,
            set,
            armed: BTreeSet::new(),
        })
    }

    /// Watches `set`'s directories afresh. Called after every reload, so folders that were
    /// replaced (a new inode at the same path) or created since are watched again. Directories
    /// that stay in the set are watched again without being unwatched first, so no event in them
    /// is lost while the set changes. Returns the directories that could not be watched (they do
    /// not exist yet, …).
    pub fn arm(&mut self, set: WatchSet) -> Vec<(PathBuf, notify::Error)> {
        let dirs = set.dirs.clone();
        // The new filter first: an event in a newly watched folder must already count.
        *self.set.lock().unwrap_or_else(PoisonError::into_inner) = set;
        for dir in std::mem::take(&mut self.armed) {
            if !dirs.contains(&dir) {
                let _ = self.watcher.unwatch(&dir);
            }
        }
        let mut failed = Vec::new();
        for dir in &dirs {
            match self.watcher.watch(dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.armed.insert(dir.clone());
                }
                Err(e) => failed.push((dir.clone(), e)),
            }
        }
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_events_becomes_one_reload_after_the_quiet_period() {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (reload_tx, mut reload_rx) = mpsc::channel(1);
        let delay = Duration::from_millis(500);
        tokio::spawn(debounce(events_rx, reload_tx, delay));
        for _ in 0..5 {
            events_tx.send(()).expect("send");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(
            reload_rx.try_recv().is_err(),
            "reloaded while events kept coming"
        );
        tokio::time::sleep(Duration::from_millis(301)).await;
        assert_eq!(reload_rx.try_recv(), Ok(()));
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(reload_rx.try_recv().is_err(), "one burst gave two reloads");
    }

    #[tokio::test(start_paused = true)]
    async fn separate_bursts_give_separate_reloads() {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (reload_tx, mut reload_rx) = mpsc::channel(1);
        tokio::spawn(debounce(events_rx, reload_tx, Duration::from_millis(100)));
        events_tx.send(()).expect("send");
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(reload_rx.try_recv(), Ok(()));
        events_tx.send(()).expect("send");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(reload_rx.try_recv().is_err());
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(reload_rx.try_recv(), Ok(()));
    }

    #[test]
    fn events_on_named_files_folders_and_configmap_swaps_are_relevant() {
        let set = WatchSet::new(&[
            PathBuf::from("/cfg/tidemark.yaml"),
            PathBuf::from("/cfg/mappings/queues.yaml"),
            PathBuf::from("/maps"),
        ]);
        assert!(set.dirs.contains(Path::new("/cfg")));
        assert!(set.dirs.contains(Path::new("/cfg/mappings")));
        assert!(set.is_relevant(Path::new("/cfg/tidemark.yaml")));
        assert!(set.is_relevant(Path::new("/cfg/mappings/queues.yaml")));
        assert!(
            set.is_relevant(Path::new("/maps/new.yaml")),
            "a file created in a watched folder"
        );
        assert!(
            set.is_relevant(Path::new("/cfg/..data")),
            "a ConfigMap symlink swap"
        );
        assert!(
            set.is_relevant(Path::new("/cfg/mappings")),
            "a replaced folder"
        );
        assert!(set.is_relevant(Path::new("/cfg/mappings/blueprints.json")));
        assert!(!set.is_relevant(Path::new("/cfg/catalog.db-journal")));
        assert!(!set.is_relevant(Path::new("/cfg/mappings/other.yaml")));
    }

    #[test]
    fn relative_paths_match_the_absolute_paths_events_carry() {
        let set = WatchSet::new(&[
            PathBuf::from("tidemark.yaml"),
            PathBuf::from("mappings/queues.yaml"),
        ]);
        let cwd = std::env::current_dir().expect("cwd");
        assert!(set.dirs.contains(&cwd));
        assert!(set.dirs.contains(&cwd.join("mappings")));
        assert!(set.is_relevant(&cwd.join("tidemark.yaml")));
        assert!(set.is_relevant(&cwd.join("mappings/queues.yaml")));
        assert!(set.is_relevant(&cwd.join("mappings/blueprints.json")));
        assert!(!set.is_relevant(&cwd.join("mappings/other.yaml")));
    }
}
