//! The two catalogs behind one fixture, and the builders their tests share: the local catalog on
//! a real SQLite file in a temporary folder, and the Port catalog (the real HTTP client) against
//! the Port stand-in. `tests/catalog_contract.rs` runs the same cases against both.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Map, Value as Json, json};
use tempfile::TempDir;

use super::port_standin::PortStandIn;
use tidemark::adapters::Catalog;
use tidemark::adapters::local::LocalCatalog;
use tidemark::adapters::port::{PortCatalog, PortOptions, RetryPolicy};
use tidemark::core::model::{Blueprint, Entity, EntityKey, OwnedEntity, WriteOptions};
use tidemark::core::writes::{
    ApplyReport, BlueprintChange, Delete, NoProgress, Progress, Upsert, Writes,
};

/// The integration identifier the tests write as.
pub const OWNER: &str = "aws-prod";

/// The `kind` every [`upsert`] carries.
pub const KIND: &str = "AWS::S3::Bucket";

/// The `integration.adopt` prefix that matches entities [`Writer::Ocean`] wrote.
pub const ADOPT_PREFIX: &str = "port-ocean/aws-v3/";

pub fn account_blueprint() -> Blueprint {
    Blueprint(json!({
        "identifier": "awsAccount", "title": "AWS account",
        "schema": {"properties": {"name": {"type": "string"}}, "required": []},
        "relations": {}
    }))
}

pub fn bucket_blueprint() -> Blueprint {
    Blueprint(json!({
        "identifier": "bucket", "title": "Bucket",
        "schema": {"properties": {
            "region": {"type": "string"},
            "size": {"type": "number"},
            "tier": {"type": "string", "enum": ["hot", "cold"]},
            "tags": {"type": "object"}
        }},
        "relations": {
            "account": {"target": "awsAccount", "many": false, "required": false},
            "replicas": {"target": "bucket", "many": true, "required": false}
        }
    }))
}

pub fn create(bp: Blueprint) -> BlueprintChange {
    BlueprintChange::Create {
        identifier: bp.identifier().to_string(),
        definition: bp,
    }
}

/// An entity from its fields as Port's JSON spells them (`title`, `properties`, ...).
pub fn entity(blueprint: &str, id: &str, fields: Json) -> Entity {
    let mut value = fields;
    value["blueprint"] = json!(blueprint);
    value["identifier"] = json!(id);
    serde_json::from_value(value).expect("entity json")
}

pub fn upsert(entity: Entity, account: &str, merge: bool, create_missing: bool) -> Upsert {
    Upsert {
        entity,
        account: account.to_string(),
        kind: KIND.to_string(),
        write: WriteOptions {
            merge,
            create_missing_related: create_missing,
        },
    }
}

pub fn delete(blueprint: &str, id: &str, account: Option<&str>) -> Delete {
    Delete {
        key: EntityKey::new(blueprint, id),
        account: account.map(str::to_string),
    }
}

/// Applies `upserts` alone as [`OWNER`].
pub async fn upserts<C: Catalog>(catalog: &C, upserts: Vec<Upsert>) -> ApplyReport {
    catalog
        .apply(
            OWNER,
            &Writes {
                upserts,
                ..Writes::default()
            },
            &NoProgress,
        )
        .await
}

/// Applies `deletes` alone as [`OWNER`].
pub async fn deletes<C: Catalog>(catalog: &C, deletes: Vec<Delete>) -> ApplyReport {
    catalog
        .apply(
            OWNER,
            &Writes {
                deletes,
                ..Writes::default()
            },
            &NoProgress,
        )
        .await
}

/// Counts the writes an apply reports, and asks it to stop once `stop_after` of them are done.
pub struct Counting {
    pub total: AtomicU64,
    pub done: AtomicU64,
    stop_after: u64,
}

impl Counting {
    pub fn new(stop_after: u64) -> Counting {
        Counting {
            total: AtomicU64::new(0),
            done: AtomicU64::new(0),
            stop_after,
        }
    }
}

impl Progress for Counting {
    fn start(&self, total: u64) {
        self.total.store(total, Ordering::SeqCst);
    }
    fn advance(&self, n: u64) {
        self.done.fetch_add(n, Ordering::SeqCst);
    }
    fn finish(&self) {}
    fn stop_requested(&self) -> bool {
        self.done.load(Ordering::SeqCst) >= self.stop_after
    }
}

/// Port options for tests: four requests in flight, retries a few milliseconds apart.
pub fn port_options() -> PortOptions {
    PortOptions {
        concurrency: 4,
        retry: RetryPolicy {
            max_retries: 8,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_secs(2),
        },
        adopt_prefixes: Vec::new(),
        shard: None,
    }
}

/// Someone other than [`OWNER`] who wrote an entity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writer {
    /// Another tidemark integration (`aws-staging`), in the same account.
    OtherIntegration,
    /// One of Port's Ocean integrations, which `integration.adopt` can name.
    Ocean,
}

impl Writer {
    /// The owner the local catalog records.
    fn local_owner(self) -> &'static str {
        match self {
            Writer::OtherIntegration => "aws-staging",
            Writer::Ocean => "port-ocean/aws-v3/1.0.0/aws/exporter",
        }
    }

    /// The `$datasource` Port records (the writer's User-Agent).
    fn datasource(self) -> &'static str {
        match self {
            Writer::OtherIntegration => "tidemark/0.1.0/aws-staging/111111111111",
            Writer::Ocean => "port-ocean/aws-v3/1.0.0/aws/exporter",
        }
    }

    fn all() -> [Writer; 2] {
        [Writer::OtherIntegration, Writer::Ocean]
    }
}

/// Who holds a stored entity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holder {
    /// [`OWNER`], attributed to this account.
    Us(Option<String>),
    Them(Writer),
}

/// One entity as the catalog stores it, read from its storage rather than through the adapter.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    pub key: EntityKey,
    pub holder: Holder,
    pub placeholder: bool,
    /// `title`, `icon`, `team`, `properties` and `relations`, see [`fields`].
    pub fields: Json,
}

/// The compared fields of an entity in one form whatever the catalog keeps: every field present,
/// absent `title`, `icon` and `team` as `null`, absent `properties` and `relations` as `{}`.
pub fn fields(entity: &Entity) -> Json {
    let value = serde_json::to_value(entity).expect("entity json");
    fields_of(value.as_object().expect("an entity is an object"))
}

fn fields_of(body: &Map<String, Json>) -> Json {
    let field = |name: &str, absent: Json| match body.get(name) {
        None => absent,
        Some(value) => value.clone(),
    };
    json!({
        "title": field("title", Json::Null),
        "icon": field("icon", Json::Null),
        "team": field("team", Json::Null),
        "properties": field("properties", json!({})),
        "relations": field("relations", json!({})),
    })
}

/// A catalog holding the [`account_blueprint`] and [`bucket_blueprint`], with a view of what it
/// stores that does not go through the adapter under test.
pub trait CatalogFixture {
    type Catalog: Catalog;

    fn catalog(&self) -> &Self::Catalog;

    /// Whether `owned` returns the `kind` an entity was written with (Port keeps no place for it).
    fn keeps_kind(&self) -> bool;

    /// Stores `entity` as if `writer` had written it.
    fn seed(&self, writer: Writer, entity: &Entity);

    /// Every stored entity, ordered by key.
    fn stored(&self) -> Vec<Stored>;

    /// The stored entity at `blueprint`/`id`, if there is one.
    fn find(&self, blueprint: &str, id: &str) -> Option<Stored> {
        let key = EntityKey::new(blueprint, id);
        self.stored().into_iter().find(|s| s.key == key)
    }
}

/// The blueprints every fixture starts with, created through the catalog's own apply.
async fn create_blueprints<C: Catalog>(catalog: &C) {
    let report = catalog
        .apply(
            OWNER,
            &Writes {
                blueprints: vec![create(account_blueprint()), create(bucket_blueprint())],
                ..Writes::default()
            },
            &NoProgress,
        )
        .await;
    assert_eq!(report.rejected, vec![]);
    assert_eq!(report.stopped, None);
}

/// The local catalog in a fresh folder (the file's parent folders do not exist yet).
pub struct LocalFixture {
    pub dir: TempDir,
    pub path: PathBuf,
    pub catalog: LocalCatalog,
}

impl LocalFixture {
    pub async fn start() -> LocalFixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("nested/folder/catalog.db");
        let catalog = LocalCatalog::open(&path).expect("open");
        create_blueprints(&catalog).await;
        LocalFixture { dir, path, catalog }
    }
}

impl CatalogFixture for LocalFixture {
    type Catalog = LocalCatalog;

    fn catalog(&self) -> &LocalCatalog {
        &self.catalog
    }

    fn keeps_kind(&self) -> bool {
        true
    }

    fn seed(&self, writer: Writer, entity: &Entity) {
        self.catalog
            .insert_foreign(writer.local_owner(), entity)
            .expect("seed");
    }

    fn stored(&self) -> Vec<Stored> {
        self.catalog
            .entities(None, None)
            .expect("entities")
            .into_iter()
            .map(|e| Stored {
                key: EntityKey::new(&e.blueprint, &e.identifier),
                holder: if e.owner == OWNER {
                    Holder::Us(e.account.clone())
                } else {
                    let writer = Writer::all()
                        .into_iter()
                        .find(|w| w.local_owner() == e.owner)
                        .unwrap_or_else(|| panic!("no test writes as {:?}", e.owner));
                    Holder::Them(writer)
                },
                placeholder: e.placeholder,
                fields: fields(&e.entity),
            })
            .collect()
    }
}

/// The Port catalog against a fresh stand-in, adopting [`ADOPT_PREFIX`].
pub struct PortFixture {
    pub standin: PortStandIn,
    pub catalog: PortCatalog,
}

impl PortFixture {
    pub async fn start() -> PortFixture {
        let standin = PortStandIn::start().await;
        let mut options = port_options();
        options.adopt_prefixes = vec![ADOPT_PREFIX.to_string()];
        let catalog = PortCatalog::with_options(standin.config(), OWNER, options).expect("catalog");
        create_blueprints(&catalog).await;
        PortFixture { standin, catalog }
    }
}

impl CatalogFixture for PortFixture {
    type Catalog = PortCatalog;

    fn catalog(&self) -> &PortCatalog {
        &self.catalog
    }

    fn keeps_kind(&self) -> bool {
        false
    }

    fn seed(&self, writer: Writer, entity: &Entity) {
        let body = serde_json::to_value(entity).expect("entity json");
        self.standin
            .seed_entity(&entity.blueprint, body, writer.datasource());
    }

    fn stored(&self) -> Vec<Stored> {
        self.standin
            .entities()
            .into_iter()
            .map(|e| {
                // `tidemark/<version>/<integration>/<account>` names the integration that owns it.
                let parts: Vec<&str> = e.datasource.split('/').collect();
                let holder = match parts.as_slice() {
                    ["tidemark", _, integration, account] if *integration == OWNER => {
                        Holder::Us(Some(account.to_string()))
                    }
                    _ => {
                        let writer = Writer::all()
                            .into_iter()
                            .find(|w| w.datasource() == e.datasource)
                            .unwrap_or_else(|| panic!("no test writes as {:?}", e.datasource));
                        Holder::Them(writer)
                    }
                };
                // What `create_missing_related_entities` creates: nothing but an identifier.
                let placeholder = e.body.keys().all(|k| k == "identifier");
                Stored {
                    key: EntityKey::new(&e.blueprint, &e.identifier),
                    holder,
                    placeholder,
                    fields: fields_of(&e.body),
                }
            })
            .collect()
    }
}

/// What `owned` says of one entity: key, account, placeholder and the compared fields.
pub fn owned_view(owned: &[OwnedEntity]) -> Vec<(EntityKey, Option<String>, bool, Json)> {
    let mut view: Vec<_> = owned
        .iter()
        .map(|o| {
            (
                o.entity.key(),
                o.account.clone(),
                o.placeholder,
                fields(&o.entity),
            )
        })
        .collect();
    view.sort_by(|a, b| a.0.cmp(&b.0));
    view
}
