//! Resource models derived from a parent listing (`selector.resourceModelsFrom`): the order in
//! which an account's listings run so that parents come first, the models a parent's items give,
//! and whether the parent listings a child depends on are complete. Shared by the sources, so a
//! snapshot replay derives exactly what the live listing did.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value as Json;

use crate::core::mapping::ModelExpression;
use crate::core::model::{KindSpec, RawItem, is_global_kind, model_key};
use crate::core::report::Listing;

/// The compiled `resourceModelsFrom` expressions of a request, by spec index.
pub struct Derivations {
    expressions: HashMap<usize, Result<ModelExpression, String>>,
    parents: Vec<String>,
}

impl Derivations {
    /// Compiles every spec's expression. The mapping loader has compiled them already, so an
    /// error here only fails that child's listings.
    pub fn compile(kinds: &[KindSpec]) -> Derivations {
        let mut expressions = HashMap::new();
        let mut parents = Vec::new();
        for (index, spec) in kinds.iter().enumerate() {
            if let Some(from) = &spec.models_from {
                expressions.insert(index, ModelExpression::compile(&from.model));
                if !parents.contains(&from.kind) {
                    parents.push(from.kind.clone());
                }
            }
        }
        Derivations {
            expressions,
            parents,
        }
    }

    /// Whether items of `kind` give some child its models, so their pages must be observed.
    pub fn is_parent(&self, kind: &str) -> bool {
        self.parents.iter().any(|p| p == kind)
    }

    pub fn is_empty(&self) -> bool {
        self.expressions.is_empty()
    }
}

/// The phases of an account's listings: a spec listed from a parent's items runs in the phase
/// after every spec of its parent kind. Phase 0 holds the specs that depend on nothing.
pub fn phases(kinds: &[KindSpec]) -> Vec<Vec<usize>> {
    let mut depth: Vec<Option<usize>> = vec![None; kinds.len()];
    // Each pass settles at least one more level; a cycle (refused when mappings load) stops
    // after as many passes as there are specs, its specs in the last phase.
    for _ in 0..=kinds.len() {
        for (index, spec) in kinds.iter().enumerate() {
            let Some(from) = &spec.models_from else {
                depth[index] = Some(0);
                continue;
            };
            let parent_depths: Vec<Option<usize>> = kinds
                .iter()
                .enumerate()
                .filter(|(i, k)| k.kind == from.kind && *i != index)
                .map(|(i, _)| depth[i])
                .collect();
            if parent_depths.iter().all(Option::is_some) {
                depth[index] = Some(1 + parent_depths.into_iter().flatten().max().unwrap_or(0));
            }
        }
    }
    let last = kinds.len();
    let mut phases: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (index, d) in depth.into_iter().enumerate() {
        phases.entry(d.unwrap_or(last)).or_default().push(index);
    }
    phases.into_values().collect()
}

/// The distinct models parent items gave each child, per (child spec, parent item's region).
#[derive(Debug, Default)]
pub struct DerivedModels {
    models: HashMap<(usize, String), BTreeMap<String, Json>>,
    /// The first expression error per (child spec, region): the child cannot be listed there.
    errors: HashMap<(usize, String), String>,
}

impl DerivedModels {
    /// Evaluates every child's expression on the items of its parent kind.
    pub fn observe(&mut self, kinds: &[KindSpec], derivations: &Derivations, items: &[RawItem]) {
        for (index, spec) in kinds.iter().enumerate() {
            let Some(from) = &spec.models_from else {
                continue;
            };
            let Some(expression) = derivations.expressions.get(&index) else {
                continue;
            };
            for item in items.iter().filter(|i| i.kind == from.kind) {
                let key = (index, item.region.clone());
                let result = match expression {
                    Ok(expression) => expression.model_for(item),
                    Err(e) => Err(format!("resourceModelsFrom.model does not compile: {e}")),
                };
                match result {
                    Ok(Some(model)) => {
                        self.models
                            .entry(key)
                            .or_default()
                            .insert(model_key(&model), model);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        self.errors.entry(key).or_insert(e);
                    }
                }
            }
        }
    }

    /// The models for spec `child` listed in `region` (`None`: a global child, listed once from
    /// every region's parents), each with its [`model_key`], in key order.
    pub fn models(
        &self,
        child: usize,
        region: Option<&str>,
    ) -> Result<Vec<(String, Json)>, String> {
        let wanted = |r: &str| region.is_none_or(|want| want == r);
        let mut errors: Vec<(&String, &String)> = self
            .errors
            .iter()
            .filter(|((c, r), _)| *c == child && wanted(r))
            .map(|((_, r), e)| (r, e))
            .collect();
        errors.sort();
        if let Some((_, error)) = errors.first() {
            return Err((*error).clone());
        }
        let mut all: BTreeMap<String, Json> = BTreeMap::new();
        for ((c, r), models) in &self.models {
            if *c == child && wanted(r) {
                all.extend(models.iter().map(|(k, m)| (k.clone(), m.clone())));
            }
        }
        Ok(all.into_iter().collect())
    }
}

/// Why a derived child cannot be listed somewhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParentIncomplete {
    pub why: String,
    /// The parent type does not exist there ([`Listing::unavailable`]), so neither does the child.
    pub unavailable: bool,
}

impl From<String> for ParentIncomplete {
    fn from(why: String) -> ParentIncomplete {
        ParentIncomplete {
            why,
            unavailable: false,
        }
    }
}

/// The listing of a derived child that could not be listed in `region`.
pub fn parent_failed(
    account: &str,
    region: String,
    child: &KindSpec,
    problem: ParentIncomplete,
) -> Listing {
    Listing {
        account: account.to_string(),
        region,
        kind: child.kind.clone(),
        model: None,
        error: Some(format!("{PARENT_FAILED}: {}", problem.why)),
        unavailable: problem.unavailable,
    }
}

/// Whether the listings of `child`'s parent kind that give it models in `region` (`None`: a
/// global child, every region's) are complete; otherwise why the child cannot be listed.
/// `listings` are one account's.
pub fn parents_complete(
    listings: &[Listing],
    child: &KindSpec,
    region: Option<&str>,
) -> Result<(), ParentIncomplete> {
    let Some(from) = &child.models_from else {
        return Ok(());
    };
    let parent_global = is_global_kind(&from.kind);
    let relevant: Vec<&Listing> = listings
        .iter()
        .filter(|l| l.kind == from.kind)
        .filter(|l| parent_global || region.is_none_or(|r| r == l.region))
        .collect();
    let place = region.map(|r| format!(" in {r}")).unwrap_or_default();
    if relevant.is_empty() {
        return Err(format!(
            "{} was not listed{place}, so {} cannot be listed from its items (resourceModelsFrom)",
            from.kind, child.kind
        )
        .into());
    }
    // A failure outranks a parent type that does not exist: only the latter proves no children.
    let failed = relevant
        .iter()
        .filter(|l| l.error.is_some())
        .min_by_key(|l| l.unavailable);
    match failed {
        Some(failed) => Err(ParentIncomplete {
            why: format!(
                "the {} listing in {} failed ({}), so {} cannot be listed from its items (resourceModelsFrom)",
                from.kind,
                failed.region,
                failed.error.as_deref().unwrap_or_default(),
                child.kind
            ),
            unavailable: failed.unavailable,
        }),
        None => Ok(()),
    }
}

/// The spec a derived child is listed with for one of its models.
pub fn with_model(child: &KindSpec, model: Json) -> KindSpec {
    KindSpec {
        resource_model: Some(model),
        models_from: None,
        ..child.clone()
    }
}

/// The error code of a derived child that could not be listed.
pub const PARENT_FAILED: &str = "ParentListingIncomplete";

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::core::model::{ModelsFrom, RegionPolicy};

    fn spec(kind: &str, from: Option<&str>) -> KindSpec {
        KindSpec {
            kind: kind.into(),
            region_policy: RegionPolicy::default(),
            use_get_resource_api: false,
            resource_model: None,
            models_from: from.map(|parent| ModelsFrom {
                kind: parent.into(),
                model: "{\"Parent\": .Identifier}".into(),
            }),
        }
    }

    fn item(kind: &str, region: &str, id: &str) -> RawItem {
        RawItem {
            account: "222222222222".into(),
            account_name: None,
            region: region.into(),
            kind: kind.into(),
            identifier: id.into(),
            model: None,
            properties: json!({}),
        }
    }

    #[test]
    fn children_are_listed_in_the_phase_after_their_parents_chains_included() {
        let kinds = vec![
            spec("Rule", Some("Listener")),
            spec("Listener", Some("LoadBalancer")),
            spec("LoadBalancer", None),
            spec("Queue", None),
        ];
        assert_eq!(phases(&kinds), vec![vec![2, 3], vec![1], vec![0]]);
    }

    #[test]
    fn models_are_derived_per_region_deduplicated_and_in_key_order() {
        let kinds = vec![spec("Child", Some("Parent")), spec("Parent", None)];
        let derivations = Derivations::compile(&kinds);
        assert!(derivations.is_parent("Parent") && !derivations.is_parent("Child"));
        let mut models = DerivedModels::default();
        models.observe(
            &kinds,
            &derivations,
            &[
                item("Parent", "us-east-1", "b"),
                item("Parent", "us-east-1", "a"),
                item("Parent", "us-east-1", "a"),
                item("Parent", "eu-west-1", "c"),
                item("Other", "us-east-1", "x"),
            ],
        );
        let keys = |r: Option<&str>| -> Vec<String> {
            models
                .models(0, r)
                .expect("models")
                .into_iter()
                .map(|(k, _)| k)
                .collect()
        };
        assert_eq!(
            keys(Some("us-east-1")),
            vec![r#"{"Parent":"a"}"#, r#"{"Parent":"b"}"#]
        );
        assert_eq!(keys(Some("eu-west-1")), vec![r#"{"Parent":"c"}"#]);
        assert_eq!(keys(None).len(), 3);
        assert!(keys(Some("ap-east-1")).is_empty());
    }

    #[test]
    fn a_child_waits_for_complete_parent_listings_in_its_region() {
        let child = spec("Child", Some("Parent"));
        let listing = |region: &str, error: Option<&str>| Listing {
            account: "222222222222".into(),
            region: region.into(),
            kind: "Parent".into(),
            model: None,
            error: error.map(str::to_string),
            unavailable: false,
        };
        let listings = vec![
            listing("us-east-1", None),
            listing("eu-west-1", Some("AccessDenied: no")),
        ];
        assert_eq!(
            parents_complete(&listings, &child, Some("us-east-1")),
            Ok(())
        );
        let failed = parents_complete(&listings, &child, Some("eu-west-1")).expect_err("failed");
        assert!(
            failed
                .why
                .contains("Parent listing in eu-west-1 failed (AccessDenied: no)"),
            "{failed:?}"
        );
        assert!(!failed.unavailable);
        let missing = parents_complete(&listings, &child, Some("ap-east-1")).expect_err("missing");
        assert!(
            missing.why.contains("not listed in ap-east-1"),
            "{missing:?}"
        );
        // A parent type missing in the region: the child is missing there too.
        let mut absent = listing("ap-east-1", Some("TypeNotFoundException: gone"));
        absent.unavailable = true;
        let problem = parents_complete(&[absent], &child, Some("ap-east-1")).expect_err("absent");
        assert!(problem.unavailable, "{problem:?}");
    }
}
