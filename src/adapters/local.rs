//! The local catalog: an embedded SQLite file that stores blueprints and entities and accepts
//! writes the way Port does, so that `plan` and `apply` work with no Port account.
//!
//! Inspect it with `sqlite3 .tidemark/catalog.db` (the tables are described in [`SCHEMA`]):
//!
//! * `blueprints`: one row per blueprint, its Port definition as JSON text.
//! * `entities`: one row per entity, unique on `(blueprint, identifier)` across all owners, so two
//!   integrations meet at the same key the way they do in Port. `owner` is the integration
//!   identifier that wrote it; `account` and `kind` say where it came from; `placeholder` marks the
//!   empty relation targets that `createMissingRelatedEntities` creates. `entity` is the entity
//!   JSON with every field present; `content_hash` is the SHA-256 of that text.
//! * `relations`: one row per relation target of an entity, so "who relates to this key" (for
//!   deletes and foreign references) is an index lookup instead of a scan of every entity.
//!
//! Durability: the file runs in WAL mode with `synchronous=NORMAL`. Every commit survives a crash
//! of tidemark itself; a power loss can lose the last few commits but never corrupts the file.
//! That trade is right here because the catalog converges: the next `apply` rewrites whatever a
//! lost commit held, while `FULL` would add an fsync per batch to every apply.
//!
//! Writes behave like Port's API as tidemark calls it: upserts validate against the blueprint and
//! merge (`merge=true`) or replace; missing relation targets are created empty (owned by the
//! writer, attributed to the referring entity's account, `placeholder = 1`) or fail as "not
//! found" and are retried after the rest of the batch; deletes never cascade and are refused
//! while another entity relates to the target. `write_requests` counts entity and blueprint
//! writes, not the placeholders they create.
//!
//! Crash safety: every 500 entities are one transaction, and each write is an idempotent upsert
//! or delete, so a crash leaves whole batches behind and re-running the same apply converges.
//!
//! One writer: `apply` holds an exclusive lock on `<db>.lock` (which holds the writer's pid) for
//! its whole run. A second apply waits up to 30 s, then stops with [`CatalogError::Locked`]. Reads
//! take no lock; WAL lets them run beside a writer.
//!
//! The SQLite calls run on the calling task. They are local and short (a 20,000-entity `owned`
//! is tens of milliseconds); only `apply` runs long, and it is the one thing the process is doing
//! when it runs.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde::Serialize;
use serde_json::{Map, Value as Json};
use sha2::{Digest, Sha256};

use crate::adapters::apply::{self, Writer, unless_stopped};
use crate::adapters::{Catalog, CatalogError, PREFLIGHT_IDENTIFIER, ReadCheck, ReadOutcome};
use crate::core::model::{
    Blueprint, Entity, EntityKey, ForeignEntity, ForeignReference, OwnedEntity,
};
use crate::core::validate::{is_valid_blueprint_identifier, validate_entity};
use crate::core::writes::{
    ApplyReport, BlueprintChange, Delete, Progress, Stop, Tally, Upsert, WriteAction, Writes,
};

/// The tables, created on open. Kept readable on purpose: users inspect the file with `sqlite3`.
pub const SCHEMA: &str = r#"
-- Blueprint definitions exactly as Port takes them (identifier, title, schema, relations, ...).
CREATE TABLE IF NOT EXISTS blueprints (
    identifier  TEXT PRIMARY KEY,
    definition  TEXT NOT NULL,              -- JSON
    created_at  TEXT NOT NULL,              -- RFC 3339, UTC
    updated_at  TEXT NOT NULL
);

-- Entities of every owner. (blueprint, identifier) is unique across owners, as in Port.
CREATE TABLE IF NOT EXISTS entities (
    id            INTEGER PRIMARY KEY,
    blueprint     TEXT NOT NULL,
    identifier    TEXT NOT NULL,
    owner         TEXT NOT NULL,            -- integration identifier that wrote it
    account       TEXT,                     -- AWS account it is attributed to; NULL when unknown
    kind          TEXT,                     -- AWS type it was mapped from; NULL for placeholders
    placeholder   INTEGER NOT NULL DEFAULT 0 CHECK (placeholder IN (0, 1)),
                                            -- 1: an empty relation target created on demand
    entity        TEXT NOT NULL,            -- JSON: identifier, blueprint, title, icon, team,
                                            --       properties, relations (all present)
    content_hash  TEXT NOT NULL,            -- SHA-256 (hex) of the entity text
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    UNIQUE (blueprint, identifier)
);
CREATE INDEX IF NOT EXISTS entities_by_owner ON entities (owner, blueprint, identifier);

-- One row per relation target: source entity --relation--> target entity.
CREATE TABLE IF NOT EXISTS relations (
    source_blueprint   TEXT NOT NULL,
    source_identifier  TEXT NOT NULL,
    relation           TEXT NOT NULL,
    target_blueprint   TEXT NOT NULL,
    target_identifier  TEXT NOT NULL,
    PRIMARY KEY (source_blueprint, source_identifier, relation, target_identifier)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS relations_by_target ON relations (target_blueprint, target_identifier);
"#;

/// Bumped when [`SCHEMA`] changes incompatibly; a file from a newer tidemark is refused.
const SCHEMA_VERSION: i64 = 1;

/// Entities written per transaction. Large enough that commits cost little next to the writes,
/// small enough that a crash loses at most a moment of work (the next apply redoes it anyway).
const WRITE_BATCH: usize = 500;

/// How long a second apply waits for the first one before giving up.
const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a waiting apply retries the lock.
const LOCK_POLL: Duration = Duration::from_millis(100);

/// Bytes of the file SQLite may memory-map (an upper bound, not an allocation).
const MMAP_SIZE: i64 = 256 * 1024 * 1024;

/// SQLite page cache per connection; negative means KiB (32 MiB).
const CACHE_SIZE_KIB: i64 = -32 * 1024;

/// How long one SQLite statement waits for another process's write transaction (a second
/// tidemark reading while an apply commits).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// An entity as stored, with its ownership columns (`tidemark entities`, tests).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StoredEntity {
    pub owner: String,
    pub account: Option<String>,
    pub kind: Option<String>,
    pub blueprint: String,
    pub identifier: String,
    /// Every field present: title, icon and team `null` when unset; properties and relations
    /// objects.
    pub entity: Entity,
    pub placeholder: bool,
    pub content_hash: String,
    pub created_at: String,
    pub updated_at: String,
}

/// tidemark's embedded catalog, one SQLite file.
pub struct LocalCatalog {
    path: PathBuf,
    lock_path: PathBuf,
    lock_timeout: Duration,
    conn: Mutex<Connection>,
    /// Whether `conn` is the file at `path`; until the first write it may be an empty
    /// in-memory catalog, so that reading commands leave no file behind.
    on_disk: std::sync::atomic::AtomicBool,
}

impl LocalCatalog {
    /// Opens the catalog at `path`. A catalog that does not exist yet reads as empty and is
    /// created (file, parent folders, tables) by the first write, so `plan`, `validate` and
    /// `entities` leave nothing behind.
    pub fn open(path: &Path) -> Result<LocalCatalog, CatalogError> {
        let on_disk = path.exists();
        let conn = if on_disk {
            open_file(path)?
        } else {
            let conn = Connection::open_in_memory()
                .map_err(|e| local_error(path, format!("cannot open: {e}")))?;
            init(&conn).map_err(|e| local_error(path, e.to_string()))?;
            conn
        };
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".lock");
        Ok(LocalCatalog {
            path: path.to_path_buf(),
            lock_path: PathBuf::from(lock_path),
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            conn: Mutex::new(conn),
            on_disk: std::sync::atomic::AtomicBool::new(on_disk),
        })
    }

    /// The connection for a write: the file at `path`, created now if it did not exist.
    fn writable(&self) -> Result<MutexGuard<'_, Connection>, CatalogError> {
        let mut conn = self.connection();
        if !self.on_disk.load(std::sync::atomic::Ordering::Acquire) {
            *conn = open_file(&self.path)?;
            self.on_disk
                .store(true, std::sync::atomic::Ordering::Release);
        }
        Ok(conn)
    }

    /// How long `apply` waits for another apply's lock (default 30 s).
    pub fn with_lock_timeout(mut self, timeout: Duration) -> LocalCatalog {
        self.lock_timeout = timeout;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file an apply locks for its whole run: `<db>.lock`, holding the writer's pid.
    pub fn lock_path(&self) -> &Path {
        &self.lock_path
    }

    /// Stored entities, optionally only those of one owner and/or one blueprint, ordered by
    /// blueprint and identifier.
    pub fn entities(
        &self,
        owner: Option<&str>,
        blueprint: Option<&str>,
    ) -> Result<Vec<StoredEntity>, CatalogError> {
        self.rows(
            "SELECT owner, account, kind, blueprint, identifier, entity, placeholder,
                    content_hash, created_at, updated_at
             FROM entities
             WHERE (?1 IS NULL OR owner = ?1) AND (?2 IS NULL OR blueprint = ?2)
             ORDER BY blueprint, identifier",
            params![owner, blueprint],
            |row| {
                Ok(StoredEntity {
                    owner: row.get(0)?,
                    account: row.get(1)?,
                    kind: row.get(2)?,
                    blueprint: row.get(3)?,
                    identifier: row.get(4)?,
                    entity: parse_entity(row.get_ref(5)?.as_str()?)?,
                    placeholder: row.get(6)?,
                    content_hash: row.get(7)?,
                    created_at: row.get(8)?,
                    updated_at: row.get(9)?,
                })
            },
        )
    }

    /// Writes `entity` as owned by `owner` without validation (replacing whatever is at its
    /// key): seeds and tests use it for entities another integration wrote. Relations are indexed
    /// when the blueprint defines them.
    pub fn insert_foreign(&self, owner: &str, entity: &Entity) -> Result<(), CatalogError> {
        let mut conn = self.writable()?;
        let result = (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let targets = relation_targets_of(&tx, &entity.blueprint)?;
            let full = complete(entity.clone());
            let existing = find_entity(&tx, &full.key())?;
            write_entity(
                &tx,
                existing.as_ref().map(|e| e.id),
                &full,
                &Attribution {
                    owner,
                    account: None,
                    kind: None,
                    placeholder: false,
                },
                &targets,
            )?;
            tx.commit()
        })();
        result.map_err(|e| self.error(e))
    }

    /// Stores `blueprint` as given, replacing any definition with its identifier (seeds, tests).
    pub fn insert_blueprint(&self, blueprint: &Blueprint) -> Result<(), CatalogError> {
        let conn = self.writable()?;
        let now = now();
        conn.execute(
            "INSERT INTO blueprints (identifier, definition, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?3)
             ON CONFLICT (identifier) DO UPDATE SET definition = ?2, updated_at = ?3",
            params![blueprint.identifier(), blueprint.0.to_string(), now],
        )
        .map(|_| ())
        .map_err(|e| self.error(e))
    }

    fn connection(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the connection cannot leave SQLite half-written (transactions
        // roll back on drop), so a poisoned mutex is still safe to use.
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs a read query and turns each row into a `T`.
    fn rows<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, CatalogError> {
        let conn = self.connection();
        conn.prepare_cached(sql)
            .and_then(|mut stmt| stmt.query_map(params, row)?.collect())
            .map_err(|e| self.error(e))
    }

    fn error(&self, e: impl std::fmt::Display) -> CatalogError {
        CatalogError::Local {
            path: self.path.display().to_string(),
            message: e.to_string(),
        }
    }

    fn read_blueprints(&self) -> Result<Vec<Blueprint>, CatalogError> {
        self.rows(
            "SELECT definition FROM blueprints ORDER BY identifier",
            [],
            |row| {
                let text: String = row.get(0)?;
                serde_json::from_str(&text)
                    .map(Blueprint)
                    .map_err(|e| json_error(0, e))
            },
        )
    }

    fn read_owned(&self, owner: &str) -> Result<Vec<OwnedEntity>, CatalogError> {
        self.rows(
            "SELECT entity, account, kind, placeholder FROM entities
             WHERE owner = ?1 ORDER BY blueprint, identifier",
            [owner],
            |row| {
                Ok(OwnedEntity {
                    entity: parse_entity(row.get_ref(0)?.as_str()?)?,
                    account: row.get(1)?,
                    kind: row.get(2)?,
                    placeholder: row.get(3)?,
                })
            },
        )
    }

    fn read_foreign(
        &self,
        owner: &str,
        keys: &[EntityKey],
    ) -> Result<Vec<ForeignEntity>, CatalogError> {
        // All keys go in as one JSON array that SQLite unnests with json_each, so thousands of
        // keys are one indexed join instead of thousands of queries.
        self.rows(
            "SELECT DISTINCT e.owner, e.entity, e.blueprint, e.identifier
             FROM json_each(?1) AS k
             JOIN entities AS e
               ON e.blueprint = k.value ->> 0 AND e.identifier = k.value ->> 1
             WHERE e.owner <> ?2
             ORDER BY e.blueprint, e.identifier",
            params![keys_json(keys), owner],
            |row| {
                Ok(ForeignEntity {
                    owner: row.get(0)?,
                    entity: parse_entity(row.get_ref(1)?.as_str()?)?,
                })
            },
        )
    }

    fn read_foreign_references(
        &self,
        owner: &str,
        keys: &[EntityKey],
    ) -> Result<Vec<ForeignReference>, CatalogError> {
        self.rows(
            "SELECT DISTINCT r.target_blueprint, r.target_identifier,
                             r.source_blueprint, r.source_identifier, e.owner
             FROM json_each(?1) AS k
             JOIN relations AS r
               ON r.target_blueprint = k.value ->> 0 AND r.target_identifier = k.value ->> 1
             JOIN entities AS e
               ON e.blueprint = r.source_blueprint AND e.identifier = r.source_identifier
             WHERE e.owner <> ?2
             ORDER BY 1, 2, 3, 4",
            params![keys_json(keys), owner],
            |row| {
                Ok(ForeignReference {
                    target: EntityKey::new(row.get::<_, String>(0)?, row.get::<_, String>(1)?),
                    referrer: EntityKey::new(row.get::<_, String>(2)?, row.get::<_, String>(3)?),
                    owner: row.get(4)?,
                })
            },
        )
    }

    /// Takes the apply lock, waiting up to the lock timeout for another apply to finish.
    async fn lock_for_apply(&self) -> Result<ApplyLock, CatalogError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            // Truncating before holding the lock would erase the holder's pid.
            .truncate(false)
            .open(&self.lock_path)
            .map_err(|e| self.error(format!("cannot open {}: {e}", self.lock_path.display())))?;
        let deadline = Instant::now() + self.lock_timeout;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    tokio::time::sleep(LOCK_POLL).await;
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    let mut holder = String::new();
                    // The pid is for the message only; an unreadable file still reports the lock.
                    let _ = (&file).read_to_string(&mut holder);
                    let pid = holder.trim();
                    return Err(CatalogError::Locked {
                        path: self.lock_path.display().to_string(),
                        pid: if pid.is_empty() { "unknown" } else { pid }.to_string(),
                    });
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(
                        self.error(format!("cannot lock {}: {e}", self.lock_path.display()))
                    );
                }
            }
        }
        let mut held = ApplyLock { file };
        held.record_pid()
            .map_err(|e| self.error(format!("cannot write {}: {e}", self.lock_path.display())))?;
        Ok(held)
    }
}

impl Catalog for LocalCatalog {
    fn describe(&self) -> String {
        format!("local {}", self.path.display())
    }

    async fn blueprints(&self) -> Result<Vec<Blueprint>, CatalogError> {
        self.read_blueprints()
    }

    async fn owned(
        &self,
        owner: &str,
        _accounts: &[String],
    ) -> Result<Vec<OwnedEntity>, CatalogError> {
        self.read_owned(owner)
    }

    async fn foreign(
        &self,
        owner: &str,
        keys: &[EntityKey],
    ) -> Result<Vec<ForeignEntity>, CatalogError> {
        self.read_foreign(owner, keys)
    }

    async fn foreign_references(
        &self,
        owner: &str,
        keys: &[EntityKey],
    ) -> Result<Vec<ForeignReference>, CatalogError> {
        self.read_foreign_references(owner, keys)
    }

    async fn search(&self, blueprint: &str, query: &Json) -> Result<Vec<String>, CatalogError> {
        let mut found = Vec::new();
        for stored in self.entities(None, Some(blueprint))? {
            let matched = crate::core::query::matches(query, &stored.entity)
                .map_err(|e| self.error(e.to_string()))?;
            if matched {
                found.push(stored.identifier);
            }
        }
        Ok(found)
    }

    /// The local catalog's reads are SQL over tables tidemark made, so they are refused only
    /// when the file is unreadable; what this checks in practice is which blueprints exist.
    async fn preflight(
        &self,
        owner: &str,
        blueprints: &[String],
    ) -> Result<Vec<ReadCheck>, CatalogError> {
        let present: Vec<String> = self
            .read_blueprints()?
            .iter()
            .map(|b| b.identifier().to_string())
            .collect();
        let outcome = |read: Result<(), CatalogError>| match read {
            Ok(()) => ReadOutcome::Accepted,
            Err(e) => ReadOutcome::Refused(e.to_string()),
        };
        let mut checks = vec![ReadCheck::new(
            None,
            "owned entities",
            outcome(self.read_owned(owner).map(drop)),
        )];
        for blueprint in blueprints {
            if !present.contains(blueprint) {
                checks.push(ReadCheck::new(
                    Some(blueprint),
                    "the blueprint",
                    ReadOutcome::Missing,
                ));
                continue;
            }
            let probe = [EntityKey::new(blueprint, PREFLIGHT_IDENTIFIER)];
            checks.push(ReadCheck::new(
                Some(blueprint),
                "entities of other owners",
                outcome(self.read_foreign(owner, &probe).map(drop)),
            ));
            checks.push(ReadCheck::new(
                Some(blueprint),
                "entities of other owners that relate to it",
                outcome(self.read_foreign_references(owner, &probe).map(drop)),
            ));
        }
        Ok(checks)
    }

    async fn apply(&self, owner: &str, writes: &Writes, progress: &dyn Progress) -> ApplyReport {
        // The file (and its folder, where the lock file goes) exists before the lock is taken.
        let lock = match self.writable().map(drop) {
            Ok(()) => self.lock_for_apply().await,
            Err(e) => Err(e),
        };
        let lock = match lock {
            Ok(lock) => lock,
            Err(e) => {
                return ApplyReport {
                    stopped: Some(Stop::Failed(e.to_string())),
                    ..ApplyReport::default()
                };
            }
        };
        let mut applier = Applier {
            catalog: self,
            owner,
            blueprints: None,
        };
        let report = apply::apply(&mut applier, writes, progress).await;
        drop(lock);
        report
    }
}

fn local_error(path: &Path, message: String) -> CatalogError {
    CatalogError::Local {
        path: path.display().to_string(),
        message,
    }
}

/// Opens (creating when missing) the catalog file at `path`, its parent folders and its tables.
fn open_file(path: &Path) -> Result<Connection, CatalogError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| local_error(path, format!("cannot create {}: {e}", parent.display())))?;
    }
    let conn =
        Connection::open(path).map_err(|e| local_error(path, format!("cannot open: {e}")))?;
    init(&conn).map_err(|e| local_error(path, e.to_string()))?;
    Ok(conn)
}

/// The held apply lock; released when dropped (the OS also releases it if the process dies).
struct ApplyLock {
    file: File,
}

impl ApplyLock {
    fn record_pid(&mut self) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.file.seek(SeekFrom::Start(0))?;
        writeln!(self.file, "{}", std::process::id())?;
        self.file.flush()
    }
}

impl Drop for ApplyLock {
    fn drop(&mut self) {
        // Clearing the pid is cosmetic; the unlock is what matters and closing the file does it
        // too.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// Sets the pragmas and creates the tables.
fn init(conn: &Connection) -> Result<(), String> {
    init_tables(conn).map_err(|e| e.to_string())
}

fn init_tables(conn: &Connection) -> Result<(), InitError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(64);
    // WAL lets `plan` read while an apply writes, and makes each commit one sequential append.
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    // An in-memory catalog (one not created yet, read by `plan`) has no WAL and needs none.
    let in_memory = conn.path().is_none_or(str::is_empty);
    if !mode.eq_ignore_ascii_case("wal") && !in_memory {
        return Err(InitError::Refused(format!(
            "cannot switch to WAL mode (journal mode is {mode})"
        )));
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // Reading every owned entity touches the whole file; mapping it saves a read() call and a copy
    // per page, and a larger page cache keeps the indexes hot between the reads of one run.
    conn.pragma_update(None, "mmap_size", MMAP_SIZE)?;
    conn.pragma_update(None, "cache_size", CACHE_SIZE_KIB)?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(InitError::Refused(format!(
            "written by a newer tidemark (schema version {version}, this one knows {SCHEMA_VERSION})"
        )));
    }
    conn.execute_batch(SCHEMA)?;
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
enum InitError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    Refused(String),
}

fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

fn json_error(column: usize, e: serde_json::Error) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(e))
}

fn keys_json(keys: &[EntityKey]) -> String {
    Json::Array(
        keys.iter()
            .map(|k| {
                Json::Array(vec![
                    k.blueprint.clone().into(),
                    k.identifier.clone().into(),
                ])
            })
            .collect(),
    )
    .to_string()
}

/// Reads a stored entity and fills the fields Port always returns.
fn parse_entity(text: &str) -> rusqlite::Result<Entity> {
    serde_json::from_str(text)
        .map(complete)
        .map_err(|e| json_error(0, e))
}

/// The entity with every field present: unset title, icon and team become `null`, unset
/// properties and relations become empty objects. This is the stored form.
fn complete(mut entity: Entity) -> Entity {
    for field in [&mut entity.title, &mut entity.icon, &mut entity.team] {
        field.get_or_insert(Json::Null);
    }
    entity.properties.get_or_insert_with(Map::new);
    entity.relations.get_or_insert_with(Map::new);
    entity
}

/// The canonical text of a completed entity: struct fields in declaration order and object keys
/// sorted at every depth, so equal content gives equal text and hash whatever order the mapping
/// produced the keys in (JSON objects otherwise keep their document order).
fn canonical_text(entity: &Entity) -> String {
    let mut sorted = entity.clone();
    for value in [&mut sorted.title, &mut sorted.icon, &mut sorted.team]
        .into_iter()
        .flatten()
    {
        value.sort_all_objects();
    }
    for map in [&mut sorted.properties, &mut sorted.relations]
        .into_iter()
        .flatten()
    {
        map.sort_keys();
        map.values_mut().for_each(Json::sort_all_objects);
    }
    serde_json::to_string(&sorted).unwrap_or_default()
}

fn content_hash(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `existing` after Port's `upsert=true&merge=true`: sent fields replace, unsent ones stay, and
/// properties and relations merge key by key.
fn merged(existing: Entity, sent: &Entity) -> Entity {
    let mut out = existing;
    for (field, value) in [
        (&mut out.title, &sent.title),
        (&mut out.icon, &sent.icon),
        (&mut out.team, &sent.team),
    ] {
        if let Some(v) = value {
            *field = Some(v.clone());
        }
    }
    for (field, value) in [
        (&mut out.properties, &sent.properties),
        (&mut out.relations, &sent.relations),
    ] {
        if let Some(sent_map) = value {
            let map = field.get_or_insert_with(Map::new);
            for (k, v) in sent_map {
                map.insert(k.clone(), v.clone());
            }
        }
    }
    complete(out)
}

/// Relation name → target blueprint, for the relations index.
type RelationTargets = HashMap<String, String>;

fn relation_targets_of(conn: &Connection, blueprint: &str) -> rusqlite::Result<RelationTargets> {
    Ok(load_blueprint(conn, blueprint)?
        .map(|bp| {
            bp.relations()
                .into_iter()
                .map(|r| (r.name, r.target))
                .collect()
        })
        .unwrap_or_default())
}

fn load_blueprint(conn: &Connection, identifier: &str) -> rusqlite::Result<Option<Blueprint>> {
    let text: Option<String> = conn
        .prepare_cached("SELECT definition FROM blueprints WHERE identifier = ?1")?
        .query_row([identifier], |row| row.get(0))
        .optional()?;
    text.map(|t| {
        serde_json::from_str(&t)
            .map(Blueprint)
            .map_err(|e| json_error(0, e))
    })
    .transpose()
}

struct Found {
    id: i64,
    entity: Entity,
}

fn find_entity(conn: &Connection, key: &EntityKey) -> rusqlite::Result<Option<Found>> {
    conn.prepare_cached("SELECT id, entity FROM entities WHERE blueprint = ?1 AND identifier = ?2")?
        .query_row(params![key.blueprint, key.identifier], |row| {
            Ok(Found {
                id: row.get(0)?,
                entity: parse_entity(row.get_ref(1)?.as_str()?)?,
            })
        })
        .optional()
}

fn entity_exists(conn: &Connection, blueprint: &str, identifier: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM entities WHERE blueprint = ?1 AND identifier = ?2")?
        .exists(params![blueprint, identifier])
}

struct Attribution<'a> {
    owner: &'a str,
    account: Option<&'a str>,
    kind: Option<&'a str>,
    placeholder: bool,
}

/// Stores a completed entity (insert, or update of row `id`) and rewrites its relations index.
fn write_entity(
    tx: &Transaction<'_>,
    id: Option<i64>,
    entity: &Entity,
    who: &Attribution<'_>,
    targets: &RelationTargets,
) -> rusqlite::Result<()> {
    let text = canonical_text(entity);
    let hash = content_hash(&text);
    let now = now();
    match id {
        Some(id) => {
            tx.prepare_cached(
                "UPDATE entities SET owner = ?2, account = ?3, kind = ?4, placeholder = ?5,
                        entity = ?6, content_hash = ?7, updated_at = ?8
                 WHERE id = ?1",
            )?
            .execute(params![
                id,
                who.owner,
                who.account,
                who.kind,
                who.placeholder,
                text,
                hash,
                now
            ])?;
        }
        None => {
            tx.prepare_cached(
                "INSERT INTO entities (blueprint, identifier, owner, account, kind, placeholder,
                                       entity, content_hash, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
            )?
            .execute(params![
                entity.blueprint,
                entity.identifier,
                who.owner,
                who.account,
                who.kind,
                who.placeholder,
                text,
                hash,
                now
            ])?;
        }
    }
    tx.prepare_cached(
        "DELETE FROM relations WHERE source_blueprint = ?1 AND source_identifier = ?2",
    )?
    .execute(params![entity.blueprint, entity.identifier])?;
    let mut insert = tx.prepare_cached(
        "INSERT OR IGNORE INTO relations
             (source_blueprint, source_identifier, relation, target_blueprint, target_identifier)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for (relation, target) in entity.relation_targets() {
        if let Some(target_blueprint) = targets.get(relation) {
            insert.execute(params![
                entity.blueprint,
                entity.identifier,
                relation,
                target_blueprint,
                target
            ])?;
        }
    }
    Ok(())
}

/// What happened to one upsert.
enum Outcome {
    Written,
    Rejected(String),
    /// A relation target does not exist (Port's 404 `not_found`): retried after the others.
    MissingTarget(String),
}

/// The local catalog's side of the shared apply loop: transactions of up to [`WRITE_BATCH`]
/// writes. It takes the connection for each call and holds it only while the call runs.
struct Applier<'a> {
    catalog: &'a LocalCatalog,
    owner: &'a str,
    /// The blueprints as the blueprint step left them, read at the first upsert.
    blueprints: Option<Blueprints>,
}

impl Writer for Applier<'_> {
    async fn blueprints(
        &mut self,
        changes: &[BlueprintChange],
        tally: &mut Tally<'_>,
    ) -> Result<(), Stop> {
        let result = self.write_blueprints(changes, tally);
        result.map_err(|e| self.failed(e))
    }

    /// A transaction per [`WRITE_BATCH`], asking before each whether to stop.
    async fn upserts(
        &mut self,
        _blueprint: &str,
        stage: Vec<(usize, &Upsert)>,
        tally: &mut Tally<'_>,
        missing: &mut Vec<(usize, String)>,
    ) -> Result<(), Stop> {
        for chunk in stage.chunks(WRITE_BATCH) {
            unless_stopped(tally)?;
            self.upsert_chunk(chunk, tally, missing)
                .map_err(|e| self.failed(e))?;
        }
        Ok(())
    }

    /// A transaction per [`WRITE_BATCH`], asking before each whether to stop.
    async fn deletes(
        &mut self,
        _blueprint: &str,
        stage: Vec<&Delete>,
        tally: &mut Tally<'_>,
    ) -> Result<(), Stop> {
        for chunk in stage.chunks(WRITE_BATCH) {
            unless_stopped(tally)?;
            self.delete_chunk(chunk, tally)
                .map_err(|e| self.failed(e))?;
        }
        Ok(())
    }

    /// Each committed write counts as one request, as a single write to Port would.
    fn write_requests(&self, tally: &Tally<'_>) -> usize {
        tally.confirmed_count()
    }
}

impl Applier<'_> {
    fn failed(&self, e: rusqlite::Error) -> Stop {
        Stop::Failed(self.catalog.error(e).to_string())
    }

    /// Creates blueprints without relations, then adds every relation (so cycles work), then
    /// applies additive updates. One transaction: the definitions are small.
    fn write_blueprints(
        &mut self,
        changes: &[BlueprintChange],
        tally: &mut Tally<'_>,
    ) -> rusqlite::Result<()> {
        let mut conn = self.catalog.connection();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = now();
        let mut written: Vec<String> = Vec::new();
        let mut rejected: Vec<(String, String)> = Vec::new();
        // Relations each created blueprint wants, added once every created blueprint exists.
        let mut created: Vec<(&str, Map<String, Json>)> = Vec::new();
        for change in changes {
            let BlueprintChange::Create {
                identifier,
                definition,
            } = change
            else {
                continue;
            };
            if !is_valid_blueprint_identifier(identifier) {
                rejected.push((
                    identifier.clone(),
                    format!("{identifier:?} is not a valid blueprint identifier"),
                ));
                continue;
            }
            let relations = definition
                .0
                .get("relations")
                .and_then(Json::as_object)
                .cloned()
                .unwrap_or_default();
            match load_blueprint(&tx, identifier)? {
                // An interrupted bootstrap left it there: complete it instead of failing, adding
                // only what it lacks.
                Some(existing) => {
                    let props = definition.properties();
                    store_additions(&tx, identifier, existing, &props, &Map::new(), &now)?;
                }
                None => {
                    let mut first_step = definition.without_relations();
                    if let Some(obj) = first_step.0.as_object_mut() {
                        obj.insert("identifier".into(), Json::String(identifier.clone()));
                    }
                    tx.prepare_cached(
                        "INSERT INTO blueprints (identifier, definition, created_at, updated_at)
                         VALUES (?1, ?2, ?3, ?3)",
                    )?
                    .execute(params![
                        identifier,
                        first_step.0.to_string(),
                        now
                    ])?;
                }
            }
            written.push(identifier.clone());
            created.push((identifier, relations));
        }
        // Second step: every created blueprint exists now, so relations may point anywhere,
        // including at each other.
        for (identifier, relations) in &created {
            if let Some(problem) = relations_problem(&tx, relations)? {
                rejected.push((identifier.to_string(), problem));
            } else if let Some(existing) = load_blueprint(&tx, identifier)? {
                store_additions(&tx, identifier, existing, &Map::new(), relations, &now)?;
            }
        }
        for change in changes {
            let BlueprintChange::Update {
                identifier,
                add_properties,
                add_relations,
            } = change
            else {
                continue;
            };
            let Some(existing) = load_blueprint(&tx, identifier)? else {
                rejected.push((
                    identifier.clone(),
                    format!("blueprint {identifier:?} does not exist"),
                ));
                continue;
            };
            if let Some(problem) = relations_problem(&tx, add_relations)? {
                rejected.push((identifier.clone(), problem));
                continue;
            }
            store_additions(
                &tx,
                identifier,
                existing,
                add_properties,
                add_relations,
                &now,
            )?;
            written.push(identifier.clone());
        }
        tx.commit()?;
        for identifier in written {
            tally.blueprint_written(identifier);
        }
        for (identifier, message) in rejected {
            tally.rejected(
                WriteAction::Blueprint,
                EntityKey::new(identifier, ""),
                message,
            );
        }
        tally.advance(changes.len() as u64);
        Ok(())
    }

    fn upsert_chunk(
        &mut self,
        chunk: &[(usize, &Upsert)],
        tally: &mut Tally<'_>,
        missing: &mut Vec<(usize, String)>,
    ) -> rusqlite::Result<()> {
        let mut conn = self.catalog.connection();
        let blueprints = match &self.blueprints {
            Some(blueprints) => blueprints,
            None => self.blueprints.insert(Blueprints::load(&conn)?),
        };
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut outcomes = Vec::with_capacity(chunk.len());
        for &(i, upsert) in chunk {
            outcomes.push((i, upsert, upsert_one(&tx, self.owner, blueprints, upsert)?));
        }
        tx.commit()?;
        for (i, upsert, outcome) in outcomes {
            match outcome {
                Outcome::Written => tally.upserted(upsert.entity.key()),
                Outcome::Rejected(message) => {
                    tally.rejected(WriteAction::Upsert, upsert.entity.key(), message);
                }
                Outcome::MissingTarget(message) => missing.push((i, message)),
            }
        }
        Ok(())
    }

    fn delete_chunk(&mut self, chunk: &[&Delete], tally: &mut Tally<'_>) -> rusqlite::Result<()> {
        let mut conn = self.catalog.connection();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut outcomes = Vec::with_capacity(chunk.len());
        for delete in chunk {
            outcomes.push((delete, delete_one(&tx, self.owner, &delete.key)?));
        }
        tx.commit()?;
        for (delete, refusal) in outcomes {
            match refusal {
                None => tally.deleted(delete.key.clone()),
                Some(message) => tally.rejected(WriteAction::Delete, delete.key.clone(), message),
            }
        }
        Ok(())
    }
}

/// Why these relation definitions cannot be added, if they cannot: each needs an existing target
/// blueprint.
fn relations_problem(
    conn: &Connection,
    relations: &Map<String, Json>,
) -> rusqlite::Result<Option<String>> {
    for (name, def) in relations {
        let target = def.get("target").and_then(Json::as_str).unwrap_or_default();
        if load_blueprint(conn, target)?.is_none() {
            return Ok(Some(format!(
                "relation {name:?} targets blueprint {target:?}, which does not exist"
            )));
        }
    }
    Ok(None)
}

/// Adds the missing properties and relations to a stored blueprint; existing ones stay as they
/// are.
fn store_additions(
    tx: &Transaction<'_>,
    identifier: &str,
    existing: Blueprint,
    add_properties: &Map<String, Json>,
    add_relations: &Map<String, Json>,
    now: &str,
) -> rusqlite::Result<()> {
    let mut definition = existing.0;
    let Some(obj) = definition.as_object_mut() else {
        return Ok(());
    };
    if !add_properties.is_empty() {
        let schema = obj
            .entry("schema")
            .or_insert_with(|| Json::Object(Map::new()));
        if let Some(schema) = schema.as_object_mut() {
            let props = schema
                .entry("properties")
                .or_insert_with(|| Json::Object(Map::new()));
            if let Some(props) = props.as_object_mut() {
                for (k, v) in add_properties {
                    props.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
    }
    if !add_relations.is_empty() {
        let rels = obj
            .entry("relations")
            .or_insert_with(|| Json::Object(Map::new()));
        if let Some(rels) = rels.as_object_mut() {
            for (k, v) in add_relations {
                rels.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
    tx.prepare_cached(
        "UPDATE blueprints SET definition = ?2, updated_at = ?3 WHERE identifier = ?1",
    )?
    .execute(params![identifier, definition.to_string(), now])?;
    Ok(())
}

/// Blueprints as they stand after the blueprint step, read once per apply.
struct Blueprints {
    by_id: HashMap<String, (Blueprint, RelationTargets)>,
}

impl Blueprints {
    fn load(conn: &Connection) -> rusqlite::Result<Blueprints> {
        let mut stmt = conn.prepare("SELECT identifier, definition FROM blueprints")?;
        let rows = stmt.query_map([], |row| {
            let id: String = row.get(0)?;
            let text: String = row.get(1)?;
            let bp = Blueprint(serde_json::from_str(&text).map_err(|e| json_error(1, e))?);
            let targets = bp
                .relations()
                .into_iter()
                .map(|r| (r.name, r.target))
                .collect();
            Ok((id, (bp, targets)))
        })?;
        Ok(Blueprints {
            by_id: rows.collect::<Result<_, _>>()?,
        })
    }
}

/// Validates and writes one upsert inside `tx`.
fn upsert_one(
    tx: &Transaction<'_>,
    owner: &str,
    blueprints: &Blueprints,
    upsert: &Upsert,
) -> rusqlite::Result<Outcome> {
    let sent = &upsert.entity;
    let Some((blueprint, targets)) = blueprints.by_id.get(&sent.blueprint) else {
        return Ok(Outcome::Rejected(format!(
            "blueprint {:?} does not exist",
            sent.blueprint
        )));
    };
    let key = sent.key();
    let existing = find_entity(tx, &key)?;
    if let Err(errors) = validate_entity(blueprint, sent, existing.is_none()) {
        return Ok(Outcome::Rejected(errors.join("; ")));
    }

    let mut missing: Vec<(&str, &str, &str)> = Vec::new();
    for (relation, target) in sent.relation_targets() {
        let Some(target_blueprint) = targets.get(relation) else {
            continue;
        };
        let is_self = *target_blueprint == sent.blueprint && target == sent.identifier;
        if !is_self && !entity_exists(tx, target_blueprint, target)? {
            missing.push((relation, target_blueprint, target));
        }
    }
    if !missing.is_empty() {
        if !upsert.write.create_missing_related {
            let list: Vec<String> = missing
                .iter()
                .map(|(rel, bp, id)| format!("relation {rel:?}: {bp}/{id}"))
                .collect();
            return Ok(Outcome::MissingTarget(format!(
                "related entity not found ({})",
                list.join(", ")
            )));
        }
        for (_, target_blueprint, _) in &missing {
            if !blueprints.by_id.contains_key(*target_blueprint) {
                return Ok(Outcome::Rejected(format!(
                    "relation target blueprint {target_blueprint:?} does not exist"
                )));
            }
        }
        let mut created: HashSet<(&str, &str)> = HashSet::new();
        for (_, target_blueprint, target) in missing {
            if created.insert((target_blueprint, target)) {
                write_entity(
                    tx,
                    None,
                    &complete(Entity::new(target_blueprint, target)),
                    &Attribution {
                        owner,
                        account: Some(&upsert.account),
                        kind: None,
                        placeholder: true,
                    },
                    &RelationTargets::new(),
                )?;
            }
        }
    }

    let (id, entity) = match existing {
        Some(found) if upsert.write.merge => (Some(found.id), merged(found.entity, sent)),
        Some(found) => (Some(found.id), complete(sent.clone())),
        None => (None, complete(sent.clone())),
    };
    write_entity(
        tx,
        id,
        &entity,
        &Attribution {
            owner,
            account: Some(&upsert.account),
            kind: Some(&upsert.kind),
            placeholder: false,
        },
        targets,
    )?;
    Ok(Outcome::Written)
}

/// Deletes one entity like Port's `delete_dependents=false`. `Some(message)` when refused.
fn delete_one(
    tx: &Transaction<'_>,
    owner: &str,
    key: &EntityKey,
) -> rusqlite::Result<Option<String>> {
    // Only the row id and owner: parsing the entity JSON here would double the cost of a delete.
    let found: Option<(i64, String)> = tx
        .prepare_cached("SELECT id, owner FROM entities WHERE blueprint = ?1 AND identifier = ?2")?
        .query_row(params![key.blueprint, key.identifier], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?;
    let Some((id, found_owner)) = found else {
        // Already gone: the desired end state holds.
        return Ok(None);
    };
    if found_owner != owner {
        return Ok(Some(format!(
            "{key} is owned by {found_owner:?}, not {owner:?}; not deleted"
        )));
    }
    let dependents: Vec<String> = tx
        .prepare_cached(
            "SELECT DISTINCT source_blueprint || '/' || source_identifier FROM relations
             WHERE target_blueprint = ?1 AND target_identifier = ?2
               AND NOT (source_blueprint = ?1 AND source_identifier = ?2)
             ORDER BY 1 LIMIT 6",
        )?
        .query_map(params![key.blueprint, key.identifier], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    if !dependents.is_empty() {
        let shown = dependents
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        let more = if dependents.len() > 5 { ", ..." } else { "" };
        return Ok(Some(format!(
            "cannot delete {key}: other entities relate to it ({shown}{more}); \
             delete_dependents is false"
        )));
    }
    tx.prepare_cached("DELETE FROM entities WHERE id = ?1")?
        .execute([id])?;
    tx.prepare_cached(
        "DELETE FROM relations WHERE source_blueprint = ?1 AND source_identifier = ?2",
    )?
    .execute(params![key.blueprint, key.identifier])?;
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_content_hash_ignores_key_insertion_order() {
        let mut a = Entity::new("svc", "x");
        a.properties = json!({"b": 1, "a": {"z": 1, "y": 2}}).as_object().cloned();
        let mut b = Entity::new("svc", "x");
        let mut props = Map::new();
        props.insert("a".into(), json!({"y": 2, "z": 1}));
        props.insert("b".into(), json!(1));
        b.properties = Some(props);
        let (ta, tb) = (canonical_text(&complete(a)), canonical_text(&complete(b)));
        assert_eq!(ta, tb);
        assert_eq!(content_hash(&ta), content_hash(&tb));
    }

    #[test]
    fn merge_keeps_unsent_fields_and_merges_maps_key_by_key() {
        let mut existing = Entity::new("svc", "x");
        existing.title = Some(json!("old"));
        existing.icon = Some(json!("Icon"));
        existing.properties = json!({"a": 1, "b": 2}).as_object().cloned();
        existing.relations = json!({"r": "t"}).as_object().cloned();
        let mut sent = Entity::new("svc", "x");
        sent.title = Some(json!("new"));
        sent.properties = json!({"b": 3, "c": null}).as_object().cloned();
        let out = merged(complete(existing), &sent);
        assert_eq!(out.title, Some(json!("new")));
        assert_eq!(out.icon, Some(json!("Icon")));
        assert_eq!(out.team, Some(Json::Null));
        assert_eq!(
            out.properties,
            json!({"a": 1, "b": 3, "c": null}).as_object().cloned()
        );
        assert_eq!(out.relations, json!({"r": "t"}).as_object().cloned());
    }
}
