//! Mapping in a child process, for the daemon. jaq cannot be interrupted, so in one-shot commands
//! the [`watchdog`](super::watchdog) ends the whole process when an item runs past the limit.
//! A daemon must survive that: `tidemark watch` maps in a child (`tidemark __map-worker`) whose
//! watchdog ends only the child. The parent then reports the item and expression the child
//! named, rejects the mappings that looped (or fails the sync) and keeps serving; the next batch
//! starts a fresh child.
//!
//! The protocol is JSON lines over the child's standard streams: the first line sent is a
//! [`Header`] with the mapping files, then one [`RawItem`] per line; the child answers each item
//! with one [`ItemOutcome`] line, in order. A child lives as long as its [`Worker`], so the
//! mappings are compiled once, not once per sync.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use serde_json::{Map, Value as Json};

use crate::core::mapping::{ItemOutcome, LoadOptions, MappedEntity, MappingSource, Mappings};
use crate::core::model::{Entity, RawItem, WriteOptions};
use crate::sandbox::watchdog;

/// The hidden subcommand that runs [`serve`].
pub const SUBCOMMAND: &str = "__map-worker";

/// How much of the child's standard error is kept for the message (the end of it).
const STDERR_KEPT: usize = 8 * 1024;

/// The first line the child reads.
#[derive(Serialize, Deserialize)]
struct Header {
    sources: Vec<(String, String)>,
    hidden_env: Vec<String>,
}

/// An [`ItemOutcome`] as it crosses the pipe. An entity field the mapping does not define is
/// absent and one it sets to null is `null`; [`Entity`]'s own reading turns both into `None`,
/// which would lose the difference merges depend on.
#[derive(Deserialize)]
struct WireOutcome {
    entities: Vec<WireMapped>,
    warnings: Vec<String>,
    errors: Vec<String>,
}

#[derive(Deserialize)]
struct WireMapped {
    entity: WireEntity,
    write: WriteOptions,
}

#[derive(Deserialize)]
struct WireEntity {
    identifier: String,
    blueprint: String,
    #[serde(default, deserialize_with = "present")]
    title: Option<Json>,
    #[serde(default, deserialize_with = "present")]
    icon: Option<Json>,
    #[serde(default, deserialize_with = "present")]
    team: Option<Json>,
    properties: Option<Map<String, Json>>,
    relations: Option<Map<String, Json>>,
}

/// A field that is there, even as `null`, is `Some`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Json>, D::Error> {
    Json::deserialize(d).map(Some)
}

impl From<WireOutcome> for ItemOutcome {
    fn from(wire: WireOutcome) -> ItemOutcome {
        ItemOutcome {
            entities: wire
                .entities
                .into_iter()
                .map(|m| MappedEntity {
                    entity: Entity {
                        identifier: m.entity.identifier,
                        blueprint: m.entity.blueprint,
                        title: m.entity.title,
                        icon: m.entity.icon,
                        team: m.entity.team,
                        properties: m.entity.properties,
                        relations: m.entity.relations,
                    },
                    write: m.write,
                })
                .collect(),
            warnings: wire.warnings,
            errors: wire.errors,
        }
    }
}

/// Why mapping in the child failed. The message names the item and expression when the child's
/// time limit ended it.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("cannot start the mapping worker {exe}: {source}")]
    Spawn { exe: String, source: io::Error },
    #[error("{0}")]
    Stopped(String),
}

/// Most items the child maps at once (those already sent when it reads).
const BATCH_ITEMS: usize = 256;

/// The child's side: compiles the header's mappings, then maps every item line until end of
/// input. `base` gives the environment and the observer (the watchdog, which ends the child on a
/// runaway item, with the item and expression on standard error); the header adds what to hide.
pub fn serve(input: impl Read, output: impl Write, base: LoadOptions) -> Result<(), String> {
    let mut input = BufReader::new(input);
    let mut output = io::BufWriter::new(output);
    let mut line = String::new();
    input
        .read_line(&mut line)
        .map_err(|e| format!("reading the header: {e}"))?;
    let header: Header =
        serde_json::from_str(&line).map_err(|e| format!("the header is not valid: {e}"))?;
    let sources: Vec<MappingSource> = header
        .sources
        .into_iter()
        .map(|(name, text)| MappingSource { name, text })
        .collect();
    let options = LoadOptions {
        hidden_env: header.hidden_env,
        ..base
    };
    let (mappings, _warnings) = Mappings::load(&sources, &options).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        lines.join("\n")
    })?;
    // A function that calls itself without end overflows the stack, and the parent names the
    // item by counting answers: such mappings map one item at a time. The others map the items
    // already sent in batches on every core, answers still in item order.
    let batch_limit = if mappings.defines_functions() {
        1
    } else {
        BATCH_ITEMS
    };
    let mut batch: Vec<RawItem> = Vec::new();
    loop {
        batch.clear();
        loop {
            line.clear();
            let read = input
                .read_line(&mut line)
                .map_err(|e| format!("reading items: {e}"))?;
            if read == 0 {
                break;
            }
            let item: RawItem =
                serde_json::from_str(&line).map_err(|e| format!("an item is not valid: {e}"))?;
            batch.push(item);
            if batch.len() >= batch_limit || input.buffer().is_empty() {
                break;
            }
        }
        if batch.is_empty() {
            break;
        }
        for outcome in crate::parallel::map_items(&mappings, &batch) {
            serde_json::to_writer(&mut output, &outcome)
                .map_err(|e| format!("writing outcomes: {e}"))?;
            // Each answer goes out at once: a stack overflow aborts this process and would
            // lose buffered answers, and the parent counts them to name the item.
            output
                .write_all(b"\n")
                .and_then(|()| output.flush())
                .map_err(|e| format!("writing outcomes: {e}"))?;
        }
    }
    output.flush().map_err(|e| format!("writing outcomes: {e}"))
}

/// The parent's handle on a child for one set of compiled mappings; started on first use and
/// again after a failure. Dropping it ends the child.
pub struct Worker {
    exe: PathBuf,
    header: String,
    /// Variables that hold secrets, kept out of the child's environment.
    hidden_env: Vec<String>,
    child: Option<Running>,
    process: Arc<Mutex<Process>>,
}

/// The child process itself, apart from its pipes, so a [`Killer`] can end it while the task
/// mapping with the worker is blocked writing to or reading from those pipes.
#[derive(Default)]
struct Process {
    child: Option<Child>,
    /// A [`Killer`] fired: no child is started any more.
    killed: bool,
}

/// Ends a [`Worker`]'s child from outside the task mapping with it (shutdown). A batch waiting
/// on the child then fails at once instead of after the items still to map, and the worker
/// starts no new child.
#[derive(Clone)]
pub struct Killer(Arc<Mutex<Process>>);

impl Killer {
    pub fn kill(&self) {
        kill(&self.0);
    }
}

fn kill(process: &Mutex<Process>) {
    let mut process = process.lock().unwrap_or_else(PoisonError::into_inner);
    process.killed = true;
    if let Some(child) = process.child.as_mut() {
        // The worker that owns the child reaps it when its pipes close.
        let _ = child.kill();
    }
}

/// The children of a set of workers (a daemon's), for a process about to exit without dropping
/// its workers (a second shutdown signal): a child in the middle of a batch would otherwise go
/// on mapping the items left in its pipe. It holds the workers weakly, so a dropped worker
/// leaves it.
#[derive(Clone, Default)]
pub struct Children(Arc<Mutex<Vec<Weak<Mutex<Process>>>>>);

impl std::fmt::Debug for Children {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Children").finish_non_exhaustive()
    }
}

impl Children {
    /// Adds the worker `killer` ends.
    pub fn add(&self, killer: &Killer) {
        let mut processes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        processes.retain(|p| p.strong_count() > 0);
        processes.push(Arc::downgrade(&killer.0));
    }

    /// Ends the child of every worker still alive; none of them starts another.
    pub fn kill_all(&self) {
        let processes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        for process in processes.iter().filter_map(Weak::upgrade) {
            kill(&process);
        }
    }
}

struct Running {
    stdin: ChildStdin,
    outcomes: Receiver<Result<ItemOutcome, String>>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Worker {
    /// A worker for `mappings`, run as `exe __map-worker`.
    pub fn new(exe: PathBuf, mappings: &Mappings) -> Worker {
        let header = Header {
            sources: mappings
                .sources()
                .iter()
                .map(|s| (s.name.clone(), s.text.clone()))
                .collect(),
            hidden_env: mappings.options.hidden_env.clone(),
        };
        Worker {
            exe,
            // Strings and a list of strings always serialise.
            header: serde_json::to_string(&header).unwrap_or_default(),
            hidden_env: header.hidden_env,
            child: None,
            process: Arc::default(),
        }
    }

    /// A handle that ends this worker's child from elsewhere.
    pub fn killer(&self) -> Killer {
        Killer(Arc::clone(&self.process))
    }

    fn process(&self) -> std::sync::MutexGuard<'_, Process> {
        self.process.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Ends and reaps the child, if there is one; `None` when there was none.
    fn end_child(&mut self) -> Option<Option<std::process::ExitStatus>> {
        let running = self.child.take();
        // Taken out first, so a killer never waits for the lock while the child is reaped.
        let child = self.process().child.take();
        drop(running);
        let mut child = child?;
        let _ = child.kill();
        Some(child.wait().ok())
    }

    /// Maps `items` in the child, one outcome per item in order.
    pub fn map_items(&mut self, items: &[RawItem]) -> Result<Vec<ItemOutcome>, WorkerError> {
        let mut batch = self.batch();
        for item in items {
            batch.send(item);
        }
        batch.finish(|i| items.get(i).map_or("an item".to_owned(), RawItem::label))
    }

    /// Starts a batch of items; its outcomes come back in order from [`Batch::finish`].
    pub fn batch(&mut self) -> Batch<'_> {
        let error = match self.child {
            Some(_) => None,
            None => self.spawn().err(),
        };
        Batch {
            worker: self,
            sent: 0,
            error,
            write_error: None,
            line: Vec::new(),
            answered: false,
        }
    }

    fn spawn(&mut self) -> Result<(), WorkerError> {
        if self.process().killed {
            return Err(WorkerError::Stopped(
                "the mapping worker was stopped for shutdown".into(),
            ));
        }
        let spawn_error = |source| WorkerError::Spawn {
            exe: self.exe.display().to_string(),
            source,
        };
        let mut command = Command::new(&self.exe);
        // The child needs no credential; jq would not see these anyway.
        for name in &self.hidden_env {
            command.env_remove(name);
        }
        let mut child = command
            .arg(SUBCOMMAND)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_error)?;
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(spawn_error(io::Error::other("no pipes to the child")));
        };
        let (tx, outcomes) = mpsc::channel();
        // Both output streams are drained all the time, so the child never blocks writing and
        // writes to its input only wait while it is mapping.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let outcome = line.map_err(|e| e.to_string()).and_then(|l| {
                    serde_json::from_str::<WireOutcome>(&l)
                        .map(ItemOutcome::from)
                        .map_err(|e| e.to_string())
                });
                if tx.send(outcome).is_err() {
                    break;
                }
            }
        });
        let kept = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&kept);
        std::thread::spawn(move || {
            let mut stderr = stderr;
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                let mut kept = sink.lock().unwrap_or_else(PoisonError::into_inner);
                kept.extend_from_slice(&chunk[..n]);
                let excess = kept.len().saturating_sub(STDERR_KEPT);
                kept.drain(..excess);
            }
        });
        let header = format!("{}\n", self.header);
        if let Err(e) = stdin.write_all(header.as_bytes()) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(spawn_error(e));
        }
        let mut process = self.process();
        if process.killed {
            // A killer fired while the child started.
            let _ = child.kill();
            let _ = child.wait();
            return Err(WorkerError::Stopped(
                "the mapping worker was stopped for shutdown".into(),
            ));
        }
        process.child = Some(child);
        drop(process);
        self.child = Some(Running {
            stdin,
            outcomes,
            stderr: kept,
        });
        Ok(())
    }

    /// Ends the child after a failure and says why it stopped, preferring its own words (the
    /// watchdog names the item and the expression).
    fn stop(&mut self, fallback: String) -> WorkerError {
        let Some(stderr) = self.child.as_ref().map(|r| Arc::clone(&r.stderr)) else {
            return WorkerError::Stopped(fallback);
        };
        let status = self.end_child().flatten();
        // The stderr thread ends with the child; give it a moment to take the last words.
        for _ in 0..50 {
            if Arc::strong_count(&stderr) == 1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let kept = stderr.lock().unwrap_or_else(PoisonError::into_inner);
        let text = String::from_utf8_lossy(&kept);
        let said: Vec<&str> = text
            .lines()
            .map(|l| l.trim().trim_start_matches("error: "))
            .filter(|l| !l.is_empty())
            .collect();
        let mut message = if said.is_empty() {
            fallback
        } else {
            said.join("; ")
        };
        if let Some(status) = status.filter(|s| !s.success()) {
            message.push_str(&format!(" (mapping worker {status})"));
        }
        WorkerError::Stopped(message)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.end_child();
    }
}

/// Items sent to the child, awaiting their outcomes.
pub struct Batch<'w> {
    worker: &'w mut Worker,
    sent: usize,
    /// The batch could not start (no child).
    error: Option<WorkerError>,
    /// Sending failed: the child stopped reading, most likely because it died. Its answers so far
    /// are still read, to tell which item it died on.
    write_error: Option<String>,
    line: Vec<u8>,
    /// Every sent item's outcome was read.
    answered: bool,
}

impl Batch<'_> {
    /// Sends one item. After a failure further items are dropped; [`finish`](Self::finish)
    /// reports the failure.
    pub fn send(&mut self, item: &RawItem) {
        if self.error.is_some() || self.write_error.is_some() {
            return;
        }
        let Some(running) = self.worker.child.as_mut() else {
            return;
        };
        self.line.clear();
        let written = serde_json::to_writer(&mut self.line, item)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                self.line.push(b'\n');
                running
                    .stdin
                    .write_all(&self.line)
                    .map_err(|e| e.to_string())
            });
        match written {
            Ok(()) => self.sent += 1,
            Err(e) => self.write_error = Some(e),
        }
    }

    /// Waits for every sent item's outcome, in the order sent. An item is given the evaluation
    /// limit twice over (the child's own watchdog fires at once) before the child is presumed
    /// stuck and ended. When the child stops without naming the item it was on (the watchdog's
    /// words hold "mapping item"), the message names it with `describe(its index in the
    /// batch)`.
    pub fn finish(
        mut self,
        describe: impl Fn(usize) -> String,
    ) -> Result<Vec<ItemOutcome>, WorkerError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let Some(running) = self.worker.child.as_mut() else {
            return Err(WorkerError::Stopped(
                "the mapping worker is not running".into(),
            ));
        };
        let write_error = self
            .write_error
            .take()
            .or_else(|| running.stdin.flush().err().map(|e| e.to_string()))
            .map(|e| format!("the mapping worker stopped reading items: {e}"));
        let patience = watchdog::limit() * 2 + Duration::from_secs(5);
        let mut outcomes = Vec::with_capacity(self.sent);
        let failure = loop {
            if outcomes.len() == self.sent {
                match write_error {
                    Some(e) => break e,
                    None => {
                        self.answered = true;
                        return Ok(outcomes);
                    }
                }
            }
            match running.outcomes.recv_timeout(patience) {
                Ok(Ok(outcome)) => outcomes.push(outcome),
                Ok(Err(e)) => break format!("the mapping worker answered badly: {e}"),
                Err(RecvTimeoutError::Disconnected) => {
                    break write_error
                        .unwrap_or_else(|| "the mapping worker ended unexpectedly".to_owned());
                }
                Err(RecvTimeoutError::Timeout) => {
                    break format!(
                        "the mapping worker gave no answer within {} ms",
                        patience.as_millis()
                    );
                }
            }
        };
        Err(match self.worker.stop(failure) {
            WorkerError::Stopped(message) if !message.contains("mapping item ") => {
                WorkerError::Stopped(crash_message(&describe(outcomes.len()), &message))
            }
            other => other,
        })
    }
}

/// The message for a child that stopped on `item` without naming it in its own words (the
/// watchdog's words hold "mapping item"). A stack overflow aborts the child; in jq that is a
/// function calling itself without end or a value nested millions deep, so the message says so.
fn crash_message(item: &str, message: &str) -> String {
    let hint = if message.contains("overflowed its stack") {
        "; a jq function that calls itself without end, or a value nested millions deep, \
         overflows the stack, so mapping stopped and nothing was written"
    } else {
        ""
    };
    format!("mapping {item}: {message}{hint}")
}

impl Drop for Batch<'_> {
    /// A batch given up before its answers were read (a sync cancelled at shutdown) leaves them in
    /// the pipe, where the next batch would take them for its own; only a fresh child is safe.
    fn drop(&mut self) {
        if !self.answered {
            self.worker.end_child();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str) -> RawItem {
        RawItem {
            account: "111122223333".into(),
            account_name: None,
            region: "eu-west-1".into(),
            kind: "AWS::S3::Bucket".into(),
            identifier: id.into(),
            model: None,
            properties: serde_json::json!({"BucketName": id}),
        }
    }

    const MAPPING: &str = "resources:
  - kind: AWS::S3::Bucket
    port:
      entity:
        mappings:
          identifier: .Identifier
          title: .Properties.BucketName
          blueprint: '\"bucket\"'
";

    fn header() -> String {
        let header = Header {
            sources: vec![("m.yaml".into(), MAPPING.into())],
            hidden_env: Vec::new(),
        };
        serde_json::to_string(&header).expect("test data")
    }

    #[test]
    fn serve_answers_each_item_with_its_outcome_in_order() {
        let mut input = header();
        input.push('\n');
        for id in ["a", "b"] {
            input.push_str(&serde_json::to_string(&item(id)).expect("test data"));
            input.push('\n');
        }
        let mut output = Vec::new();
        serve(input.as_bytes(), &mut output, LoadOptions::default()).expect("test data");
        let outcomes: Vec<ItemOutcome> = String::from_utf8(output)
            .expect("test data")
            .lines()
            .map(|l| {
                serde_json::from_str::<WireOutcome>(l)
                    .expect("test data")
                    .into()
            })
            .collect();
        let titles: Vec<_> = outcomes
            .iter()
            .map(|o| o.entities[0].entity.title.clone())
            .collect();
        assert_eq!(titles, [Some(Json::from("a")), Some(Json::from("b"))]);
    }

    #[test]
    fn an_explicit_null_and_an_undefined_field_stay_apart_across_the_pipe() {
        let mut entity = Entity::new("bucket", "a");
        entity.title = Some(Json::Null);
        let outcome = ItemOutcome {
            entities: vec![MappedEntity {
                entity,
                write: WriteOptions::default(),
            }],
            warnings: vec!["w".into()],
            errors: Vec::new(),
        };
        let line = serde_json::to_string(&outcome).expect("test data");
        let back: ItemOutcome = serde_json::from_str::<WireOutcome>(&line)
            .expect("test data")
            .into();
        assert_eq!(back, outcome);
        assert_eq!(back.entities[0].entity.icon, None);
    }

    #[test]
    fn serve_refuses_mappings_that_do_not_compile_with_their_position() {
        let header = Header {
            sources: vec![("bad.yaml".into(), "resources: [\n".into())],
            hidden_env: Vec::new(),
        };
        let input = format!("{}\n", serde_json::to_string(&header).expect("test data"));
        let error =
            serve(input.as_bytes(), Vec::new(), LoadOptions::default()).expect_err("an error");
        assert!(error.contains("bad.yaml:"), "{error}");
    }

    #[test]
    fn children_end_every_live_workers_child_and_forget_dropped_workers() {
        let (mappings, _) = Mappings::load(&[], &LoadOptions::default()).expect("test data");
        let exe =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/unanswering-map-worker");
        let children = Children::default();
        let dropped = Worker::new(exe.clone(), &mappings);
        children.add(&dropped.killer());
        drop(dropped);
        let mut worker = Worker::new(exe, &mappings);
        children.add(&worker.killer());
        assert_eq!(children.0.lock().expect("test data").len(), 1);

        let mut batch = worker.batch();
        batch.send(&item("a"));
        children.kill_all();
        // The killed child's pipes close at once: the batch fails on that, not on its patience.
        let error = batch.finish(|i| format!("item {i}")).expect_err("killed");
        let error = error.to_string();
        assert!(error.contains("ended unexpectedly"), "{error}");
        assert!(error.contains("signal: 9"), "{error}");
        // And no child is started again.
        let batch = worker.batch();
        let error = batch.finish(|i| format!("item {i}")).expect_err("stopped");
        assert!(
            error.to_string().contains("stopped for shutdown"),
            "{error}"
        );
    }

    #[test]
    fn a_missing_executable_is_a_clear_error_naming_it() {
        let (mappings, _) = Mappings::load(&[], &LoadOptions::default()).expect("test data");
        let mut worker = Worker::new(PathBuf::from("/nonexistent/tidemark"), &mappings);
        let mut batch = worker.batch();
        batch.send(&item("a"));
        let error = batch
            .finish(|i| format!("item {i}"))
            .expect_err("an error")
            .to_string();
        assert!(error.contains("/nonexistent/tidemark"), "{error}");
    }
}
