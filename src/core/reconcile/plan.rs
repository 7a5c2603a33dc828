//! The plan: desired entities + owned entities + what the source reported → creates, updates and
//! deletes, with every delete that lacks proof withheld (docs/contract.md, "Ownership" to
//! "Order"). Pure: values in, a [`Plan`] out.

use crate::core::shard::Shard;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use sha2::{Digest, Sha256};

use super::compare::{CompareSet, entity_from_fields, normalize, same_fields};
use super::order::BlueprintOrder;
use crate::core::mapping::Producible;
use crate::core::model::{
    Blueprint, Desired, EntityKey, ForeignEntity, ForeignReference, OwnedEntity, WriteOptions,
};
use crate::core::report::{Discovery, Listing, SourceReport};
use crate::core::writes::{BlueprintChange, Delete, Upsert, Writes};

pub const FORMAT_VERSION: &str = "1";

/// `--allow-mass-delete`: nobody, every account, or the listed accounts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MassDelete {
    #[default]
    None,
    All(AllAccounts),
    Accounts(BTreeSet<String>),
}

/// Serialises as `"all"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AllAccounts {
    All,
}

impl MassDelete {
    pub fn allows(&self, account: Option<&str>) -> bool {
        match self {
            MassDelete::None => false,
            MassDelete::All(_) => true,
            MassDelete::Accounts(ids) => account.is_some_and(|a| ids.contains(a)),
        }
    }

    /// Parses the flag's value: absent → all accounts; `ID,ID` → those.
    pub fn from_flag(value: Option<&str>) -> MassDelete {
        match value {
            None | Some("") => MassDelete::All(AllAccounts::All),
            Some(list) => MassDelete::Accounts(
                list.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect(),
            ),
        }
    }
}

/// Why a change was not made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    ScopeFailed,
    AccountUnassumable,
    RegionsFailed,
    DiscoveryFailed,
    MappingError,
    Threshold,
    AllEntities,
    ForeignOwner,
    ForeignDependents,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Delete,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub create: usize,
    pub update: usize,
    pub delete: usize,
    pub unchanged: usize,
    pub withheld: usize,
}

/// A blueprint change, with what `apply --plan` needs to make it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlueprintPlan {
    pub action: Action,
    pub identifier: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition: Option<Blueprint>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub add_properties: Map<String, Json>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub add_relations: Map<String, Json>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub action: Action,
    pub blueprint: String,
    pub identifier: String,
    pub account: Option<String>,
    pub kind: Option<String>,
    pub before: Option<Json>,
    pub after: Option<Json>,
    /// Set when the owning account changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_account: Option<String>,
    /// Set when tidemark takes over another owner's entity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopted_from: Option<String>,
    /// How the write is made (from the mapping file's flags); absent on deletes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write: Option<WriteOptions>,
}

impl Change {
    pub fn key(&self) -> EntityKey {
        EntityKey::new(&self.blueprint, &self.identifier)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Withheld {
    pub action: Action,
    pub blueprint: String,
    pub identifier: String,
    pub account: Option<String>,
    pub kind: Option<String>,
    pub reason: Reason,
    pub detail: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    Ok,
    Unassumable,
    RegionsFailed,
    Gone,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccountLine {
    pub id: String,
    pub name: Option<String>,
    pub status: AccountStatus,
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScopeLine {
    pub account: String,
    pub region: String,
    pub kind: String,
    /// The resource model of the listing, for kinds listed once per model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub status: ScopeStatus,
    pub error: Option<String>,
}

/// How a listing the plan names went: the plan lists only the ones that failed (a type missing
/// from a region is listed as failed only when it withheld a delete).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScopeStatus {
    Failed,
}

/// A warning or mapping error tied to an item.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Issue {
    pub account: Option<String>,
    pub region: Option<String>,
    pub kind: Option<String>,
    pub item: Option<String>,
    pub message: String,
}

/// What the plan was computed against, so `apply --plan` can refuse a stale plan.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Basis {
    pub catalog: String,
    pub config_hash: String,
    pub allow_mass_delete: MassDelete,
    pub adopt: bool,
    /// Per account (and `unknown` for entities without one), a hash of its owned entities.
    pub accounts: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub format_version: String,
    pub integration: String,
    /// The shard that made the plan (`--shard`, `shard:`); absent when one process owns every
    /// account. A sharded plan says nothing about the other shards' accounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    pub summary: Summary,
    pub blueprints: Vec<BlueprintPlan>,
    pub changes: Vec<Change>,
    pub withheld: Vec<Withheld>,
    pub discovery: Discovery,
    pub accounts: Vec<AccountLine>,
    pub scopes: Vec<ScopeLine>,
    pub warnings: Vec<Issue>,
    /// Items skipped because their mapping failed; each makes its scope incomplete.
    #[serde(default)]
    pub mapping_errors: Vec<Issue>,
    pub basis: Basis,
}

impl Plan {
    /// Exit code 2 territory: something would be written.
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty() || !self.blueprints.is_empty()
    }

    /// Exit code 3 territory: a scope was incomplete or a change was withheld.
    pub fn is_partial(&self) -> bool {
        !self.withheld.is_empty()
            || !self.scopes.is_empty()
            || !self.mapping_errors.is_empty()
            || !self.discovery.is_complete()
            || self.accounts.iter().any(|a| {
                matches!(
                    a.status,
                    AccountStatus::Unassumable | AccountStatus::RegionsFailed
                )
            })
    }

    /// The writes `apply` makes, in order.
    pub fn writes(&self) -> Writes {
        let blueprints = self
            .blueprints
            .iter()
            .filter_map(|b| match b.action {
                Action::Create => b
                    .definition
                    .clone()
                    .map(|definition| BlueprintChange::Create {
                        identifier: b.identifier.clone(),
                        definition,
                    }),
                _ => Some(BlueprintChange::Update {
                    identifier: b.identifier.clone(),
                    add_properties: b.add_properties.clone(),
                    add_relations: b.add_relations.clone(),
                }),
            })
            .collect();
        let mut upserts = Vec::new();
        let mut deletes = Vec::new();
        for c in &self.changes {
            match (c.action, &c.after) {
                (Action::Delete, _) => deletes.push(Delete {
                    key: c.key(),
                    account: c.account.clone(),
                }),
                (_, Some(after)) => upserts.push(Upsert {
                    entity: entity_from_fields(&c.blueprint, &c.identifier, after),
                    account: c.account.clone().unwrap_or_default(),
                    kind: c.kind.clone().unwrap_or_default(),
                    write: c.write.unwrap_or_default(),
                }),
                (_, None) => {}
            }
        }
        Writes {
            blueprints,
            upserts,
            deletes,
        }
    }
}

/// Everything the plan is computed from.
pub struct PlanInput<'a> {
    pub integration: &'a str,
    /// `integration.adopt` prefixes.
    pub adopt_prefixes: &'a [String],
    /// `--adopt`: take over any foreign entity.
    pub adopt_all: bool,
    pub allow_mass_delete: MassDelete,
    pub catalog: String,
    pub config_hash: String,
    /// Every entity the mappings produced, duplicates included.
    pub desired: &'a [Desired],
    pub owned: Vec<OwnedEntity>,
    /// Entities of other owners at desired keys.
    pub foreign: Vec<ForeignEntity>,
    /// Entities of other owners relating to owned entities.
    pub foreign_references: Vec<ForeignReference>,
    pub report: &'a SourceReport,
    pub mapping_errors: Vec<Issue>,
    pub warnings: Vec<Issue>,
    /// Which blueprints each mapped kind can produce.
    pub producible: BTreeMap<String, Producible>,
    pub threshold: f64,
    pub desired_blueprints: &'a [Blueprint],
    pub catalog_blueprints: &'a [Blueprint],
}

/// The account bucket of entities without a known account.
pub const UNKNOWN_ACCOUNT: &str = "unknown";

/// Kept owned entities and why (`None`: kept only because a kept entity relates to it).
type Kept<'a> = Vec<(&'a OwnedEntity, Option<(Reason, String)>)>;

/// Computes the plan. The same inputs in any order give the same plan: sources list
/// concurrently, so the order of items, listings and issues differs from run to run.
///
/// The steps: one winner per key ([`dedupe`]); creates and updates ([`upserts`]); delete
/// candidates and every reason to keep them ([`delete_blockers`], [`hold_foreign_dependents`],
/// [`keep_referenced`], [`guard_mass_deletes`], then `keep_referenced` again for what the guards
/// kept); then order and summary.
pub fn plan(mut input: PlanInput<'_>) -> Plan {
    input.owned.sort_by(|a, b| {
        (&a.entity.blueprint, &a.entity.identifier)
            .cmp(&(&b.entity.blueprint, &b.entity.identifier))
    });
    input.foreign_references.sort();
    input.mapping_errors.sort();
    let mut warnings = input.warnings.clone();

    let all_blueprints: Vec<Blueprint> =
        merged_blueprints(input.desired_blueprints, input.catalog_blueprints);
    let order = BlueprintOrder::new(&all_blueprints);
    let relation_targets = relation_target_map(&all_blueprints);

    let desired_by_key = dedupe(input.desired, &mut warnings);
    let (mut changes, mut withheld, unchanged) = upserts(&input, &desired_by_key);

    let mut absent_blocking: BTreeSet<&Listing> = BTreeSet::new();
    let (mut deletes, mut kept) = delete_blockers(&input, &desired_by_key, &mut absent_blocking);
    hold_foreign_dependents(&input.foreign_references, &mut deletes, &mut kept);
    // Entities that kept entities relate to stay while referenced: checked before the guards,
    // so that they count only real deletes, and again after, for what the guards kept.
    let owned_keys: Vec<EntityKey> = input.owned.iter().map(|o| o.entity.key()).collect();
    let owned_by_id = by_identifier(owned_keys.iter());
    for guarded in [false, true] {
        if guarded {
            guard_mass_deletes(&input, &mut deletes, &mut kept, &mut warnings);
        }
        keep_referenced(
            &mut deletes,
            &mut kept,
            &desired_by_key,
            &input.owned,
            &relation_targets,
            &owned_by_id,
            &mut warnings,
        );
    }

    for (o, reason) in &kept {
        if let Some((reason, detail)) = reason {
            withheld.push(Withheld {
                action: Action::Delete,
                blueprint: o.entity.blueprint.clone(),
                identifier: o.entity.identifier.clone(),
                account: o.account.clone(),
                kind: o.kind.clone(),
                reason: *reason,
                detail: detail.clone(),
            });
        }
    }

    // Order: upserts by blueprint relation order (targets first); deletes dependents first.
    changes.sort_by(|a, b| {
        order
            .rank(&a.blueprint)
            .cmp(&order.rank(&b.blueprint))
            .then_with(|| a.blueprint.cmp(&b.blueprint))
            .then_with(|| a.identifier.cmp(&b.identifier))
    });
    let delete_changes = order_deletes(&deletes, &order, &relation_targets);
    changes.extend(delete_changes);
    withheld.sort_by(|a, b| {
        (a.action, &a.blueprint, &a.identifier).cmp(&(b.action, &b.blueprint, &b.identifier))
    });

    let blueprints = blueprint_plan(input.desired_blueprints, input.catalog_blueprints);
    let accounts = account_lines(input.report, &input.owned);
    let scopes = scope_lines(input.report, &absent_blocking);
    let summary = summarize(&changes, unchanged, withheld.len());
    let mapping_errors = input.mapping_errors;
    warnings.sort();
    Plan {
        format_version: FORMAT_VERSION.into(),
        integration: input.integration.into(),
        shard: None,
        summary,
        blueprints,
        changes,
        withheld,
        discovery: input.report.discovery.clone(),
        accounts,
        scopes,
        warnings,
        mapping_errors,
        basis: Basis {
            catalog: input.catalog,
            config_hash: input.config_hash,
            allow_mass_delete: input.allow_mass_delete,
            adopt: input.adopt_all,
            accounts: owned_hashes(&input.owned),
        },
    }
}

/// One winner per key, deterministically (the first origin); the others are warnings.
fn dedupe<'a>(
    desired: &'a [Desired],
    warnings: &mut Vec<Issue>,
) -> BTreeMap<EntityKey, &'a Desired> {
    let mut desired_by_key: BTreeMap<EntityKey, &Desired> = BTreeMap::new();
    let mut sorted: Vec<&Desired> = desired.iter().collect();
    sorted.sort_by(|a, b| a.origin.cmp(&b.origin));
    for d in sorted {
        let key = d.entity.key();
        match desired_by_key.get(&key) {
            Some(winner) => warnings.push(Issue {
                account: Some(d.origin.account.clone()),
                region: Some(d.origin.region.clone()),
                kind: Some(d.origin.kind.clone()),
                item: Some(d.origin.item.clone()),
                message: format!(
                    "duplicate entity {key}: also produced by account {} {} {} item {}, which wins",
                    winner.origin.account,
                    winner.origin.region,
                    winner.origin.kind,
                    winner.origin.item
                ),
            }),
            None => {
                desired_by_key.insert(key, d);
            }
        }
    }

    desired_by_key
}

/// Creates and updates (adoptions included), the creates withheld because another owner has
/// the key, and how many desired entities are unchanged.
fn upserts(
    input: &PlanInput<'_>,
    desired_by_key: &BTreeMap<EntityKey, &Desired>,
) -> (Vec<Change>, Vec<Withheld>, usize) {
    let mut changes = Vec::new();
    let mut withheld = Vec::new();
    let mut unchanged = 0usize;
    let owned_by_key: HashMap<EntityKey, &OwnedEntity> =
        input.owned.iter().map(|o| (o.entity.key(), o)).collect();
    let foreign_by_key: HashMap<EntityKey, &ForeignEntity> =
        input.foreign.iter().map(|f| (f.entity.key(), f)).collect();
    for (key, d) in desired_by_key {
        let account = Some(d.origin.account.clone());
        let kind = Some(d.origin.kind.clone());
        if let Some(current) = owned_by_key.get(key) {
            let moved = current.account.as_deref() != Some(d.origin.account.as_str());
            if !moved
                && !current.placeholder
                && same_fields(&d.entity, &current.entity, d.write.merge)
            {
                unchanged += 1;
                continue;
            }
            let set = if d.write.merge {
                CompareSet::merge(&d.entity)
            } else {
                CompareSet::replace(&d.entity, &current.entity)
            };
            let before = normalize(&current.entity, &set);
            let after = normalize(&d.entity, &set);
            if before == after && !moved && !current.placeholder {
                unchanged += 1;
                continue;
            }
            changes.push(Change {
                action: Action::Update,
                blueprint: key.blueprint.clone(),
                identifier: key.identifier.clone(),
                account,
                kind,
                before: Some(before),
                after: Some(after),
                previous_account: if moved {
                    current.account.clone().or(Some(UNKNOWN_ACCOUNT.into()))
                } else {
                    None
                },
                adopted_from: None,
                write: Some(d.write),
            });
        } else if let Some(foreign) = foreign_by_key.get(key) {
            let adoptable = input.adopt_all
                || input
                    .adopt_prefixes
                    .iter()
                    .any(|p| !p.is_empty() && foreign.owner.starts_with(p.as_str()));
            if adoptable {
                let set = if d.write.merge {
                    CompareSet::merge(&d.entity)
                } else {
                    CompareSet::replace(&d.entity, &foreign.entity)
                };
                changes.push(Change {
                    action: Action::Update,
                    blueprint: key.blueprint.clone(),
                    identifier: key.identifier.clone(),
                    account,
                    kind,
                    before: Some(normalize(&foreign.entity, &set)),
                    after: Some(normalize(&d.entity, &set)),
                    previous_account: None,
                    adopted_from: Some(foreign.owner.clone()),
                    write: Some(d.write),
                });
            } else {
                let owner = if foreign.owner.is_empty() {
                    "another owner".to_string()
                } else {
                    format!("{:?}", foreign.owner)
                };
                withheld.push(Withheld {
                    action: Action::Create,
                    blueprint: key.blueprint.clone(),
                    identifier: key.identifier.clone(),
                    account,
                    kind,
                    reason: Reason::ForeignOwner,
                    detail: format!(
                        "{key} already exists, owned by {owner}; add its owner to integration.adopt or run with --adopt to take it over"
                    ),
                });
            }
        } else {
            let set = if d.write.merge {
                CompareSet::merge(&d.entity)
            } else {
                CompareSet::all(&d.entity)
            };
            changes.push(Change {
                action: Action::Create,
                blueprint: key.blueprint.clone(),
                identifier: key.identifier.clone(),
                account,
                kind,
                before: None,
                after: Some(normalize(&d.entity, &set)),
                previous_account: None,
                adopted_from: None,
                write: Some(d.write),
            });
        }
    }

    (changes, withheld, unchanged)
}

/// Owned entities nothing desires: deletes, unless their scope, account or discovery is
/// incomplete (then kept with the reason). `absent_blocking` collects the missing-type listings
/// that withheld something, so the plan lists them as failed.
fn delete_blockers<'a, 'l>(
    input: &'l PlanInput<'a>,
    desired_by_key: &BTreeMap<EntityKey, &Desired>,
    absent_blocking: &mut BTreeSet<&'l Listing>,
) -> (BTreeMap<EntityKey, &'l OwnedEntity>, Kept<'l>) {
    let incomplete = incomplete_kinds(input);
    let absent = absent_types(input.report);
    let discovered: HashMap<&str, &crate::core::report::AccountReport> = input
        .report
        .accounts
        .iter()
        .map(|a| (a.id.as_str(), a))
        .collect();
    let mut candidates: Vec<&OwnedEntity> = input
        .owned
        .iter()
        .filter(|o| !desired_by_key.contains_key(&o.entity.key()))
        .collect();
    candidates.sort_by_key(|a| a.entity.key());
    let mut deletes: BTreeMap<EntityKey, &OwnedEntity> = BTreeMap::new();
    let mut kept: Kept<'_> = Vec::new();
    for o in candidates {
        let reason = delete_blocker(
            o,
            &discovered,
            (&incomplete, &absent),
            &input.producible,
            &input.report.discovery,
            absent_blocking,
        );
        match reason {
            Some(r) => kept.push((o, Some(r))),
            None => {
                deletes.insert(o.entity.key(), o);
            }
        }
    }
    (deletes, kept)
}

/// Keeps deletes that entities of other owners relate to.
fn hold_foreign_dependents<'a>(
    references: &[ForeignReference],
    deletes: &mut BTreeMap<EntityKey, &'a OwnedEntity>,
    kept: &mut Kept<'a>,
) {
    let mut foreign_refs: BTreeMap<&EntityKey, Vec<&ForeignReference>> = BTreeMap::new();
    for r in references {
        foreign_refs.entry(&r.target).or_default().push(r);
    }
    let keys: Vec<EntityKey> = deletes.keys().cloned().collect();
    for key in keys {
        if let Some(refs) = foreign_refs.get(&key)
            && let Some(o) = deletes.remove(&key)
        {
            let who: Vec<String> = refs
                .iter()
                .take(3)
                .map(|r| format!("{} ({})", r.referrer, r.owner))
                .collect();
            kept.push((
                o,
                Some((
                    Reason::ForeignDependents,
                    format!("entities of other owners relate to it: {}", who.join(", ")),
                )),
            ));
        }
    }
}

/// The mass-delete guards per account: all of an account's entities, or more than the
/// threshold, are kept unless `--allow-mass-delete` confirms them; a confirmation that
/// confirmed nothing is a warning.
fn guard_mass_deletes<'a>(
    input: &PlanInput<'a>,
    deletes: &mut BTreeMap<EntityKey, &'a OwnedEntity>,
    kept: &mut Kept<'a>,
    warnings: &mut Vec<Issue>,
) {
    let mut owned_per_account: HashMap<String, usize> = HashMap::new();
    for o in &input.owned {
        *owned_per_account
            .entry(bucket(o.account.as_deref()))
            .or_default() += 1;
    }
    let mut deletes_per_account: BTreeMap<String, Vec<EntityKey>> = BTreeMap::new();
    for (key, o) in deletes.iter() {
        deletes_per_account
            .entry(bucket(o.account.as_deref()))
            .or_default()
            .push(key.clone());
    }
    let mut confirmed: BTreeSet<String> = BTreeSet::new();
    for (account, keys) in deletes_per_account {
        let account_opt = (account != UNKNOWN_ACCOUNT).then_some(account.as_str());
        let owned = owned_per_account.get(&account).copied().unwrap_or(0);
        let n = keys.len();
        let flag = match account_opt {
            Some(a) => format!("--allow-mass-delete={a}"),
            None => "--allow-mass-delete".to_string(),
        };
        let blocked = if n == owned && owned > 0 {
            Some((
                Reason::AllEntities,
                format!(
                    "would delete all {owned} entities of account {account}; confirm with {flag}"
                ),
            ))
        } else if owned > 0 && (n as f64 / owned as f64) > input.threshold {
            Some((
                Reason::Threshold,
                format!(
                    "would delete {n} of {owned} entities of account {account} ({:.0}% > entityDeletionThreshold {:.0}%); confirm with {flag}",
                    100.0 * n as f64 / owned as f64,
                    100.0 * input.threshold
                ),
            ))
        } else {
            None
        };
        if blocked.is_some() && input.allow_mass_delete.allows(account_opt) {
            confirmed.insert(account);
            continue;
        }
        if let Some((reason, detail)) = blocked {
            for key in keys {
                if let Some(o) = deletes.remove(&key) {
                    kept.push((o, Some((reason, detail.clone()))));
                }
            }
        }
    }
    // An account the flag names whose deletes no guard held back: most likely a mistyped id,
    // which would otherwise pass silently and leave the intended account's deletes withheld.
    if let MassDelete::Accounts(named) = &input.allow_mass_delete {
        for account in named.difference(&confirmed) {
            warnings.push(Issue {
                account: Some(account.clone()),
                region: None,
                kind: None,
                item: None,
                message: format!(
                    "--allow-mass-delete names account {account}, but the guards held back no deletes of it; nothing to confirm (a mistyped account id?)"
                ),
            });
        }
    }
}

/// The failed listings, and the missing-type listings that withheld a delete.
fn scope_lines(report: &SourceReport, absent_blocking: &BTreeSet<&Listing>) -> Vec<ScopeLine> {
    let mut scopes: Vec<ScopeLine> = report
        .listings
        .iter()
        // A type missing from a region is a complete, empty listing unless it withheld a delete.
        .filter(|l| !l.unavailable || absent_blocking.contains(l))
        .filter_map(|l| {
            l.error.as_ref().map(|e| ScopeLine {
                account: l.account.clone(),
                region: l.region.clone(),
                kind: l.kind.clone(),
                model: l.model.clone(),
                status: ScopeStatus::Failed,
                error: Some(if l.unavailable {
                    format!(
                        "{e} (the type does not exist in this region, but owned entities it can produce are no longer listed and may have come from here)"
                    )
                } else {
                    e.clone()
                }),
            })
        })
        .collect();
    scopes.sort_by(|a, b| {
        (&a.account, &a.region, &a.kind, &a.model, &a.error)
            .cmp(&(&b.account, &b.region, &b.kind, &b.model, &b.error))
    });
    scopes
}

fn summarize(changes: &[Change], unchanged: usize, withheld: usize) -> Summary {
    let count = |action: Action| changes.iter().filter(|c| c.action == action).count();
    Summary {
        create: count(Action::Create),
        update: count(Action::Update),
        delete: count(Action::Delete),
        unchanged,
        withheld,
    }
}

fn bucket(account: Option<&str>) -> String {
    account.unwrap_or(UNKNOWN_ACCOUNT).to_string()
}

/// Per account, the incomplete kinds and why.
fn incomplete_kinds(input: &PlanInput<'_>) -> HashMap<String, BTreeMap<String, (Reason, String)>> {
    let mut out: HashMap<String, BTreeMap<String, (Reason, String)>> = HashMap::new();
    let mut listings: Vec<&crate::core::report::Listing> = input.report.listings.iter().collect();
    listings.sort();
    for l in listings.into_iter().filter(|l| !l.unavailable) {
        if let Some(e) = &l.error {
            out.entry(l.account.clone())
                .or_default()
                .entry(l.kind.clone())
                .or_insert_with(|| {
                    let model = l
                        .model
                        .as_ref()
                        .map(|m| format!(" with resource model {m}"))
                        .unwrap_or_default();
                    (
                        Reason::ScopeFailed,
                        format!("listing {}{model} in {} failed: {e}", l.kind, l.region),
                    )
                });
        }
    }
    for e in &input.mapping_errors {
        if let (Some(account), Some(kind)) = (&e.account, &e.kind) {
            out.entry(account.clone())
                .or_default()
                .entry(kind.clone())
                .or_insert_with(|| {
                    (
                        Reason::MappingError,
                        format!(
                            "item {} of {kind} had a mapping error: {}",
                            e.item.as_deref().unwrap_or("?"),
                            e.message
                        ),
                    )
                });
        }
    }
    out
}

/// Per account, the listings of types that do not exist in their region, in order.
fn absent_types(report: &SourceReport) -> HashMap<&str, Vec<&Listing>> {
    let mut out: HashMap<&str, Vec<&Listing>> = HashMap::new();
    for l in report.listings.iter().filter(|l| l.unavailable) {
        out.entry(l.account.as_str()).or_default().push(l);
    }
    out.values_mut().for_each(|v| v.sort());
    out
}

/// Per account: the kinds with an incomplete scope and why, and the listings of types missing
/// from a region.
type Incomplete<'m, 'l> = (
    &'m HashMap<String, BTreeMap<String, (Reason, String)>>,
    &'m HashMap<&'l str, Vec<&'l Listing>>,
);

/// Why an owned entity that nothing desires may not be deleted, if anything. A type missing from
/// a region withholds it only when it could have come from there: the type can produce its
/// blueprint and, where the catalog knows its kind, is that kind; `blocking` collects those
/// listings. Owned entities carry no region, so an entity of that kind from another region of
/// the account is withheld too: nothing proves which region it came from.
fn delete_blocker<'l>(
    o: &OwnedEntity,
    discovered: &HashMap<&str, &crate::core::report::AccountReport>,
    (incomplete, absent): Incomplete<'_, 'l>,
    producible: &BTreeMap<String, Producible>,
    discovery: &Discovery,
    blocking: &mut BTreeSet<&'l Listing>,
) -> Option<(Reason, String)> {
    let blueprint = &o.entity.blueprint;
    let can_produce = |kind: &str| match producible.get(kind) {
        Some(Producible::Any) => true,
        Some(Producible::Only(set)) => set.contains(blueprint),
        None => false,
    };
    let any_kind_produces = producible.keys().any(|k| can_produce(k));
    let Some(account) = o.account.as_deref().and_then(|a| discovered.get(a)) else {
        if !discovery.is_complete() {
            let why = discovery
                .error
                .clone()
                .unwrap_or_else(|| "discovery did not complete".into());
            return Some((
                Reason::DiscoveryFailed,
                format!("account discovery was not complete ({why}), so no account counts as gone"),
            ));
        }
        return None;
    };
    if !account.assumed {
        if any_kind_produces {
            let why = account
                .error
                .clone()
                .unwrap_or_else(|| "the role could not be assumed".into());
            return Some((Reason::AccountUnassumable, why));
        }
        return None;
    }
    if let Some(e) = &account.regions_error {
        if any_kind_produces {
            return Some((
                Reason::RegionsFailed,
                format!("the account's regions could not be listed: {e}"),
            ));
        }
        return None;
    }
    let failed = incomplete
        .get(account.id.as_str())
        .and_then(|kinds| kinds.iter().find(|(kind, _)| can_produce(kind)))
        .map(|(_, why)| why.clone());
    if failed.is_some() {
        return failed;
    }
    let missing = absent
        .get(account.id.as_str())?
        .iter()
        .find(|l| can_produce(&l.kind) && o.kind.as_deref().is_none_or(|k| k == l.kind))?;
    blocking.insert(missing);
    Some((
        Reason::ScopeFailed,
        format!(
            "{} does not exist in {} ({}), and this entity, which it can produce, is no longer listed: it may have been listed there before, so it is not proven gone",
            missing.kind,
            missing.region,
            missing.error.as_deref().unwrap_or_default()
        ),
    ))
}

/// (blueprint, relation) → target blueprint.
fn relation_target_map(blueprints: &[Blueprint]) -> HashMap<(String, String), String> {
    blueprints
        .iter()
        .flat_map(|b| {
            b.relations()
                .into_iter()
                .map(move |r| ((b.identifier().to_string(), r.name), r.target))
        })
        .collect()
}

/// Owned entity keys by identifier, for relations whose target blueprint is unknown.
type ByIdentifier<'a> = HashMap<&'a str, Vec<&'a EntityKey>>;

fn by_identifier<'a>(keys: impl Iterator<Item = &'a EntityKey>) -> ByIdentifier<'a> {
    let mut index: ByIdentifier<'a> = HashMap::new();
    for key in keys {
        index.entry(key.identifier.as_str()).or_default().push(key);
    }
    index
}

/// The keys an entity's relations point at, except the relations named in `replaced`.
fn referenced_keys(
    entity: &crate::core::model::Entity,
    replaced: Option<&Map<String, Json>>,
    targets: &HashMap<(String, String), String>,
    by_id: &ByIdentifier<'_>,
) -> Vec<EntityKey> {
    entity
        .relation_targets()
        .filter(|(rel, _)| replaced.is_none_or(|r| !r.contains_key(*rel)))
        .flat_map(
            |(rel, id)| match targets.get(&(entity.blueprint.clone(), rel.to_string())) {
                Some(bp) => vec![EntityKey::new(bp, id)],
                // Without a blueprint definition, any owned entity with that identifier may be meant.
                None => by_id
                    .get(id)
                    .into_iter()
                    .flatten()
                    .map(|k| (*k).clone())
                    .collect(),
            },
        )
        .collect()
}

/// Removes from `deletes` every entity that an entity staying after the apply relates to,
/// transitively. Deletes run last, so what counts are the relations the apply leaves: a desired
/// entity's own, plus (with merge) the current relations it does not map, and those of every
/// owned entity that is not deleted.
fn keep_referenced<'a>(
    deletes: &mut BTreeMap<EntityKey, &'a OwnedEntity>,
    kept: &mut Vec<(&'a OwnedEntity, Option<(Reason, String)>)>,
    desired: &BTreeMap<EntityKey, &'a Desired>,
    owned: &'a [OwnedEntity],
    targets: &HashMap<(String, String), String>,
    by_id: &ByIdentifier<'_>,
    warnings: &mut Vec<Issue>,
) {
    // References, not copies: this walks every desired and kept entity on every plan. Each
    // entry is an entity and the relations of it that the apply replaces; `true` marks the
    // desired version, which shares its key with the owned one but not its relations.
    type Walk<'a> = (
        &'a crate::core::model::Entity,
        Option<&'a Map<String, Json>>,
        bool,
    );
    let mut queue: Vec<Walk<'a>> = Vec::new();
    for o in owned {
        let key = o.entity.key();
        if deletes.contains_key(&key) {
            continue;
        }
        match desired.get(&key) {
            None => queue.push((&o.entity, None, false)),
            // A merge leaves the relations the mapping does not produce in place.
            Some(d) if d.write.merge => queue.push((&o.entity, d.entity.relations.as_ref(), false)),
            // A replace leaves only the desired relations.
            Some(_) => {}
        }
    }
    queue.extend(desired.values().map(|d| (&d.entity, None, true)));
    let mut seen: HashSet<(&'a str, &'a str, bool)> = HashSet::new();
    while let Some((entity, replaced, is_desired)) = queue.pop() {
        if !seen.insert((
            entity.blueprint.as_str(),
            entity.identifier.as_str(),
            is_desired,
        )) {
            continue;
        }
        if entity.relations.as_ref().is_none_or(|r| r.is_empty()) {
            continue;
        }
        for target in referenced_keys(entity, replaced, targets, by_id) {
            if let Some(o) = deletes.remove(&target) {
                if !o.placeholder {
                    warnings.push(Issue {
                        account: o.account.clone(),
                        region: None,
                        kind: o.kind.clone(),
                        item: Some(target.identifier.clone()),
                        message: format!(
                            "{target} is no longer listed but {} still relates to it; kept while referenced",
                            entity.key()
                        ),
                    });
                }
                kept.push((o, None));
                queue.push((&o.entity, None, false));
            }
        }
    }
}

/// Deletes with dependents first: an entity is deleted after every deleted entity that relates
/// to it; ties by reverse blueprint order.
fn order_deletes(
    deletes: &BTreeMap<EntityKey, &OwnedEntity>,
    order: &BlueprintOrder,
    targets: &HashMap<(String, String), String>,
) -> Vec<Change> {
    let by_id = by_identifier(deletes.keys());
    // referrer count per target within the delete set
    let mut pending_referrers: HashMap<EntityKey, usize> = HashMap::new();
    let mut refers_to: HashMap<EntityKey, Vec<EntityKey>> = HashMap::new();
    for (key, o) in deletes {
        let refs: Vec<EntityKey> = referenced_keys(&o.entity, None, targets, &by_id)
            .into_iter()
            .filter(|t| deletes.contains_key(t) && t != key)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        for t in &refs {
            *pending_referrers.entry(t.clone()).or_default() += 1;
        }
        refers_to.insert(key.clone(), refs);
    }
    let mut remaining: BTreeSet<(std::cmp::Reverse<usize>, EntityKey)> = deletes
        .keys()
        .map(|k| (std::cmp::Reverse(order.rank(&k.blueprint)), k.clone()))
        .collect();
    let mut out = Vec::new();
    while !remaining.is_empty() {
        let next = remaining
            .iter()
            .find(|(_, k)| pending_referrers.get(k).copied().unwrap_or(0) == 0)
            .or_else(|| remaining.iter().next())
            .cloned();
        let Some(entry) = next else { break };
        remaining.remove(&entry);
        let key = entry.1;
        for t in refers_to.get(&key).into_iter().flatten() {
            if let Some(n) = pending_referrers.get_mut(t) {
                *n = n.saturating_sub(1);
            }
        }
        let o = deletes[&key];
        out.push(Change {
            action: Action::Delete,
            blueprint: key.blueprint.clone(),
            identifier: key.identifier.clone(),
            account: o.account.clone(),
            kind: o.kind.clone(),
            before: Some(normalize(&o.entity, &CompareSet::all(&o.entity))),
            after: None,
            previous_account: None,
            adopted_from: None,
            write: None,
        });
    }
    out
}

/// The desired blueprints merged over the catalog's (desired first), for relation lookups.
fn merged_blueprints(desired: &[Blueprint], catalog: &[Blueprint]) -> Vec<Blueprint> {
    let mut out: Vec<Blueprint> = desired.to_vec();
    for b in catalog {
        if !out.iter().any(|d| d.identifier() == b.identifier()) {
            out.push(b.clone());
        }
    }
    out
}

/// Additive blueprint changes: missing blueprints, and missing properties and relations.
/// Splits `desired` into the entities whose blueprint exists (in the catalog or in a
/// `blueprints.json`, so that `apply` creates it) and mapping errors for the rest: no write of
/// those could succeed, so the plan says so before `apply` is refused, and their scope keeps its
/// entities as after any mapping error.
pub fn known_blueprints_only<'d>(
    desired: &'d [Desired],
    definitions: &[Blueprint],
    catalog: &[Blueprint],
) -> (std::borrow::Cow<'d, [Desired]>, Vec<Issue>) {
    let known: BTreeSet<&str> = definitions
        .iter()
        .chain(catalog)
        .map(Blueprint::identifier)
        .collect();
    let is_known = |d: &Desired| known.contains(d.entity.blueprint.as_str());
    if desired.iter().all(is_known) {
        return (std::borrow::Cow::Borrowed(desired), Vec::new());
    }
    let (kept, unknown): (Vec<Desired>, Vec<Desired>) =
        desired.iter().cloned().partition(|d| is_known(d));
    let errors = unknown
        .into_iter()
        .map(|d| Issue {
            account: Some(d.origin.account),
            region: Some(d.origin.region),
            kind: Some(d.origin.kind),
            item: Some(d.origin.item),
            message: format!(
                "blueprint {:?} exists neither in the catalog nor in a blueprints.json; create it, or define it in the mapping folder's blueprints.json",
                d.entity.blueprint
            ),
        })
        .collect();
    (std::borrow::Cow::Owned(kept), errors)
}

pub fn blueprint_plan(desired: &[Blueprint], catalog: &[Blueprint]) -> Vec<BlueprintPlan> {
    let order = BlueprintOrder::new(&merged_blueprints(desired, catalog));
    let mut out = Vec::new();
    for d in desired {
        let id = d.identifier();
        match catalog.iter().find(|c| c.identifier() == id) {
            None => out.push(BlueprintPlan {
                action: Action::Create,
                identifier: id.to_string(),
                definition: Some(d.clone()),
                add_properties: Map::new(),
                add_relations: Map::new(),
            }),
            Some(existing) => {
                let have = existing.properties();
                let add_properties: Map<String, Json> = d
                    .properties()
                    .into_iter()
                    .filter(|(k, _)| !have.contains_key(k))
                    .collect();
                let have_rel: BTreeSet<String> =
                    existing.relations().into_iter().map(|r| r.name).collect();
                let add_relations: Map<String, Json> =
                    d.0.get("relations")
                        .and_then(Json::as_object)
                        .map(|rels| {
                            rels.iter()
                                .filter(|(k, _)| !have_rel.contains(*k))
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect()
                        })
                        .unwrap_or_default();
                if !add_properties.is_empty() || !add_relations.is_empty() {
                    out.push(BlueprintPlan {
                        action: Action::Update,
                        identifier: id.to_string(),
                        definition: None,
                        add_properties,
                        add_relations,
                    });
                }
            }
        }
    }
    out.sort_by(|a, b| {
        order
            .rank(&a.identifier)
            .cmp(&order.rank(&b.identifier))
            .then_with(|| a.identifier.cmp(&b.identifier))
    });
    out
}

fn account_lines(report: &SourceReport, owned: &[OwnedEntity]) -> Vec<AccountLine> {
    let mut lines: Vec<AccountLine> = report
        .accounts
        .iter()
        .map(|a| {
            let (status, error) = if !a.assumed {
                (AccountStatus::Unassumable, a.error.clone())
            } else if let Some(e) = &a.regions_error {
                (AccountStatus::RegionsFailed, Some(e.clone()))
            } else {
                (AccountStatus::Ok, None)
            };
            AccountLine {
                id: a.id.clone(),
                name: a.name.clone(),
                status,
                error,
            }
        })
        .collect();
    if report.discovery.is_complete() {
        let known: HashSet<&str> = report.accounts.iter().map(|a| a.id.as_str()).collect();
        let gone: BTreeSet<&str> = owned
            .iter()
            .filter_map(|o| o.account.as_deref())
            .filter(|a| !known.contains(a))
            .collect();
        for id in gone {
            lines.push(AccountLine {
                id: id.to_string(),
                name: None,
                status: AccountStatus::Gone,
                error: Some(
                    "no longer discovered; its entities are deletes subject to the guards".into(),
                ),
            });
        }
    }
    lines.sort_by(|a, b| a.id.cmp(&b.id));
    lines
}

/// A hash of each account's owned entities, for stale-plan detection.
pub fn owned_hashes(owned: &[OwnedEntity]) -> BTreeMap<String, String> {
    let mut per: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for o in owned {
        let line = serde_json::json!([
            o.entity.blueprint,
            o.entity.identifier,
            o.kind,
            o.placeholder,
            normalize(&o.entity, &CompareSet::all(&o.entity)),
        ])
        .to_string();
        per.entry(bucket(o.account.as_deref()))
            .or_default()
            .push(line);
    }
    per.into_iter()
        .map(|(account, mut lines)| {
            lines.sort();
            let mut hasher = Sha256::new();
            for l in lines {
                hasher.update(l.as_bytes());
                hasher.update([b'\n']);
            }
            (account, crate::core::model::hex(&hasher.finalize()))
        })
        .collect()
}
