//! YAML documents as a tree that remembers where every node came from.
//!
//! Config and mapping errors must name the file, line and column of the offending value, and
//! duplicate keys must be errors rather than a silent "last one wins". serde-based YAML
//! deserialisers lose positions once a value is converted, so we build our own small tree from
//! the maintained `saphyr-parser` event stream and read it by hand with [`Reader`], which the
//! config and the mapping files share.

use std::collections::HashMap;
use std::fmt;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// A 1-based line and column in a source file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl Pos {
    fn from_span(span: Span) -> Pos {
        Pos {
            line: span.start.line(),
            col: span.start.col() + 1,
        }
    }
}

/// A message tied to a place in a file: `file:line:col: message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub pos: Pos,
    pub message: String,
    pub severity: Severity,
}

/// Whether a diagnostic stops the load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

impl Diagnostic {
    pub fn new(file: impl Into<String>, pos: Pos, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: file.into(),
            pos,
            message: message.into(),
            severity: Severity::Error,
        }
    }

    pub fn warning(file: impl Into<String>, pos: Pos, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::new(file, pos, message)
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.pos.line, self.pos.col, self.message
        )
    }
}

/// One YAML node with its position.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

/// YAML values after core-schema resolution of plain scalars.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// A string scalar. `quoted` is false for plain scalars, so callers can tell `'true'` from `true`.
    Str {
        text: String,
        quoted: bool,
    },
    Seq(Vec<Node>),
    /// Keys keep their own positions and their order in the file.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// A short name of the node's type for error messages.
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) | Value::Float(_) => "a number",
            Value::Str { .. } => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a map",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str { text, .. } => Some(text),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(items) => Some(items),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// The value of `key` in a map node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// A scalar as text, the way a YAML user reads it (`1` → "1", `true` → "true").
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::Null => Some(String::new()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Str { text, .. } => Some(text.clone()),
            Value::Seq(_) | Value::Map(_) => None,
        }
    }

    /// Converts to JSON. Non-string keys become their text.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str { text, .. } => J::String(text.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.scalar_text().unwrap_or_default(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// Finds the node at a JSON pointer (`/a/0/b`), for mapping schema errors back to positions.
    pub fn at_pointer(&self, pointer: &str) -> Option<&Node> {
        let mut node = self;
        for raw in pointer.split('/').skip(1) {
            let part = raw.replace("~1", "/").replace("~0", "~");
            node = match &node.value {
                Value::Map(entries) => entries
                    .iter()
                    .find(|(k, _)| k.scalar_text().as_deref() == Some(part.as_str()))
                    .map(|(_, v)| v)?,
                Value::Seq(items) => items.get(part.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(node)
    }
}

/// Why a YAML document could not be read.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{pos_line}:{pos_col}: {message}")]
pub struct YamlError {
    pub pos_line: usize,
    pub pos_col: usize,
    pub message: String,
}

impl YamlError {
    fn at(pos: Pos, message: impl Into<String>) -> YamlError {
        YamlError {
            pos_line: pos.line,
            pos_col: pos.col,
            message: message.into(),
        }
    }

    pub fn pos(&self) -> Pos {
        Pos {
            line: self.pos_line,
            col: self.pos_col,
        }
    }
}

/// Nesting deeper than this is refused: no real config needs it and it bounds recursion.
const MAX_DEPTH: usize = 128;

/// A document may hold this many nodes, counting each alias as the nodes it copies. A large
/// mapping file has a few thousand; the bound stops aliases of aliases ("a billion laughs")
/// from turning a few hundred bytes into gigabytes.
const MAX_NODES: usize = 200_000;

/// Parses the first document of `text`. An empty file gives a `Null` node at 1:1. A second
/// document is an error, since a config or mapping file describes one thing.
pub fn parse(text: &str) -> Result<Node, YamlError> {
    let mut builder = Builder {
        parser: Parser::new_from_str(text),
        anchors: Vec::new(),
        depth: 0,
        nodes: 0,
    };
    builder.document()
}

struct Builder<'a> {
    parser: Parser<'a, saphyr_parser::StrInput<'a>>,
    anchors: Vec<Anchor>,
    depth: usize,
    /// Nodes built so far, aliases counted as what they copy.
    nodes: usize,
}

/// An anchored node with its size, so an alias can be checked before it is copied.
struct Anchor {
    id: usize,
    node: Node,
    /// Nodes in the subtree, itself included.
    size: usize,
    /// Levels of nesting below the node.
    height: usize,
}

/// (size, height) of a subtree; bounded by [`MAX_NODES`] and [`MAX_DEPTH`] already.
fn measure(node: &Node) -> (usize, usize) {
    let children: Box<dyn Iterator<Item = &Node>> = match &node.value {
        Value::Seq(items) => Box::new(items.iter()),
        Value::Map(entries) => Box::new(entries.iter().flat_map(|(k, v)| [k, v])),
        _ => return (1, 0),
    };
    children.fold((1, 0), |(size, height), child| {
        let (s, h) = measure(child);
        (size + s, height.max(h + 1))
    })
}

impl<'a> Builder<'a> {
    fn next(&mut self) -> Result<(Event<'a>, Pos), YamlError> {
        match self.parser.next_event() {
            Some(Ok((event, span))) => Ok((event, Pos::from_span(span))),
            Some(Err(e)) => Err(YamlError::at(
                Pos {
                    line: e.marker().line(),
                    col: e.marker().col() + 1,
                },
                e.info().to_string(),
            )),
            None => Err(YamlError::at(Pos::default(), "unexpected end of input")),
        }
    }

    fn document(&mut self) -> Result<Node, YamlError> {
        let mut root = None;
        loop {
            let (event, pos) = self.next()?;
            match event {
                Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
                Event::DocumentStart(_) => {
                    if root.is_some() {
                        return Err(YamlError::at(
                            pos,
                            "a second YAML document: this file must hold exactly one",
                        ));
                    }
                    let (event, pos) = self.next()?;
                    root = Some(self.node(event, pos)?);
                }
                Event::StreamEnd => {
                    return Ok(root.unwrap_or(Node {
                        pos: Pos { line: 1, col: 1 },
                        value: Value::Null,
                    }));
                }
                _ => return Err(YamlError::at(pos, "unexpected YAML event")),
            }
        }
    }

    fn node(&mut self, event: Event<'a>, pos: Pos) -> Result<Node, YamlError> {
        if self.depth > MAX_DEPTH {
            return Err(YamlError::at(
                pos,
                format!("nesting deeper than {MAX_DEPTH} levels"),
            ));
        }
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(YamlError::at(
                pos,
                format!("more than {MAX_NODES} nodes, counting what aliases copy"),
            ));
        }
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let value = resolve_scalar(&text, style, tag.as_deref(), pos)?;
                let node = Node { pos, value };
                self.remember(anchor, &node);
                Ok(node)
            }
            Event::Alias(id) => {
                let anchor = self
                    .anchors
                    .iter()
                    .rev()
                    .find(|a| a.id == id)
                    .ok_or_else(|| YamlError::at(pos, "alias to an unknown anchor"))?;
                if self.depth + anchor.height > MAX_DEPTH {
                    return Err(YamlError::at(
                        pos,
                        format!("nesting deeper than {MAX_DEPTH} levels through aliases"),
                    ));
                }
                self.nodes += anchor.size - 1;
                if self.nodes > MAX_NODES {
                    return Err(YamlError::at(
                        pos,
                        format!("more than {MAX_NODES} nodes once aliases are expanded"),
                    ));
                }
                Ok(Node {
                    pos,
                    value: anchor.node.value.clone(),
                })
            }
            Event::SequenceStart(anchor, _) => {
                self.depth += 1;
                let mut items = Vec::new();
                loop {
                    let (event, item_pos) = self.next()?;
                    if matches!(event, Event::SequenceEnd) {
                        break;
                    }
                    items.push(self.node(event, item_pos)?);
                }
                self.depth -= 1;
                let node = Node {
                    pos,
                    value: Value::Seq(items),
                };
                self.remember(anchor, &node);
                Ok(node)
            }
            Event::MappingStart(anchor, _) => {
                self.depth += 1;
                let mut entries: Vec<(Node, Node)> = Vec::new();
                // Keys are looked up by their text, so `a`, `"a"` and `!!str a` are one key.
                let mut seen: HashMap<String, Pos> = HashMap::new();
                loop {
                    let (event, key_pos) = self.next()?;
                    if matches!(event, Event::MappingEnd) {
                        break;
                    }
                    let key = self.node(event, key_pos)?;
                    let first = match key.scalar_text() {
                        Some(text) => seen.insert(text, key.pos),
                        None => entries
                            .iter()
                            .find(|(k, _)| k.value == key.value)
                            .map(|(k, _)| k.pos),
                    };
                    if let Some(first) = first {
                        return Err(YamlError::at(
                            key.pos,
                            format!(
                                "duplicate key {:?} (first defined at line {})",
                                key.scalar_text().unwrap_or_default(),
                                first.line
                            ),
                        ));
                    }
                    let (event, value_pos) = self.next()?;
                    let value = self.node(event, value_pos)?;
                    entries.push((key, value));
                }
                self.depth -= 1;
                let node = Node {
                    pos,
                    value: Value::Map(entries),
                };
                self.remember(anchor, &node);
                Ok(node)
            }
            _ => Err(YamlError::at(pos, "unexpected YAML event")),
        }
    }

    fn remember(&mut self, anchor: usize, node: &Node) {
        if anchor > 0 {
            let (size, height) = measure(node);
            self.anchors.push(Anchor {
                id: anchor,
                node: node.clone(),
                size,
                height,
            });
        }
    }
}

/// YAML 1.2 core schema resolution for plain scalars; quoted and block scalars stay strings.
fn resolve_scalar(
    text: &str,
    style: ScalarStyle,
    tag: Option<&saphyr_parser::Tag>,
    pos: Pos,
) -> Result<Value, YamlError> {
    let string = |quoted| Value::Str {
        text: text.to_string(),
        quoted,
    };
    if let Some(tag) = tag {
        if tag.is_yaml_core_schema() {
            return match tag.suffix.as_str() {
                "str" => Ok(string(true)),
                "null" => Ok(Value::Null),
                "bool" | "int" | "float" => Ok(resolve_plain(text)),
                other => Err(YamlError::at(pos, format!("unsupported tag !!{other}"))),
            };
        }
        return Err(YamlError::at(pos, format!("unsupported tag {tag}")));
    }
    if style != ScalarStyle::Plain {
        return Ok(string(true));
    }
    Ok(resolve_plain(text))
}

fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    if let Some(int) = parse_int(text) {
        return Value::Int(int);
    }
    if looks_like_float(text)
        && let Ok(f) = text.parse::<f64>()
    {
        return Value::Float(f);
    }
    Value::Str {
        text: text.to_string(),
        quoted: false,
    }
}

fn parse_int(text: &str) -> Option<i64> {
    if let Some(hex) = text.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok();
    }
    if let Some(oct) = text.strip_prefix("0o") {
        return i64::from_str_radix(oct, 8).ok();
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn looks_like_float(text: &str) -> bool {
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    !body.is_empty()
        && body.bytes().any(|b| b.is_ascii_digit())
        && body
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
}

/// A key that a place does not use but tolerates, with what it is elsewhere: `(key, what)`.
/// Mapping files tolerate the keys Ocean's AWS integrations define, so that their mappings load.
pub type Tolerated<'a> = (&'a str, &'a str);

/// Reads typed values from the tree of one file and collects every problem on the way, so a user
/// fixes a file in one pass. The config and the mapping files both read through it, so a value
/// of the wrong type, or a key that its place does not know, reads the same in either.
#[derive(Debug, Default)]
pub struct Reader {
    /// The file as messages name it.
    pub file: String,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

impl Reader {
    pub fn new(file: impl Into<String>) -> Reader {
        Reader {
            file: file.into(),
            ..Reader::default()
        }
    }

    pub fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.errors.push(Diagnostic::new(&self.file, pos, message));
    }

    pub fn warning(&mut self, pos: Pos, message: impl Into<String>) {
        self.warnings
            .push(Diagnostic::warning(&self.file, pos, message));
    }

    /// The one policy for the keys of a map `node` (nothing when it is not a map): a key its
    /// place does not know is an error at the key, naming it in `section` (a dotted path; empty
    /// at the top), with a "did you mean" when a known key is close and the keys known there; a
    /// key the place tolerates is a warning that says what it is and that it is ignored.
    pub fn keys(&mut self, node: &Node, known: &[&str], section: &str, tolerated: &[Tolerated]) {
        let prefix = if section.is_empty() {
            String::new()
        } else {
            format!("{section}.")
        };
        for (key, _) in node.as_map().unwrap_or_default() {
            let name = key.scalar_text().unwrap_or_default();
            if known.contains(&name.as_str()) {
                continue;
            }
            if let Some((_, what)) = tolerated.iter().find(|(k, _)| *k == name) {
                self.warning(
                    key.pos,
                    format!("{prefix}{name} is {what}; tidemark does not use it (ignored)"),
                );
                continue;
            }
            let hint = closest(&name, known)
                .map(|k| format!(" (did you mean {prefix}{k}?)"))
                .unwrap_or_default();
            self.error(
                key.pos,
                format!(
                    "unknown key {prefix}{name}{hint}; known keys here: {}",
                    known.join(", ")
                ),
            );
        }
    }

    /// `node` when it is a map, or an error naming what it should be.
    pub fn map<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n Node> {
        if node.as_map().is_some() {
            Some(node)
        } else {
            self.error(
                node.pos,
                format!("{what} must be a map, found {}", node.type_name()),
            );
            None
        }
    }

    /// An optional map section named `name` whose keys must be among `known`: nothing when it is
    /// absent, no entries when it is null, and an error when it is not a map.
    pub fn section<'n>(
        &mut self,
        node: Option<&'n Node>,
        name: &str,
        known: &[&str],
    ) -> Option<&'n [(Node, Node)]> {
        let node = node?;
        if node.is_null() {
            return Some(&[]);
        }
        let node = self.map(node, name)?;
        self.keys(node, known, name, &[]);
        node.as_map()
    }

    /// `true` or `false`; `default` when absent or null, and (after an error) when it is neither.
    pub fn bool(&mut self, node: Option<&Node>, what: &str, default: bool) -> bool {
        match node.map(|n| (n, &n.value)) {
            None | Some((_, Value::Null)) => default,
            Some((_, Value::Bool(b))) => *b,
            Some((n, _)) => {
                self.error(
                    n.pos,
                    format!("{what} must be true or false, found {}", n.type_name()),
                );
                default
            }
        }
    }

    /// A string scalar; a number or a boolean is an error.
    pub fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.value {
            Value::Str { text, .. } => Some(text.clone()),
            _ => {
                self.error(
                    node.pos,
                    format!("{what} must be a string, found {}", node.type_name()),
                );
                None
            }
        }
    }

    /// A scalar as its text: a string, or a number or boolean as written (`12` → "12"). Null, a
    /// list or a map is an error.
    pub fn text(&mut self, node: &Node, what: &str) -> Option<String> {
        match node.value {
            Value::Int(_) | Value::Float(_) | Value::Bool(_) => node.scalar_text(),
            _ => self.string(node, what),
        }
    }

    /// A list of strings ([`Reader::string`]), each entry named "each entry of `what`"; absent
    /// or null is an empty list.
    pub fn strings(&mut self, node: Option<&Node>, what: &str) -> Vec<String> {
        let each = format!("each entry of {what}");
        self.list_of_strings(node, what, |r, item| r.string(item, &each))
    }

    /// A list of scalars as text ([`Reader::text`]), each entry named `what` as the list is;
    /// absent or null is an empty list.
    pub fn texts(&mut self, node: Option<&Node>, what: &str) -> Vec<String> {
        self.list_of_strings(node, what, |r, item| r.text(item, what))
    }

    fn list_of_strings(
        &mut self,
        node: Option<&Node>,
        what: &str,
        mut item: impl FnMut(&mut Self, &Node) -> Option<String>,
    ) -> Vec<String> {
        let Some(node) = node.filter(|n| !n.is_null()) else {
            return Vec::new();
        };
        match node.as_seq() {
            Some(items) => items.iter().filter_map(|n| item(self, n)).collect(),
            None => {
                self.error(
                    node.pos,
                    format!(
                        "{what} must be a list of strings, found {}",
                        node.type_name()
                    ),
                );
                Vec::new()
            }
        }
    }

    /// A number, or a string that reads as one (`"2.5"`).
    pub fn number(&mut self, node: &Node, what: &str) -> Option<f64> {
        let parsed = match &node.value {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Str { text, .. } => text.trim().parse::<f64>().ok(),
            _ => None,
        };
        if parsed.is_none() {
            self.error(
                node.pos,
                format!("{what} must be a number, found {}", node.type_name()),
            );
        }
        parsed
    }

    /// A number within `range`, whole when `whole`; the bounds keep absurd values (`1e300`) from
    /// reaching timers and semaphores that cannot hold them.
    pub fn bounded(
        &mut self,
        node: &Node,
        what: &str,
        range: std::ops::RangeInclusive<f64>,
        whole: bool,
    ) -> Option<f64> {
        let n = self.number(node, what)?;
        if !range.contains(&n) || (whole && n.fract() != 0.0) {
            let kind = if whole { "a whole number" } else { "a number" };
            self.error(
                node.pos,
                format!(
                    "{what} must be {kind} from {} to {}, found {n}",
                    range.start(),
                    range.end()
                ),
            );
            return None;
        }
        Some(n)
    }
}

/// The known key closest to a misspelt one, for "did you mean".
fn closest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (edit_distance(&name.to_lowercase(), &k.to_lowercase()), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min()
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> Value {
        parse(text).expect("valid yaml").value
    }

    #[test]
    fn plain_scalars_resolve_like_the_core_schema() {
        assert_eq!(value("true"), Value::Bool(true));
        assert_eq!(value("12"), Value::Int(12));
        assert_eq!(value("0.9"), Value::Float(0.9));
        assert_eq!(value("~"), Value::Null);
        assert_eq!(
            value("'true'"),
            Value::Str {
                text: "true".into(),
                quoted: true
            }
        );
        assert_eq!(
            value(".Properties.Arn"),
            Value::Str {
                text: ".Properties.Arn".into(),
                quoted: false
            }
        );
    }

    #[test]
    fn nodes_know_their_line_and_column() {
        let root = parse("a:\n  b: .x\n").expect("valid yaml");
        let b = root.get("a").and_then(|a| a.get("b")).expect("b");
        assert_eq!(b.pos, Pos { line: 2, col: 6 });
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let err = parse("a: 1\nb: 2\na: 3\n").expect_err("duplicate");
        assert_eq!(err.pos(), Pos { line: 3, col: 1 });
        assert!(
            err.message.contains("duplicate key \"a\""),
            "{}",
            err.message
        );
    }

    #[test]
    fn keys_that_read_the_same_are_duplicates_however_they_are_written() {
        for text in [
            "catalog: 1\n\"catalog\": 2\n",
            "catalog: 1\n!!str catalog: 2\n",
            "'1': a\n1: b\n",
        ] {
            let err = parse(text).expect_err(text);
            assert!(
                err.message.contains("duplicate key"),
                "{text}: {}",
                err.message
            );
        }
    }

    #[test]
    fn aliases_cannot_multiply_a_small_file_into_a_huge_tree() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let err = parse(&text).expect_err("a billion laughs");
        assert!(err.message.contains("aliases"), "{}", err.message);
    }

    #[test]
    fn aliases_cannot_nest_deeper_than_the_limit() {
        let mut text = String::from("a0: &a0 [1]\n");
        for i in 1..=MAX_DEPTH + 1 {
            text.push_str(&format!("a{i}: &a{i} [*a{}]\n", i - 1));
        }
        let err = parse(&text).expect_err("too deep");
        assert!(err.message.contains("nesting deeper"), "{}", err.message);
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let err = parse("a: [1, 2\nb: 3\n").expect_err("unclosed");
        assert!(err.pos_line >= 1);
    }

    #[test]
    fn empty_files_are_null() {
        assert_eq!(value(""), Value::Null);
        assert_eq!(value("# only a comment\n"), Value::Null);
    }

    #[test]
    fn aliases_copy_their_anchor() {
        let root = parse("a: &x {k: 1}\nb: *x\n").expect("valid yaml");
        assert_eq!(
            root.get("b").map(Node::to_json),
            Some(serde_json::json!({"k": 1}))
        );
    }

    fn read(text: &str) -> (Reader, Node) {
        (Reader::new("f.yaml"), parse(text).expect("valid yaml"))
    }

    fn said(list: &[Diagnostic]) -> Vec<String> {
        list.iter().map(Diagnostic::to_string).collect()
    }

    #[test]
    fn an_unknown_key_is_an_error_at_the_key_with_a_did_you_mean_and_the_known_keys() {
        let (mut r, root) = read("port:\n  entity: {}\n  entiy: 1\n  other: 2\n");
        let port = root.get("port").expect("port");
        r.keys(port, &["entity", "itemsToParse"], "resources[0].port", &[]);
        assert_eq!(
            said(&r.errors),
            [
                "f.yaml:3:3: unknown key resources[0].port.entiy (did you mean resources[0].port.entity?); known keys here: entity, itemsToParse",
                "f.yaml:4:3: unknown key resources[0].port.other; known keys here: entity, itemsToParse",
            ]
        );
        assert!(r.warnings.is_empty());
        assert_eq!(r.errors[0].severity, Severity::Error);
    }

    #[test]
    fn unknown_keys_at_the_top_are_named_without_a_section() {
        let (mut r, root) = read("resynk: 1\n");
        r.keys(&root, &["resync"], "", &[]);
        assert_eq!(
            said(&r.errors),
            ["f.yaml:1:1: unknown key resynk (did you mean resync?); known keys here: resync"]
        );
    }

    #[test]
    fn a_tolerated_key_is_a_warning_that_says_what_it_is() {
        let (mut r, root) = read("query: x\nincludeActions: [A]\nextra: 1\n");
        let tolerated = [("includeActions", "Ocean's list of extra calls")];
        r.keys(&root, &["query"], "sel", &tolerated);
        assert_eq!(
            said(&r.warnings),
            [
                "f.yaml:2:1: sel.includeActions is Ocean's list of extra calls; tidemark does not use it (ignored)"
            ]
        );
        assert_eq!(r.warnings[0].severity, Severity::Warning);
        assert_eq!(
            said(&r.errors),
            ["f.yaml:3:1: unknown key sel.extra; known keys here: query"]
        );
        let (mut top, root) = read("includeActions: [A]\n");
        top.keys(&root, &[], "", &tolerated);
        assert!(
            top.warnings[0]
                .message
                .starts_with("includeActions is Ocean's")
        );
    }

    #[test]
    fn keys_of_a_node_that_is_not_a_map_are_not_checked() {
        let (mut r, root) = read("[a, b]\n");
        r.keys(&root, &[], "", &[]);
        assert!(r.errors.is_empty() && r.warnings.is_empty());
    }

    #[test]
    fn a_map_is_required_where_one_is_expected() {
        let (mut r, root) = read("a: {k: 1}\nb: [1]\n");
        assert!(r.map(root.get("a").expect("a"), "a").is_some());
        assert!(r.map(root.get("b").expect("b"), "b").is_none());
        assert_eq!(
            said(&r.errors),
            ["f.yaml:2:4: b must be a map, found a list"]
        );
    }

    #[test]
    fn a_section_may_be_absent_or_null_and_has_its_keys_checked() {
        let (mut r, root) = read("n:\nm: {interval: 1h, intervl: 2}\nl: [1]\n");
        assert!(r.section(None, "x", &[]).is_none());
        assert_eq!(r.section(root.get("n"), "n", &[]).map(<[_]>::len), Some(0));
        assert_eq!(
            r.section(root.get("m"), "m", &["interval"]).map(<[_]>::len),
            Some(2)
        );
        assert!(r.section(root.get("l"), "l", &[]).is_none());
        assert_eq!(
            said(&r.errors),
            [
                "f.yaml:2:19: unknown key m.intervl (did you mean m.interval?); known keys here: interval",
                "f.yaml:3:4: l must be a map, found a list",
            ]
        );
    }

    #[test]
    fn booleans_fall_back_to_their_default() {
        let (mut r, root) = read("t: true\nn:\ns: 'yes'\n");
        assert!(r.bool(root.get("t"), "t", false));
        assert!(!r.bool(root.get("n"), "n", false));
        assert!(r.bool(root.get("absent"), "absent", true));
        assert!(r.bool(root.get("s"), "s", true));
        assert_eq!(
            said(&r.errors),
            ["f.yaml:3:4: s must be true or false, found a string"]
        );
    }

    #[test]
    fn a_string_must_be_one_and_a_text_may_be_any_scalar() {
        let (mut r, root) = read("s: x\ni: 12\nb: true\nn: ~\nl: [1]\n");
        let at = |k: &str| root.get(k).expect("key");
        assert_eq!(r.string(at("s"), "s").as_deref(), Some("x"));
        assert_eq!(r.string(at("i"), "i"), None);
        assert_eq!(r.text(at("i"), "i").as_deref(), Some("12"));
        assert_eq!(r.text(at("b"), "b").as_deref(), Some("true"));
        assert_eq!(r.text(at("n"), "n"), None);
        assert_eq!(r.text(at("l"), "l"), None);
        assert_eq!(
            said(&r.errors),
            [
                "f.yaml:2:4: i must be a string, found a number",
                "f.yaml:4:4: n must be a string, found null",
                "f.yaml:5:4: l must be a string, found a list",
            ]
        );
    }

    #[test]
    fn lists_of_strings_name_their_entries_by_how_they_read_them() {
        let (mut r, root) = read("a: [x, 1, {k: v}]\nn:\nm: {k: v}\n");
        assert_eq!(r.strings(root.get("a"), "allow"), ["x"]);
        assert_eq!(r.texts(root.get("a"), "exclude"), ["x", "1"]);
        assert!(r.strings(root.get("n"), "n").is_empty());
        assert!(r.texts(None, "absent").is_empty());
        assert!(r.texts(root.get("m"), "m").is_empty());
        assert_eq!(
            said(&r.errors),
            [
                "f.yaml:1:8: each entry of allow must be a string, found a number",
                "f.yaml:1:11: each entry of allow must be a string, found a map",
                "f.yaml:1:11: exclude must be a string, found a map",
                "f.yaml:3:4: m must be a list of strings, found a map",
            ]
        );
    }

    #[test]
    fn numbers_may_be_quoted_and_are_held_to_their_bounds() {
        let (mut r, root) = read("q: '2.5'\nw: x\nf: 1.5\nbig: 20000\nok: 3\n");
        let at = |k: &str| root.get(k).expect("key");
        assert_eq!(r.number(at("q"), "q"), Some(2.5));
        assert_eq!(r.number(at("w"), "w"), None);
        assert_eq!(r.bounded(at("f"), "f", 0.0..=10.0, true), None);
        assert_eq!(r.bounded(at("big"), "big", 0.02..=10_000.0, false), None);
        assert_eq!(r.bounded(at("ok"), "ok", 1.0..=1000.0, true), Some(3.0));
        assert_eq!(
            said(&r.errors),
            [
                "f.yaml:2:4: w must be a number, found a string",
                "f.yaml:3:4: f must be a whole number from 0 to 10, found 1.5",
                "f.yaml:4:6: big must be a number from 0.02 to 10000, found 20000",
            ]
        );
    }

    #[test]
    fn json_pointers_find_nodes() {
        let root = parse("resources:\n  - kind: X\n").expect("valid yaml");
        let kind = root.at_pointer("/resources/0/kind").expect("kind");
        assert_eq!(kind.pos.line, 2);
    }
}
