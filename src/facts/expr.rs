//! A small summary of an expression: what the model needs to know without a tree.

use super::extract::{fold_ws, Cx};
use super::fields::{KindName, FIELD};
use super::{Expr, ExprKind};
use std::cell::RefCell;
use tree_sitter::Node;

pub(crate) const MAX_TEXT: usize = 160;
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

/// The locals that have only held fixed values so far (`int one = 1;`), and the ones among them
/// a classification has read as fixed: the function's walk decides whether a local is pure
/// before it has seen the whole body, and only these reads can depend on that decision.
#[derive(Default)]
pub(crate) struct PureLocals {
    names: rustc_hash::FxHashSet<String>,
    read: RefCell<Vec<String>>,
}

impl PureLocals {
    pub(crate) fn insert(&mut self, name: String) {
        self.names.insert(name);
    }

    pub(crate) fn remove(&mut self, name: &str) {
        self.names.remove(name);
    }

    /// Whether `name` is pure, remembering that it was read as such.
    fn read_as_pure(&self, name: &str) -> bool {
        let pure = self.names.contains(name);
        if pure {
            let mut read = self.read.borrow_mut();
            if !read.iter().any(|r| r == name) {
                read.push(name.to_string());
            }
        }
        pure
    }

    /// The locals some classification has read as pure.
    pub(crate) fn read(&self) -> std::cell::Ref<'_, Vec<String>> {
        self.read.borrow()
    }
}

/// What kind of value `node` is (see `Written`), with the non-local names it reads. `locals`:
/// parameters and locals; `pure_locals`: the locals that only ever held fixed values.
pub(crate) fn classify_written(
    node: Node,
    cx: &Cx,
    locals: &rustc_hash::FxHashSet<String>,
    pure_locals: &PureLocals,
) -> (super::Written, Vec<String>) {
    let mut reads = Vec::new();
    let written = classify_in(node, cx, locals, pure_locals, &mut reads, 0);
    (written, reads)
}

fn classify_in(
    node: Node,
    cx: &Cx,
    locals: &rustc_hash::FxHashSet<String>,
    pure_locals: &PureLocals,
    reads: &mut Vec<String>,
    depth: usize,
) -> super::Written {
    use super::Written as W;
    if depth > 32 {
        return W::Unknown;
    }
    let node = unwrap(node);
    // Two fixed values combined stay fixed; anything unknown makes the whole unknown.
    let join = |a: W, b: W| match (a, b) {
        (W::Unknown, _)
        | (_, W::Unknown)
        | (W::CapsuleImport | W::PythonObject | W::ImmortalObject, _)
        | (_, W::CapsuleImport | W::PythonObject | W::ImmortalObject) => W::Unknown,
        (W::Constant, W::Constant) => W::Constant,
        _ => W::PureC,
    };
    let sub = |n: Node, reads: &mut Vec<String>| {
        classify_in(n, cx, locals, pure_locals, reads, depth + 1)
    };
    match node.kind() {
        "number_literal"
        | "char_literal"
        | "string_literal"
        | "concatenated_string"
        | "null"
        | "true"
        | "false"
        | "sizeof_expression"
        | "offsetof_expression"
        | "alignof_expression" => W::Constant,
        "identifier" => {
            let name = cx.text(node);
            if IMMORTAL_SINGLETONS.contains(&name) {
                W::ImmortalObject
            } else if pure_locals.read_as_pure(name) {
                W::PureC
            } else if locals.contains(name) {
                W::Unknown
            } else {
                reads.push(name.to_string());
                W::Constant
            }
        }
        "pointer_expression" => {
            let op = node
                .child_by_field_id(FIELD.operator.get())
                .map(|o| cx.text(o));
            let Some(arg) = node.child_by_field_id(FIELD.argument.get()) else {
                return W::Unknown;
            };
            match op {
                Some("&") => match root_name(arg, cx) {
                    // `&local` is a different address on every call: only reading through it
                    // (below) is fixed.
                    Some((name, _)) if locals.contains(&name) => W::Unknown,
                    Some(_) => W::AddressOfStatic,
                    None => W::Unknown,
                },
                // `*(char *)&one`: reading a local that holds a fixed value.
                Some("*") => {
                    let inner = unwrap(arg);
                    let through_local = inner.kind() == "pointer_expression"
                        && inner
                            .child_by_field_id(FIELD.operator.get())
                            .is_some_and(|o| cx.text(o) == "&")
                        && inner
                            .child_by_field_id(FIELD.argument.get())
                            .and_then(|a| root_name(a, cx))
                            .is_some_and(|(n, _)| pure_locals.read_as_pure(&n));
                    if through_local {
                        W::PureC
                    } else {
                        W::Unknown
                    }
                }
                _ => W::Unknown,
            }
        }
        "binary_expression" | "unary_expression" | "conditional_expression" => {
            let mut c = node.walk();
            let children: Vec<Node> = node
                .named_children(&mut c)
                .filter(|n| n.kind() != "comment")
                .collect();
            let mut acc: Option<W> = None;
            for ch in children {
                let w = sub(ch, reads);
                acc = Some(match acc {
                    None => w,
                    Some(a) => join(a, w),
                });
            }
            match acc {
                // An operator over an address is C arithmetic, not the address itself.
                Some(W::AddressOfStatic) => W::PureC,
                Some(w) => w,
                None => W::Unknown,
            }
        }
        "call_expression" => {
            let callee = node
                .child_by_field_id(FIELD.function.get())
                .map(|f| fold_ws(cx.text(f)))
                .unwrap_or_default();
            if callee == "offsetof" || callee == "Py_ARRAY_LENGTH" {
                // Compile-time constants written as calls.
                W::Constant
            } else if callee == "PyCapsule_Import" || callee == "PyCapsule_GetPointer" {
                // The capsule's name: `PyCapsule_Import(name, 0)`,
                // `PyCapsule_GetPointer(capsule, name)`.
                let which = u32::from(callee == "PyCapsule_GetPointer");
                let name = node
                    .child_by_field_id(FIELD.arguments.get())
                    .and_then(|a| a.named_child(which))
                    .map(|a| fold_ws(cx.text(a)));
                reads.extend(name);
                W::CapsuleImport
            } else if immortal_object(&callee, node, cx, locals, pure_locals, depth) {
                W::ImmortalObject
            } else if callee.starts_with("Py") {
                W::PythonObject
            } else {
                W::Unknown
            }
        }
        _ => W::Unknown,
    }
}

/// CPython's static singletons, written as the C API names them.
const IMMORTAL_SINGLETONS: &[&str] = &[
    "Py_None",
    "Py_True",
    "Py_False",
    "Py_Ellipsis",
    "Py_NotImplemented",
];

/// Whether a C API call returns one of CPython's immortal, process-wide objects for these
/// arguments (3.12+): a small int, an empty str, bytes or tuple, a bool, a `Py_GetConstant`,
/// or a new reference to any of them. `pythoncapi_compat.h`'s `Py_GetConstant` shim caches
/// exactly these in a static array, which is then the same in every interpreter.
fn immortal_object(
    callee: &str,
    call: Node,
    cx: &Cx,
    locals: &rustc_hash::FxHashSet<String>,
    pure_locals: &PureLocals,
    depth: usize,
) -> bool {
    let args = call_arguments(call);
    // `summarize` already reads `-5`, casts and parentheses.
    let arg = |i: usize| args.get(i).map(|n| summarize(*n, cx));
    let number = |i: usize| match arg(i).map(|e| e.kind) {
        Some(ExprKind::Number(value)) => value,
        _ => None,
    };
    let empty_string =
        |i: usize| arg(i).is_some_and(|e| e.kind == ExprKind::Str && e.text == "\"\"");
    match callee {
        "PyLong_FromLong"
        | "PyLong_FromSsize_t"
        | "PyLong_FromLongLong"
        | "PyLong_FromInt32"
        | "PyLong_FromInt64" => number(0).is_some_and(|v| (-5..=256).contains(&v)),
        "PyLong_FromSize_t"
        | "PyLong_FromUnsignedLong"
        | "PyLong_FromUnsignedLongLong"
        | "PyLong_FromUInt32"
        | "PyLong_FromUInt64" => number(0).is_some_and(|v| (0..=256).contains(&v)),
        "PyBool_FromLong" => true,
        "PyUnicode_FromString" | "PyBytes_FromString" => empty_string(0),
        "PyUnicode_FromStringAndSize" | "PyBytes_FromStringAndSize" => number(1) == Some(0),
        "PyUnicode_New" | "PyTuple_New" => number(0) == Some(0),
        "Py_GetConstant" | "Py_GetConstantBorrowed" => true,
        "Py_NewRef" | "Py_XNewRef" | "Py_INCREF" => args.first().is_some_and(|a| {
            let mut reads = Vec::new();
            classify_in(*a, cx, locals, pure_locals, &mut reads, depth + 1)
                == super::Written::ImmortalObject
        }),
        _ => false,
    }
}

/// The argument nodes of a call, comments left out.
pub(crate) fn call_arguments(call: Node) -> Vec<Node> {
    call.child_by_field_id(FIELD.arguments.get())
        .map(|a| {
            let mut c = a.walk();
            a.named_children(&mut c)
                .filter(|n| n.kind_name() != "comment")
                .collect()
        })
        .unwrap_or_default()
}
