//! A small summary of an expression: what the model needs to know without a tree.

use super::extract::{fold_ws, Cx};
use super::fields::{KindName, FIELD};
use super::{Expr, ExprKind};
use tree_sitter::Node;

const MAX_TEXT: usize = 160;
/// Never fold more than this much source for one summary: a huge expression costs no more than
/// a small one.
const MAX_SOURCE: usize = 640;

pub(crate) fn short_text(node: Node, cx: &Cx) -> String {
    let end = node.end_byte().min(node.start_byte() + MAX_SOURCE);
    let raw = match cx.utf8.and_then(|all| all.get(node.start_byte()..end)) {
        Some(text) => std::borrow::Cow::Borrowed(text),
        // Not valid text, or the cut at `MAX_SOURCE` splits a character.
        None => String::from_utf8_lossy(&cx.src[node.start_byte()..end]),
    };
    let mut text = fold_ws(&raw);
    if text.len() > MAX_TEXT || node.end_byte() > end {
        let mut cut = MAX_TEXT.min(text.len());
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

/// Strips parentheses and casts, which change neither what is referenced nor what is called.
pub(crate) fn unwrap(mut node: Node) -> Node {
    for _ in 0..64 {
        node = match node.kind_name() {
            "parenthesized_expression" => match node.named_child(0) {
                Some(inner) => inner,
                None => return node,
            },
            "cast_expression" => match node.child_by_field_id(FIELD.value.get()) {
                Some(inner) => inner,
                None => return node,
            },
            _ => return node,
        };
    }
    node
}

/// The variable at the root of `x`, `x[i]`, `x.f`, `x->f`, `*x`, `&x`.
pub(crate) fn root_name<'t>(node: Node<'t>, cx: &Cx) -> Option<(String, Node<'t>)> {
    let mut node = unwrap(node);
    for _ in 0..64 {
        node = match node.kind_name() {
            "identifier" => return Some((cx.text(node).to_string(), node)),
            "subscript_expression" | "field_expression" | "pointer_expression" => {
                unwrap(node.child_by_field_id(FIELD.argument.get())?)
            }
            _ => return None,
        };
    }
    None
}

pub(crate) fn summarize(node: Node, cx: &Cx) -> Expr {
    let inner = unwrap(node);
    let kind = match inner.kind_name() {
        "identifier" => ExprKind::Ident(cx.text(inner).to_string()),
        "null" => ExprKind::Null,
        "number_literal" => ExprKind::Number(parse_number(cx.text(inner))),
        "string_literal" | "concatenated_string" => ExprKind::Str,
        "unary_expression" => {
            let op = inner
                .child_by_field_id(FIELD.operator.get())
                .map(|o| cx.text(o));
            match (
                op,
                inner.child_by_field_id(FIELD.argument.get()).map(unwrap),
            ) {
                (Some("-"), Some(arg)) if arg.kind_name() == "number_literal" => {
                    ExprKind::Number(parse_number(cx.text(arg)).map(|n| -n))
                }
                _ => ExprKind::Other,
            }
        }
        "pointer_expression"
            if inner
                .child_by_field_id(FIELD.operator.get())
                .is_some_and(|o| cx.text(o) == "&") =>
        {
            match inner
                .child_by_field_id(FIELD.argument.get())
                .and_then(|a| root_name(a, cx))
            {
                Some((name, _)) => ExprKind::AddressOf(name),
                None => ExprKind::Other,
            }
        }
        "call_expression" => match inner.child_by_field_id(FIELD.function.get()) {
            Some(f) => ExprKind::Call {
                callee: fold_ws(cx.text(f)),
            },
            None => ExprKind::Other,
        },
        "sizeof_expression" => {
            let target = inner
                .child_by_field_id(FIELD.ty.get())
                .or_else(|| inner.child_by_field_id(FIELD.value.get()));
            ExprKind::SizeOf(target.map(|t| short_text(t, cx)).unwrap_or_default())
        }
        _ => ExprKind::Other,
    };
    Expr {
        text: short_text(node, cx),
        kind,
        span: cx.span(node),
    }
}

fn parse_number(text: &str) -> Option<i64> {
    let t = text.trim_end_matches(['u', 'U', 'l', 'L']);
    if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        i64::from_str_radix(hex, 16).ok()
    } else {
        t.parse().ok()
    }
}
