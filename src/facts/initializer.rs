//! Initializers, positional and designated, read entry by entry for the types the model needs
//! (`PyModuleDef`, slot arrays, `PyTypeObject`, `PyType_Spec`, method tables).

use super::expr::summarize;
use super::extract::Cx;
use super::{Init, InitEntry, InitList};
use tree_sitter::Node;

/// Type objects nest two or three levels; anything deeper is data, not structure.
const MAX_DEPTH: usize = 8;

pub(crate) fn parse_init(value: Node, cx: &Cx, read_entries: bool) -> Init {
    if value.kind() == "initializer_list" {
        Init::List(list(value, cx, if read_entries { MAX_DEPTH } else { 0 }))
    } else {
        Init::Expr(summarize(value, cx))
    }
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
    let mut cursor = node.walk();
    for child in node.named_children(&mut cursor) {
        let (designator, value) = match child.kind() {
            "comment" | "ERROR" => continue,
            "initializer_pair" => {
                let mut c = child.walk();
                let designator = child
                    .children_by_field_name("designator", &mut c)
                    .map(|d| match d.kind() {
                        "field_designator" => d
                            .named_child(0)
                            .map(|f| cx.text(f).to_string())
                            .unwrap_or_default(),
                        _ => cx.text(d).to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(".");
                match child.child_by_field_name("value") {
                    Some(value) => (Some(designator), value),
                    None => continue,
                }
            }
            _ => (None, child),
        };
        let value = if value.kind() == "initializer_list" {
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
