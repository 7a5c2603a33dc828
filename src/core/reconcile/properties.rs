//! Property tests of the pure plan: random owned and desired entities across several accounts,
//! blueprints, kinds and regions, random listing outcomes, discovery states, foreign entities and
//! guard settings, checked against docs/contract.md's reconcile rules. Each property says one rule; a failure
//! that revealed a bug is kept as a unit test in `tests.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use proptest::prelude::*;
use serde_json::{Map, Value as Json, json};

use super::compare::same_fields;
use super::plan::*;
use crate::core::mapping::Producible;
use crate::core::model::*;
use crate::core::report::{AccountReport, Discovery, DiscoveryStatus, Listing, SourceReport};

const ACCOUNTS: [&str; 3] = ["111111111111", "222222222222", "333333333333"];
/// An account some owned entities are attributed to that discovery never returns.
const GONE: &str = "444444444444";
const REGIONS: [&str; 2] = ["eu-west-1", "us-east-1"];
const KINDS: [&str; 4] = [
    "AWS::S3::Bucket",
    "AWS::SQS::Queue",
    "AWS::Lambda::Function",
    "AWS::Old::Thing",
];
/// The blueprint each kind produces when its blueprint expression is a constant.
const BLUEPRINTS: [&str; 4] = ["bucket", "queue", "function", "old"];
const IDS: [&str; 6] = ["e0", "e1", "e2", "e3", "e4", "e5"];
const OWNERS: [&str; 3] = ["other-integration", "port-ocean/aws-v3/x", ""];

/// `queue.bucket → bucket`, `function.queues → [queue]`; `old` has no definition, so its relations
/// resolve by identifier alone.
fn blueprint_definitions() -> Vec<Blueprint> {
    vec![
        Blueprint(json!({"identifier": "bucket", "relations": {}})),
        Blueprint(json!({"identifier": "queue", "relations": {
            "bucket": {"target": "bucket", "many": false}}})),
        Blueprint(json!({"identifier": "function", "relations": {
            "queues": {"target": "queue", "many": true}}})),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AccountState {
    Ok,
    Unassumable,
    RegionsFailed,
}

/// How a kind appears in the mappings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KindMapping {
    /// Not mapped any more (its owned entities are deletes, whatever its account's state).
    Absent,
    /// A constant blueprint expression.
    Constant,
    /// A computed blueprint expression: can produce any blueprint.
    Computed,
}

/// One entity's random shape, turned into an [`Entity`] by [`entity`].
#[derive(Clone, Debug)]
struct RawEntity {
    blueprint: usize,
    id: usize,
    title: usize,
    properties: Vec<(usize, usize)>,
    team: usize,
    relation: Option<usize>,
    second_relation: Option<usize>,
}

fn raw_entity() -> impl Strategy<Value = RawEntity> {
    (
        0..BLUEPRINTS.len(),
        0..IDS.len(),
        0..4usize,
        prop::collection::vec((0..3usize, 0..6usize), 0..3),
        0..4usize,
        prop::option::of(0..IDS.len()),
        prop::option::of(0..IDS.len()),
    )
        .prop_map(
            |(blueprint, id, title, properties, team, relation, second_relation)| RawEntity {
                blueprint,
                id,
                title,
                properties,
                team,
                relation,
                second_relation,
            },
        )
}

fn entity(raw: &RawEntity, blueprint: &str) -> Entity {
    let mut e = Entity::new(blueprint, IDS[raw.id]);
    e.title = match raw.title {
        0 => None,
        1 => Some(Json::Null),
        n => Some(json!(format!("t{n}"))),
    };
    if !raw.properties.is_empty() {
        let values = [
            Json::Null,
            json!(1),
            json!(1.0),
            json!("x"),
            json!([1, 2]),
            json!({"a": [2, 1]}),
        ];
        let names = ["p", "q", "r"];
        e.properties = Some(
            raw.properties
                .iter()
                .map(|(k, v)| (names[*k].to_string(), values[*v].clone()))
                .collect(),
        );
    }
    e.team = match raw.team {
        0 => None,
        1 => Some(json!([])),
        2 => Some(json!(["platform"])),
        _ => Some(json!("platform")),
    };
    let mut relations = Map::new();
    let target = |i: Option<usize>| i.map(|i| json!(IDS[i]));
    match blueprint {
        "queue" => {
            if let Some(t) = target(raw.relation) {
                relations.insert("bucket".into(), t);
            }
        }
        "function" => {
            let many: Vec<Json> = [raw.relation, raw.second_relation]
                .into_iter()
                .flatten()
                .map(|i| json!(IDS[i]))
                .collect();
            if !many.is_empty() {
                relations.insert("queues".into(), Json::Array(many));
            }
        }
        "old" => {
            if let Some(t) = target(raw.relation) {
                relations.insert("anything".into(), t);
            }
        }
        _ => {}
    }
    if !relations.is_empty() {
        e.relations = Some(relations);
    }
    e
}

/// The random choices a scenario is built from.
#[derive(Clone, Debug)]
struct Choices {
    discovery: usize,
    accounts: Vec<(bool, AccountState)>,
    kinds: Vec<KindMapping>,
    failed_listings: Vec<(usize, usize, usize)>,
    mapping_errors: Vec<(usize, usize)>,
    desired: Vec<(RawEntity, usize, usize, usize, usize, bool)>,
    owned: Vec<(RawEntity, usize, Option<usize>, bool)>,
    foreign: Vec<(RawEntity, usize)>,
    foreign_references: Vec<(usize, usize, usize)>,
    threshold: f64,
    allow: usize,
    adopt_prefix: bool,
    adopt_all: bool,
    catalog_blueprints: usize,
}

fn choices() -> impl Strategy<Value = Choices> {
    let account_state = prop_oneof![
        6 => Just(AccountState::Ok),
        1 => Just(AccountState::Unassumable),
        1 => Just(AccountState::RegionsFailed),
    ];
    let kind_mapping = prop_oneof![
        1 => Just(KindMapping::Absent),
        4 => Just(KindMapping::Constant),
        1 => Just(KindMapping::Computed),
    ];
    let threshold = prop_oneof![Just(0.0), Just(0.5), Just(0.9), Just(1.0), (0.0f64..=1.0),];
    let part_one = (
        prop_oneof![8 => Just(0usize), 1 => Just(1), 1 => Just(2)],
        prop::collection::vec((prop::bool::weighted(0.9), account_state), ACCOUNTS.len()),
        prop::collection::vec(kind_mapping, KINDS.len()),
        prop::collection::vec((0..ACCOUNTS.len(), 0..REGIONS.len(), 0..KINDS.len()), 0..4),
        prop::collection::vec((0..ACCOUNTS.len(), 0..KINDS.len()), 0..3),
        prop::collection::vec(
            (
                raw_entity(),
                0..ACCOUNTS.len(),
                0..KINDS.len(),
                0..REGIONS.len(),
                0..3usize,
                prop::bool::weighted(0.7),
            ),
            0..12,
        ),
    );
    let part_two = (
        // account: ACCOUNTS, GONE, or unknown
        prop::collection::vec(
            (
                raw_entity(),
                0..ACCOUNTS.len() + 2,
                prop::option::of(0..KINDS.len()),
                prop::bool::weighted(0.15),
            ),
            0..14,
        ),
        prop::collection::vec((raw_entity(), 0..OWNERS.len()), 0..3),
        prop::collection::vec((0..14usize, 0..IDS.len(), 0..OWNERS.len()), 0..3),
        threshold,
        0..4usize,
        any::<bool>(),
        prop::bool::weighted(0.1),
        0..4usize,
    );
    (part_one, part_two).prop_map(
        |(
            (discovery, accounts, kinds, failed_listings, mapping_errors, desired),
            (
                owned,
                foreign,
                foreign_references,
                threshold,
                allow,
                adopt_prefix,
                adopt_all,
                catalog_blueprints,
            ),
        )| Choices {
            discovery,
            accounts,
            kinds,
            failed_listings,
            mapping_errors,
            desired,
            owned,
            foreign,
            foreign_references,
            threshold,
            allow,
            adopt_prefix,
            adopt_all,
            catalog_blueprints,
        },
    )
}

/// Everything [`plan`] takes, owned.
#[derive(Clone, Debug)]
struct Scenario {
    report: SourceReport,
    producible: BTreeMap<String, Producible>,
    desired: Vec<Desired>,
    owned: Vec<OwnedEntity>,
    foreign: Vec<ForeignEntity>,
    foreign_references: Vec<ForeignReference>,
    mapping_errors: Vec<Issue>,
    threshold: f64,
    allow: MassDelete,
    adopt_prefixes: Vec<String>,
    adopt_all: bool,
    desired_blueprints: Vec<Blueprint>,
    catalog_blueprints: Vec<Blueprint>,
}

fn scenario(c: Choices) -> Scenario {
    let mapped: Vec<usize> = (0..KINDS.len())
        .filter(|k| c.kinds[*k] != KindMapping::Absent)
        .collect();
    let report = source_report(&c, &mapped);
    let producible: BTreeMap<String, Producible> = mapped
        .iter()
        .map(|k| {
            let p = match c.kinds[*k] {
                KindMapping::Computed => Producible::Any,
                _ => Producible::Only([BLUEPRINTS[*k].to_string()].into()),
            };
            (KINDS[*k].to_string(), p)
        })
        .collect();
    let desired = desired(&c, &mapped, &report.accounts);
    let (owned, foreign) = catalog_entities(&c);
    let foreign_references = if owned.is_empty() {
        Vec::new()
    } else {
        c.foreign_references
            .iter()
            .map(|(target, id, owner)| ForeignReference {
                target: owned[target % owned.len()].entity.key(),
                referrer: EntityKey::new("theirs", IDS[*id]),
                owner: OWNERS[*owner].into(),
            })
            .collect()
    };
    let mapping_errors = c
        .mapping_errors
        .iter()
        .filter(|(a, _)| c.accounts[*a].0)
        .map(|(a, k)| Issue {
            account: Some(ACCOUNTS[*a].into()),
            region: Some(REGIONS[0].into()),
            kind: Some(KINDS[*k].into()),
            item: Some("broken".into()),
            message: "identifier is null".into(),
        })
        .collect();
    let allow = match c.allow {
        0 | 1 => MassDelete::None,
        2 => MassDelete::from_flag(None),
        _ => MassDelete::from_flag(Some(&format!("{},{GONE}", ACCOUNTS[1]))),
    };
    let desired_blueprints = blueprint_definitions();
    let catalog_blueprints = desired_blueprints
        .iter()
        .take(c.catalog_blueprints)
        .cloned()
        .collect();
    Scenario {
        report,
        producible,
        desired,
        owned,
        foreign,
        foreign_references,
        mapping_errors,
        threshold: c.threshold,
        allow,
        adopt_prefixes: if c.adopt_prefix {
            vec!["port-ocean/aws-v3/".into()]
        } else {
            Vec::new()
        },
        adopt_all: c.adopt_all,
        desired_blueprints,
        catalog_blueprints,
    }
}

/// What the source saw: discovery, each present account in its state, and one listing per
/// region and mapped kind of every healthy account.
fn source_report(c: &Choices, mapped: &[usize]) -> SourceReport {
    let discovery = match c.discovery {
        0 => Discovery::ok(),
        1 => Discovery {
            status: DiscoveryStatus::Fallback,
            error: Some("Organizations: AccessDenied".into()),
        },
        _ => Discovery {
            status: DiscoveryStatus::Failed,
            error: Some("Organizations: throttled".into()),
        },
    };
    let mut accounts = Vec::new();
    let mut listings = Vec::new();
    for (i, (present, state)) in c.accounts.iter().enumerate() {
        if !present {
            continue;
        }
        let id = ACCOUNTS[i];
        let mut report = AccountReport {
            id: id.into(),
            name: Some(format!("name-{i}")),
            assumed: *state != AccountState::Unassumable,
            ..AccountReport::default()
        };
        match state {
            AccountState::Ok => {
                report.regions = REGIONS.iter().map(|r| r.to_string()).collect();
                for (r, region) in REGIONS.iter().enumerate() {
                    for k in mapped {
                        let failed = c.failed_listings.contains(&(i, r, *k));
                        listings.push(Listing {
                            account: id.into(),
                            region: region.to_string(),
                            kind: KINDS[*k].into(),
                            model: None,
                            error: failed.then(|| format!("AccessDenied: {id} {r} {k}")),
                            unavailable: false,
                        });
                    }
                }
            }
            AccountState::Unassumable => report.error = Some("AccessDenied: no trust".into()),
            AccountState::RegionsFailed => report.regions_error = Some("AccessDenied".into()),
        }
        accounts.push(report);
    }
    SourceReport {
        discovery,
        accounts,
        listings,
    }
}

/// Desired entities come only from discovered accounts and mapped kinds, with the blueprint
/// their kind's mapping can produce.
fn desired(c: &Choices, mapped: &[usize], discovered: &[AccountReport]) -> Vec<Desired> {
    if mapped.is_empty() || discovered.is_empty() {
        return Vec::new();
    }
    c.desired
        .iter()
        .map(|(raw, a, k, r, item, merge)| {
            let account = &discovered[a % discovered.len()];
            let k = mapped[k % mapped.len()];
            let blueprint = match c.kinds[k] {
                KindMapping::Computed => BLUEPRINTS[raw.blueprint],
                _ => BLUEPRINTS[k],
            };
            Desired {
                entity: entity(raw, blueprint),
                origin: Origin {
                    account: account.id.clone(),
                    kind: KINDS[k].into(),
                    region: REGIONS[*r].into(),
                    item: format!("item-{item}"),
                },
                write: WriteOptions {
                    merge: *merge,
                    create_missing_related: true,
                },
            }
        })
        .collect()
}

/// The catalog's owned and foreign entities; a catalog holds one entity per key.
fn catalog_entities(c: &Choices) -> (Vec<OwnedEntity>, Vec<ForeignEntity>) {
    let mut seen = HashSet::new();
    let mut owned = Vec::new();
    for (raw, a, k, placeholder) in &c.owned {
        let e = entity(raw, BLUEPRINTS[raw.blueprint]);
        if !seen.insert(e.key()) {
            continue;
        }
        owned.push(OwnedEntity {
            entity: e,
            account: match a {
                a if *a < ACCOUNTS.len() => Some(ACCOUNTS[*a].to_string()),
                a if *a == ACCOUNTS.len() => Some(GONE.to_string()),
                _ => None,
            },
            kind: k.map(|k| KINDS[k].to_string()),
            placeholder: *placeholder,
        });
    }
    let mut foreign = Vec::new();
    for (raw, owner) in &c.foreign {
        let e = entity(raw, BLUEPRINTS[raw.blueprint]);
        if !seen.insert(e.key()) {
            continue;
        }
        foreign.push(ForeignEntity {
            entity: e,
            owner: OWNERS[*owner].into(),
        });
    }
    (owned, foreign)
}

fn run(s: &Scenario) -> Plan {
    plan(PlanInput {
        integration: "prop",
        adopt_prefixes: &s.adopt_prefixes,
        adopt_all: s.adopt_all,
        allow_mass_delete: s.allow.clone(),
        catalog: "local test".into(),
        config_hash: "hash".into(),
        desired: &s.desired,
        owned: s.owned.clone(),
        foreign: s.foreign.clone(),
        foreign_references: s.foreign_references.clone(),
        report: &s.report,
        mapping_errors: s.mapping_errors.clone(),
        warnings: Vec::new(),
        producible: s.producible.clone(),
        threshold: s.threshold,
        desired_blueprints: &s.desired_blueprints,
        catalog_blueprints: &s.catalog_blueprints,
    })
}

/// Facts about a scenario that the checks share.
struct Facts<'s> {
    s: &'s Scenario,
    owned: BTreeMap<EntityKey, &'s OwnedEntity>,
    desired: BTreeSet<EntityKey>,
    /// Per desired key, the entity that wins among duplicates (docs/contract.md, "Dependents": duplicates).
    winners: BTreeMap<EntityKey, &'s Desired>,
    foreign: BTreeMap<EntityKey, &'s ForeignEntity>,
}

impl<'s> Facts<'s> {
    fn new(s: &'s Scenario) -> Facts<'s> {
        let mut sorted: Vec<&Desired> = s.desired.iter().collect();
        sorted.sort_by(|a, b| {
            (
                &a.origin.account,
                &a.origin.kind,
                &a.origin.region,
                &a.origin.item,
            )
                .cmp(&(
                    &b.origin.account,
                    &b.origin.kind,
                    &b.origin.region,
                    &b.origin.item,
                ))
        });
        let mut winners = BTreeMap::new();
        for d in sorted {
            winners.entry(d.entity.key()).or_insert(d);
        }
        Facts {
            s,
            winners,
            owned: s.owned.iter().map(|o| (o.entity.key(), o)).collect(),
            desired: s.desired.iter().map(|d| d.entity.key()).collect(),
            foreign: s.foreign.iter().map(|f| (f.entity.key(), f)).collect(),
        }
    }

    fn can_produce(&self, kind: &str, blueprint: &str) -> bool {
        match self.s.producible.get(kind) {
            Some(Producible::Any) => true,
            Some(Producible::Only(set)) => set.contains(blueprint),
            None => false,
        }
    }

    fn any_kind_produces(&self, blueprint: &str) -> bool {
        self.s
            .producible
            .keys()
            .any(|k| self.can_produce(k, blueprint))
    }

    fn account(&self, id: Option<&str>) -> Option<&'s AccountReport> {
        let id = id?;
        self.s.report.accounts.iter().find(|a| a.id == id)
    }

    /// A failed listing of `account` for a kind that can produce `blueprint`.
    fn has_failed_listing(&self, account: &str, blueprint: &str) -> bool {
        self.s.report.listings.iter().any(|l| {
            l.account == account && l.error.is_some() && self.can_produce(&l.kind, blueprint)
        })
    }

    fn has_mapping_error(&self, account: &str, blueprint: &str) -> bool {
        self.s.mapping_errors.iter().any(|e| {
            e.account.as_deref() == Some(account)
                && e.kind
                    .as_deref()
                    .is_some_and(|k| self.can_produce(k, blueprint))
        })
    }

    /// docs/contract.md "Scopes" and "Accounts that are gone": whether some scope of the entity's account
    /// that could have listed it is incomplete, so its absence proves nothing.
    fn unproven_absence(&self, o: &OwnedEntity) -> bool {
        let bp = &o.entity.blueprint;
        match self.account(o.account.as_deref()) {
            None => !self.s.report.discovery.is_complete(),
            Some(a) => {
                (!a.assumed || a.regions_error.is_some()) && self.any_kind_produces(bp)
                    || self.has_failed_listing(&a.id, bp)
                    || self.has_mapping_error(&a.id, bp)
            }
        }
    }

    fn is_adoptable(&self, owner: &str) -> bool {
        self.s.adopt_all
            || self
                .s
                .adopt_prefixes
                .iter()
                .any(|p| owner.starts_with(p.as_str()))
    }

    /// The keys `entity`'s relations point at, resolved as the contract's blueprints say: through the
    /// relation's target blueprint when defined, else any owned entity with that identifier.
    fn references(&self, entity: &Entity) -> Vec<EntityKey> {
        let defs = &self.s.desired_blueprints;
        entity
            .relation_targets()
            .flat_map(|(rel, id)| {
                let target = defs
                    .iter()
                    .find(|b| b.identifier() == entity.blueprint)
                    .and_then(|b| b.relations().into_iter().find(|r| r.name == rel))
                    .map(|r| r.target);
                match target {
                    Some(bp) => vec![EntityKey::new(bp, id)],
                    None => self
                        .owned
                        .keys()
                        .filter(|k| k.identifier == id)
                        .cloned()
                        .collect(),
                }
            })
            .collect()
    }
}

fn bucket(account: Option<&str>) -> &str {
    account.unwrap_or(UNKNOWN_ACCOUNT)
}

fn deletes(p: &Plan) -> BTreeSet<EntityKey> {
    p.changes
        .iter()
        .filter(|c| c.action == Action::Delete)
        .map(Change::key)
        .collect()
}

/// Every rule of docs/contract.md's reconcile rules that one plan can be checked against.
fn check(s: &Scenario, p: &Plan) -> Result<(), TestCaseError> {
    let f = Facts::new(s);
    let deleted = deletes(p);
    let withheld_deletes: BTreeMap<EntityKey, &Withheld> = p
        .withheld
        .iter()
        .filter(|w| w.action == Action::Delete)
        .map(|w| (EntityKey::new(&w.blueprint, &w.identifier), w))
        .collect();

    check_keys(p, &f, deleted.clone())?;
    check_upserts(s, p, &f)?;
    check_deletes(s, p, &f, deleted.clone(), withheld_deletes.clone())?;
    check_guards(s, &f, deleted.clone(), withheld_deletes.clone())?;
    check_order(p, &f, deleted.clone())?;
    Ok(())
}

/// Each key is planned at most once, and every delete is of an owned, undesired entity whose absence is proven.
fn check_keys(p: &Plan, f: &Facts<'_>, deleted: BTreeSet<EntityKey>) -> Result<(), TestCaseError> {
    // Each key appears at most once among changes and withheld.
    let mut all_keys = BTreeSet::new();
    for key in p.changes.iter().map(Change::key).chain(
        p.withheld
            .iter()
            .map(|w| EntityKey::new(&w.blueprint, &w.identifier)),
    ) {
        prop_assert!(all_keys.insert(key.clone()), "{key} planned twice");
    }

    for key in &deleted {
        // Nothing desired is deleted, and only owned entities are.
        prop_assert!(!f.desired.contains(key), "desired {key} deleted");
        let o = f.owned.get(key);
        prop_assert!(o.is_some(), "{key} deleted but not owned");
        let o = o.expect("checked");
        // A delete needs proof of absence.
        prop_assert!(
            !f.unproven_absence(o),
            "{key} of account {:?} deleted although its scope is incomplete",
            o.account
        );
    }
    Ok(())
}

/// Creates, updates and duplicates: only at desired keys, the right winner, every desired key accounted for.
fn check_upserts(s: &Scenario, p: &Plan, f: &Facts<'_>) -> Result<(), TestCaseError> {
    // Creates and updates: only at desired keys; updates of owned or adoptable foreign entities;
    // creates where nothing exists; never over a foreign entity that may not be adopted.
    for c in p.changes.iter().filter(|c| c.action != Action::Delete) {
        let key = c.key();
        prop_assert!(f.desired.contains(&key), "{key} written but not desired");
        match (c.action, f.owned.get(&key), f.foreign.get(&key)) {
            (Action::Create, None, None) => {}
            (Action::Update, Some(_), None) => prop_assert!(c.adopted_from.is_none()),
            (Action::Update, None, Some(foreign)) => {
                prop_assert!(
                    f.is_adoptable(&foreign.owner),
                    "{key} adopted from {:?}",
                    foreign.owner
                );
                prop_assert_eq!(c.adopted_from.as_deref(), Some(foreign.owner.as_str()));
            }
            (action, owned, foreign) => prop_assert!(
                false,
                "{action:?} of {key}: owned {}, foreign {}",
                owned.is_some(),
                foreign.is_some()
            ),
        }
    }

    // Duplicates: the lowest (account, kind, region) wins and is what is written, under its
    // account; a change of account says where the entity came from; every loser is a warning.
    for c in p.changes.iter().filter(|c| c.action != Action::Delete) {
        let key = c.key();
        let winner = f.winners[&key];
        prop_assert_eq!(c.account.as_deref(), Some(winner.origin.account.as_str()));
        prop_assert_eq!(c.kind.as_deref(), Some(winner.origin.kind.as_str()));
        prop_assert_eq!(c.write, Some(winner.write));
        let before = f.owned.get(&key).and_then(|o| o.account.as_deref());
        let moved = f.owned.contains_key(&key) && before != c.account.as_deref();
        prop_assert_eq!(
            c.previous_account.as_deref(),
            moved.then(|| before.unwrap_or(UNKNOWN_ACCOUNT))
        );
    }
    let losers = s.desired.len() - f.winners.len();
    let duplicate_warnings = p
        .warnings
        .iter()
        .filter(|w| w.message.starts_with("duplicate entity"))
        .count();
    prop_assert_eq!(duplicate_warnings, losers);

    // Every distinct desired key is exactly one of: unchanged, created, updated, withheld.
    let written = p
        .changes
        .iter()
        .filter(|c| c.action != Action::Delete)
        .count();
    let withheld_creates = p
        .withheld
        .iter()
        .filter(|w| w.action == Action::Create)
        .count();
    prop_assert_eq!(
        p.summary.unchanged + written + withheld_creates,
        f.desired.len()
    );
    for w in p.withheld.iter().filter(|w| w.action == Action::Create) {
        let key = EntityKey::new(&w.blueprint, &w.identifier);
        prop_assert_eq!(w.reason, Reason::ForeignOwner);
        let foreign = f.foreign.get(&key);
        prop_assert!(foreign.is_some_and(|x| !f.is_adoptable(&x.owner)));
    }
    Ok(())
}

/// Every owned entity nothing desires is deleted, withheld for a stated reason, or kept because something staying relates to it.
fn check_deletes(
    s: &Scenario,
    p: &Plan,
    f: &Facts<'_>,
    deleted: BTreeSet<EntityKey>,
    withheld_deletes: BTreeMap<EntityKey, &Withheld>,
) -> Result<(), TestCaseError> {
    // Every owned entity nothing desires is deleted, withheld for a stated reason, or kept
    // because something that stays relates to it.
    // What stays after the apply, with the relations the apply leaves it (deletes run last).
    let after = applied(s, p);
    let staying: Vec<&Entity> = f
        .winners
        .values()
        .map(|d| &d.entity)
        .chain(
            after
                .owned
                .iter()
                .filter(|o| !f.foreign.contains_key(&o.entity.key()))
                .map(|o| &o.entity),
        )
        .collect();
    let referenced: HashSet<EntityKey> = staying.iter().flat_map(|e| f.references(e)).collect();
    for (key, o) in &f.owned {
        if f.desired.contains(key) {
            prop_assert!(!withheld_deletes.contains_key(key));
            continue;
        }
        let is_deleted = deleted.contains(key);
        let withheld = withheld_deletes.get(key);
        prop_assert!(
            is_deleted || withheld.is_some() || referenced.contains(key),
            "{key} neither deleted, withheld nor referenced"
        );
        // Dependents: nothing a staying entity relates to is deleted.
        prop_assert!(
            !(is_deleted && referenced.contains(key)),
            "{key} deleted while a kept entity relates to it"
        );
        if let Some(w) = withheld {
            check_reason(f, o, w)?;
        }
    }
    Ok(())
}

/// The mass-delete guards, per account.
fn check_guards(
    s: &Scenario,
    f: &Facts<'_>,
    deleted: BTreeSet<EntityKey>,
    withheld_deletes: BTreeMap<EntityKey, &Withheld>,
) -> Result<(), TestCaseError> {
    // Guards, per account: what is deleted stays within the threshold and never empties an
    // account, unless allowed; a guard withholds all of the account's deletes.
    let mut owned_per: HashMap<&str, usize> = HashMap::new();
    for o in &s.owned {
        *owned_per.entry(bucket(o.account.as_deref())).or_default() += 1;
    }
    let mut deleted_per: HashMap<&str, usize> = HashMap::new();
    for key in &deleted {
        let account = f.owned[key].account.as_deref();
        *deleted_per.entry(bucket(account)).or_default() += 1;
    }
    let mut guarded_per: HashMap<&str, Vec<Reason>> = HashMap::new();
    for (key, w) in &withheld_deletes {
        if matches!(w.reason, Reason::Threshold | Reason::AllEntities) {
            let account = f.owned[key].account.as_deref();
            guarded_per
                .entry(bucket(account))
                .or_default()
                .push(w.reason);
        }
    }
    for (account, owned) in &owned_per {
        let n = deleted_per.get(account).copied().unwrap_or(0);
        let allowed = s
            .allow
            .allows((*account != UNKNOWN_ACCOUNT).then_some(*account));
        if !allowed {
            prop_assert!(
                n < *owned,
                "all {owned} entities of {account} deleted without --allow-mass-delete"
            );
            prop_assert!(
                n as f64 / *owned as f64 <= s.threshold,
                "{n} of {owned} deleted in {account} over threshold {}",
                s.threshold
            );
        }
        if let Some(reasons) = guarded_per.get(account) {
            prop_assert!(!allowed, "{account} allowed but guarded");
            prop_assert_eq!(n, 0, "a guard withholds every delete of {}", account);
            let m = reasons.len();
            let all = m == *owned;
            for r in reasons {
                prop_assert_eq!(
                    *r,
                    if all {
                        Reason::AllEntities
                    } else {
                        Reason::Threshold
                    }
                );
            }
            prop_assert!(all || m as f64 / *owned as f64 > s.threshold);
        }
    }
    Ok(())
}

/// Upserts before deletes, and dependents deleted first.
fn check_order(p: &Plan, f: &Facts<'_>, deleted: BTreeSet<EntityKey>) -> Result<(), TestCaseError> {
    // Order: upserts before deletes; among deletes, an entity goes before what it relates to
    // (unless they relate to each other in a cycle).
    let first_delete = p
        .changes
        .iter()
        .position(|c| c.action == Action::Delete)
        .unwrap_or(p.changes.len());
    prop_assert!(
        p.changes[first_delete..]
            .iter()
            .all(|c| c.action == Action::Delete)
    );
    let position: HashMap<EntityKey, usize> = p
        .changes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.key(), i))
        .collect();
    let edges: BTreeMap<EntityKey, Vec<EntityKey>> = deleted
        .iter()
        .map(|k| {
            let refs = f
                .references(&f.owned[k].entity)
                .into_iter()
                .filter(|t| deleted.contains(t) && t != k)
                .collect();
            (k.clone(), refs)
        })
        .collect();
    for (from, targets) in &edges {
        for to in targets {
            if !reaches(&edges, to, from) {
                prop_assert!(
                    position[from] < position[to],
                    "{from} relates to {to} but is deleted after it"
                );
            }
        }
    }
    Ok(())
}

fn reaches(edges: &BTreeMap<EntityKey, Vec<EntityKey>>, from: &EntityKey, to: &EntityKey) -> bool {
    let mut stack = vec![from];
    let mut seen = HashSet::new();
    while let Some(k) = stack.pop() {
        if k == to {
            return true;
        }
        if seen.insert(k) {
            stack.extend(edges.get(k).into_iter().flatten());
        }
    }
    false
}

/// A withheld delete's reason is true of the scenario.
fn check_reason(f: &Facts<'_>, o: &OwnedEntity, w: &Withheld) -> Result<(), TestCaseError> {
    let bp = &o.entity.blueprint;
    let account = f.account(o.account.as_deref());
    match w.reason {
        Reason::DiscoveryFailed => {
            prop_assert!(account.is_none() && !f.s.report.discovery.is_complete())
        }
        Reason::AccountUnassumable => {
            prop_assert!(account.is_some_and(|a| !a.assumed) && f.any_kind_produces(bp))
        }
        Reason::RegionsFailed => prop_assert!(
            account.is_some_and(|a| a.assumed && a.regions_error.is_some())
                && f.any_kind_produces(bp)
        ),
        Reason::ScopeFailed => {
            prop_assert!(account.is_some_and(|a| f.has_failed_listing(&a.id, bp)))
        }
        Reason::MappingError => {
            prop_assert!(account.is_some_and(|a| f.has_mapping_error(&a.id, bp)))
        }
        Reason::ForeignDependents => prop_assert!(
            f.s.foreign_references
                .iter()
                .any(|r| r.target == o.entity.key())
        ),
        // Checked per account with the other guard facts.
        Reason::Threshold | Reason::AllEntities => {}
        Reason::ForeignOwner => prop_assert!(false, "a delete withheld as foreign_owner"),
    }
    prop_assert!(
        w.detail.len() > 10,
        "a withheld change says why: {:?}",
        w.detail
    );
    Ok(())
}

/// A permutation of `items` from `seed`.
fn shuffled<T: Clone>(items: &[T], seed: u64) -> Vec<T> {
    let mut out = items.to_vec();
    let mut state = seed | 1;
    for i in (1..out.len()).rev() {
        // xorshift: any fixed permutation source will do.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let j = (state % (i as u64 + 1)) as usize;
        out.swap(i, j);
    }
    out
}

/// `desired` shuffled, except that entities of one item keep their order: one item's entities
/// come from the mapping file in entry order, and with duplicates the first entry wins.
fn shuffled_desired(desired: &[Desired], seed: u64) -> Vec<Desired> {
    let mut by_origin: BTreeMap<&Origin, std::collections::VecDeque<&Desired>> = BTreeMap::new();
    for d in desired {
        by_origin.entry(&d.origin).or_default().push_back(d);
    }
    shuffled(desired, seed)
        .iter()
        .map(|d| {
            by_origin
                .get_mut(&d.origin)
                .and_then(|q| q.pop_front())
                .cloned()
                .unwrap_or_else(|| d.clone())
        })
        .collect()
}

fn reordered(s: &Scenario, seed: u64) -> Scenario {
    let mut r = s.clone();
    r.desired = shuffled_desired(&s.desired, seed);
    r.owned = shuffled(&s.owned, seed.rotate_left(7));
    r.foreign = shuffled(&s.foreign, seed.rotate_left(13));
    r.foreign_references = shuffled(&s.foreign_references, seed.rotate_left(19));
    r.mapping_errors = shuffled(&s.mapping_errors, seed.rotate_left(23));
    r.report.accounts = shuffled(&s.report.accounts, seed.rotate_left(29));
    r.report.listings = shuffled(&s.report.listings, seed.rotate_left(31));
    r
}

/// Port's merge (`upsert=true&merge=true`): sent fields replace, maps merge key by key.
fn merged(mut existing: Entity, sent: &Entity) -> Entity {
    for (field, value) in [
        (&mut existing.title, &sent.title),
        (&mut existing.icon, &sent.icon),
        (&mut existing.team, &sent.team),
    ] {
        if value.is_some() {
            field.clone_from(value);
        }
    }
    for (field, value) in [
        (&mut existing.properties, &sent.properties),
        (&mut existing.relations, &sent.relations),
    ] {
        if let Some(sent) = value {
            let map = field.get_or_insert_with(Map::new);
            for (k, v) in sent {
                map.insert(k.clone(), v.clone());
            }
        }
    }
    existing
}

/// The scenario after a catalog applied `p`'s writes.
fn applied(s: &Scenario, p: &Plan) -> Scenario {
    let writes = p.writes();
    let mut owned: BTreeMap<EntityKey, OwnedEntity> = s
        .owned
        .iter()
        .map(|o| (o.entity.key(), o.clone()))
        .collect();
    let mut foreign: BTreeMap<EntityKey, ForeignEntity> = s
        .foreign
        .iter()
        .map(|f| (f.entity.key(), f.clone()))
        .collect();
    for u in &writes.upserts {
        let key = u.entity.key();
        let existing = owned
            .remove(&key)
            .map(|o| o.entity)
            .or_else(|| foreign.remove(&key).map(|f| f.entity));
        let entity = match existing {
            Some(e) if u.write.merge => merged(e, &u.entity),
            _ => u.entity.clone(),
        };
        owned.insert(
            key,
            OwnedEntity {
                entity,
                account: Some(u.account.clone()),
                kind: Some(u.kind.clone()),
                placeholder: false,
            },
        );
    }
    for d in &writes.deletes {
        owned.remove(&d.key);
    }
    let mut next = s.clone();
    next.owned = owned.into_values().collect();
    next.foreign = foreign.into_values().collect();
    next.foreign_references
        .retain(|r| next.owned.iter().any(|o| o.entity.key() == r.target));
    next.catalog_blueprints = s.desired_blueprints.clone();
    next
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_plan_keeps_the_reconcile_rules(c in choices()) {
        let s = scenario(c);
        let p = run(&s);
        check(&s, &p)?;
    }

    #[test]
    fn the_plan_does_not_depend_on_input_order(c in choices(), seed in any::<u64>()) {
        let s = scenario(c);
        let p = run(&s);
        let q = run(&reordered(&s, seed));
        prop_assert_eq!(p, q);
    }

    #[test]
    fn the_plan_is_the_same_each_time(c in choices()) {
        let s = scenario(c);
        prop_assert_eq!(run(&s), run(&s));
    }

    #[test]
    fn planning_again_after_applying_changes_nothing(c in choices()) {
        let s = scenario(c);
        let first = run(&s);
        let next = applied(&s, &first);
        let second = run(&next);
        check(&next, &second)?;
        let upserts: Vec<&Change> = second.changes.iter().filter(|c| c.action != Action::Delete).collect();
        prop_assert!(upserts.is_empty() && second.blueprints.is_empty(), "second plan writes {:?}", upserts);
        prop_assert_eq!(
            second.summary.unchanged,
            first.summary.unchanged + first.summary.create + first.summary.update
        );
        // The guards count an account's owned entities before the apply; once the apply moved
        // or created entities there, a delete they withheld may fit (and what only that delete's
        // entity related to with it). Nothing else is left for a second apply.
        let guarded = first.withheld.iter().any(|w| matches!(w.reason, Reason::Threshold | Reason::AllEntities));
        if !guarded {
            prop_assert!(second.changes.is_empty(), "second plan: {:?}", second.changes);
        }
    }

    #[test]
    fn every_unchanged_entity_compares_equal(c in choices()) {
        // The cheap comparison and the normalised one agree on every generated pair.
        let s = scenario(c);
        for d in &s.desired {
            if let Some(o) = s.owned.iter().find(|o| o.entity.key() == d.entity.key()) {
                let set = if d.write.merge {
                    super::compare::CompareSet::merge(&d.entity)
                } else {
                    super::compare::CompareSet::replace(&d.entity, &o.entity)
                };
                let normalised = super::compare::normalize(&d.entity, &set)
                    == super::compare::normalize(&o.entity, &set);
                prop_assert_eq!(same_fields(&d.entity, &o.entity, d.write.merge), normalised);
            }
        }
    }
}
