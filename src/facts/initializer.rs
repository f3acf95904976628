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

pub(crate) fn parse_init(value: Node, cx: &Cx, read_entries: bool) -> Init {
    if value.kind_name() == "initializer_list" {
        Init::List(list(value, cx, if read_entries { MAX_DEPTH } else { 0 }))
    } else {
        Init::Expr(summarize(value, cx))
    }
}

/// Below this many values a numeric list is read like any other: it may be a small struct.
pub(crate) const NUMERIC_TABLE_MIN: usize = 32;

/// A table of numbers (`static RE_UINT8 table[] = {1, 2, ...}`, or rows of them) under a type
/// name isolint does not know: data with no names or addresses in it, so nothing a rule reads.
fn is_numeric_table(node: Node) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum Entry {
        Number,
        Row,
        Skip,
        Other,
    }
    static ENTRY: LazyLock<Vec<Entry>> = LazyLock::new(|| {
        kind_table(|name, named| match name {
            "number_literal" | "char_literal" if named => Entry::Number,
            "initializer_list" if named => Entry::Row,
            "comment" => Entry::Skip,
            _ => Entry::Other,
        })
    });
    let mut values = 0usize;
    let mut stack = vec![(node, 0u8)];
    while let Some((list, depth)) = stack.pop() {
        let mut cursor = list.walk();
        for child in list.named_children(&mut cursor) {
            match ENTRY.get(child.kind_id() as usize) {
                Some(Entry::Number) => values += 1,
                Some(Entry::Row) if depth < 2 => stack.push((child, depth + 1)),
                Some(Entry::Skip) => {}
                _ => return false,
            }
        }
    }
    values >= NUMERIC_TABLE_MIN
}

fn list(node: Node, cx: &Cx, depth_left: usize) -> InitList {
    let mut out = InitList {
        entries: Vec::new(),
        opaque: depth_left == 0,
        span: cx.span(node),
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
