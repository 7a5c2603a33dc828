//! Mapping YAML → compiled entries. Every problem is collected (not just the first) so a user
//! fixes a file in one pass. Unknown keys are errors with a "did you mean", as in the config,
//! except the keys Ocean's AWS integrations define and tidemark does not use, which are warnings
//! so that mappings written for Ocean still load.

use std::sync::OnceLock;

use regex::Regex;
use serde_json::Value as Json;

use super::FileFlags;
use super::expr::Expr;
use crate::core::model::{RegionPolicy, WriteOptions, model_key};
use crate::core::yaml::{self, Diagnostic, Node, Pos, Reader, Tolerated, Value};

/// One compiled expression, and where it is written (`file:line:col`), so that a failure on
/// an item names the expression to fix.
pub(crate) struct Field {
    pub expr: Expr,
    pub at: String,
}

/// A mapping value: an expression, or an object of them (Ocean evaluates nested maps key by key).
pub(crate) enum Template {
    Expr(Field),
    Object(Vec<(String, Template)>),
    /// A search relation (Ocean's `{combinator, rules}` with jq-valued rules): it maps to a Port
    /// search query, which the reconciler resolves to identifiers against the catalog.
    Search(SearchTemplate),
}

/// `{combinator, rules}` whose values are jq expressions.
pub(crate) struct SearchTemplate {
    pub combinator: Field,
    pub rules: Vec<RuleTemplate>,
}

/// One rule of a search relation: a property rule, or a nested query.
pub(crate) enum RuleTemplate {
    Property(Box<PropertyRule>),
    Nested(Box<SearchTemplate>),
}

/// A property rule of a search relation: each part a jq expression.
pub(crate) struct PropertyRule {
    pub property: Field,
    pub operator: Field,
    pub value: Field,
}

/// One entity's expressions. `None` = the mapping does not define the field.
pub(crate) struct EntityTemplate {
    pub identifier: Option<Field>,
    pub blueprint: Option<Field>,
    pub title: Option<Field>,
    pub icon: Option<Field>,
    pub team: Option<Field>,
    pub properties: Option<Vec<(String, Template)>>,
    pub relations: Option<Vec<(String, Template)>>,
}

/// `port.itemsToParse` and its companions.
pub(crate) struct ItemsToParse {
    pub expr: Field,
    pub name: String,
    /// `del(<path>)` applied to the item before each element is added (Ocean's top-level
    /// transform); `None` when the transform is off.
    pub strip: Option<Expr>,
}

/// `selector.resourceModelsFrom`, compiled.
pub(crate) struct ModelsFromEntry {
    pub kind: String,
    pub model: Field,
}

/// One `resources[]` entry.
pub(crate) struct Entry {
    pub kind: String,
    /// Where the entry starts, for errors that involve several entries.
    pub pos: Pos,
    pub query: Field,
    pub region_policy: RegionPolicy,
    pub use_get_resource_api: bool,
    pub resource_model: Option<Json>,
    /// Which listed items this entry maps: those listed with its model ([`model_key`]), or
    /// without one.
    pub model: Option<String>,
    /// Whether it also maps items that say nothing of their model (`tidemark map` input): set
    /// when no entry of its kind lists without a model, so such an item cannot be that listing's.
    pub maps_unlisted: bool,
    /// Listed once per item of a parent kind instead of with `resource_model`.
    pub models_from: Option<ModelsFromEntry>,
    pub items_to_parse: Option<ItemsToParse>,
    pub entities: Vec<EntityTemplate>,
    pub write: WriteOptions,
}

/// One mapping file, compiled.
pub(crate) struct FileSpec {
    pub name: String,
    pub flags: FileFlags,
    pub entries: Vec<Entry>,
}

/// The mapping reader: the shared [`Reader`] and the expressions compiled so far.
struct Ctx<'a> {
    read: Reader,
    /// The text of every expression compiled so far, by [`Expr::id`] − 1.
    expressions: &'a mut Vec<String>,
}

impl Ctx<'_> {
    /// Compiles a scalar as a jq expression; non-string scalars are their jq literal.
    fn expr(&mut self, node: &Node, what: &str) -> Option<Field> {
        let text = match &node.value {
            Value::Str { text, .. } => text.clone(),
            Value::Bool(_) | Value::Int(_) | Value::Float(_) => node.scalar_text()?,
            Value::Null => "null".to_string(),
            _ => {
                self.read.error(
                    node.pos,
                    format!(
                        "{what} must be a jq expression (a string), found {}",
                        node.type_name()
                    ),
                );
                return None;
            }
        };
        match Expr::compile(&text) {
            Ok(mut expr) => Some(Field {
                expr: {
                    self.expressions.push(expr.text.clone());
                    expr.id = self.expressions.len();
                    expr
                },
                at: format!("{}:{}:{}", self.read.file, node.pos.line, node.pos.col),
            }),
            Err(errs) => {
                for e in errs {
                    let pos = offset_pos(node, e.offset);
                    self.read.error(
                        pos,
                        format!(
                            "jq error in {what} `{}` at character {}: {}",
                            text.trim(),
                            e.offset + 1,
                            e.message
                        ),
                    );
                }
                None
            }
        }
    }

    fn template(&mut self, node: &Node, what: &str) -> Option<Template> {
        let is_search = node.get("combinator").is_some() || node.get("rules").is_some();
        if is_search && what.starts_with("relations.") {
            return self.search(node, what).map(Template::Search);
        }
        match node.as_map() {
            Some(entries) => {
                let mut out = Vec::new();
                for (k, v) in entries {
                    let key = k.scalar_text().unwrap_or_default();
                    if let Some(t) = self.template(v, &format!("{what}.{key}")) {
                        out.push((key, t));
                    }
                }
                Some(Template::Object(out))
            }
            None => self.expr(node, what).map(Template::Expr),
        }
    }

    /// A search relation's query: `combinator` and `rules`, each rule `property`, `operator` and
    /// `value` (or a nested query), every value a jq expression, as in Ocean.
    fn search(&mut self, node: &Node, what: &str) -> Option<SearchTemplate> {
        let node = self.read.map(node, what)?;
        self.read.keys(node, &["combinator", "rules"], what, &[]);
        let combinator = match node.get("combinator") {
            Some(c) => self.expr(c, &format!("{what}.combinator")),
            None => {
                self.read.error(
                    node.pos,
                    format!("{what}: a search relation needs `combinator` (jq, e.g. '\"and\"')"),
                );
                None
            }
        };
        let rules_node = node.get("rules");
        let Some(items) = rules_node.and_then(Node::as_seq) else {
            self.read.error(
                rules_node.map_or(node.pos, |n| n.pos),
                format!("{what}: a search relation needs `rules`, a list"),
            );
            return None;
        };
        let mut rules = Vec::new();
        for (i, rule) in items.iter().enumerate() {
            let at = format!("{what}.rules[{i}]");
            let Some(rule) = self.read.map(rule, &at) else {
                continue;
            };
            if rule.get("combinator").is_some() {
                if let Some(nested) = self.search(rule, &at) {
                    rules.push(RuleTemplate::Nested(Box::new(nested)));
                }
                continue;
            }
            self.read
                .keys(rule, &["property", "operator", "value"], &at, &[]);
            let part = |cx: &mut Self, key: &str| match rule.get(key) {
                Some(n) => cx.expr(n, &format!("{at}.{key}")),
                None => {
                    cx.read.error(
                        rule.pos,
                        format!("{at}: a rule needs `{key}` (a jq expression)"),
                    );
                    None
                }
            };
            let (property, operator, value) = (
                part(self, "property"),
                part(self, "operator"),
                part(self, "value"),
            );
            if let (Some(property), Some(operator), Some(value)) = (property, operator, value) {
                rules.push(RuleTemplate::Property(Box::new(PropertyRule {
                    property,
                    operator,
                    value,
                })));
            }
        }
        Some(SearchTemplate {
            combinator: combinator?,
            rules,
        })
    }

    fn templates(&mut self, node: Option<&Node>, what: &str) -> Option<Vec<(String, Template)>> {
        let node = node?;
        if node.is_null() {
            return Some(Vec::new());
        }
        let node = self.read.map(node, what)?;
        let mut out = Vec::new();
        for (k, v) in node.as_map().unwrap_or_default() {
            let key = k.scalar_text().unwrap_or_default();
            if let Some(t) = self.template(v, &format!("{what}.{key}")) {
                out.push((key, t));
            }
        }
        Some(out)
    }
}

/// Where character `offset` of an expression lies, when the scalar sits on one line; otherwise
/// the scalar's own position.
fn offset_pos(node: &Node, offset: usize) -> Pos {
    match &node.value {
        Value::Str { text, quoted } if !text.contains('\n') => Pos {
            line: node.pos.line,
            col: node.pos.col + offset + usize::from(*quoted),
        },
        _ => node.pos,
    }
}

const TOP_KEYS: &[&str] = &[
    "deleteDependentEntities",
    "createMissingRelatedEntities",
    "enableMergeEntity",
    "entityDeletionThreshold",
    "resources",
];
const RESOURCE_KEYS: &[&str] = &["kind", "selector", "port"];
const SELECTOR_KEYS: &[&str] = &[
    "query",
    "regionPolicy",
    "useGetResourceAPI",
    "resourceModel",
    "resourceModelsFrom",
];
/// `kind: cloudResource` (Ocean's older form) lists its kinds in the selector.
const SELECTOR_KEYS_CLOUD_RESOURCE: &[&str] = &[
    "query",
    "regionPolicy",
    "useGetResourceAPI",
    "resourceModel",
    "resourceModelsFrom",
    "resourceKinds",
];
const MODELS_FROM_KEYS: &[&str] = &["kind", "model"];
const REGION_POLICY_KEYS: &[&str] = &["allow", "deny"];
const PORT_KEYS: &[&str] = &[
    "entity",
    "itemsToParse",
    "itemsToParseName",
    "itemsToParseTopLevelTransform",
];
const ENTITY_KEYS: &[&str] = &["mappings"];
const MAPPING_KEYS: &[&str] = &[
    "identifier",
    "title",
    "blueprint",
    "team",
    "icon",
    "properties",
    "relations",
];

/// Keys of a selector that Ocean's AWS integrations define and tidemark does not use, with what
/// they are for in Ocean: a mapping written for Ocean loads with a warning for each, not an
/// error. README lists them.
const OCEAN_ONLY_SELECTOR_KEYS: &[Tolerated] = &[
    (
        "exportEnvVariables",
        "Ocean's list of environment variables exported to the integration",
    ),
    (
        "listGroupResources",
        "Ocean's switch to list AWS::ResourceGroups::Group members with the Resource Groups API",
    ),
    (
        "includeActions",
        "Ocean aws-v3's list of extra AWS API calls per kind",
    ),
    (
        "maxConcurrentAccounts",
        "Ocean aws-v3's per-kind account concurrency (tidemark's is source.concurrency.accounts)",
    ),
];

/// Ocean's older AWS form: one entry of this kind lists several kinds in `selector.resourceKinds`.
const CLOUD_RESOURCE: &str = "cloudResource";

/// Ocean's default deletion threshold.
const DEFAULT_THRESHOLD: f64 = 0.9;

/// Errors and warnings of a mapping file that does not load.
pub(crate) type LoadFailure = (Vec<Diagnostic>, Vec<Diagnostic>);

/// Parses and compiles one mapping file: the spec and its warnings, or every error found with
/// the warnings.
pub(crate) fn load_file(
    name: &str,
    text: &str,
    expressions: &mut Vec<String>,
) -> Result<(FileSpec, Vec<Diagnostic>), LoadFailure> {
    let root = match yaml::parse(text) {
        Ok(root) => root,
        Err(e) => return Err((vec![Diagnostic::new(name, e.pos(), e.message)], Vec::new())),
    };
    let mut cx = Ctx {
        read: Reader::new(name),
        expressions,
    };
    let spec = file_spec(&mut cx, name, &root);
    // An entry of Ocean's `cloudResource` form is compiled once per kind: say each problem once.
    for list in [&mut cx.read.errors, &mut cx.read.warnings] {
        let mut seen = std::collections::HashSet::new();
        list.retain(|d| seen.insert((d.pos.line, d.pos.col, d.message.clone())));
    }
    match spec {
        Some(spec) if cx.read.errors.is_empty() => Ok((spec, cx.read.warnings)),
        _ => Err((cx.read.errors, cx.read.warnings)),
    }
}

fn file_spec(cx: &mut Ctx, name: &str, root: &Node) -> Option<FileSpec> {
    match &root.value {
        Value::Null => {
            cx.read.error(
                root.pos,
                "the mapping file is empty: expected a map with `resources`",
            );
            return None;
        }
        Value::Seq(_) => {
            cx.read.error(
                root.pos,
                "a mapping file must be a map with `resources`, found a list (indent the list under `resources:`)",
            );
            return None;
        }
        Value::Map(_) => {}
        _ => {
            cx.read.error(
                root.pos,
                format!(
                    "a mapping file must be a map with `resources`, found {}",
                    root.type_name()
                ),
            );
            return None;
        }
    }
    cx.read.keys(root, TOP_KEYS, "", &[]);
    let threshold = match root.get("entityDeletionThreshold") {
        None => DEFAULT_THRESHOLD,
        Some(n) => match n.value {
            Value::Int(i) if (0..=1).contains(&i) => i as f64,
            Value::Float(f) if (0.0..=1.0).contains(&f) => f,
            Value::Null => DEFAULT_THRESHOLD,
            _ => {
                cx.read.error(
                    n.pos,
                    "entityDeletionThreshold must be a number between 0 and 1",
                );
                DEFAULT_THRESHOLD
            }
        },
    };
    let flags = FileFlags {
        delete_dependent_entities: cx.read.bool(
            root.get("deleteDependentEntities"),
            "deleteDependentEntities",
            true,
        ),
        create_missing_related_entities: cx.read.bool(
            root.get("createMissingRelatedEntities"),
            "createMissingRelatedEntities",
            true,
        ),
        enable_merge_entity: cx
            .read
            .bool(root.get("enableMergeEntity"), "enableMergeEntity", true),
        entity_deletion_threshold: threshold,
    };
    let write = WriteOptions {
        merge: flags.enable_merge_entity,
        create_missing_related: flags.create_missing_related_entities,
    };
    let mut entries = Vec::new();
    match root.get("resources") {
        None => cx
            .read
            .error(root.pos, "the mapping file has no `resources` list"),
        Some(n) if n.is_null() => {}
        Some(n) => match n.as_seq() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    let section = format!("resources[{i}]");
                    for kind in entry_kinds(cx, item, &section) {
                        if let Some(entry) = entry(cx, item, write, kind, &section) {
                            entries.push(entry);
                        }
                    }
                }
            }
            None => cx.read.error(
                n.pos,
                format!("resources must be a list, found {}", n.type_name()),
            ),
        },
    }
    Some(FileSpec {
        name: name.to_string(),
        flags,
        entries,
    })
}

/// The kinds one `resources` entry maps: its `kind`, or for Ocean's older `kind: cloudResource`
/// form each of `selector.resourceKinds` (mapped as one entry per kind, with a warning that shows
/// the current form). `None` stands for an entry whose kind is missing or invalid (reported).
fn entry_kinds(cx: &mut Ctx, node: &Node, section: &str) -> Vec<Option<String>> {
    let Some(node) = cx.read.map(node, "each entry of resources") else {
        return Vec::new();
    };
    let kind = match node.get("kind") {
        Some(k) => cx.read.string(k, "kind"),
        None => {
            cx.read.error(node.pos, "a resources entry needs a `kind`");
            None
        }
    };
    if kind.as_deref() != Some(CLOUD_RESOURCE) {
        return vec![kind];
    }
    let listed = node.get("selector").and_then(|s| s.get("resourceKinds"));
    let kinds = cx.read.strings(listed, "selector.resourceKinds");
    if kinds.is_empty() {
        cx.read.error(
            node.pos,
            format!("{section}: kind: cloudResource needs selector.resourceKinds, the kinds it maps (Ocean's older form; the current form is one entry per kind)"),
        );
        return Vec::new();
    }
    cx.read.warning(
        node.pos,
        format!(
            "{section}: kind: cloudResource with selector.resourceKinds is Ocean's older form; it is mapped as {} entries with the same selector and port, one per kind ({}); write them as `- kind: {}` and so on",
            kinds.len(),
            kinds.join(", "),
            kinds[0]
        ),
    );
    kinds.into_iter().map(Some).collect()
}

fn entry(
    cx: &mut Ctx,
    node: &Node,
    write: WriteOptions,
    kind: Option<String>,
    section: &str,
) -> Option<Entry> {
    let node = cx.read.map(node, "each entry of resources")?;
    let cloud_resource =
        node.get("kind").and_then(Node::scalar_text).as_deref() == Some(CLOUD_RESOURCE);
    cx.read.keys(node, RESOURCE_KEYS, section, &[]);

    let mut query = None;
    let mut region_policy = RegionPolicy::default();
    let mut use_get_resource_api = false;
    let mut resource_model = None;
    let mut models_from = None;
    match node.get("selector").filter(|n| !n.is_null()) {
        None => {}
        Some(sel) => {
            if let Some(sel) = cx.read.map(sel, "selector") {
                let known: &[&str] = if cloud_resource {
                    SELECTOR_KEYS_CLOUD_RESOURCE
                } else {
                    SELECTOR_KEYS
                };
                cx.read.keys(
                    sel,
                    known,
                    &format!("{section}.selector"),
                    OCEAN_ONLY_SELECTOR_KEYS,
                );
                query = sel.get("query").map(|q| cx.expr(q, "selector.query"));
                if let Some(rp) = sel.get("regionPolicy").filter(|n| !n.is_null())
                    && let Some(rp) = cx.read.map(rp, "selector.regionPolicy")
                {
                    cx.read.keys(
                        rp,
                        REGION_POLICY_KEYS,
                        &format!("{section}.selector.regionPolicy"),
                        &[],
                    );
                    region_policy = RegionPolicy {
                        allow: cx.read.strings(rp.get("allow"), "regionPolicy.allow"),
                        deny: cx.read.strings(rp.get("deny"), "regionPolicy.deny"),
                    };
                }
                use_get_resource_api =
                    cx.read
                        .bool(sel.get("useGetResourceAPI"), "useGetResourceAPI", false);
                resource_model = sel
                    .get("resourceModel")
                    .filter(|n| !n.is_null())
                    .map(Node::to_json);
                if let Some(from) = sel.get("resourceModelsFrom").filter(|n| !n.is_null()) {
                    if resource_model.is_some() {
                        cx.read.error(
                            from.pos,
                            "a selector cannot have both resourceModel and resourceModelsFrom: the first lists with one model, the second with one per parent item",
                        );
                    }
                    models_from = models_from_entry(cx, from, section);
                }
            }
        }
    }
    let query = match query {
        Some(q) => q,
        // Ocean's default selector maps every item.
        None => Some(Field {
            expr: Expr::compile("true").ok()?,
            at: format!("{}:{}:{}", cx.read.file, node.pos.line, node.pos.col),
        }),
    };

    let (items_to_parse, entities) = port(cx, node, section);
    Some(Entry {
        kind: kind?,
        pos: node.pos,
        query: query?,
        region_policy,
        use_get_resource_api,
        model: resource_model.as_ref().map(model_key),
        resource_model,
        maps_unlisted: true,
        models_from,
        items_to_parse,
        entities,
        write,
    })
}

/// `port` of a resources entry: how an item splits (`itemsToParse`) and the entities it maps to.
fn port(cx: &mut Ctx, node: &Node, section: &str) -> (Option<ItemsToParse>, Vec<EntityTemplate>) {
    let Some(port) = node.get("port") else {
        cx.read
            .error(node.pos, "a resources entry needs `port.entity.mappings`");
        return (None, Vec::new());
    };
    let Some(port) = cx.read.map(port, "port") else {
        return (None, Vec::new());
    };
    cx.read
        .keys(port, PORT_KEYS, &format!("{section}.port"), &[]);
    let items_to_parse = port
        .get("itemsToParse")
        .filter(|n| !n.is_null())
        .and_then(|n| self_items(cx, port, n));
    let entities = match port.get("entity") {
        None => {
            cx.read.error(port.pos, "`port` needs `entity.mappings`");
            Vec::new()
        }
        Some(e) => match cx.read.map(e, "port.entity") {
            None => Vec::new(),
            Some(e) => {
                cx.read
                    .keys(e, ENTITY_KEYS, &format!("{section}.port.entity"), &[]);
                match e.get("mappings") {
                    None => {
                        cx.read.error(e.pos, "`port.entity` needs `mappings`");
                        Vec::new()
                    }
                    Some(m) => mappings(cx, m, &format!("{section}.port.entity.mappings")),
                }
            }
        },
    };
    (items_to_parse, entities)
}

/// `resourceModelsFrom: {kind, model}`: the parent kind and the jq expression that makes a
/// resource model of each of its items.
fn models_from_entry(cx: &mut Ctx, node: &Node, section: &str) -> Option<ModelsFromEntry> {
    let node = cx.read.map(node, "selector.resourceModelsFrom")?;
    cx.read.keys(
        node,
        MODELS_FROM_KEYS,
        &format!("{section}.selector.resourceModelsFrom"),
        &[],
    );
    let kind = match node.get("kind") {
        Some(k) => cx.read.string(k, "resourceModelsFrom.kind"),
        None => {
            cx.read.error(
                node.pos,
                "resourceModelsFrom needs a `kind`: the parent type whose items give the models",
            );
            None
        }
    };
    let model = match node.get("model") {
        Some(m) => cx.expr(m, "resourceModelsFrom.model"),
        None => {
            cx.read.error(
                node.pos,
                "resourceModelsFrom needs a `model`: a jq expression that makes a resource model of each parent item, e.g. '{\"ClusterName\": .Identifier}'",
            );
            None
        }
    };
    Some(ModelsFromEntry {
        kind: kind?,
        model: model?,
    })
}

fn self_items(cx: &mut Ctx, port: &Node, node: &Node) -> Option<ItemsToParse> {
    let expr = cx.expr(node, "itemsToParse")?;
    let name = match port.get("itemsToParseName").filter(|n| !n.is_null()) {
        Some(n) => cx.read.string(n, "itemsToParseName")?,
        None => "item".to_string(),
    };
    let transform = cx.read.bool(
        port.get("itemsToParseTopLevelTransform"),
        "itemsToParseTopLevelTransform",
        true,
    );
    let strip = if transform {
        let target = deletion_path(&expr.expr.text).unwrap_or_else(|| ".".to_string());
        match Expr::compile(&format!("del({target})")) {
            Ok(e) => Some(e),
            Err(_) => Some(Expr::compile("null").ok()?),
        }
    } else {
        None
    };
    Some(ItemsToParse { expr, name, strip })
}

/// The path Ocean deletes from an item before adding each `itemsToParse` element: the first
/// plain path (`.a.b`, `.a[0]`, `.["x"]`) among the expression's pipe segments.
pub(crate) fn deletion_path(expr: &str) -> Option<String> {
    static PAREN: OnceLock<Regex> = OnceLock::new();
    static AS_VAR: OnceLock<Regex> = OnceLock::new();
    static PATH: OnceLock<Regex> = OnceLock::new();
    let never = |_| unreachable!();
    let paren = PAREN.get_or_init(|| Regex::new(r"(?s)^\((.*?)\)").unwrap_or_else(never));
    let as_var = AS_VAR.get_or_init(|| Regex::new(r"^\.\s+as\s+\$\w+").unwrap_or_else(never));
    let path = PATH.get_or_init(|| {
        Regex::new(r"^(\.\w+|\.\[[^\]]+\])(\.\w+|\[[^\]]+\]|\.\[[^\]]+\])*").unwrap_or_else(never)
    });
    let expr = expr.trim();
    let chain = if expr.starts_with('(') {
        paren.captures(expr)?.get(1)?.as_str().trim().to_string()
    } else {
        expr.to_string()
    };
    for segment in chain.split('|') {
        let segment = segment.trim();
        if as_var.is_match(segment) || segment == "." || segment.starts_with('$') {
            continue;
        }
        if let Some(m) = path.find(segment) {
            return Some(m.as_str().trim().to_string());
        }
    }
    None
}

fn mappings(cx: &mut Ctx, node: &Node, section: &str) -> Vec<EntityTemplate> {
    match &node.value {
        Value::Seq(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, m)| entity(cx, m, &format!("{section}[{i}]")))
            .collect(),
        Value::Map(_) => entity(cx, node, section).into_iter().collect(),
        _ => {
            cx.read.error(
                node.pos,
                format!(
                    "mappings must be a map (or a list of maps), found {}",
                    node.type_name()
                ),
            );
            Vec::new()
        }
    }
}

fn entity(cx: &mut Ctx, node: &Node, section: &str) -> Option<EntityTemplate> {
    let node = cx.read.map(node, "each mapping")?;
    cx.read.keys(node, MAPPING_KEYS, section, &[]);
    let required = |cx: &mut Ctx, key: &str| -> Option<Field> {
        match node.get(key) {
            None => {
                cx.read
                    .error(node.pos, format!("the mapping has no `{key}`"));
                None
            }
            Some(n) if n.as_map().is_some() && key == "identifier" => {
                let is_search = n.get("combinator").is_some() || n.get("rules").is_some();
                cx.read.error(
                    n.pos,
                    if is_search {
                        "search-query identifiers ({combinator, rules}) are not supported: tidemark needs to know each entity's identifier; map the identifier with a jq expression".to_string()
                    } else {
                        format!("identifier must be a jq expression, found {}", n.type_name())
                    },
                );
                None
            }
            Some(n) => cx.expr(n, key),
        }
    };
    let identifier = required(cx, "identifier");
    let blueprint = required(cx, "blueprint");
    let optional = |cx: &mut Ctx, key: &str| node.get(key).and_then(|n| cx.expr(n, key));
    let title = optional(cx, "title");
    let icon = optional(cx, "icon");
    let team = optional(cx, "team");
    let properties = cx.templates(node.get("properties"), "properties");
    let relations = cx.templates(node.get("relations"), "relations");
    Some(EntityTemplate {
        identifier,
        blueprint,
        title,
        icon,
        team,
        properties,
        relations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ocean_deletion_paths_are_the_first_plain_path() {
        assert_eq!(
            deletion_path(".Properties.Items").as_deref(),
            Some(".Properties.Items")
        );
        assert_eq!(
            deletion_path(". as $root | .spec.items[0] | map(.)").as_deref(),
            Some(".spec.items[0]")
        );
        assert_eq!(deletion_path("(.a.b // [])").as_deref(), Some(".a.b"));
        assert_eq!(deletion_path("[.a[]]"), None);
    }
}
