//! Initializers, positional and designated, read entry by entry for the types the model needs
//! (`PyModuleDef`, slot arrays, `PyTypeObject`, `PyType_Spec`, method tables).

use super::expr::summarize;
use super::extract::Cx;
use super::fields::{kind_table, KindName, FIELD};
use super::{Init, InitEntry, InitList};
use std::sync::LazyLock;
use tree_sitter::Node;

/// Type objects nest two or three levels; anything deeper is data, not structure.
const MAX_DEPTH: usize = 8;

pub(crate) fn parse_init(value: Node, cx: &Cx, read_entries: bool, type_name: &str) -> Init {
    if value.kind_name() != "initializer_list" {
        return Init::Expr(summarize(value, cx));
    }
    if read_entries && !is_python_type(type_name) {
        // One walk of the table decides both kinds of data: numbers and a few names keep the
        // names; numbers alone keep nothing, as `list` would find with `is_numeric_table`.
        let names = match table_values(value, Some(cx)) {
            Some((values, mut names)) if !names.is_empty() && values >= DATA_TABLE_MIN => {
                names.sort();
                Some(names)
            }
            Some((values, names)) if names.is_empty() && values >= NUMERIC_TABLE_MIN => None,
            _ => return Init::List(list(value, cx, MAX_DEPTH)),
        };
        return Init::List(InitList {
            entries: Vec::new(),
            opaque: true,
            span: cx.span(value),
            names,
        });
    }
    Init::List(list(value, cx, if read_entries { MAX_DEPTH } else { 0 }))
}

/// `PyTypeObject`, `PyNumberMethods`, `_PyArg_Parser`, `struct PyModuleDef`: a type of the C
/// API, whose initializer the model and the plan read field by field, never as data.
fn is_python_type(type_name: &str) -> bool {
    type_name
        .split_whitespace()
        .find(|w| !matches!(*w, "const" | "static" | "volatile" | "struct" | "union"))
        .is_some_and(|base| base.starts_with("Py") || base.starts_with("_Py"))
}

/// A data table needs at least this many values; fewer may be a small struct.
const DATA_TABLE_MIN: usize = 64;
/// A data table names at most this many distinct names: a table of more is more likely one of
/// functions or handlers, kept entry by entry.
const DATA_TABLE_MAX_NAMES: usize = 8;

// A data table of numbers and a few bare names, at most two levels of rows deep
// (`static const DBCHAR __jisx0213_bmp_encmap[27287] = {8754, N, N, ...}`, where `N` is a
// macro) keeps only the names it holds, each once (`InitList::names`). Its entries say nothing
// about state, and read one by one they made up most of the initializer entries of CPython's
// sources (CJK codecs' 232,000 of 247,000). Every reader of names in initializers gets the same
// names from there; nothing reads such a table's entries by position.

/// Below this many values a numeric list is read like any other: it may be a small struct.
pub(crate) const NUMERIC_TABLE_MIN: usize = 32;

/// A table of numbers (`static RE_UINT8 table[] = {1, 2, ...}`, or rows of them) under a type
/// name isolint does not know: data with no names or addresses in it, so nothing a rule reads.
fn is_numeric_table(node: Node) -> bool {
    table_values(node, None).is_some_and(|(values, _)| values >= NUMERIC_TABLE_MIN)
}

/// The values of a table of numbers (number and character literals), rows of them at most two
/// levels deep, and, with `names` (the text to read them from), bare names among them, each
/// once, at most [`DATA_TABLE_MAX_NAMES`]; `None` for anything else in it (a string, a call,
/// an address, a name when names are not wanted, or too many names).
fn table_values(node: Node, names: Option<&Cx>) -> Option<(usize, Vec<String>)> {
    #[derive(Clone, Copy, PartialEq)]
    enum Entry {
        Number,
        Name,
        Row,
        Skip,
        Other,
    }
    static ENTRY: LazyLock<Vec<Entry>> = LazyLock::new(|| {
        kind_table(|name, named| match name {
            "number_literal" | "char_literal" if named => Entry::Number,
            "identifier" if named => Entry::Name,
            "initializer_list" if named => Entry::Row,
            "comment" => Entry::Skip,
            _ => Entry::Other,
        })
    });
    let mut values = 0usize;
    let mut found: Vec<String> = Vec::new();
    let mut stack = vec![(node, 0u8)];
    while let Some((list, depth)) = stack.pop() {
        let mut cursor = list.walk();
        for child in list.named_children(&mut cursor) {
            match (ENTRY.get(child.kind_id() as usize), names) {
                (Some(Entry::Number), _) => values += 1,
                (Some(Entry::Name), Some(cx)) => {
                    values += 1;
                    let name = cx.text(child);
                    if !found.iter().any(|n| n == name) {
                        if found.len() == DATA_TABLE_MAX_NAMES {
                            return None;
                        }
                        found.push(name.to_string());
                    }
                }
                (Some(Entry::Row), _) if depth < 2 => stack.push((child, depth + 1)),
                (Some(Entry::Skip), _) => {}
                _ => return None,
            }
        }
    }
    Some((values, found))
}

fn list(node: Node, cx: &Cx, depth_left: usize) -> InitList {
    let mut out = InitList {
        entries: Vec::new(),
        opaque: depth_left == 0,
        span: cx.span(node),
        names: None,
    };
    if depth_left == 0 {
        return out;
    }
    if is_numeric_table(node) {
        out.opaque = true;
        return out;
    }
    let mut cursor = node.walk();
    for child in node.named_children(&mut cursor) {
        let (designator, value) = match child.kind_name() {
            "comment" | "ERROR" => continue,
            "initializer_pair" => {
                let mut c = child.walk();
                let designator = child
                    .children_by_field_id(FIELD.designator, &mut c)
                    .map(|d| match d.kind_name() {
                        "field_designator" => d
                            .named_child(0)
                            .map(|f| cx.text(f).to_string())
                            .unwrap_or_default(),
                        _ => cx.text(d).to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(".");
                match child.child_by_field_id(FIELD.value.get()) {
                    Some(value) => (Some(designator), value),
                    None => continue,
                }
            }
            _ => (None, child),
        };
        let value = if value.kind_name() == "initializer_list" {
            Init::List(list(value, cx, depth_left - 1))
        } else {
            Init::Expr(summarize(value, cx))
        };
        out.entries.push(InitEntry {
            designator,
            value,
            versions: cx.versions(child),
            alternative: cx.cond.is_alternative(child.start_byte()),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::facts::{Init, InitList};
    use std::path::Path;

    fn lists(source: &str) -> Vec<(String, InitList)> {
        let parsed = crate::parse::parse(source.as_bytes()).expect("parses");
        let facts = crate::facts::extract(
            &parsed,
            source.as_bytes(),
            Path::new("t.c"),
            crate::discover::SourceKind::C,
            None,
            &crate::parse::macros::ProjectMacros::default(),
        );
        facts
            .variables
            .into_iter()
            .filter_map(|v| match v.init {
                Some(Init::List(list)) => Some((v.name, list)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn numbers_and_a_few_names_are_kept_as_data() {
        let values = |name: &str| {
            (0..70)
                .map(|i| {
                    if i % 2 == 0 {
                        i.to_string()
                    } else {
                        name.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let source = format!(
            "static const DBCHAR map[] = {{{}}};\n\
             static PyNumberMethods as_number = {{{}}};\n\
             static const DBCHAR few[] = {{1, N, 2}};\n\
             static const DBCHAR plain[] = {{{}}};\n",
            values("N"),
            values("nb_add"),
            (0..70)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let found = lists(&source);
        let get = |n: &str| &found.iter().find(|(name, _)| name == n).expect(n).1;
        let map = get("map");
        assert!(map.opaque && map.entries.is_empty());
        assert_eq!(map.names.as_deref(), Some(&["N".to_string()][..]));
        // A type of the C API is read field by field, however it looks.
        assert_eq!(get("as_number").entries.len(), 70);
        assert!(get("as_number").names.is_none());
        // Too few values: perhaps a small struct.
        assert_eq!(get("few").entries.len(), 3);
        // Numbers alone stay an opaque table with no names known.
        assert!(get("plain").opaque && get("plain").names.is_none());
        assert!(!get("plain").names_known());
    }
}
