//! The values that flow through the data path: raw items from a source, entities for a catalog,
//! and the keys, scopes and blueprints both sides share. Plain data, no I/O.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json, json};

/// The synthetic kind with one item per discovered account.
pub const ACCOUNT_INFO_KIND: &str = "AWS::Account::Info";
/// The `__Region` of account items and the region a snapshot records them under.
pub const GLOBAL_REGION: &str = "global";

/// One resource as a source listed it, after `Properties` was parsed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RawItem {
    pub account: String,
    pub account_name: Option<String>,
    pub region: String,
    pub kind: String,
    pub identifier: String,
    /// The resource model it was listed with ([`model_key`]); `None` when it was listed without
    /// one, or came from somewhere that does not say (`tidemark map`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub properties: Json,
}

impl RawItem {
    /// How messages name the item: `item <id> (account …, region …, kind …)`.
    pub fn label(&self) -> String {
        let mut out = String::new();
        write_item_label(
            &mut out,
            &self.identifier,
            &self.account,
            &self.region,
            &self.kind,
        );
        out
    }

    /// The item exactly as a mapping sees it (docs/contract.md "What a mapping sees"). An account or region
    /// nobody gave (`tidemark map` without `--account`/`--region`) is `null`, as jq would show a
    /// missing field, not an empty string.
    pub fn to_mapping_input(&self) -> Json {
        let (account, region) = (given(&self.account), given(&self.region));
        json!({
            "Identifier": self.identifier,
            "Type": self.kind,
            "Properties": self.properties,
            "__ExtraContext": {
                "AccountId": account,
                "AccountName": self.account_name,
                "Region": region,
            },
            "__AccountId": account,
            "__Region": region,
            "__Kind": self.kind,
        })
    }

    /// Rough memory held by this item, for the watch cache limit.
    pub fn approx_size(&self) -> usize {
        fn size(v: &Json) -> usize {
            match v {
                Json::Null | Json::Bool(_) | Json::Number(_) => 16,
                Json::String(s) => 24 + s.len(),
                Json::Array(a) => 24 + a.iter().map(size).sum::<usize>(),
                Json::Object(o) => {
                    48 + o.iter().map(|(k, v)| 24 + k.len() + size(v)).sum::<usize>()
                }
            }
        }
        128 + self.identifier.len() + self.kind.len() + size(&self.properties)
    }
}

/// An item's account or region as mappings see it: `None` (jq's `null`) when nobody gave one,
/// which only `tidemark map` without `--account`/`--region` leaves empty.
pub fn given(field: &str) -> Option<&str> {
    (!field.is_empty()).then_some(field)
}

/// Where an entity sits in a catalog: blueprints are namespaces for identifiers.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EntityKey {
    pub blueprint: String,
    pub identifier: String,
}

impl EntityKey {
    pub fn new(blueprint: impl Into<String>, identifier: impl Into<String>) -> EntityKey {
        EntityKey {
            blueprint: blueprint.into(),
            identifier: identifier.into(),
        }
    }
}

impl fmt::Display for EntityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.blueprint, self.identifier)
    }
}

/// An entity as Port takes it. `None` means "the mapping does not define this field", which
/// matters for merge semantics and for `map` output; `Some(Json::Null)` is an explicit null.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    pub identifier: String,
    pub blueprint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<Json>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<Json>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<Json>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<Map<String, Json>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relations: Option<Map<String, Json>>,
}

impl Entity {
    pub fn new(blueprint: impl Into<String>, identifier: impl Into<String>) -> Entity {
        Entity {
            identifier: identifier.into(),
            blueprint: blueprint.into(),
            title: None,
            icon: None,
            team: None,
            properties: None,
            relations: None,
        }
    }

    pub fn key(&self) -> EntityKey {
        EntityKey::new(&self.blueprint, &self.identifier)
    }

    /// Identifiers this entity points at, per relation, whatever the relation's cardinality.
    pub fn relation_targets(&self) -> impl Iterator<Item = (&str, &str)> {
        self.relations.iter().flatten().flat_map(|(name, value)| {
            let targets: Vec<&str> = match value {
                Json::String(s) => vec![s.as_str()],
                Json::Array(items) => items.iter().filter_map(Json::as_str).collect(),
                _ => Vec::new(),
            };
            targets.into_iter().map(move |t| (name.as_str(), t))
        })
    }
}

/// How a desired entity is written, from its mapping file's top-level flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WriteOptions {
    /// `enableMergeEntity`: merge into the existing entity instead of replacing it.
    pub merge: bool,
    /// `createMissingRelatedEntities`: the catalog creates empty relation targets.
    pub create_missing_related: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            merge: true,
            create_missing_related: true,
        }
    }
}

/// Where a desired entity came from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Origin {
    pub account: String,
    pub kind: String,
    pub region: String,
    pub item: String,
}

impl Origin {
    /// How messages name the item: `item <id> (account …, region …, kind …)`.
    pub fn label(&self) -> String {
        let mut out = String::new();
        write_item_label(
            &mut out,
            &self.item,
            &self.account,
            &self.region,
            &self.kind,
        );
        out
    }
}

/// Writes how messages name an item into `out`, which the mapping watchdog reuses per item.
pub fn write_item_label(out: &mut String, id: &str, account: &str, region: &str, kind: &str) {
    use std::fmt::Write as _;
    let _ = write!(
        out,
        "item {id} (account {account}, region {region}, kind {kind})"
    );
}

/// An entity the mappings produced, with its origin and write options.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub entity: Entity,
    pub origin: Origin,
    pub write: WriteOptions,
}

/// An entity tidemark owns in the catalog.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OwnedEntity {
    pub entity: Entity,
    /// The account it was attributed to; `None` when the catalog cannot tell.
    pub account: Option<String>,
    pub kind: Option<String>,
    /// An empty relation target the catalog created (`createMissingRelatedEntities`).
    pub placeholder: bool,
}

/// An entity at a key tidemark wants, owned by someone else.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ForeignEntity {
    pub entity: Entity,
    /// The other owner: an integration identifier (local) or a `$datasource` (Port); empty when unknown.
    pub owner: String,
}

/// A foreign entity that relates to one of ours.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ForeignReference {
    pub target: EntityKey,
    pub referrer: EntityKey,
    pub owner: String,
}

/// A Port blueprint definition, kept as JSON so that nothing we do not model is lost.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Blueprint(pub Json);

/// One relation of a blueprint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelationDef {
    pub name: String,
    pub target: String,
    pub many: bool,
    pub required: bool,
}

impl Blueprint {
    pub fn identifier(&self) -> &str {
        self.0
            .get("identifier")
            .and_then(Json::as_str)
            .unwrap_or_default()
    }

    /// `schema.properties` as a map (empty when absent).
    pub fn properties(&self) -> Map<String, Json> {
        self.0
            .pointer("/schema/properties")
            .and_then(Json::as_object)
            .cloned()
            .unwrap_or_default()
    }

    pub fn relations(&self) -> Vec<RelationDef> {
        self.0
            .get("relations")
            .and_then(Json::as_object)
            .map(|rels| {
                rels.iter()
                    .map(|(name, def)| RelationDef {
                        name: name.clone(),
                        target: def
                            .get("target")
                            .and_then(Json::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        many: def.get("many").and_then(Json::as_bool).unwrap_or(false),
                        required: def.get("required").and_then(Json::as_bool).unwrap_or(false),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// This blueprint with its relations removed, for the first step of a bootstrap.
    pub fn without_relations(&self) -> Blueprint {
        let mut json = self.0.clone();
        if let Some(obj) = json.as_object_mut() {
            obj.insert("relations".into(), json!({}));
        }
        Blueprint(json)
    }
}

/// What a kind's `selector` says about listing it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RegionPolicy {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}

impl RegionPolicy {
    /// Deny wins; a non-empty allow list restricts.
    pub fn admits(&self, region: &str) -> bool {
        !self.deny.iter().any(|r| r == region)
            && (self.allow.is_empty() || self.allow.iter().any(|r| r == region))
    }
}

/// One listing the mappings need: a kind with one resource model (or none), and the selector
/// options of the entries that share it combined.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KindSpec {
    pub kind: String,
    pub region_policy: RegionPolicy,
    pub use_get_resource_api: bool,
    pub resource_model: Option<Json>,
    /// Instead of one model: one per listed item of a parent kind (`resourceModelsFrom`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models_from: Option<ModelsFrom>,
}

/// `selector.resourceModelsFrom`: the child kind is listed once per item of `kind` listed in the
/// same account and region, with the resource model the jq expression `model` makes of it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ModelsFrom {
    pub kind: String,
    pub model: String,
}

impl KindSpec {
    /// The resource model as [`model_key`] writes it, if the kind is listed with one.
    pub fn model(&self) -> Option<String> {
        self.resource_model.as_ref().map(model_key)
    }
}

/// A resource model as one stable string: compact JSON with object keys sorted, so that the same
/// model written in any key order is one listing, and scopes, plans and snapshots name it alike.
/// A model given as a string of JSON is that JSON.
pub fn model_key(model: &Json) -> String {
    fn sorted(value: &Json) -> Json {
        match value {
            Json::Object(fields) => {
                let mut keys: Vec<&String> = fields.keys().collect();
                keys.sort();
                Json::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), sorted(&fields[k])))
                        .collect(),
                )
            }
            Json::Array(items) => Json::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    match model {
        Json::String(text) => match serde_json::from_str::<Json>(text) {
            Ok(parsed) => sorted(&parsed).to_string(),
            Err(_) => text.clone(),
        },
        other => sorted(other).to_string(),
    }
}

/// Types that Cloud Control lists from any region with the same result.
pub fn is_global_kind(kind: &str) -> bool {
    kind == "AWS::S3::Bucket"
        || ["AWS::IAM::", "AWS::CloudFront::", "AWS::Route53::"]
            .iter()
            .any(|p| kind.starts_with(p))
}

/// Per-account hashes and the like are keyed by account id; `None` stands for "unknown account".
pub type AccountId = String;

/// A stable, sortable map used wherever output order must not depend on hashing.
pub type SortedMap<K, V> = BTreeMap<K, V>;

/// Lowercase hexadecimal digits of `bytes` (digests in plans and config hashes).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_policy_deny_wins_and_allow_restricts() {
        let p = RegionPolicy {
            allow: vec!["us-east-1".into(), "eu-west-1".into()],
            deny: vec!["eu-west-1".into()],
        };
        assert!(p.admits("us-east-1"));
        assert!(!p.admits("eu-west-1"));
        assert!(!p.admits("ap-south-1"));
        assert!(RegionPolicy::default().admits("ap-south-1"));
    }

    #[test]
    fn a_model_is_keyed_by_its_sorted_compact_json_whatever_its_key_order_or_form() {
        let key = model_key(&json!({"b": [1, {"z": 1, "a": 2}], "a": "x"}));
        assert_eq!(key, r#"{"a":"x","b":[1,{"a":2,"z":1}]}"#);
        assert_eq!(
            model_key(&json!(r#"{ "b": [1, {"z": 1, "a": 2}], "a": "x" }"#)),
            key
        );
        assert_eq!(model_key(&json!("not json")), "not json");
    }

    #[test]
    fn global_kinds_are_recognised() {
        assert!(is_global_kind("AWS::S3::Bucket"));
        assert!(is_global_kind("AWS::IAM::Role"));
        assert!(is_global_kind("AWS::Route53::HostedZone"));
        assert!(!is_global_kind("AWS::S3::AccessPoint"));
        assert!(!is_global_kind("AWS::EC2::Instance"));
    }

    #[test]
    fn the_mapping_input_has_the_documented_shape() {
        let item = RawItem {
            account: "222222222222".into(),
            account_name: Some("prod".into()),
            region: "us-east-1".into(),
            kind: "AWS::S3::Bucket".into(),
            identifier: "my-bucket".into(),
            model: None,
            properties: json!({"BucketName": "my-bucket"}),
        };
        assert_eq!(
            item.to_mapping_input(),
            json!({"Identifier": "my-bucket", "Type": "AWS::S3::Bucket", "Properties": {"BucketName": "my-bucket"},
                   "__ExtraContext": {"AccountId": "222222222222", "AccountName": "prod", "Region": "us-east-1"},
                   "__AccountId": "222222222222", "__Region": "us-east-1", "__Kind": "AWS::S3::Bucket"})
        );
    }
}
