//! Stage 1 as an edit: the module's object globals move into a module state struct.
//!
//! Every `PyObject *` global and function-local `static` object cache of the module (exception
//! objects, caches, interned strings) becomes a field of a generated `<mod>_state`; the module
//! definition gets `m_size = sizeof(<mod>_state)`, `m_traverse`, `m_clear` and `m_free`; every
//! read and write becomes `get_<mod>_state(module)->field`, where `module` is the exec
//! function's parameter or a module-level function's first parameter (the module object).
//!
//! A global is moved only when every function that uses it has the module at hand. One used
//! anywhere else (a method or slot of a type, a helper, a C callback, another file, a macro)
//! stays a global, and the reason is reported with its line; the rest of the stage still
//! applies. A reference `PyModule_AddObject` steals in exec is taken again for the state
//! (`Py_XINCREF`) when the code did not already keep one.
//!
//! Plain C data (counters, flags) is not moved: sharing it across interpreters is a free-threading
//! question (stage 4), not an object-ownership one.

use super::access::{callers_of, roles};
use super::context::{object_pointer, PlanCtx};
use super::stage0::{normalize, Edit};
use super::state::{self, StateNames, Visit};
use crate::facts::{ExprKind, Function, Init};
use crate::model::{FnRef, Global, InitStyle};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone)]
pub struct Stage1 {
    pub edits: Vec<Edit>,
    /// Each global that stays, and why, one per line.
    pub refused: Vec<String>,
}

/// Calls that steal a reference to their third argument.
const STEALS_THIRD: &[&str] = &["PyModule_AddObject", "PyModule_Add"];
/// Calls that steal a reference to an argument the generator does not rewrite.
const STEALS_OTHER: &[&str] = &[
    "PyTuple_SET_ITEM",
    "PyTuple_SetItem",
    "PyList_SET_ITEM",
    "PyList_SetItem",
    "PyStructSequence_SET_ITEM",
    "PyStructSequence_SetItem",
    "PyCell_SET",
];
const KEEPS_REFERENCE: &[&str] = &["Py_INCREF", "Py_XINCREF", "Py_NewRef", "Py_XNewRef"];

pub fn stage1(ctx: &PlanCtx) -> Result<Stage1, String> {
    let module = ctx.module;
    if module.init_style != InitStyle::MultiPhase {
        return Err(
            "single-phase init has no module state: stage 0 (`isolint fix --stage 0`) first".into(),
        );
    }
    let def = module
        .def
        .as_ref()
        .ok_or("the module definition was not found")?;
    let def_var = ctx.project.var(def.var);
    let file = def.var.file;
    let text = ctx
        .texts
        .get(&file)
        .ok_or("the file of the module definition could not be read again")?;
    let mask = code_mask(text);

    // The functions that have the module at hand: exec (its parameter) and the module-level
    // functions (their first parameter).
    let file_functions = &ctx.project.files[file].functions;
    let fn_in_file = |name: &str| {
        file_functions
            .iter()
            .position(|f| f.name == name)
            .map(|index| FnRef { file, index })
    };
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
        let Some(f) = slot.value.ident().and_then(fn_in_file) else {
            return Err(format!(
                "line {}: the exec function `{}` is not in the file of the module definition",
                slot.value.span.line, slot.value.text
            ));
        };
        exec_fns.insert(f);
    }
    let mut reach = Reach {
        ctx,
        file,
        text,
        mask: &mask,
        exec_fns: &exec_fns,
        roles: roles(ctx),
        callers: callers_of(ctx),
        memo: BTreeMap::new(),
        threaded: BTreeSet::new(),
        visiting: BTreeSet::new(),
        through_type: BTreeMap::new(),
    };
    let mut arg_of = |f: FnRef| reach.arg_of(f);

    let mut refused = Vec::new();
    let mut moved: Vec<&Global> = Vec::new();
    let mut uses_of: BTreeMap<usize, BTreeSet<FnRef>> = BTreeMap::new();
    let mut increfs: BTreeMap<usize, Vec<(FnRef, usize)>> = BTreeMap::new();
    // The `#if` line around a global declared under one: its field and GC lines keep it.
    let mut guards: BTreeMap<usize, (String, usize)> = BTreeMap::new();
    let macros: Vec<&crate::facts::MacroDef> = module
        .files
        .iter()
        .flat_map(|&fi| ctx.project.files[fi].macros.iter())
        .collect();
    let candidates = candidates(ctx);
    for (gi, g) in candidates.iter().copied().enumerate() {
        if ctx.is_static_type(g.var) {
            continue; // stage 2
        }
        let v = ctx.project.var(g.var);
        let line = v.span.line;
        if !object_pointer(ctx.layouts, v) || v.array_dims > 1 || v.is_function_pointer {
            continue; // not an object: stays (and is not stage 1's to report)
        }
        let mut why = |reason: String| {
            refused.push(format!(
                "line {line}: `{}` stays a global: {reason}",
                v.name
            ))
        };
        if g.var.file != file {
            why(format!(
                "it is defined in `{}`, another file than the module definition",
                ctx.path(g.var.file)
            ));
            continue;
        }
        if !v.type_name.starts_with("Py") {
            why(format!(
                "its type `{}` is the module's own, declared where the state cannot see it",
                v.type_name
            ));
            continue;
        }
        if v.uncertain || !g.declarations.is_empty() || !g.address_in_initializers.is_empty() {
            why("it is declared more than once, or its address is in an initializer".into());
            continue;
        }
        if v.is_thread_local || v.is_volatile || v.is_atomic {
            why("it is thread-local, volatile or atomic".into());
            continue;
        }
        let guard = match enclosing_guard(text, v.decl_span.start) {
            Ok(None) => None,
            Ok(Some(g)) if v.function.is_none() => Some(g),
            _ => {
                why("it is declared inside nested `#if`s, an `#else` branch, or an `#if` in a function".into());
                continue;
            }
        };
        if let Some(m) = macros.iter().find(|m| contains_word(&m.body, &v.name)) {
            why(format!(
                "the macro `{}` uses it, and macros are not rewritten",
                m.name
            ));
            continue;
        }
        let Some(_) = declaration_edit(ctx, text, &mask, g.var) else {
            why(
                "its declaration is not a plain `static PyObject *name;` (or `= NULL`) of its own"
                    .into(),
            );
            continue;
        };
        let mut users: BTreeSet<FnRef> = g
            .readers
            .iter()
            .copied()
            .chain(g.writes.iter().map(|w| w.function))
            .collect();
        if let Some(owner) = &v.function {
            if let Some(f) = fn_in_file(owner) {
                users.insert(f);
            }
        }
        let mut blocked = None;
        for &f in &users {
            if let Err(r) = arg_of(f) {
                blocked = Some(r);
                break;
            }
            let function = ctx.function(f);
            if let Some(c) = function.calls.iter().find(|c| {
                STEALS_OTHER.contains(&c.callee.as_str())
                    && call_args(&mask, c.span.start, c.span.end)
                        .iter()
                        .any(|&(s, e)| strip_casts(&text[s..e]) == v.name)
            }) {
                if !keeps_reference(text, &mask, function, &v.name) {
                    blocked = Some(format!(
                        "`{}` (line {}) gives it to `{}`, which steals the reference",
                        function.name, c.span.line, c.callee
                    ));
                    break;
                }
            }
            if let Some(m) = macros.iter().find(|m| {
                m.params.is_some()
                    && function.references.iter().any(|r| r.name == m.name)
                    && macro_takes(&mask, text, function, &m.name, &v.name)
            }) {
                blocked = Some(format!(
                    "`{}` passes it to the macro `{}`, which is not rewritten",
                    function.name, m.name
                ));
                break;
            }
        }
        // The state owns its fields: a value that may be borrowed gets a reference of its own.
        let mut owned = Vec::new();
        for w in &g.writes {
            let site = ctx.project.write_site(w);
            let Some(value) = &site.value else { continue };
            if blocked.is_some()
                || site.kind != crate::facts::WriteKind::Assign
                || site.field.is_some()
                || new_reference(&value.text)
            {
                continue;
            }
            let function = ctx.function(w.function);
            if keeps_reference(text, &mask, function, &v.name) {
                continue;
            }
            // A name the function does not declare (a macro such as `PyDateTime_TimeZone_UTC`,
            // `Py_None`, a global) is borrowed; a local or an expression may hold a reference
            // the code hands over, or not: that is for a person to say.
            let stored = normalize(&value.text);
            let borrowed_name = stored
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
                && (stored.starts_with("Py")
                    || function.references.iter().any(|r| r.name == stored));
            if !borrowed_name {
                blocked = Some(format!(
                    "`{}` (line {}) stores `{}`: whether that reference is handed over or borrowed is not clear, and `m_clear` releases every field",
                    function.name, site.span.line, value.text
                ));
                continue;
            }
            match after_assignment(text, &mask, function, site) {
                Some(at) => owned.push((w.function, at)),
                None => {
                    blocked = Some(format!(
                        "`{}` (line {}) stores `{}`, which may be a borrowed reference, in a statement the fix cannot follow with a `Py_XINCREF`",
                        function.name,
                        site.span.line,
                        value.text
                    ));
                }
            }
        }
        if let Some(r) = blocked {
            why(r);
            continue;
        }
        increfs.insert(gi, owned);
        if let Some(g) = guard {
            guards.insert(gi, g);
        }
        uses_of.insert(gi, users);
        moved.push(g);
    }
    if moved.is_empty() {
        return Ok(Stage1 {
            edits: Vec::new(),
            refused,
        });
    }

    // The module definition: state size and the GC functions.
    if def
        .m_size()
        .is_some_and(|e| !matches!(e.kind, ExprKind::Number(Some(n)) if n <= 0))
    {
        return Err(format!(
            "line {}: `{}` already has module state (`m_size = {}`): move the globals into it by hand",
            def_var.span.line,
            def_var.name,
            def.m_size().map(|e| e.text.as_str()).unwrap_or("")
        ));
    }
    for field in ["m_traverse", "m_clear", "m_free"] {
        if let Some(f) = def.function_field(field) {
            return Err(format!(
                "line {}: `{}` already has `{field} = {f}`: merge the state's by hand",
                def_var.span.line, def_var.name
            ));
        }
    }
    let names = StateNames::new(ctx);
    let mut edits = def_edits(ctx, def.var, text, &names)?;
    let mut needed = BTreeSet::new();
    for users in uses_of.values() {
        for &f in users {
            reach.chain(f, &mut needed);
        }
    }
    edits.extend(reach.helper_edits(&needed)?);

    // Each global: its declaration goes, each use reads the state.
    for (gi, g) in candidates.iter().enumerate() {
        let Some(users) = uses_of.get(&gi) else {
            continue;
        };
        let v = ctx.project.var(g.var);
        let field = ctx.field_name(g.var);
        let (mut ds, mut de) = declaration_edit(ctx, text, &mask, g.var).expect("checked above");
        if let Some((_, directive)) = guards.get(&gi) {
            // An `#if` block that held only this declaration goes with it.
            if let Some((s, e)) = whole_block(text, *directive, ds, de) {
                (ds, de) = (s, e);
            }
        }
        edits.push(Edit {
            file,
            start: ds,
            end: de,
            text: String::new(),
        });
        for &f in users {
            let function = ctx.function(f);
            let arg = reach.arg(f).expect("classified above");
            let Some(open) = body_open(&mask, function) else {
                return Err(format!("`{}` has no body", function.name));
            };
            let lo = if v.function.as_deref() == Some(function.name.as_str()) {
                v.decl_span.end
            } else {
                open
            };
            for at in word_uses(&mask, lo, function.def_span.end, &v.name) {
                edits.push(Edit {
                    file,
                    start: at,
                    end: at + v.name.len(),
                    text: format!("{}({arg})->{field}", names.getter),
                });
            }
            for &(_, at) in increfs[&gi].iter().filter(|(w, _)| *w == f) {
                let line = line_start(text, at);
                let indent: String = text[line..]
                    .chars()
                    .take_while(|c| *c == ' ' || *c == '\t')
                    .collect();
                edits.push(Edit {
                    file,
                    start: at,
                    end: at,
                    text: format!(
                        "\n{indent}Py_XINCREF({}({arg})->{field});  /* the state owns a reference */",
                        names.getter
                    ),
                });
            }
            // A release that leaves the pointer behind would be released again by `m_clear`.
            for c in function
                .calls
                .iter()
                .filter(|c| matches!(c.callee.as_str(), "Py_DECREF" | "Py_XDECREF"))
            {
                let first = call_args(&mask, c.span.start, c.span.end)
                    .first()
                    .map(|&(s, e)| strip_casts(&text[s..e]));
                if first.as_deref() == Some(v.name.as_str())
                    && text[c.span.start..].starts_with(c.callee.as_str())
                {
                    edits.push(Edit {
                        file,
                        start: c.span.start,
                        end: c.span.start + c.callee.len(),
                        text: "Py_CLEAR".into(),
                    });
                }
            }
            // A reference the exec code hands over is the module's: the state takes its own.
            if !exec_fns.contains(&f) || keeps_reference(text, &mask, function, &v.name) {
                continue;
            }
            for c in function
                .calls
                .iter()
                .filter(|c| STEALS_THIRD.contains(&c.callee.as_str()))
            {
                let args = call_args(&mask, c.span.start, c.span.end);
                let third = args.get(2).map(|&(s, e)| strip_casts(&text[s..e]));
                if third.as_deref() != Some(v.name.as_str()) {
                    continue;
                }
                let Some(at) = statement_start(&mask, open, c.span.start) else {
                    return Err(format!(
                        "line {}: the statement around `{}` could not be delimited",
                        c.span.line, c.callee
                    ));
                };
                let indent = &text[line_start(text, at)..at];
                let after = if indent.trim().is_empty() {
                    format!("\n{indent}")
                } else {
                    " ".to_string()
                };
                edits.push(Edit {
                    file,
                    start: at,
                    end: at,
                    text: format!("Py_XINCREF({}({arg})->{field});{after}", names.getter),
                });
            }
        }
    }

    // The state struct, its getter and the GC functions, before the first thing that uses
    // them, outside any `#if`.
    let mut at = line_start(text, def_var.decl_span.start);
    for users in uses_of.values() {
        for &f in users {
            at = at.min(line_start(text, ctx.function(f).def_span.start));
        }
    }
    if preprocessor_depth(text, at) != 0 {
        return Err(format!(
            "line {}: the first function that uses the state is inside `#if`: there is no place for the state struct",
            line_of(text, at)
        ));
    }
    let mut fields = state::fields(ctx, &moved);
    for (f, g) in fields.iter_mut().zip(&moved) {
        let v = ctx.project.var(g.var);
        f.comment = match &v.function {
            Some(owner) => format!("was `static {}` in `{owner}`", v.name),
            None => format!("was the global `{}`", v.name),
        };
    }
    let field_guards: Vec<Option<&str>> = moved
        .iter()
        .map(|g| {
            let gi = candidates.iter().position(|c| c.var == g.var)?;
            guards.get(&gi).map(|(line, _)| line.as_str())
        })
        .collect();
    edits.push(Edit {
        file,
        start: at,
        end: at,
        text: format!(
            "/* Module state: the objects this module kept in globals, one set per module object. */\n{}\n{}\n{}\n",
            state_struct(&names, &fields, &field_guards),
            state::getter(&names),
            gc_functions(&names, &fields, &field_guards)
        ),
    });
    Ok(Stage1 { edits, refused })
}

fn guarded(guard: Option<&str>, body: String) -> String {
    match guard {
        Some(g) if !body.is_empty() => format!("{g}\n{body}#endif\n"),
        _ => body,
    }
}

/// `typedef struct {...} <mod>_state;`, a field under `#if` where its global was.
fn state_struct(names: &StateNames, fields: &[state::Field], guards: &[Option<&str>]) -> String {
    let mut out = String::from("typedef struct {\n");
    for (f, g) in fields.iter().zip(guards) {
        out.push_str(&guarded(
            *g,
            format!("    {};  /* {} */\n", f.decl, f.comment),
        ));
    }
    if guards.iter().all(Option::is_some) {
        // C needs a member whatever the conditions say.
        out.push_str("    char unused;\n");
    }
    out.push_str(&format!("}} {};\n", names.ty));
    out
}

/// `m_traverse`, `m_clear` and `m_free` over every field (arrays in a loop).
fn gc_functions(names: &StateNames, fields: &[state::Field], guards: &[Option<&str>]) -> String {
    let each = |m: &str| -> String {
        let mut out = String::new();
        for (f, g) in fields.iter().zip(guards) {
            let body = match f.visit {
                Visit::Object => format!("    {m}(state->{});\n", f.name),
                Visit::ObjectArray => format!(
                    "    for (size_t i = 0; i < Py_ARRAY_LENGTH(state->{n}); i++) {{\n        {m}(state->{n}[i]);\n    }}\n",
                    n = f.name
                ),
                Visit::None | Visit::ByHand => String::new(),
            };
            out.push_str(&guarded(*g, body));
        }
        out
    };
    let head = format!(
        "    {} *state = {}(module);\n    (void)state;\n",
        names.ty, names.getter
    );
    format!(
        "static int\n{traverse}(PyObject *module, visitproc visit, void *arg)\n{{\n{head}{visit}    return 0;\n}}\n\n\
static int\n{clear}(PyObject *module)\n{{\n{head}{clear_body}    return 0;\n}}\n\n\
static void\n{free}(void *module)\n{{\n    (void){clear}((PyObject *)module);\n}}\n",
        traverse = names.traverse,
        clear = names.clear,
        free = names.free,
        visit = each("Py_VISIT"),
        clear_body = each("Py_CLEAR"),
    )
}

/// The `#if` line that encloses `at` and its offset, when exactly one does and `at` is not in
/// its `#else`/`#elif` part; `Ok(None)` outside any; `Err` otherwise.
fn enclosing_guard(text: &str, at: usize) -> Result<Option<(String, usize)>, ()> {
    let mut stack: Vec<(String, usize, bool)> = Vec::new();
    let mut offset = 0;
    for line in text.get(..at).unwrap_or("").split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let Some(d) = line.trim_start().strip_prefix('#') else {
            continue;
        };
        let d = d.trim_start();
        if d.starts_with("if") {
            if line.trim_end().ends_with('\\') {
                return Err(());
            }
            stack.push((line.trim_end().to_string(), start, false));
        } else if d.starts_with("el") {
            if let Some(top) = stack.last_mut() {
                top.2 = true;
            }
        } else if d.starts_with("endif") {
            stack.pop();
        }
    }
    match stack.as_slice() {
        [] => Ok(None),
        [(line, start, false)] => Ok(Some((line.clone(), *start))),
        _ => Err(()),
    }
}

/// `directive .. #endif` (through its line break) when nothing but the declaration
/// `decl_start..decl_end` and blank lines stand between them.
fn whole_block(
    text: &str,
    directive: usize,
    decl_start: usize,
    decl_end: usize,
) -> Option<(usize, usize)> {
    let after_directive = text[directive..].find('\n').map(|i| directive + i + 1)?;
    if !text.get(after_directive..decl_start)?.trim().is_empty() {
        return None;
    }
    let rest = text.get(decl_end..)?;
    let endif = rest.find('#')?;
    if !rest[..endif].trim().is_empty() || !rest[endif + 1..].trim_start().starts_with("endif") {
        return None;
    }
    let end = rest[endif..]
        .find('\n')
        .map_or(text.len(), |i| decl_end + endif + i + 1);
    Some((directive, end))
}

/// How each function reaches the module: the exec function and module-level functions through
/// a parameter they have; a `static` helper that only such functions call (directly or through
/// other helpers) through a `PyObject *module` parameter stage 1 adds, each call passing its
/// caller's module.
pub(super) struct Reach<'a, 'c> {
    ctx: &'c PlanCtx<'a>,
    file: usize,
    text: &'c str,
    mask: &'c [u8],
    exec_fns: &'c BTreeSet<FnRef>,
    roles: super::access::Roles,
    callers: BTreeMap<String, BTreeSet<String>>,
    memo: BTreeMap<FnRef, Result<String, String>>,
    /// Helpers that get a module parameter.
    threaded: BTreeSet<FnRef>,
    visiting: BTreeSet<FnRef>,
    /// Methods and slots of types that become heap types (stage 2), by name: how each reaches
    /// the module from its first parameter, written with `{self}` for that parameter.
    pub(super) through_type: BTreeMap<String, String>,
}

const HELPER_PARAM: &str = "module";

impl<'a, 'c> Reach<'a, 'c> {
    /// The reach of the functions of `file`, the file of the module definition.
    pub(super) fn new(
        ctx: &'c PlanCtx<'a>,
        file: usize,
        text: &'c str,
        mask: &'c [u8],
        exec_fns: &'c BTreeSet<FnRef>,
        through_type: BTreeMap<String, String>,
    ) -> Self {
        Reach {
            ctx,
            file,
            text,
            mask,
            exec_fns,
            roles: roles(ctx),
            callers: callers_of(ctx),
            memo: BTreeMap::new(),
            threaded: BTreeSet::new(),
            visiting: BTreeSet::new(),
            through_type,
        }
    }

    pub(super) fn arg(&self, f: FnRef) -> Option<String> {
        self.memo.get(&f)?.as_ref().ok().cloned()
    }

    pub(super) fn arg_of(&mut self, f: FnRef) -> Result<String, String> {
        if let Some(r) = self.memo.get(&f) {
            return r.clone();
        }
        if !self.visiting.insert(f) {
            return Err(format!(
                "`{}` is part of a cycle of calls",
                self.ctx.function(f).name
            ));
        }
        let r = self.classify(f);
        self.visiting.remove(&f);
        self.memo.insert(f, r.clone());
        r
    }

    fn fn_ref(&self, name: &str) -> Option<FnRef> {
        self.ctx.project.files[self.file]
            .functions
            .iter()
            .position(|f| f.name == name)
            .map(|index| FnRef {
                file: self.file,
                index,
            })
    }

    fn classify(&mut self, f: FnRef) -> Result<String, String> {
        let ctx = self.ctx;
        let function = ctx.function(f);
        let first = function
            .params
            .first()
            .and_then(|p| p.name.clone().filter(|_| p.pointers == 1));
        let head = self
            .text
            .get(function.span.end..function.def_span.end)
            .and_then(|t| t.split('{').next())
            .unwrap_or("");
        let first = first.filter(|p| !head.contains(&format!("Py_UNUSED({p})")));
        let name = &function.name;
        if f.file != self.file {
            return Err(format!(
                "`{name}` is in `{}`, another file than the module definition",
                ctx.path(f.file)
            ));
        }
        if function.uncertain || function.macro_head.is_some() {
            return Err(format!("`{name}` overlaps a parse error or a macro head"));
        }
        if self.exec_fns.contains(&f) {
            return first
                .ok_or_else(|| format!("the exec function `{name}` has no module parameter"));
        }
        if let Some(how) = self.through_type.get(name) {
            return first
                .map(|p| how.replace("{self}", &p))
                .ok_or_else(|| format!("`{name}` has no named first parameter"));
        }
        if self.roles.methods.contains(name) {
            return Err(format!(
                "`{name}` is a method of a type: it reaches the module through its type once the type is a heap type (stage 2), by hand for now"
            ));
        }
        if self.roles.slots.contains(name) {
            return Err(format!(
                "`{name}` is a slot of a type: it reaches the module through the instance's type once the type is a heap type (stage 2), by hand for now"
            ));
        }
        let called_from: Vec<String> = self
            .callers
            .get(name)
            .map(|c| c.iter().cloned().collect())
            .unwrap_or_default();
        if self.roles.module_functions.contains(name) {
            if !called_from.is_empty() {
                let list: Vec<String> = called_from.iter().map(|c| format!("`{c}`")).collect();
                return Err(format!(
                    "the module function `{name}` is also called from C ({}), maybe without the module",
                    list.join(", ")
                ));
            }
            return first.ok_or_else(|| {
                format!("the module function `{name}` has no named first parameter")
            });
        }
        if called_from.is_empty() {
            return Err(format!(
                "`{name}` has no caller in the module and no module argument: it is likely a callback of a C library; pass the state through its user data if it has one, or keep the global (process-wide, under a lock)"
            ));
        }
        // A helper that already takes the module first (stage 1 gave it one, or its author
        // did), from every caller: it has it, and nothing changes.
        if let Some(p) = self.takes_module_from_every_caller(function, &called_from) {
            return Ok(p);
        }
        // A helper: every caller must have the module, and every mention of the helper must be
        // a call the edit can reach.
        let by_hand = format!(
            "`{name}` is a helper with no module argument: add a `{} *state` parameter and pass it from its callers",
            ctx.state_type()
        );
        // Not `static`: only when no other file of the module names it (a header prototype,
        // a call from another file).
        let elsewhere = ctx.module.files.iter().find(|&&fi| {
            fi != self.file
                && ctx
                    .texts
                    .get(&fi)
                    .is_none_or(|t| contains_word(&String::from_utf8_lossy(&code_mask(t)), name))
        });
        if let Some(&fi) = elsewhere.filter(|_| !function.is_static) {
            return Err(format!(
                "{by_hand} (it is not `static`, and `{}` names it)",
                ctx.path(fi)
            ));
        }
        let def_span = function.def_span;
        if !word_uses(self.mask, def_span.start, def_span.end, HELPER_PARAM).is_empty() {
            return Err(format!(
                "{by_hand} (it already uses the name `{HELPER_PARAM}`)"
            ));
        }
        let mentions = word_uses(self.mask, 0, self.mask.len(), name).len();
        let mut sites = 0;
        for caller in &called_from {
            let Some(c) = self.fn_ref(caller) else {
                return Err(format!(
                    "{by_hand} (its caller `{caller}` is in another file)"
                ));
            };
            sites += ctx
                .function(c)
                .calls
                .iter()
                .filter(|call| &call.callee == name)
                .count();
            if let Err(why) = self.arg_of(c) {
                return Err(format!("{by_hand} (its caller: {why})"));
            }
        }
        if mentions != sites + 1 {
            return Err(format!(
                "{by_hand} (it is named {} time(s) besides its {sites} call(s): a prototype or a function pointer)",
                mentions - 1
            ));
        }
        self.threaded.insert(f);
        Ok(HELPER_PARAM.to_string())
    }

    /// The name of `function`'s first parameter when it is a `PyObject *` and each call
    /// passes the caller's own module there: then it is the module.
    fn takes_module_from_every_caller(
        &mut self,
        function: &Function,
        callers: &[String],
    ) -> Option<String> {
        let param = function
            .params
            .first()
            .filter(|p| p.pointers == 1 && p.type_name.trim() == "PyObject")
            .and_then(|p| p.name.clone())?;
        if callers.is_empty() {
            return None;
        }
        for caller in callers {
            let c = self.fn_ref(caller)?;
            let arg = self.arg_of(c).ok()?;
            for call in self
                .ctx
                .function(c)
                .calls
                .iter()
                .filter(|call| call.callee == function.name)
            {
                let first = call_args(self.mask, call.span.start, call.span.end)
                    .first()
                    .map(|&(s, e)| normalize(&self.text[s..e]));
                if first.as_deref() != Some(normalize(&arg).as_str()) {
                    return None;
                }
            }
        }
        Some(param)
    }

    /// Whether `name` is a method or a slot of one of the module's types.
    pub(super) fn is_type_function(&self, name: &str) -> bool {
        self.roles.methods.contains(name) || self.roles.slots.contains(name)
    }

    /// The edits that give each helper `needed` its module parameter, and each call to it the
    /// caller's module.
    pub(super) fn helper_edits(&self, needed: &BTreeSet<FnRef>) -> Result<Vec<Edit>, String> {
        let mut edits = Vec::new();
        for &h in needed {
            let function = self.ctx.function(h);
            let open = self.mask[function.span.end..]
                .iter()
                .position(|&b| b == b'(')
                .map(|i| function.span.end + i)
                .ok_or_else(|| format!("`{}` has no parameter list", function.name))?;
            let close = call_args(self.mask, open, function.def_span.end)
                .last()
                .map(|&(_, e)| e)
                .ok_or_else(|| format!("`{}` has no parameter list", function.name))?;
            let inside = normalize(&self.text[open + 1..close]);
            let (start, end, new) = if inside.is_empty() || inside == "void" {
                (open + 1, close, format!("PyObject *{HELPER_PARAM}"))
            } else {
                (open + 1, open + 1, format!("PyObject *{HELPER_PARAM}, "))
            };
            edits.push(Edit {
                file: self.file,
                start,
                end,
                text: new,
            });
            for caller in self.callers.get(&function.name).into_iter().flatten() {
                let c = self.fn_ref(caller).expect("checked when classified");
                let arg = self.arg(c).expect("checked when classified");
                let calls = self.ctx.function(c).calls.iter();
                edits.extend(
                    first_argument_edits(self.text, self.file, &function.name, calls, &arg)
                        .map_err(|line| {
                            format!(
                                "line {line}: the call to `{}` is not written out (a macro?)",
                                function.name
                            )
                        })?,
                );
            }
        }
        Ok(edits)
    }

    /// `f` and the helpers between it and the functions that have the module.
    pub(super) fn chain(&self, f: FnRef, out: &mut BTreeSet<FnRef>) {
        if !self.threaded.contains(&f) || !out.insert(f) {
            return;
        }
        let name = &self.ctx.function(f).name;
        for caller in self.callers.get(name).into_iter().flatten() {
            if let Some(c) = self.fn_ref(caller) {
                self.chain(c, out);
            }
        }
    }
}

/// C API calls that return a borrowed reference.
const BORROWED: &[&str] = &[
    "PyDict_GetItem",
    "PyDict_GetItemString",
    "PyDict_GetItemWithError",
    "PyList_GetItem",
    "PyList_GET_ITEM",
    "PyTuple_GetItem",
    "PyTuple_GET_ITEM",
    "PyModule_GetDict",
    "PyEval_GetBuiltins",
    "PyEval_GetGlobals",
    "PyEval_GetLocals",
    "PySys_GetObject",
    "PyImport_GetModuleDict",
    "PyCell_GET",
    "PyWeakref_GetObject",
    "PyWeakref_GET_OBJECT",
    "PyThreadState_GetDict",
    "PyErr_Occurred",
];

/// `NULL`, or a call that is not known to return a borrowed reference (casts aside): the
/// value is the caller's own.
fn new_reference(value: &str) -> bool {
    let mut t = normalize(value);
    // `(PyTypeObject *)call(...)`: drop leading casts.
    while t.starts_with('(') {
        match t.find(')') {
            Some(close) if t[1..close].ends_with('*') => t = t[close + 1..].to_string(),
            _ => break,
        }
    }
    let t = t.trim_start_matches('(').trim_end_matches(')');
    if matches!(t, "NULL" | "0") {
        return true;
    }
    let callee: String = t
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    !callee.is_empty()
        && t[callee.len()..].starts_with('(')
        && normalize(value).ends_with(')')
        && !BORROWED.contains(&callee.as_str())
}

/// Just after the `;` of the statement `name = value;` when it is a statement of its own in
/// a block (not the body of a braceless `if`), where a `Py_XINCREF` can follow it.
fn after_assignment(
    text: &str,
    mask: &[u8],
    function: &Function,
    site: &crate::facts::WriteSite,
) -> Option<usize> {
    let open = body_open(mask, function)?;
    let value = site.value.as_ref()?;
    let start = statement_start(mask, open, site.span.start)?;
    // The statement starts at the assignment's target.
    let first_word = word_uses(mask, start, value.span.start, &site.target);
    if first_word.first() != Some(&start) {
        return None;
    }
    let before = mask[..start]
        .iter()
        .rev()
        .find(|b| !b.is_ascii_whitespace())
        .copied();
    if !matches!(before, Some(b';' | b'{' | b'}') | None) {
        return None;
    }
    let rest = mask.get(value.span.end..function.def_span.end)?;
    let semi = rest
        .iter()
        .position(|&b| !b.is_ascii_whitespace() && b != b')')?;
    (rest[semi] == b';')
        .then_some(value.span.end + semi + 1)
        .filter(|_| text.is_char_boundary(value.span.end))
}

/// The globals stage 1 considers: what the plan migrates, and the `PyTypeObject *` globals the
/// module writes (a type imported from another module, kept in a pointer), in file order.
fn candidates<'a>(ctx: &PlanCtx<'a>) -> Vec<&'a Global> {
    let mut out = ctx.migrated();
    for g in &ctx.module.globals {
        let v = ctx.project.var(g.var);
        if crate::model::pytypes::is_type_object(&v.type_name)
            && v.pointers.len() == 1
            && !v.is_immutable()
            && g.class != crate::model::WriteClass::NeverWritten
            && !out.iter().any(|o| o.var == g.var)
        {
            out.push(g);
        }
    }
    out.sort_by_key(|g| (g.var.file, ctx.project.var(g.var).span.start));
    out
}

/// `m_size = sizeof(state)`, `m_traverse`, `m_clear`, `m_free` in the module definition.
pub(super) fn def_edits(
    ctx: &PlanCtx,
    var: crate::model::VarRef,
    text: &str,
    names: &StateNames,
) -> Result<Vec<Edit>, String> {
    let v = ctx.project.var(var);
    let line = v.span.line;
    let Some(Init::List(list)) = &v.init else {
        return Err(format!(
            "line {line}: `{}` has no initializer to edit",
            v.name
        ));
    };
    if text
        .get(list.span.start..list.span.end)
        .is_some_and(|t| t.lines().any(|l| l.trim_start().starts_with('#')))
    {
        return Err(format!(
            "line {line}: `{}` has preprocessor lines in its initializer",
            v.name
        ));
    }
    let first_designated = list.entries.iter().position(|e| e.designator.is_some());
    if let Some(first) = first_designated {
        if list.entries[first..].iter().any(|e| e.designator.is_none()) {
            return Err(format!(
                "line {line}: `{}` has a positional field after a designated one",
                v.name
            ));
        }
    }
    let designated = first_designated.is_some();
    let fields = crate::model::module_def_fields(list);
    const ORDER: &[&str] = crate::model::MODULE_DEF_FIELDS;
    let wanted: BTreeMap<&str, String> = BTreeMap::from([
        ("m_size", format!("sizeof({})", names.ty)),
        ("m_traverse", names.traverse.clone()),
        ("m_clear", names.clear.clone()),
        ("m_free", names.free.clone()),
    ]);
    let mut edits = Vec::new();
    let mut missing = Vec::new();
    for (name, value) in &wanted {
        match fields.get(*name) {
            Some(e) => edits.push(Edit {
                file: var.file,
                start: e.span.start,
                end: e.span.end,
                text: value.clone(),
            }),
            None => missing.push(*name),
        }
    }
    if missing.is_empty() {
        return Ok(edits);
    }
    let Some(last) = list.entries.last() else {
        return Err(format!("line {line}: the module definition is empty"));
    };
    let end = match &last.value {
        Init::Expr(e) => e.span.end,
        Init::List(l) => l.span.end,
    };
    let mut added = String::new();
    if designated {
        for name in ORDER.iter().filter(|n| missing.contains(n)) {
            added.push_str(&format!(",\n    .{name} = {}", wanted[name]));
        }
    } else {
        let present = list.entries.len();
        if present > ORDER.len() {
            return Err(format!("line {line}: `{}` has too many entries", v.name));
        }
        for name in &ORDER[present..] {
            let value = wanted.get(name).cloned().unwrap_or_else(|| "NULL".into());
            let value = if *name == "m_size" && !wanted.contains_key(name) {
                "0".into()
            } else {
                value
            };
            added.push_str(&format!(",\n    {value}"));
        }
    }
    edits.push(Edit {
        file: var.file,
        start: end,
        end,
        text: added,
    });
    Ok(edits)
}

/// The range to delete for a declaration `[static] T *name [= NULL|0];` alone in its
/// statement: the whole line when nothing else is on it (a trailing comment goes with it).
fn declaration_edit(
    ctx: &PlanCtx,
    text: &str,
    mask: &[u8],
    var: crate::model::VarRef,
) -> Option<(usize, usize)> {
    let v = ctx.project.var(var);
    let span = v.decl_span;
    let decl = text.get(span.start..span.end)?;
    let ty = normalize(&v.type_display());
    let n = normalize(decl);
    let bare = n.strip_prefix("static").unwrap_or(&n);
    let name = format!("{}{}", v.name, normalize(&ctx.array_suffix(var)));
    let ok = if v.array_dims == 0 {
        vec![
            format!("{ty}{name};"),
            format!("{ty}{name}=NULL;"),
            format!("{ty}{name}=0;"),
        ]
    } else {
        vec![
            format!("{ty}{name};"),
            format!("{ty}{name}={{NULL}};"),
            format!("{ty}{name}={{0}};"),
        ]
    };
    if !ok.iter().any(|o| o == bare) {
        return None;
    }
    let line = line_start(text, span.start);
    let own_line = text[line..span.start].trim().is_empty();
    let line_end = text[span.end..]
        .find('\n')
        .map_or(text.len(), |i| span.end + i + 1);
    // The rest of the line is nothing, or a comment: it goes with the declaration.
    let rest_blank = mask
        .get(span.end..line_end)
        .is_some_and(|r| r.iter().all(|b| b.is_ascii_whitespace()));
    Some(if own_line && rest_blank {
        (line, line_end)
    } else {
        (span.start, span.end)
    })
}

pub(super) fn line_start(text: &str, at: usize) -> usize {
    text[..at].rfind('\n').map_or(0, |i| i + 1)
}

fn line_of(text: &str, at: usize) -> usize {
    text[..at].matches('\n').count() + 1
}

/// The text with comments, string and character literals and preprocessor lines blanked
/// (same length, newlines kept): what is left is code.
pub(super) fn code_mask(text: &str) -> Vec<u8> {
    let b = text.as_bytes();
    let mut out = b.to_vec();
    let mut i = 0;
    let mut line_begins = true;
    while i < b.len() {
        let c = b[i];
        if line_begins && c == b'#' {
            // A directive, with its continuation lines.
            while i < b.len() && b[i] != b'\n' {
                if b[i] == b'\\' && b.get(i + 1) == Some(&b'\n') {
                    out[i] = b' ';
                    i += 2;
                    continue;
                }
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    // A block comment that starts on the directive line.
                    while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                        if b[i] != b'\n' {
                            out[i] = b' ';
                        }
                        i += 1;
                    }
                    let close = (i + 2).min(b.len());
                    out[i..close].fill(b' ');
                    i += 2;
                    continue;
                }
                out[i] = b' ';
                i += 1;
            }
            continue;
        }
        if c == b'\n' {
            line_begins = true;
            i += 1;
            continue;
        }
        if !c.is_ascii_whitespace() {
            line_begins = false;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let end = text[i + 2..].find("*/").map_or(b.len(), |e| i + 2 + e + 2);
            for k in i..end {
                if b[k] != b'\n' {
                    out[k] = b' ';
                }
            }
            i = end;
        } else if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                out[i] = b' ';
                i += 1;
            }
        } else if c == b'"' || c == b'\'' {
            i += 1;
            while i < b.len() && b[i] != c && b[i] != b'\n' {
                if b[i] == b'\\' {
                    out[i] = b' ';
                    i += 1;
                }
                if i < b.len() && b[i] != b'\n' {
                    out[i] = b' ';
                }
                i += 1;
            }
            i += 1;
        } else {
            i += 1;
        }
    }
    out
}

/// `#if` nesting at `at`: the `#if`/`#ifdef`/`#ifndef` lines before it against `#endif`.
pub(super) fn preprocessor_depth(text: &str, at: usize) -> i32 {
    let mut depth = 0;
    for line in text.get(..at).unwrap_or("").lines() {
        let Some(d) = line.trim_start().strip_prefix('#') else {
            continue;
        };
        let d = d.trim_start();
        if d.starts_with("if") {
            depth += 1;
        } else if d.starts_with("endif") {
            depth -= 1;
        }
    }
    depth
}

/// The offset just after the `{` that opens a function's body.
pub(super) fn body_open(mask: &[u8], function: &Function) -> Option<usize> {
    let from = function.span.end;
    let i = mask
        .get(from..function.def_span.end)?
        .iter()
        .position(|&b| b == b'{')?;
    Some(from + i + 1)
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Every use of `name` as a variable in code (not a member after `.`/`->`).
pub(super) fn word_uses(mask: &[u8], lo: usize, hi: usize, name: &str) -> Vec<usize> {
    let n = name.as_bytes();
    let mut out = Vec::new();
    let hi = hi.min(mask.len());
    let mut i = lo;
    while i + n.len() <= hi {
        if &mask[i..i + n.len()] == n
            && (i == 0 || !is_word(mask[i - 1]))
            && mask.get(i + n.len()).is_none_or(|&b| !is_word(b))
        {
            let before: Vec<u8> = mask[..i]
                .iter()
                .rev()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .take(2)
                .collect();
            let member = before.first() == Some(&b'.')
                || (before.first() == Some(&b'>') && before.get(1) == Some(&b'-'));
            if !member {
                out.push(i);
            }
            i += n.len();
        } else {
            i += 1;
        }
    }
    out
}

pub(super) fn contains_word(text: &str, word: &str) -> bool {
    !word_uses(text.as_bytes(), 0, text.len(), word).is_empty()
}

/// The ranges of a call's arguments, split at top-level commas.
pub(super) fn call_args(mask: &[u8], start: usize, end: usize) -> Vec<(usize, usize)> {
    let Some(open) = mask
        .get(start..end)
        .and_then(|s| s.iter().position(|&b| b == b'('))
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut depth = 0;
    let mut from = start + open + 1;
    let end = end.min(mask.len());
    for (i, &b) in mask.iter().enumerate().take(end).skip(start + open) {
        match b {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => {
                depth -= 1;
                if depth == 0 {
                    out.push((from, i));
                    return out;
                }
            }
            b',' if depth == 1 => {
                out.push((from, i));
                from = i + 1;
            }
            _ => {}
        }
    }
    out
}

/// `(PyObject *)x`, `((x))` as `x`.
pub(super) fn strip_casts(arg: &str) -> String {
    let mut t = normalize(arg);
    loop {
        if let Some(rest) = t.strip_prefix("(PyObject*)") {
            t = rest.to_string();
        } else if t.starts_with('(') && t.ends_with(')') {
            t = t[1..t.len() - 1].to_string();
        } else {
            return t;
        }
    }
}

/// The function takes a reference of its own to `name` (`Py_INCREF(name)`, `Py_NewRef(name)`).
fn keeps_reference(text: &str, mask: &[u8], function: &Function, name: &str) -> bool {
    function.calls.iter().any(|c| {
        KEEPS_REFERENCE.contains(&c.callee.as_str())
            && call_args(mask, c.span.start, c.span.end)
                .first()
                .is_some_and(|&(s, e)| strip_casts(&text[s..e]) == name)
    }) || KEEPS_REFERENCE.iter().any(|k| {
        // Macros the facts may not list as calls.
        let body = &text[function.def_span.start..function.def_span.end];
        normalize(body).contains(&format!("{k}({name})"))
    })
}

/// `MACRO(..., name, ...)` somewhere in the function.
fn macro_takes(mask: &[u8], text: &str, function: &Function, m: &str, name: &str) -> bool {
    word_uses(mask, function.def_span.start, function.def_span.end, m)
        .into_iter()
        .any(|at| {
            call_args(mask, at, function.def_span.end)
                .iter()
                .any(|&(s, e)| contains_word(&text[s..e], name))
        })
}

/// The start of the statement that holds `at`, after the previous `;`, `{` or `}`; `None`
/// when that statement is an `else` branch or a label, where nothing can go before it.
pub(super) fn statement_start(mask: &[u8], lo: usize, at: usize) -> Option<usize> {
    let before = mask.get(lo..at)?;
    let s = before
        .iter()
        .rposition(|&b| matches!(b, b';' | b'{' | b'}'))
        .map_or(lo, |i| lo + i + 1);
    let s = s + mask[s..at]
        .iter()
        .take_while(|b| b.is_ascii_whitespace())
        .count();
    let stmt = std::str::from_utf8(&mask[s..at]).ok()?;
    let first = stmt
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .next()?;
    if matches!(first, "else" | "case" | "default" | "do") || stmt.contains(':') {
        return None;
    }
    Some(s)
}

/// The edits that pass `arg` first to every call of `callee` among `calls`, in `text` (the
/// file `file`): after the `(`, with a `, ` unless the call had no argument. `Err(line)` for a
/// call that is not written out by name (a macro makes it).
pub(super) fn first_argument_edits<'c>(
    text: &str,
    file: usize,
    callee: &str,
    calls: impl Iterator<Item = &'c crate::facts::Call>,
    arg: &str,
) -> Result<Vec<Edit>, usize> {
    let mut edits = Vec::new();
    for call in calls.filter(|call| call.callee == callee) {
        let Some(paren) = text
            .get(call.span.start..call.span.end)
            .filter(|t| t.starts_with(callee))
            .and_then(|t| t.find('('))
        else {
            return Err(call.span.line);
        };
        let after = call.span.start + paren + 1;
        let empty = text[after..call.span.end].trim_start().starts_with(')');
        edits.push(Edit {
            file,
            start: after,
            end: after,
            text: if empty {
                arg.to_string()
            } else {
                format!("{arg}, ")
            },
        });
    }
    Ok(edits)
}
