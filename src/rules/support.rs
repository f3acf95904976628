//! Wording shared by rules: where a global is written.

use crate::model::{Global, Project, WriteClass};
use rustc_hash::FxHashMap;

/// "written in `f` (line 80) and in `g` (line 120)".
pub fn describe_writes(project: &Project, global: &Global) -> String {
    let mut places: Vec<(String, usize)> = Vec::new();
    for w in &global.writes {
        let site = project.write_site(w);
        let name = project.function(w.function).name.clone();
        if !places.iter().any(|(n, _)| *n == name) {
            places.push((name, site.span.line));
        }
    }
    let shown: Vec<String> = places
        .iter()
        .take(3)
        .map(|(n, l)| format!("`{n}` (line {l})"))
        .collect();
    let mut text = shown.join(", in ");
    if places.len() > 3 {
        text.push_str(&format!(" and {} more functions", places.len() - 3));
    }
    text
}

/// The sentence on how a global is written, by class. What an init-time write means
/// depends on the module: multi-phase init runs once per interpreter (each overwrites the
/// global), single-phase init with `m_size = -1` once per process (the first interpreter's
/// objects are shared by all later ones).
pub fn write_summary(ctx: &super::Ctx, global: &Global) -> String {
    let project = ctx.project;
    let places = describe_writes(project, global);
    match global.class {
        WriteClass::NeverWritten => "never written after its initializer".to_string(),
        WriteClass::InitOnly if ctx.module.initialises_once_per_process() => format!(
            "written only while the module initialises, in {places}; with single-phase init and `m_size = -1` that happens once per process, so every later legacy sub-interpreter shares what the first interpreter stored, which outlives that interpreter (isolated interpreters refuse the module)"
        ),
        WriteClass::InitOnly => format!(
            "written only while the module initialises, in {places}; every interpreter that imports the module overwrites it"
        ),
        WriteClass::AddressEscapes => {
            let mut wheres: Vec<String> = Vec::new();
            if !places.is_empty() {
                wheres.push(places);
            }
            for holder in global.address_in_initializers.iter().take(2) {
                wheres.push(format!("the initializer of `{}`", project.var(*holder).name));
            }
            format!("its address escapes in {}, so it may be written through it", wheres.join(" and in "))
        }
        WriteClass::Runtime => format!("written at run time in {places}"),
    }
}

/// Where a module-level finding points: the slot entry when there is one, else `PyInit`.
pub fn module_site(ctx: &super::Ctx, slot: Option<&str>) -> Option<(super::Site, String)> {
    let module = ctx.module;
    let init = module.init_function?;
    if let (Some(name), Some(def)) = (slot, &module.def) {
        if let (Some(s), Some(var)) = (module.slot(name), def.slots_var) {
            let v = ctx.project.var(var);
            let site = super::Site {
                file: var.file,
                span: s.value.span,
                versions: s.versions,
                uncertain: v.uncertain,
            };
            return Some((site, v.name.clone()));
        }
    }
    let f = ctx.project.function(init);
    Some((
        super::Site {
            file: init.file,
            span: f.span,
            versions: f.versions,
            uncertain: f.uncertain,
        },
        f.name.clone(),
    ))
}

/// "`cache` (global-pyobject, line 12), `Foo_Type` (static-type-object, line 30) and 3 more".
pub fn list_blockers(blockers: &[super::verdict::Blocker]) -> String {
    let shown: Vec<String> = blockers
        .iter()
        .take(3)
        .map(|b| {
            format!(
                "`{}` ({}, line {})",
                b.symbol.as_deref().unwrap_or("?"),
                b.name,
                b.line
            )
        })
        .collect();
    let mut text = shown.join(", ");
    if blockers.len() > 3 {
        text.push_str(&format!(" and {} more", blockers.len() - 3));
    }
    text
}

/// What a global is used for, from the values written to it. Some roles have rules of their
/// own with their own advice; `global-pyobject` takes the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlobalRole {
    /// `X = PyErr_NewException(...)`.
    Exception,
    /// The module object itself: `m = PyModule_Create(...)`, `PyState_FindModule`, or the
    /// exec slot's module argument.
    ModulePointer,
    /// A C-API table: `PyCapsule_Import` results, `void **X_API`.
    CapiTable,
    Other,
}

pub fn global_role(ctx: &super::Ctx, global: &crate::model::Global) -> GlobalRole {
    let project = ctx.project;
    let v = project.var(global.var);
    let mut role = GlobalRole::Other;
    for w in &global.writes {
        let site = project.write_site(w);
        let function = project.function(w.function);
        let Some(value) = &site.value else { continue };
        let callee = value.callee().unwrap_or("");
        if callee.starts_with("PyErr_NewException") {
            role = GlobalRole::Exception;
        } else if matches!(
            callee,
            "PyModule_Create" | "PyModule_Create2" | "PyState_FindModule" | "PyModule_New"
        ) {
            return GlobalRole::ModulePointer;
        } else if callee == "PyCapsule_Import" {
            return GlobalRole::CapiTable;
        } else if let Some(name) = value.ident() {
            let first_param = function.params.first().and_then(|p| p.name.as_deref());
            let is_exec = ctx.module.slot("Py_mod_exec").and_then(|s| s.value.ident())
                == Some(function.name.as_str());
            if is_exec && first_param == Some(name) {
                return GlobalRole::ModulePointer;
            }
        }
    }
    // `static void **Foo_API`: the conventional name of a capsule table (a `void **` from
    // `dlsym` is not one).
    if role == GlobalRole::Other
        && v.type_name == "void"
        && v.pointers.len() == 2
        && v.name.to_ascii_uppercase().contains("API")
    {
        return GlobalRole::CapiTable;
    }
    role
}

/// Every call in the module's files whose callee satisfies `pred`, with its file and function.
pub fn calls_where<'p>(
    ctx: &super::Ctx<'p>,
    pred: impl Fn(&str) -> bool,
) -> Vec<(usize, &'p crate::facts::Function, &'p crate::facts::Call)> {
    let mut places: Vec<CallPlace> = calls_by_callee(ctx)
        .iter()
        .filter(|(callee, _)| pred(callee))
        .flat_map(|(_, places)| places.iter().copied())
        .collect();
    // In the module's file order, then function and call order.
    places.sort_unstable();
    places.into_iter().map(|p| call_at(ctx, p)).collect()
}

/// Where a call is: the module file's position in the module, then the function's and the
/// call's indices.
type CallPlace = (usize, usize, usize);

/// The module's calls by callee name, each callee's in file, function and call order.
pub type CallsByCallee = FxHashMap<Box<str>, Vec<CallPlace>>;

fn calls_by_callee<'c>(ctx: &'c super::Ctx) -> &'c CallsByCallee {
    let project = ctx.project;
    let module = ctx.module;
    ctx.calls.get_or_init(|| {
        let mut by_callee = CallsByCallee::default();
        for (position, &fi) in module.files.iter().enumerate() {
            for (fn_index, f) in project.files[fi].functions.iter().enumerate() {
                for (call_index, call) in f.calls.iter().enumerate() {
                    match by_callee.get_mut(call.callee.as_str()) {
                        Some(places) => places.push((position, fn_index, call_index)),
                        None => {
                            by_callee.insert(
                                call.callee.as_str().into(),
                                vec![(position, fn_index, call_index)],
                            );
                        }
                    }
                }
            }
        }
        by_callee
    })
}

fn call_at<'p>(
    ctx: &super::Ctx<'p>,
    (position, fn_index, call_index): CallPlace,
) -> (usize, &'p crate::facts::Function, &'p crate::facts::Call) {
    let fi = ctx.module.files[position];
    let f = &ctx.project.files[fi].functions[fn_index];
    (fi, f, &f.calls[call_index])
}

/// The module's calls of `callee`, in file, function and call order: what
/// `calls_where(ctx, |c| c == callee)` gives, from the index the module's rules share.
pub fn calls_to<'c, 'p: 'c>(
    ctx: &'c super::Ctx<'p>,
    callee: &str,
) -> impl Iterator<Item = (usize, &'p crate::facts::Function, &'p crate::facts::Call)> + use<'c, 'p>
{
    let places: &'c [CallPlace] = calls_by_callee(ctx).get(callee).map_or(&[], Vec::as_slice);
    places.iter().map(move |&place| call_at(ctx, place))
}

pub fn call_site(file: usize, call: &crate::facts::Call) -> super::Site {
    super::Site {
        file,
        span: call.span,
        versions: call.versions,
        uncertain: call.uncertain,
    }
}

/// Each name's first function in the module's files, in file order (file, index): what
/// [`module_function`] answers.
pub type FunctionsByName = FxHashMap<Box<str>, (usize, usize)>;

/// A function defined in the module's files, by name: the first in file order (static
/// functions of the same file are not distinguished: module files rarely reuse a name).
/// Looked up in an index the module's rules share, not by a walk of every function: the
/// unit of CPython's core holds thousands, and its type deallocators look up each callee.
pub fn module_function<'p>(
    ctx: &super::Ctx<'p>,
    name: &str,
) -> Option<(usize, &'p crate::facts::Function)> {
    let project = ctx.project;
    let module = ctx.module;
    let by_name = ctx.functions.get_or_init(|| {
        let mut by_name = FunctionsByName::default();
        for &fi in &module.files {
            for (index, f) in project.files[fi].functions.iter().enumerate() {
                by_name.entry(f.name.as_str().into()).or_insert((fi, index));
            }
        }
        by_name
    });
    let &(fi, index) = by_name.get(name)?;
    Some((fi, &project.files[fi].functions[index]))
}

/// The argument texts of every call to one of `callees` in `function` and the module
/// functions it calls directly (`clear` often delegates to a helper).
pub fn call_args_in(
    ctx: &super::Ctx,
    function: &crate::facts::Function,
    callees: &[&str],
) -> Vec<String> {
    let mut out = Vec::new();
    let mut visit = |f: &crate::facts::Function| {
        for c in f
            .calls
            .iter()
            .filter(|c| callees.contains(&c.callee.as_str()))
        {
            out.extend(c.args.iter().map(|a| a.text.clone()));
        }
    };
    visit(function);
    for c in &function.calls {
        if let Some((_, helper)) = module_function(ctx, &c.callee) {
            if helper.name != function.name {
                visit(helper);
            }
        }
    }
    out
}

/// `st->field`, `state.field`, `self->field` in an argument text.
pub fn mentions_field(args: &[String], field: &str) -> bool {
    args.iter().any(|a| {
        let a = a.trim_end_matches(')').trim();
        // `state->items[i]` (a loop over an array field) names `items`.
        let a = a
            .strip_suffix(']')
            .and_then(|x| x.rfind('[').map(|i| x[..i].trim_end()))
            .unwrap_or(a);
        a.ends_with(&format!("->{field}")) || a.ends_with(&format!(".{field}")) || a == field
    })
}

/// The kinds of value an idempotent global is written with: one value, the same in every
/// interpreter and every run (`Global::fixed`), on a variable that no rule of its own covers.
/// A Python object is never idempotent, except the address of a static object
/// (`p_Foo_Type = &Foo_Type;`), whose own finding reports the object, and CPython's immortal
/// objects (`Py_None`, small ints, empty str/bytes/tuple), shared by every interpreter.
pub fn idempotent<'g>(
    ctx: &super::Ctx,
    global: &'g Global,
) -> Option<&'g [crate::model::FixedValue]> {
    use crate::model::pytypes::{is_definition_table, is_type_object};
    use crate::model::FixedValue;
    if global.fixed.is_empty() || global.class == WriteClass::NeverWritten {
        return None;
    }
    let v = ctx.project.var(global.var);
    if v.is_thread_local
        || is_definition_table(&v.type_name)
        || (is_type_object(&v.type_name) && v.pointers.is_empty())
        || ctx.layouts.is_static_object(v)
    {
        return None;
    }
    let objects = ctx.layouts.variable_holds_objects(v);
    if objects
        && !global
            .fixed
            .iter()
            .all(|k| matches!(k, FixedValue::AddressOfStatic | FixedValue::ImmortalObject))
    {
        return None;
    }
    Some(&global.fixed)
}

/// Each use of a process-wide capsule import (`PyDateTime_IMPORT`) in the module: the site,
/// the name used and the function. The macro is a name when used without parentheses
/// (`PyDateTime_IMPORT;`), or a call.
pub fn process_wide_imports(ctx: &super::Ctx) -> Vec<(super::Site, String, String)> {
    let project = ctx.project;
    let imports = super::capi_table_global::PROCESS_WIDE_IMPORTS;
    let mut sites = Vec::new();
    for &fi in &ctx.module.files {
        for f in &project.files[fi].functions {
            for r in f
                .references
                .iter()
                .filter(|r| imports.contains(&r.name.as_str()))
            {
                let site = super::Site {
                    file: fi,
                    span: r.span,
                    versions: f.versions,
                    uncertain: f.uncertain,
                };
                sites.push((site, r.name.clone(), f.name.clone()));
            }
        }
    }
    for (fi, f, call) in calls_where(ctx, |c| imports.contains(&c)) {
        sites.push((call_site(fi, call), call.callee.clone(), f.name.clone()));
    }
    sites
}
