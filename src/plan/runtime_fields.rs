//! Stage 2: fields of a static type that the code sets at run time
//! (`Foo_Type.tp_new = PyType_GenericNew;` before `PyType_Ready(&Foo_Type)`), as older modules
//! and code written for compilers that could not take addresses of functions in other
//! translation units in a static initializer do.
//!
//! An assignment that runs every time, before the type is readied, in the same function, is
//! the same as the field in the initializer: it becomes a slot of the spec and the statement
//! goes. A base set at run time (`Foo_Type.tp_base = PyDateTimeAPI->TZInfoType;`, a pointer
//! only known once another module is imported) cannot be a slot of a file-scope array; it
//! becomes the `bases` argument of `PyType_FromModuleAndSpec`, evaluated where `PyType_Ready`
//! was. Anything else (an assignment under `if`, in a loop or `#if`, after `PyType_Ready`, in
//! another function, of a value the spec cannot hold) keeps the type static, with the reason.

use super::context::PlanCtx;
use super::stage0::normalize;
use super::stage1::{body_open, call_args, line_start, preprocessor_depth, strip_casts};
use super::stage2::{next_byte, prev_byte};
use super::types;
use crate::facts::{Expr, Function, WriteKind, Written};
use crate::model::{FnRef, TypeKind};

/// The run-time sets of one static type, all foldable.
pub struct RuntimeFields {
    /// The function that sets the fields and readies the type.
    pub function: FnRef,
    /// Each field with its value, in the order the code sets them (a later one wins).
    pub fields: Vec<(String, Expr)>,
    /// The base set at run time, as written: the `bases` argument of the creation.
    pub base: Option<String>,
    /// The statements to remove, `[start, end)`, each with its line when alone on it.
    pub removals: Vec<(usize, usize)>,
    /// Where each removed statement starts (the type's name), so the other uses skip it.
    pub sites: Vec<usize>,
}

/// Fields the spec takes: a slot, a size, the flags, or a field `types::heap_type` names as
/// having no slot (it then keeps the type static with that note).
fn known_field(field: &str) -> bool {
    types::TP_SLOTS.contains(&field)
        || types::SUB_TABLES.iter().any(|(f, _)| *f == field)
        || types::NOTED.iter().any(|(f, _)| *f == field)
        || matches!(field, "tp_flags" | "tp_basicsize" | "tp_itemsize")
}

fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

/// `(PyTypeObject *)x` and `(struct foo *)x` as `x`: casts to a pointer type, outermost first.
fn without_pointer_casts(value: &str) -> String {
    let mut t = normalize(value);
    while let Some(rest) = t.strip_prefix('(') {
        let Some(close) = rest.find(')') else {
            break;
        };
        let inside = &rest[..close];
        let is_cast = inside.ends_with('*')
            && inside
                .trim_end_matches('*')
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !is_cast {
            break;
        }
        t = rest[close + 1..].to_string();
    }
    t
}

/// The names a value reads as variables: identifiers not after `.` or `->`.
fn variables_read(value: &str) -> Vec<String> {
    let b = value.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_alphabetic() || b[i] == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let before = value[..start].trim_end();
            if !(before.ends_with('.') || before.ends_with("->")) {
                out.push(value[start..i].to_string());
            }
        } else {
            i += 1;
        }
    }
    out
}

/// The fields of the static type `name`, defined in `file`, that the code sets at run time.
/// `Ok(None)` when it sets none; `Err` with the reason the type stays when one cannot fold.
pub fn runtime_fields(
    ctx: &PlanCtx,
    file: usize,
    text: &str,
    mask: &[u8],
    name: &str,
) -> Result<Option<RuntimeFields>, String> {
    let functions = &ctx.project.files[file].functions;
    let mut sets: Vec<(FnRef, &crate::facts::WriteSite)> = Vec::new();
    for (index, f) in functions.iter().enumerate() {
        for w in &f.writes {
            if w.target == name && w.kind == WriteKind::FieldWrite && w.field.is_some() {
                sets.push((FnRef { file, index }, w));
            }
        }
    }
    if sets.is_empty() {
        return Ok(None);
    }
    sets.sort_by_key(|(_, w)| w.span.start);
    let setter = sets[0].0;
    let function: &Function = ctx.function(setter);
    let open = body_open(mask, function).ok_or("its setter has no body")?;
    // `PyType_Ready(&Foo_Type)` in the same function.
    let ready = function
        .calls
        .iter()
        .find(|c| {
            c.callee == "PyType_Ready"
                && call_args(mask, c.span.start, c.span.end)
                    .first()
                    .is_some_and(|&(s, e)| strip_casts(&text[s..e]) == format!("&{name}"))
        })
        .map(|c| c.span.start);
    let mut out = RuntimeFields {
        function: setter,
        fields: Vec::new(),
        base: None,
        removals: Vec::new(),
        sites: Vec::new(),
    };
    for (f, w) in sets {
        let field = w.field.clone().unwrap_or_default();
        let at = w.span.start;
        let line = line_of(text, at);
        let set = format!("`{name}.{field}`");
        // Written out here, not in a macro's body (guppy3's `NYFILL(T)` sets `T.tp_new`).
        let written_out = text[at..].starts_with(name)
            && matches!(next_byte(mask, at + name.len()), Some((_, b'.')));
        if !written_out {
            return Err(format!(
                "line {line}: it sets {set} at run time in a macro, which the fix does not rewrite: put the field in the initializer"
            ));
        }
        // Past the field: `=`, not `|=` or `+=`.
        let op = next_byte(mask, w.span.end).map(|(i, _)| i);
        let plain =
            op.is_some_and(|i| mask.get(i) == Some(&b'=') && mask.get(i + 1) != Some(&b'='));
        if !plain {
            return Err(format!(
                "line {line}: it updates {set} at run time (not a plain `=`): put the field in the initializer"
            ));
        }
        if f != setter {
            return Err(format!(
                "line {line}: it sets {set} at run time in `{}` and other fields in `{}`: put them in the initializer",
                ctx.function(f).name,
                function.name
            ));
        }
        let Some(ready_at) = ready else {
            return Err(format!(
                "line {line}: it sets {set} at run time and `{}` does not ready it (`PyType_Ready(&{name})`): put the field in the initializer",
                function.name
            ));
        };
        if at > ready_at {
            return Err(format!(
                "line {line}: it sets {set} after `PyType_Ready`: a heap type's slots are fixed when it is created"
            ));
        }
        // Unconditional: a statement of its own in the function's outermost block.
        let depth: i32 = mask[open..at]
            .iter()
            .map(|&b| match b {
                b'{' => 1,
                b'}' => -1,
                _ => 0,
            })
            .sum();
        let own_statement = matches!(prev_byte(mask, at), Some((_, b';' | b'{' | b'}')));
        if depth != 0
            || !own_statement
            || preprocessor_depth(text, at) != preprocessor_depth(text, open)
        {
            return Err(format!(
                "line {line}: it sets {set} at run time under a condition (`if`, a loop, `#if`): put the field in the initializer, or set it in every branch by hand"
            ));
        }
        if !known_field(&field) {
            return Err(format!(
                "line {line}: it sets {set} at run time, a field a `PyType_Spec` has no slot for"
            ));
        }
        let Some(mut value) = w.value.clone() else {
            return Err(format!(
                "line {line}: it sets {set} at run time to no value"
            ));
        };
        // The facts cut long values; the slot takes the whole text.
        if let Some(whole) = text.get(value.span.start..value.span.end) {
            value.text = whole.split_whitespace().collect::<Vec<_>>().join(" ");
        }
        if field == "tp_base" {
            // Evaluated later, where the type is created: no call, no local.
            let bare = without_pointer_casts(&value.text);
            let calls = bare.contains('(');
            let local = variables_read(&bare)
                .into_iter()
                .find(|v| !function.references.iter().any(|r| r.name == *v));
            let module_type = ctx
                .module
                .types
                .iter()
                .filter(|t| t.kind == TypeKind::Static)
                .any(|t| bare == format!("&{}", ctx.project.var(t.var).name));
            if calls || local.is_some() || module_type {
                return Err(format!(
                    "line {line}: it sets {set} at run time to `{}`, which the creation cannot read in its place (a call, a local, or a static type of the module): put the base in the initializer",
                    value.text
                ));
            }
            out.base = Some(bare);
        } else {
            let constant = matches!(w.written, Written::Constant | Written::AddressOfStatic);
            // A pointer variable is no constant a file-scope array can hold; a function or a
            // table (an array) is.
            let variable = w.reads.iter().find(|r| {
                r.starts_with("PyExc_")
                    || ctx.module.files.iter().any(|&fi| {
                        ctx.project.files[fi].variables.iter().any(|v| {
                            v.name == **r
                                && v.function.is_none()
                                && v.array_dims == 0
                                && !v.pointers.is_empty()
                        })
                    })
            });
            if !constant || variable.is_some() {
                return Err(format!(
                    "line {line}: it sets {set} at run time to `{}`, not a constant a `PyType_Slot` can hold: put the field in the initializer",
                    value.text
                ));
            }
        }
        out.fields.push((field, value));
        // The statement, up to its `;`, with its line when it stands alone there.
        let Some(semi) = mask[at..]
            .iter()
            .position(|&b| b == b';')
            .map(|i| at + i + 1)
        else {
            return Err(format!("line {line}: the assignment to {set} has no `;`"));
        };
        let ls = line_start(text, at);
        let eol = text[semi..].find('\n').map_or(text.len(), |i| semi + i + 1);
        let alone = text[ls..at].trim().is_empty() && text[semi..eol].trim().is_empty();
        out.removals
            .push(if alone { (ls, eol) } else { (at, semi) });
        out.sites.push(at);
    }
    Ok(Some(out))
}
