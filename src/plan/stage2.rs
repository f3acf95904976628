//! Stage 2 as an edit: each static `PyTypeObject` of the module becomes a heap type.
//!
//! The static initializer is replaced by the `PyType_Slot[]` and `PyType_Spec` that
//! `types::heap_type` generates (the same text `isolint plan` shows); `PyType_Ready(&Foo_Type)`
//! becomes the `PyType_FromModuleAndSpec` call that stores the type in the module state; every
//! other use of `&Foo_Type` (and `Foo_Type.field`) reads the state's type instead, through the
//! module the function has at hand (stage 1's `Reach`). Methods and slots of the migrated types
//! reach the module with `PyType_GetModuleByDef(Py_TYPE(self), &def)` (3.11+): unlike
//! `PyType_GetModule`, it also works when `self` is an instance of a Python subclass, whose
//! type has no module. The GC protocol follows: every heap type has `Py_TPFLAGS_HAVE_GC` and a
//! traverse that visits `Py_TYPE(self)`, and its dealloc untracks, frees through `tp_free` and
//! releases the type. `m_traverse`/`m_clear` visit and clear the new fields.
//!
//! A type that cannot move stays static and is named with its line and the reason; the rest
//! of the stage still applies.

use super::context::{last_ident, PlanCtx};
use super::elsewhere::Elsewhere;
use super::runtime_fields::{runtime_fields, RuntimeFields};
use super::stage0::{normalize, Edit};
use super::stage1::{
    body_open, call_args, code_mask, contains_word, def_edits, line_start, preprocessor_depth,
    statement_start, strip_casts, word_uses, Reach,
};
use super::state::{self, StateNames};
use super::types::{self, HeapType};
use crate::facts::{ExprKind, Function, Init};
use crate::model::{FnRef, InitStyle, TypeDef, TypeKind};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone)]
pub struct Stage2 {
    pub edits: Vec<Edit>,
    /// Each static type that stays, and why, one per line.
    pub refused: Vec<String>,
    /// Latent bugs the edits fixed on the way (a GC object freed with `PyObject_Del`).
    pub notes: Vec<String>,
}

/// Slots whose first parameter is the type, not an instance.
const TYPE_FIRST: &[&str] = &["tp_new", "tp_alloc"];
/// Slots whose first parameter is an instance of the type.
const INSTANCE_FIRST: &[&str] = &[
    "tp_dealloc",
    "tp_repr",
    "tp_str",
    "tp_hash",
    "tp_call",
    "tp_iter",
    "tp_iternext",
    "tp_init",
    "tp_getattr",
    "tp_getattro",
    "tp_setattr",
    "tp_setattro",
    "tp_richcompare",
    "tp_traverse",
    "tp_clear",
    "tp_finalize",
    "tp_del",
    "tp_descr_get",
    "tp_descr_set",
];
/// Number slots that take only the instance (binary ones may be called with the other operand
/// first, an object of any type).
const UNARY_NUMBER: &[&str] = &[
    "nb_negative",
    "nb_positive",
    "nb_absolute",
    "nb_bool",
    "nb_invert",
    "nb_int",
    "nb_float",
    "nb_index",
];
/// Frees a static type's dealloc may call on the object.
const FREES: &[&str] = &[
    "PyObject_Del",
    "PyObject_DEL",
    "PyObject_Free",
    "PyObject_FREE",
    "PyObject_GC_Del",
];

/// How a function named by a type's tables reaches the module; `None` when it cannot from its
/// first parameter (a static method, a binary number slot).
fn through(field: &str, flags: Option<&str>, def: &str) -> Option<String> {
    let instance = format!("PyType_GetModuleByDef(Py_TYPE({{self}}), &{def})");
    let of_type = format!("PyType_GetModuleByDef((PyTypeObject *){{self}}, &{def})");
    match field {
        "tp_methods" => match flags {
            Some(f) if f.contains("METH_STATIC") => None,
            Some(f) if f.contains("METH_CLASS") => Some(of_type),
            _ => Some(instance),
        },
        "tp_getset" => Some(instance),
        f if TYPE_FIRST.contains(&f) => Some(of_type),
        f if INSTANCE_FIRST.contains(&f) => Some(instance),
        f if f.starts_with("sq_")
            || f.starts_with("mp_")
            || f.starts_with("am_")
            || f.starts_with("bf_")
            || UNARY_NUMBER.contains(&f) =>
        {
            Some(instance)
        }
        _ => None,
    }
}

/// The entries of a table variable of the module (`Foo_methods`, `Foo_as_sequence`).
fn table<'a>(ctx: &PlanCtx<'a>, name: &str) -> Option<&'a crate::facts::InitList> {
    ctx.module.files.iter().find_map(|&fi| {
        ctx.project.files[fi]
            .variables
            .iter()
            .find(|v| v.name == name && v.function.is_none())
            .and_then(|v| match &v.init {
                Some(Init::List(l)) => Some(l),
                _ => None,
            })
    })
}

fn expr_text(i: &Init) -> Option<&str> {
    match i {
        Init::Expr(e) => Some(e.text.as_str()),
        Init::List(_) => None,
    }
}

/// Every function a type's initializer names (directly or through its method, getset and
/// sub-tables), with the way it reaches the module, if it has one.
fn type_functions(ctx: &PlanCtx, t: &TypeDef, def: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for (field, value) in &t.slots {
        let Some(name) = value
            .ident()
            .map(str::to_string)
            .or_else(|| last_ident(&value.text))
        else {
            continue;
        };
        match field.as_str() {
            "tp_methods" | "tp_getset" => {
                let Some(list) = table(ctx, &name) else {
                    continue;
                };
                for entry in crate::model::current_entries(list) {
                    let Init::List(row) = &entry.value else {
                        continue;
                    };
                    let rows: Vec<&crate::facts::InitEntry> =
                        crate::model::current_entries(row).collect();
                    let field_at = |designator: &str, index: usize| {
                        rows.iter()
                            .find(|e| e.designator.as_deref() == Some(designator))
                            .copied()
                            .or_else(|| rows.get(index).filter(|e| e.designator.is_none()).copied())
                            .and_then(|e| expr_text(&e.value))
                    };
                    if field == "tp_methods" {
                        let flags = field_at("ml_flags", 2);
                        if let Some(f) = field_at("ml_meth", 1).and_then(last_ident) {
                            out.push((f, through(field, flags, def)));
                        }
                    } else {
                        for (d, i) in [("get", 1), ("set", 2)] {
                            if let Some(f) = field_at(d, i).and_then(last_ident) {
                                out.push((f, through(field, None, def)));
                            }
                        }
                    }
                }
            }
            "tp_as_async" | "tp_as_number" | "tp_as_sequence" | "tp_as_mapping"
            | "tp_as_buffer" => {
                let Some(list) = table(ctx, &name) else {
                    continue;
                };
                for entry in crate::model::current_entries(list) {
                    let Some(f) = expr_text(&entry.value).and_then(last_ident) else {
                        continue;
                    };
                    let how = entry
                        .designator
                        .as_deref()
                        .and_then(|d| through(d, None, def));
                    out.push((f, how));
                }
            }
            "tp_base" | "tp_bases" | "tp_doc" | "tp_name" | "tp_members" | "tp_free" => {}
            other => out.push((name, through(other, None, def))),
        }
    }
    out.retain(|(name, _)| !matches!(name.as_str(), "NULL" | "0"));
    out
}

/// The name of a static type of the module that `t` names in `tp_base`.
fn static_base(ctx: &PlanCtx, t: &TypeDef) -> Option<String> {
    let ExprKind::AddressOf(b) = &t.slots.get("tp_base")?.kind else {
        return None;
    };
    ctx.module
        .types
        .iter()
        .any(|o| o.kind == TypeKind::Static && ctx.project.var(o.var).name == *b)
        .then(|| b.clone())
}

/// How a use of a type's name is written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Use {
    /// `&Foo_Type`, from the `&`.
    Address(usize),
    /// `Foo_Type.field`, up to the `.`.
    Member(usize),
    /// `PyType_Ready(&Foo_Type)` (and a comparison after it), from the call to `end`; `statement`
    /// when the call is a statement of its own.
    Ready {
        start: usize,
        end: usize,
        statement: bool,
    },
}

struct Mention {
    at: usize,
    function: FnRef,
    how: Use,
}

pub(super) fn prev_byte(mask: &[u8], at: usize) -> Option<(usize, u8)> {
    mask[..at]
        .iter()
        .enumerate()
        .rev()
        .find(|(_, b)| !b.is_ascii_whitespace())
        .map(|(i, &b)| (i, b))
}

pub(super) fn next_byte(mask: &[u8], at: usize) -> Option<(usize, u8)> {
    mask.get(at..)?
        .iter()
        .enumerate()
        .find(|(_, b)| !b.is_ascii_whitespace())
        .map(|(i, &b)| (at + i, b))
}

fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

/// Where the module state is, or that stage 2 creates it.
enum StateAt {
    /// `m_size = sizeof(ty)`: fields go before `close` (the struct's `}`), the GC lines into the
    /// module's own `m_traverse`/`m_clear`.
    Existing {
        ty: String,
        getter: Option<String>,
        close: usize,
        traverse: FnRef,
        clear: FnRef,
    },
    New(StateNames),
}

impl StateAt {
    fn of(&self, module: &str) -> String {
        match self {
            StateAt::Existing {
                getter: Some(g), ..
            } => format!("{g}({module})"),
            StateAt::Existing { ty, .. } => format!("(({ty} *)PyModule_GetState({module}))"),
            StateAt::New(names) => format!("{}({module})", names.getter),
        }
    }
}

/// The `}` that closes the struct named `ty` (`typedef struct {...} ty;` or `struct ty {...}`).
fn struct_close(mask: &[u8], ty: &str) -> Option<usize> {
    for at in word_uses(mask, 0, mask.len(), ty) {
        if let (Some((close, b'}')), Some((_, b';'))) =
            (prev_byte(mask, at), next_byte(mask, at + ty.len()))
        {
            return Some(close);
        }
        if let Some((open, b'{')) = next_byte(mask, at + ty.len()) {
            let before = std::str::from_utf8(&mask[at.saturating_sub(8)..at]).unwrap_or("");
            if !before.trim_end().ends_with("struct") {
                continue;
            }
            let mut depth = 0;
            for (i, &b) in mask[open..].iter().enumerate() {
                match b {
                    b'{' => depth += 1,
                    b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(open + i);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    None
}

fn fn_in(ctx: &PlanCtx, file: usize, name: &str) -> Option<FnRef> {
    ctx.project.files[file]
        .functions
        .iter()
        .position(|f| f.name == name)
        .map(|index| FnRef { file, index })
}

fn first_param(function: &Function) -> Option<String> {
    function.params.first().and_then(|p| p.name.clone())
}

/// The indentation of the line `at` is on.
fn indent_at(text: &str, at: usize) -> String {
    text[line_start(text, at)..]
        .chars()
        .take_while(|c| *c == ' ' || *c == '\t')
        .collect()
}

pub fn stage2(ctx: &PlanCtx) -> Result<Stage2, String> {
    let module = ctx.module;
    let statics: Vec<&TypeDef> = module
        .types
        .iter()
        .filter(|t| t.kind == TypeKind::Static)
        .collect();
    let mut out = Stage2 {
        edits: Vec::new(),
        refused: Vec::new(),
        notes: Vec::new(),
    };
    if statics.is_empty() {
        return Ok(out);
    }
    if module.init_style != InitStyle::MultiPhase {
        return Err(
            "single-phase init has no module state to keep the types in: stage 0 (`isolint fix --stage 0`) first"
                .into(),
        );
    }
    let def = module
        .def
        .as_ref()
        .ok_or("the module definition was not found")?;
    let def_var = ctx.project.var(def.var);
    let def_name = def_var.name.clone();
    let file = def.var.file;
    let text = ctx
        .texts
        .get(&file)
        .ok_or("the file of the module definition could not be read again")?;
    let mask = code_mask(text);
    let mut exec_fns = BTreeSet::new();
    for slot in &def.slots {
        if slot.slot == "Py_mod_create" {
            return Err(format!(
                "line {}: the module has a `Py_mod_create` slot: the object it creates may not be a module with state",
                slot.value.span.line
            ));
        }
        if slot.slot != "Py_mod_exec" {
            continue;
        }
        let Some(f) = slot.value.ident().and_then(|n| fn_in(ctx, file, n)) else {
            return Err(format!(
                "line {}: the exec function `{}` is not in the file of the module definition",
                slot.value.span.line, slot.value.text
            ));
        };
        exec_fns.insert(f);
    }
    let Some(&exec) = exec_fns.iter().next() else {
        return Err("the module has no exec function to create the types in".into());
    };

    // The code of every file of the module: a type may be defined in another file than the
    // definition, and the functions that use it and their callers anywhere.
    let mut masks: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
    masks.insert(file, mask.clone());
    if statics.iter().any(|t| t.var.file != file) {
        for &fi in &module.files {
            if let Some(t) = ctx.texts.get(&fi) {
                masks.entry(fi).or_insert_with(|| code_mask(t));
            }
        }
    }
    let masks = masks;
    let src = |fi: usize| -> Option<(&str, &[u8])> {
        Some((ctx.texts.get(&fi)?.as_str(), masks.get(&fi)?.as_slice()))
    };
    // `line N` in the file of the definition, `path:N` in another.
    let place = |fi: usize, line: usize| {
        if fi == file {
            format!("line {line}")
        } else {
            format!("`{}:{line}`", ctx.path(fi))
        }
    };

    // Each type that cannot move, for good, with its reason.
    let mut stays: BTreeMap<String, String> = BTreeMap::new();
    let mut heap: BTreeMap<String, HeapType> = BTreeMap::new();
    let mut decl_of: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    // The file each type is defined in.
    let file_of: BTreeMap<String, usize> = statics
        .iter()
        .map(|t| (ctx.project.var(t.var).name.clone(), t.var.file))
        .collect();
    let name_of = |t: &TypeDef| ctx.project.var(t.var).name.clone();
    // Fields set at run time, before `PyType_Ready`, count as written in the initializer: the
    // types as the spec sees them.
    let mut runtime: BTreeMap<String, RuntimeFields> = BTreeMap::new();
    let mut runtime_refused: BTreeMap<String, String> = BTreeMap::new();
    let effective: Vec<TypeDef> = statics
        .iter()
        .map(|&t| {
            let mut seen = t.clone();
            let tfile = t.var.file;
            if let Some((t_text, t_mask)) = src(tfile) {
                match runtime_fields(ctx, tfile, t_text, t_mask, &name_of(t)) {
                    Ok(Some(rf)) => {
                        for (field, value) in &rf.fields {
                            seen.slots.insert(field.clone(), value.clone());
                        }
                        runtime.insert(name_of(t), rf);
                    }
                    Ok(None) => {}
                    Err(r) if tfile == file => {
                        runtime_refused.insert(name_of(t), r);
                    }
                    Err(r) => {
                        runtime_refused.insert(name_of(t), format!("`{}`: {r}", ctx.path(tfile)));
                    }
                }
            }
            seen
        })
        .collect();
    let statics: Vec<&TypeDef> = effective.iter().collect();
    // A module's type as the spec sees it.
    let as_seen = |t: &'_ TypeDef| -> TypeDef {
        effective
            .iter()
            .find(|e| e.var == t.var)
            .cloned()
            .unwrap_or_else(|| t.clone())
    };
    for t in &statics {
        let v = ctx.project.var(t.var);
        let name = v.name.clone();
        if let Some(r) = runtime_refused.get(&name) {
            stays.insert(name.clone(), r.clone());
            continue;
        }
        let tfile = t.var.file;
        let Some((text, _)) = src(tfile) else {
            stays.insert(
                name.clone(),
                format!(
                    "{}: the file it is defined in could not be read again",
                    place(tfile, v.span.line)
                ),
            );
            continue;
        };
        let mut why = |r: String| {
            stays.insert(name.clone(), format!("{}: {r}", place(tfile, v.span.line)));
        };
        decl_of.insert(name.clone(), (v.decl_span.start, v.decl_span.end));
        if v.uncertain {
            why("it overlaps a parse error".into());
            continue;
        }
        if !normalize(&text[v.decl_span.start..v.decl_span.end]).starts_with("static") {
            why("it is not `static`: other modules may link to it (a C API exported through a header or a capsule)".into());
            continue;
        }
        if preprocessor_depth(text, v.decl_span.start) != 0 {
            why("it is declared inside `#if`".into());
            continue;
        }
        if let Some(&fi) = module.files.iter().find(|&&fi| {
            fi != tfile
                && ctx
                    .texts
                    .get(&fi)
                    .is_none_or(|t| !word_uses(&code_mask(t), 0, t.len(), &name).is_empty())
        }) {
            why(if tfile == file {
                format!(
                    "`{}` names it too, and the module state is local to `{}`",
                    ctx.path(fi),
                    ctx.path(file)
                )
            } else {
                format!(
                    "`{}` names it too: only the file that defines it reaches the module's instance of it",
                    ctx.path(fi)
                )
            });
            continue;
        }
        if tfile != file
            && (static_base(ctx, t).is_some()
                || statics
                    .iter()
                    .any(|o| static_base(ctx, o).as_deref() == Some(name.as_str())))
        {
            why(format!(
                "it is defined in another file than the module definition (`{}`) and is the base of, or based on, another static type of the module: move them by hand",
                ctx.path(file)
            ));
            continue;
        }
        if let Some(m) = module.files.iter().find_map(|&fi| {
            ctx.project.files[fi]
                .macros
                .iter()
                .find(|m| contains_word(&m.body, &name))
        }) {
            why(format!(
                "the macro `{}` uses it, and macros are not rewritten",
                m.name
            ));
            continue;
        }
        // `#if` lines between the fields: the spec would keep one branch only. Around the head
        // (`PyVarObject_HEAD_INIT` or Python 2's `PyObject_HEAD_INIT`), before the first field,
        // they go with the initializer.
        if let Some(first) = t.slots.values().map(|e| e.span.start).min() {
            let rest = text.get(first..v.decl_span.end).unwrap_or("");
            let mut offset = first;
            let mut directive = None;
            for l in rest.split_inclusive('\n') {
                if l.trim_start().starts_with('#') {
                    directive = Some((offset, l.trim()));
                    break;
                }
                offset += l.len();
            }
            if let Some((at, line_text)) = directive {
                // Which line, which directive and which field it guards: what to rewrite by hand.
                let line = text[..at].matches('\n').count() + 1;
                let guarded = t
                    .slots
                    .iter()
                    .filter(|(_, e)| e.span.start > at)
                    .min_by_key(|(_, e)| e.span.start)
                    .map(|(f, _)| format!(" (before `{f}`)"))
                    .unwrap_or_default();
                let shown: String = line_text.chars().take(60).collect();
                why(format!(
                    "its initializer has `{shown}` between its fields, line {line}{guarded}: the spec would keep one branch only; write the branches as one field value (a macro defined under the `#if`) to convert it"
                ));
                continue;
            }
        }
        for (field, value) in &t.slots {
            let nothing = matches!(normalize(&value.text).as_str(), "0" | "NULL");
            if field == "tp_alloc" && !nothing && normalize(&value.text) != "PyType_GenericAlloc" {
                why(format!(
                    "its `tp_alloc` is `{}`: a GC heap type needs `PyType_GenericAlloc`",
                    value.text
                ));
            }
            if field == "tp_free"
                && !nothing
                && !types::PLAIN_FREES.contains(&normalize(&value.text).as_str())
            {
                why(format!(
                    "its `tp_free` is `{}`: a GC heap type needs `PyObject_GC_Del`",
                    value.text
                ));
            }
        }
        let Some(mut ht) = types::heap_type(ctx, t) else {
            continue;
        };
        if !ht.notes.is_empty() {
            why(ht.notes.join(" "));
            continue;
        }
        if runtime.get(&name).is_some_and(|rf| rf.base.is_some()) {
            // The base known only at run time is the creation's `bases` argument.
            ht.code = ht
                .code
                .lines()
                .filter(|l| !l.trim_start().starts_with("{Py_tp_base, "))
                .collect::<Vec<_>>()
                .join("\n")
                + "\n";
        }
        // A dealloc or traverse the GC protocol cannot be written into keeps its type static
        // (alone, not the whole stage).
        let (_, t_mask) = src(tfile).expect("read above");
        let dealloc = ht
            .dealloc
            .as_ref()
            .map(|d| dealloc_edits(ctx, tfile, text, t_mask, d, false).map(|_| ()));
        let traverse = ht
            .traverse
            .as_ref()
            .filter(|_| !ht.traverse_is_new)
            .map(|t| traverse_edits(ctx, tfile, t_mask, t).map(|_| ()));
        if let Some(r) = dealloc.into_iter().chain(traverse).find_map(Result::err) {
            why(r);
            continue;
        }
        heap.insert(name, ht);
    }

    // Every use of each type's name, and the function it is in.
    let enclosing = |file: usize, at: usize| {
        ctx.project.files[file]
            .functions
            .iter()
            .position(|f| f.def_span.start <= at && at < f.def_span.end)
            .map(|index| FnRef { file, index })
    };
    let mut mentions: BTreeMap<String, Vec<Mention>> = BTreeMap::new();
    // Declarations ahead of the definition (`static PyTypeObject Foo_Type;`), by type.
    let mut forward_decls: BTreeMap<String, Vec<(usize, usize)>> = BTreeMap::new();
    for t in &statics {
        let name = name_of(t);
        if !heap.contains_key(&name) {
            continue;
        }
        let own = decl_of[&name];
        let tfile = t.var.file;
        let (text, mask) = src(tfile).expect("read when its spec was made");
        let mut list = Vec::new();
        let mut forwards = Vec::new();
        let mut why = None;
        let folded: &[usize] = runtime.get(&name).map_or(&[], |rf| &rf.sites);
        for at in word_uses(mask, 0, mask.len(), &name) {
            if own.0 <= at && at < own.1 || folded.contains(&at) {
                continue;
            }
            let line = line_of(text, at);
            if let Some((other, _)) = decl_of
                .iter()
                .find(|(o, (s, e))| file_of[*o] == tfile && *s <= at && at < *e)
            {
                let base_of_other = statics
                    .iter()
                    .find(|o| name_of(o) == *other)
                    .and_then(|o| static_base(ctx, o));
                if base_of_other.as_deref() != Some(name.as_str()) {
                    why = Some(format!(
                        "line {line}: the initializer of `{other}` names it other than as its `tp_base`"
                    ));
                    break;
                }
                continue;
            }
            let Some(function) = enclosing(tfile, at) else {
                // `static PyTypeObject Foo_Type;` declared ahead of its definition goes.
                let (ls, le) = (
                    line_start(text, at),
                    text[at..].find('\n').map_or(text.len(), |i| at + i + 1),
                );
                if normalize(&text[ls..le]) == format!("staticPyTypeObject{name};") {
                    forwards.push((ls, le));
                    continue;
                }
                why = Some(format!(
                    "line {line}: it is named outside a function (a macro or a table), which the fix does not rewrite"
                ));
                break;
            };
            let end = at + name.len();
            let how = match (prev_byte(mask, at), next_byte(mask, end)) {
                (Some((amp, b'&')), _) => {
                    let before = std::str::from_utf8(&mask[..amp]).unwrap_or("");
                    let before = before.trim_end();
                    let ready = before.strip_suffix('(').map(str::trim_end).and_then(|b| {
                        b.strip_suffix("PyType_Ready")
                            .filter(|rest| {
                                !rest.ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
                            })
                            .map(|rest| rest.len())
                    });
                    if [
                        "PyObject_Init",
                        "PyObject_INIT",
                        "PyObject_InitVar",
                        "PyObject_INIT_VAR",
                    ]
                    .iter()
                    .any(|c| {
                        before
                            .strip_suffix('(')
                            .map(str::trim_end)
                            .is_some_and(|b| b.ends_with(c))
                    }) {
                        why = Some(format!(
                            "line {line}: it initialises memory the module allocates itself (`PyObject_Init`), which a GC type cannot take"
                        ));
                        break;
                    }
                    match ready {
                        Some(start) => {
                            let Some((close, b')')) = next_byte(mask, end) else {
                                why =
                                    Some(format!("line {line}: `PyType_Ready` is not written out"));
                                break;
                            };
                            let mut stop = close + 1;
                            let rest = normalize(std::str::from_utf8(&mask[stop..]).unwrap_or(""));
                            for cmp in ["<0", "!=0", "==-1"] {
                                if rest.starts_with(cmp) {
                                    // Past the comparison, whatever spaces it has.
                                    let mut seen = 0;
                                    while seen < cmp.len() && stop < mask.len() {
                                        if !mask[stop].is_ascii_whitespace() {
                                            seen += 1;
                                        }
                                        stop += 1;
                                    }
                                    break;
                                }
                            }
                            let statement = matches!(
                                prev_byte(mask, start),
                                Some((_, b';' | b'{' | b'}')) | None
                            ) && matches!(next_byte(mask, stop), Some((_, b';')));
                            Use::Ready {
                                start,
                                end: stop,
                                statement,
                            }
                        }
                        None => Use::Address(amp),
                    }
                }
                (_, Some((dot, b'.'))) => {
                    let after = std::str::from_utf8(&mask[dot + 1..]).unwrap_or("");
                    let field: String = after
                        .trim_start()
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    let rest = after.trim_start()[field.len()..].trim_start();
                    if field == "tp_dict" {
                        why = Some(format!(
                            "line {line}: it reads or sets `tp_dict`: set attributes on the created type (`PyObject_SetAttrString`) instead"
                        ));
                        break;
                    }
                    let updates = ["|=", "&=", "^=", "+=", "-=", "*=", "/=", "%=", "<<=", ">>="]
                        .iter()
                        .any(|op| rest.starts_with(op));
                    if rest.starts_with('=') && !rest.starts_with("==") || updates {
                        why = Some(format!(
                            "line {line}: it sets `{name}.{field}` at run time: put it in the initializer"
                        ));
                        break;
                    }
                    Use::Member(dot)
                }
                _ => {
                    why = Some(format!(
                        "line {line}: it is used as a value (not `&{name}` or `{name}.field`)"
                    ));
                    break;
                }
            };
            list.push(Mention { at, function, how });
        }
        if why.is_none()
            && tfile != file
            && !list
                .iter()
                .any(|m: &Mention| matches!(m.how, Use::Ready { .. }))
        {
            why = Some(
                "no function of its file readies it (`PyType_Ready`): there is no place to create it"
                    .to_string(),
            );
        }
        match why {
            Some(r) if tfile != file => {
                stays.insert(name, format!("`{}`: {r}", ctx.path(tfile)));
            }
            Some(r) => {
                stays.insert(name, r);
            }
            None => {
                forward_decls.insert(name.clone(), forwards);
                mentions.insert(name, list);
            }
        }
    }

    // A type and its migrated base move together or not at all; so does every function that
    // reaches the module through them. Until nothing changes.
    let mut reach_paths: BTreeMap<String, String>;
    loop {
        let moving: BTreeSet<String> = heap
            .keys()
            .filter(|n| !stays.contains_key(*n))
            .cloned()
            .collect();
        let mut changed = false;
        for t in &statics {
            let name = name_of(t);
            if let Some(base) = static_base(ctx, t) {
                let (a, b) = (moving.contains(&name), moving.contains(&base));
                if a && !b {
                    stays.insert(
                        name.clone(),
                        format!(
                            "line {}: its base `{base}` stays static",
                            ctx.project.var(t.var).span.line
                        ),
                    );
                    changed = true;
                } else if b && !a && !stays.contains_key(&base) {
                    stays.insert(
                        base.clone(),
                        format!(
                            "line {}: `{name}`, a static type based on it, stays static",
                            ctx.project.var(t.var).span.line
                        ),
                    );
                    changed = true;
                }
            }
        }
        if changed {
            continue;
        }
        // A dealloc or traverse that a type which stays shares would release or visit a
        // static type: the type that names it stays too.
        let kept_functions: BTreeSet<String> = module
            .types
            .iter()
            .filter(|t| !(t.kind == TypeKind::Static && moving.contains(&name_of(t))))
            .flat_map(|t| type_functions(ctx, &as_seen(t), &def_name))
            .map(|(f, _)| f)
            .collect();
        for name in &moving {
            let ht = &heap[name];
            let shared = [ht.dealloc.as_ref(), ht.traverse.as_ref()]
                .into_iter()
                .flatten()
                .find(|f| kept_functions.contains(*f));
            if let Some(f) = shared {
                let line = ctx
                    .project
                    .var(
                        statics
                            .iter()
                            .find(|t| name_of(t) == *name)
                            .expect("a static type")
                            .var,
                    )
                    .span
                    .line;
                stays.insert(
                    name.clone(),
                    format!("line {line}: its `{f}` is also a type's that stays static"),
                );
                changed = true;
            }
        }
        if changed {
            continue;
        }
        // The functions the moving types name reach the module through them, when every type
        // that names them moves.
        let mut paths: BTreeMap<String, Option<String>> = BTreeMap::new();
        for t in &module.types {
            let moves = t.kind == TypeKind::Static && moving.contains(&name_of(t));
            for (f, how) in type_functions(ctx, &as_seen(t), &def_name) {
                let how = if moves { how } else { None };
                let entry = paths.entry(f).or_insert(how.clone());
                if *entry != how {
                    *entry = None;
                }
            }
        }
        reach_paths = paths
            .into_iter()
            .filter_map(|(f, how)| Some((f, how?)))
            .collect();
        let mut reach = Reach::new(ctx, file, text, &mask, &exec_fns, reach_paths.clone());
        let mut elsewhere = Elsewhere::new(ctx, file, &masks);
        for name in &moving {
            for m in &mentions[name] {
                if let Err(r) = elsewhere.arg_of(&mut reach, m.function) {
                    // Stage 1's words for a type's function; here its type is not converted.
                    let r = r
                        .replace(
                            "it reaches the module through its type once the type is a heap type (stage 2), by hand for now",
                            "its type stays static, or it may be called without an instance (a static method)",
                        )
                        .replace(
                            "it reaches the module through the instance's type once the type is a heap type (stage 2), by hand for now",
                            "its type stays static, or its first argument may be another object (a binary number slot)",
                        );
                    let m_text = src(m.function.file).map_or("", |(t, _)| t);
                    stays.insert(
                        name.clone(),
                        format!("{}: {r}", place(m.function.file, line_of(m_text, m.at))),
                    );
                    changed = true;
                    break;
                }
            }
        }
        if !changed {
            break;
        }
    }
    let moving: Vec<String> = heap
        .keys()
        .filter(|n| !stays.contains_key(*n))
        .cloned()
        .collect();
    for t in &statics {
        if let Some(r) = stays.get(&name_of(t)) {
            let line = format!("{r} (the static type `{}` stays)", name_of(t));
            if !out.refused.contains(&line) {
                out.refused.push(line);
            }
        }
    }
    if moving.is_empty() {
        return Ok(out);
    }
    let mut reach = Reach::new(ctx, file, text, &mask, &exec_fns, reach_paths);
    let mut elsewhere = Elsewhere::new(ctx, file, &masks);

    // The module state: the one that exists, or a new one.
    let state_at = match def.m_size() {
        Some(e) if !matches!(e.kind, ExprKind::Number(Some(n)) if n <= 0) => {
            let ty = match &e.kind {
                ExprKind::SizeOf(s) => s.trim_matches(|c| c == '(' || c == ')').trim().to_string(),
                _ => String::new(),
            };
            let ty = ty.strip_prefix("struct ").unwrap_or(&ty).trim().to_string();
            if ty.is_empty() || !ty.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "line {}: `m_size = {}` does not name the state struct",
                    def_var.span.line, e.text
                ));
            }
            let close = struct_close(&mask, &ty).ok_or_else(|| {
                format!(
                    "line {}: the state struct `{ty}` is not defined in `{}`",
                    def_var.span.line,
                    ctx.path(file)
                )
            })?;
            let gc = |field: &str| {
                def.function_field(field)
                    .and_then(|n| fn_in(ctx, file, n))
                    .ok_or_else(|| {
                        format!(
                            "line {}: the module state has no `{field}` in `{}` to visit or clear the types: add one first",
                            def_var.span.line,
                            ctx.path(file)
                        )
                    })
            };
            let getter = format!("get_{}_state", ctx.prefix);
            let getter = fn_in(ctx, file, &getter)
                .filter(|&g| ctx.function(g).return_type.contains(&ty))
                .map(|_| getter);
            StateAt::Existing {
                ty,
                getter,
                close,
                traverse: gc("m_traverse")?,
                clear: gc("m_clear")?,
            }
        }
        _ => {
            for field in ["m_traverse", "m_clear", "m_free"] {
                if let Some(f) = def.function_field(field) {
                    return Err(format!(
                        "line {}: `{def_name}` already has `{field} = {f}` but no state: merge the state's by hand",
                        def_var.span.line
                    ));
                }
            }
            StateAt::New(StateNames::new(ctx))
        }
    };

    let heap_in_order: Vec<&HeapType> = {
        let ordered = types::ordered(
            statics
                .iter()
                .filter(|t| moving.contains(&name_of(t)))
                .filter_map(|t| types::heap_type(ctx, t))
                .collect(),
        );
        let names: Vec<String> = ordered.into_iter().map(|h| h.var_name).collect();
        names.iter().map(|n| &heap[n]).collect()
    };
    let mut users: BTreeSet<FnRef> = BTreeSet::new();
    let mut readied: BTreeMap<String, (FnRef, usize)> = BTreeMap::new();
    for name in &moving {
        for m in &mentions[name] {
            users.insert(m.function);
            if let Use::Ready { start, .. } = m.how {
                readied.entry(name.clone()).or_insert((m.function, start));
            }
        }
    }
    // A derived type is created after its base, in the same function.
    for ht in &heap_in_order {
        if let (Some(base), Some(&(f, at))) = (&ht.base, readied.get(&ht.var_name)) {
            if !readied
                .get(base)
                .is_some_and(|&(bf, bat)| bf == f && bat < at)
            {
                return Err(format!(
                    "line {}: `{}` is readied before its base `{base}` or in another function: create the base first by hand",
                    line_of(text, at),
                    ht.var_name
                ));
            }
        }
    }

    let mut edits = Vec::new();
    let bases_of = |ht: &HeapType, state: &str| match (&ht.base, runtime.get(&ht.var_name)) {
        (Some(b), _) => format!("(PyObject *){state}->{b}"),
        (None, Some(RuntimeFields { base: Some(b), .. })) => format!("(PyObject *){b}"),
        _ => "NULL".to_string(),
    };
    // A type defined in another file reaches its place in the state through a function the
    // file of the definition exports.
    let accessors: BTreeMap<String, String> = moving
        .iter()
        .filter(|n| file_of[*n] != file)
        .map(|n| (n.clone(), ctx.fresh(&format!("{}_state_{n}", ctx.prefix))))
        .collect();
    for name in &moving {
        let ht = &heap[name];
        for m in &mentions[name] {
            let module_arg = elsewhere
                .arg_of(&mut reach, m.function)
                .expect("classified above");
            let state = state_at.of(&module_arg);
            let place_of_type = match accessors.get(name) {
                Some(acc) => format!("(*{acc}({module_arg}))"),
                None => format!("{state}->{name}"),
            };
            let (start, end, new) = match m.how {
                Use::Address(amp) => (amp, m.at + name.len(), place_of_type),
                Use::Member(dot) => (m.at, dot + 1, format!("{place_of_type}->")),
                Use::Ready {
                    start,
                    end,
                    statement,
                } => {
                    let create = format!(
                        "{place_of_type} = (PyTypeObject *)PyType_FromModuleAndSpec({module_arg}, &{}, {})",
                        ht.spec_name,
                        bases_of(ht, &state)
                    );
                    (
                        start,
                        end,
                        if statement {
                            create
                        } else {
                            format!("({create}) == NULL")
                        },
                    )
                }
            };
            edits.push(Edit {
                file: m.function.file,
                start,
                end,
                text: new,
            });
        }
        // Calls that take the type: a GC type is allocated with `PyObject_GC_New`, and
        // `PyModule_AddObject` would steal the state's reference when the code keeps none.
        for &f in users.iter() {
            let function = ctx.function(f);
            let (text, mask) = src(f.file).expect("read when its uses were found");
            let body = normalize(&text[function.def_span.start..function.def_span.end]);
            let kept = ["Py_INCREF", "Py_XINCREF", "Py_NewRef", "Py_XNewRef"]
                .iter()
                .any(|k| {
                    body.contains(&format!("{k}(&{name})"))
                        || body.contains(&format!("{k}((PyObject*)&{name})"))
                });
            for c in &function.calls {
                let args = call_args(mask, c.span.start, c.span.end);
                let names_it = |i: usize| {
                    args.get(i)
                        .is_some_and(|&(s, e)| strip_casts(&text[s..e]) == format!("&{name}"))
                };
                let renamed = match c.callee.as_str() {
                    "PyObject_New" | "PyObject_NEW" if names_it(1) => "PyObject_GC_New",
                    "PyObject_NewVar" | "PyObject_NEW_VAR" if names_it(2) => "PyObject_GC_NewVar",
                    "PyModule_AddObject" if names_it(2) && !kept => "PyModule_AddObjectRef",
                    _ => continue,
                };
                if !text[c.span.start..].starts_with(c.callee.as_str()) {
                    return Err(format!(
                        "{}: the call to `{}` is not written out",
                        place(f.file, c.span.line),
                        c.callee
                    ));
                }
                edits.push(Edit {
                    file: f.file,
                    start: c.span.start,
                    end: c.span.start + c.callee.len(),
                    text: renamed.to_string(),
                });
            }
        }
    }
    // Types no function readies are created at the start of exec, bases first.
    let exec_fn = ctx.function(exec);
    let exec_arg = reach.arg_of(exec)?;
    let exec_state = state_at.of(&exec_arg);
    let mut created = String::new();
    for ht in &heap_in_order {
        if readied.contains_key(&ht.var_name) {
            continue;
        }
        created.push_str(&format!(
            "\n    {exec_state}->{v} = (PyTypeObject *)PyType_FromModuleAndSpec({exec_arg}, &{spec}, {bases});\n    if ({exec_state}->{v} == NULL) {{\n        return -1;\n    }}",
            v = ht.var_name,
            spec = ht.spec_name,
            bases = bases_of(ht, &exec_state)
        ));
    }
    if !created.is_empty() {
        let open = body_open(&mask, exec_fn).ok_or("the exec function has no body")?;
        edits.push(Edit {
            file,
            start: open,
            end: open,
            text: created,
        });
        users.insert(exec);
    }

    // The static declarations become the specs; declarations ahead of them go.
    for ht in &heap_in_order {
        let file = file_of[&ht.var_name];
        let (text, _) = src(file).expect("read when its spec was made");
        // In another file: the declaration of the function that gives the type's place.
        let accessor = accessors.get(&ht.var_name).map(|acc| {
            format!(
                "PyTypeObject **{acc}(PyObject *module);  /* in `{}`, with the module state: the place of the module's `{}` */\n\n",
                ctx.path(def.var.file).rsplit('/').next().unwrap_or(""),
                ht.var_name
            )
        });
        for &(start, end) in &forward_decls[&ht.var_name] {
            edits.push(Edit {
                file,
                start,
                end,
                text: String::new(),
            });
        }
        let (s, e) = decl_of[&ht.var_name];
        let line = line_start(text, s);
        let own_line = text[line..s].trim().is_empty();
        let start = if own_line { line } else { s };
        match runtime.get(&ht.var_name) {
            // The spec names what the setter named, which may be defined after the static
            // declaration: it goes just before the setter, and the declaration goes.
            Some(rf) => {
                let mut end = text[e..]
                    .find('\n')
                    .filter(|&i| own_line && text[e..e + i].trim().is_empty())
                    .map_or(e, |i| e + i + 1);
                // Between two blank lines, one of them goes with it.
                let blank_before = text[..start].ends_with("\n\n") || start == 0;
                if end > e && blank_before && text[end..].starts_with('\n') {
                    end += 1;
                }
                edits.push(Edit {
                    file,
                    start,
                    end,
                    text: accessor.clone().unwrap_or_default(),
                });
                let setter = line_start(text, ctx.function(rf.function).def_span.start);
                if preprocessor_depth(text, setter) != 0 {
                    return Err(format!(
                        "line {}: `{}`, which sets the fields of `{}`, is inside `#if`: there is no place for its spec",
                        line_of(text, setter),
                        ctx.function(rf.function).name,
                        ht.var_name
                    ));
                }
                edits.push(Edit {
                    file,
                    start: setter,
                    end: setter,
                    text: format!("{}\n\n", ht.code.trim_end()),
                });
                for &(start, end) in &rf.removals {
                    edits.push(Edit {
                        file,
                        start,
                        end,
                        text: String::new(),
                    });
                }
            }
            None => edits.push(Edit {
                file,
                start,
                end: e,
                text: format!(
                    "{}{}",
                    accessor.clone().map(|a| a + "\n").unwrap_or_default(),
                    ht.code.trim_end()
                ),
            }),
        }
    }

    // The GC protocol: dealloc and traverse of each type, once per function.
    let mut done: BTreeSet<String> = BTreeSet::new();
    for ht in &heap_in_order {
        let was_gc = statics
            .iter()
            .find(|t| name_of(t) == ht.var_name)
            .and_then(|t| t.slots.get("tp_flags"))
            .is_some_and(|f| f.text.contains("Py_TPFLAGS_HAVE_GC"));
        let tfile = file_of[&ht.var_name];
        let (t_text, t_mask) = src(tfile).expect("read when its spec was made");
        if let Some(dealloc) = ht.dealloc.clone().filter(|d| done.insert(d.clone())) {
            let (es, note) = dealloc_edits(ctx, tfile, t_text, t_mask, &dealloc, was_gc)
                .map_err(|r| format!("`{}`: {r}", ht.var_name))?;
            edits.extend(es);
            out.notes.extend(note);
        }
        if let Some(traverse) = ht
            .traverse
            .clone()
            .filter(|_| !ht.traverse_is_new)
            .filter(|t| done.insert(t.clone()))
        {
            edits.extend(
                traverse_edits(ctx, tfile, t_mask, &traverse)
                    .map_err(|r| format!("`{}`: {r}", ht.var_name))?,
            );
        }
    }

    // Helpers that now need the module get it from their callers.
    let mut needed = BTreeSet::new();
    for &f in users.iter().chain(elsewhere.def_file_callers().iter()) {
        reach.chain(f, &mut needed);
    }
    edits.extend(reach.helper_edits(&needed)?);
    edits.extend(elsewhere.edits(&reach)?);

    // The state: its fields, and `m_traverse`/`m_clear` for them.
    let field_lines = |indent: &str| -> String {
        heap_in_order
            .iter()
            .map(|ht| {
                format!(
                    "{indent}PyTypeObject *{};  /* was the static type `{}` */\n",
                    ht.var_name, ht.var_name
                )
            })
            .collect()
    };
    // Methods and slots that reach the module by its definition need it declared above them.
    let by_def: Vec<usize> = users
        .iter()
        .chain(needed.iter())
        .filter(|&&f| {
            f.file == file
                && reach
                    .arg(f)
                    .is_some_and(|a| a.contains(&format!("&{def_name})")))
        })
        .map(|&f| ctx.function(f).def_span.start)
        .collect();
    let forward = by_def
        .iter()
        .min()
        .filter(|&&at| at < def_var.decl_span.start)
        .map(|_| {
            let decl = &text[def_var.decl_span.start..def_var.decl_span.end];
            let head = decl.split('=').next().unwrap_or(decl).trim_end();
            format!("{head};  /* defined below; the types' methods find their module by it */\n\n")
        })
        .unwrap_or_default();
    // The functions that give the other files the place of their types in the state.
    let accessor_defs: String = accessors
        .iter()
        .map(|(name, acc)| {
            format!(
                "/* `{name}` is defined in `{}`, which cannot see the module state: the place of the\n   module's `{name}` in it. */\nPyTypeObject **\n{acc}(PyObject *module)\n{{\n    return &{}->{name};\n}}\n\n",
                ctx.path(file_of[name]).rsplit('/').next().unwrap_or(""),
                state_at.of("module")
            )
        })
        .collect();
    match &state_at {
        StateAt::Existing {
            ty,
            getter,
            close,
            traverse,
            clear,
        } => {
            if !accessor_defs.is_empty() {
                let after = match getter.as_deref().and_then(|g| fn_in(ctx, file, g)) {
                    Some(g) => ctx.function(g).def_span.end,
                    None => mask[*close..]
                        .iter()
                        .position(|&b| b == b';')
                        .map_or(*close, |i| close + i + 1),
                };
                edits.push(Edit {
                    file,
                    start: after,
                    end: after,
                    text: format!("\n\n{}", accessor_defs.trim_end()),
                });
            }
            let at = line_start(text, *close);
            let fields = if text[at..*close].trim().is_empty() {
                (at, field_lines("    "))
            } else {
                (*close, format!("\n{}", field_lines("    ")))
            };
            edits.push(Edit {
                file,
                start: fields.0,
                end: fields.0,
                text: fields.1,
            });
            for (f, call) in [(*traverse, "Py_VISIT"), (*clear, "Py_CLEAR")] {
                let function = ctx.function(f);
                let module_param = first_param(function)
                    .ok_or_else(|| format!("`{}` has no named first parameter", function.name))?;
                let open = body_open(&mask, function)
                    .ok_or_else(|| format!("`{}` has no body", function.name))?;
                let returns = word_uses(&mask, open, function.def_span.end, "return");
                let Some(&last) = returns.last() else {
                    return Err(format!("`{}` has no `return`", function.name));
                };
                let at = line_start(text, last);
                if !text[at..last].trim().is_empty() {
                    return Err(format!(
                        "line {}: the last `return` of `{}` is not on its own line",
                        line_of(text, last),
                        function.name
                    ));
                }
                // A state local the function already declares (stage 1's do) reads best.
                let own_local = normalize(&text[open..last]).contains(&format!("{ty}*state="));
                let state = if own_local {
                    "state".to_string()
                } else {
                    state_at.of(&module_param)
                };
                let lines: String = heap_in_order
                    .iter()
                    .map(|ht| format!("    {call}({state}->{});\n", ht.var_name))
                    .collect();
                edits.push(Edit {
                    file,
                    start: at,
                    end: at,
                    text: lines,
                });
            }
            if !forward.is_empty() {
                let at = line_start(text, *by_def.iter().min().expect("forward needs one"));
                if preprocessor_depth(text, at) != 0 {
                    return Err(format!(
                        "line {}: the first method that needs the module definition is inside `#if`",
                        line_of(text, at)
                    ));
                }
                edits.push(Edit {
                    file,
                    start: at,
                    end: at,
                    text: forward.clone(),
                });
            }
        }
        StateAt::New(names) => {
            edits.extend(def_edits(ctx, def.var, text, names)?);
            let globals: Vec<&crate::model::Global> = heap_in_order
                .iter()
                .filter_map(|ht| {
                    module.globals.iter().find(|g| {
                        ctx.project.var(g.var).name == ht.var_name
                            && g.var.file == file_of[&ht.var_name]
                    })
                })
                .collect();
            let mut fields = state::fields(ctx, &globals);
            for f in &mut fields {
                f.comment = format!("was the static type `{}`", f.name);
            }
            let mut at = line_start(text, def_var.decl_span.start);
            for &f in users.iter().chain(needed.iter()).filter(|f| f.file == file) {
                at = at.min(line_start(text, ctx.function(f).def_span.start));
            }
            for ht in heap_in_order
                .iter()
                .filter(|ht| file_of[&ht.var_name] == file)
            {
                at = at.min(line_start(text, decl_of[&ht.var_name].0));
            }
            if preprocessor_depth(text, at) != 0 {
                return Err(format!(
                    "line {}: the first user of the state is inside `#if`: there is no place for the state struct",
                    line_of(text, at)
                ));
            }
            edits.push(Edit {
                file,
                start: at,
                end: at,
                text: format!(
                    "{forward}/* Module state: the module's types, one set per module object. */\n{}\n{}\n{}\n{accessor_defs}",
                    state::state_struct(names, &fields),
                    state::getter(names),
                    state::gc_functions(names, &fields)
                ),
            });
        }
    }
    out.edits = edits;
    Ok(out)
}

/// The dealloc of a heap type: it takes the type before freeing, untracks the object, frees it
/// through `tp_free` and releases the type. A note when it freed a GC object with a plain free.
fn dealloc_edits(
    ctx: &PlanCtx,
    file: usize,
    text: &str,
    mask: &[u8],
    name: &str,
    was_gc: bool,
) -> Result<(Vec<Edit>, Option<String>), String> {
    let f = fn_in(ctx, file, name).ok_or_else(|| {
        format!("its dealloc `{name}` is not in the file of the module definition")
    })?;
    let function = ctx.function(f);
    let self_name = first_param(function)
        .ok_or_else(|| format!("its dealloc `{name}` has no named parameter"))?;
    let open =
        body_open(mask, function).ok_or_else(|| format!("its dealloc `{name}` has no body"))?;
    let end = function.def_span.end;
    let body = std::str::from_utf8(&mask[open..end]).unwrap_or("");
    if body.contains("tp_dealloc") {
        return Err(format!(
            "its dealloc `{name}` calls another type's `tp_dealloc`: both would release the type"
        ));
    }
    if !word_uses(mask, open, end, "tp").is_empty() {
        return Err(format!("its dealloc `{name}` already uses the name `tp`"));
    }
    let mut edits = Vec::new();
    let mut note = None;
    // Each free of the object: `tp->tp_free(...)`, then the type is released.
    let mut frees: Vec<(usize, usize)> = Vec::new();
    for c in &function.calls {
        if !FREES.contains(&c.callee.as_str()) {
            continue;
        }
        let args = call_args(mask, c.span.start, c.span.end);
        let Some(&(s, e)) = args.first() else {
            continue;
        };
        if strip_casts(&text[s..e]) != self_name {
            continue;
        }
        if c.callee != "PyObject_GC_Del" && was_gc {
            note = Some(format!(
                "line {}: `{name}` freed a GC object with `{}`, which frees the wrong address (the GC header is before the object): it now calls `tp_free`",
                c.span.line, c.callee
            ));
        }
        edits.push(Edit {
            file,
            start: c.span.start,
            end: c.span.end,
            text: format!("tp->tp_free((PyObject *){self_name})"),
        });
        frees.push((c.span.start, c.span.end));
    }
    let mut from = open;
    while let Some(i) = body_find(mask, from, end, "tp_free") {
        let after = i + "tp_free".len();
        from = after;
        if frees.iter().any(|&(s, e)| s <= i && i < e) {
            continue;
        }
        if !matches!(next_byte(mask, after), Some((_, b'('))) {
            continue;
        }
        frees.push((i, after));
    }
    if frees.is_empty() {
        return Err(format!(
            "its dealloc `{name}` frees the object other than with `tp_free` or `PyObject_Del`"
        ));
    }
    if !body.contains("Py_DECREF(tp)") {
        for &(at, call_end) in &frees {
            let Some(stmt) = statement_start(mask, open, at) else {
                return Err(format!(
                    "line {}: the free in `{name}` is not a plain statement",
                    line_of(text, at)
                ));
            };
            if !matches!(prev_byte(mask, stmt), Some((_, b';' | b'{' | b'}'))) {
                return Err(format!(
                    "line {}: the free in `{name}` is the body of an `if` or a loop without braces",
                    line_of(text, at)
                ));
            }
            let Some(semi) = mask[call_end..end].iter().position(|&b| b == b';') else {
                return Err(format!(
                    "line {}: the free in `{name}` has no `;`",
                    line_of(text, at)
                ));
            };
            let semi = call_end + semi + 1;
            edits.push(Edit {
                file,
                start: semi,
                end: semi,
                text: format!("\n{}Py_DECREF(tp);", indent_at(text, stmt)),
            });
        }
    }
    let mut head = format!("\n    PyTypeObject *tp = Py_TYPE({self_name});");
    if !body.contains("PyObject_GC_UnTrack") {
        head.push_str(&format!("\n    PyObject_GC_UnTrack({self_name});"));
    }
    edits.push(Edit {
        file,
        start: open,
        end: open,
        text: head,
    });
    Ok((edits, note))
}

/// The next place of `word` in `mask[from..end]`.
fn body_find(mask: &[u8], from: usize, end: usize, word: &str) -> Option<usize> {
    let w = word.as_bytes();
    (from..end.saturating_sub(w.len() - 1)).find(|&i| {
        &mask[i..i + w.len()] == w
            && (i == 0 || !(mask[i - 1].is_ascii_alphanumeric() || mask[i - 1] == b'_'))
    })
}

/// An existing traverse visits the type first.
fn traverse_edits(
    ctx: &PlanCtx,
    file: usize,
    mask: &[u8],
    name: &str,
) -> Result<Vec<Edit>, String> {
    let f = fn_in(ctx, file, name).ok_or_else(|| {
        format!("its traverse `{name}` is not in the file of the module definition")
    })?;
    let function = ctx.function(f);
    let open =
        body_open(mask, function).ok_or_else(|| format!("its traverse `{name}` has no body"))?;
    let body = std::str::from_utf8(&mask[open..function.def_span.end]).unwrap_or("");
    if body.contains("Py_TYPE(") {
        return Ok(Vec::new());
    }
    let names: Vec<Option<&str>> = function.params.iter().map(|p| p.name.as_deref()).collect();
    let (Some(Some(self_name)), Some(Some("visit")), Some(Some("arg"))) =
        (names.first(), names.get(1), names.get(2))
    else {
        return Err(format!(
            "its traverse `{name}` does not name its parameters `visit` and `arg`, which `Py_VISIT` needs"
        ));
    };
    Ok(vec![Edit {
        file,
        start: open,
        end: open,
        text: format!("\n    Py_VISIT(Py_TYPE({self_name}));"),
    }])
}
