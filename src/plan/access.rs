//! Stage 1, second half: how each function that uses a migrated global reaches the module state, by what kind
//! of function it is (module function, method, slot, helper, C callback).

use super::context::{idents_in, PlanCtx};
use super::data::{Access, AccessKind};
use crate::facts::Init;
use crate::model::{FnRef, Global, TypeDef};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// What names a function from a definition table.
pub(super) struct Roles {
    pub(super) module_functions: BTreeSet<String>,
    pub(super) methods: BTreeSet<String>,
    pub(super) slots: BTreeSet<String>,
}

fn table_idents(ctx: &PlanCtx, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for &fi in &ctx.module.files {
        for v in &ctx.project.files[fi].variables {
            if v.name == name && v.function.is_none() {
                if let Some(Init::List(list)) = &v.init {
                    idents_in(list, &mut out, 0);
                }
            }
        }
    }
    out
}

fn type_tables(t: &TypeDef) -> impl Iterator<Item = (&String, String)> {
    t.slots.iter().filter_map(|(k, e)| {
        e.ident()
            .map(str::to_string)
            .or_else(|| super::context::last_ident(&e.text))
            .map(|n| (k, n))
    })
}

pub(super) fn roles(ctx: &PlanCtx) -> Roles {
    let mut methods = BTreeSet::new();
    let mut slots = BTreeSet::new();
    let mut type_method_tables = BTreeSet::new();
    for t in &ctx.module.types {
        for (field, name) in type_tables(t) {
            match field.as_str() {
                "tp_methods" => {
                    type_method_tables.insert(name.clone());
                    methods.extend(table_idents(ctx, &name));
                }
                "tp_getset" | "tp_as_number" | "tp_as_sequence" | "tp_as_mapping"
                | "tp_as_async" | "tp_as_buffer" => slots.extend(table_idents(ctx, &name)),
                _ => {
                    slots.insert(name);
                }
            }
        }
    }
    // Every other method table is the module's (`m_methods`, or one given to
    // `PyModule_AddFunctions`).
    let mut module_functions = BTreeSet::new();
    for &fi in &ctx.module.files {
        for v in &ctx.project.files[fi].variables {
            if crate::model::pytypes::bare_type(&v.type_name) == "PyMethodDef"
                && !type_method_tables.contains(&v.name)
            {
                if let Some(Init::List(list)) = &v.init {
                    let mut names = Vec::new();
                    idents_in(list, &mut names, 0);
                    module_functions.extend(names);
                }
            }
        }
    }
    Roles {
        module_functions,
        methods,
        slots,
    }
}

/// The functions of the module that call each function.
pub(super) fn callers_of(ctx: &PlanCtx) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for &fi in &ctx.module.files {
        for f in &ctx.project.files[fi].functions {
            for c in &f.calls {
                out.entry(c.callee.clone())
                    .or_default()
                    .insert(f.name.clone());
            }
        }
    }
    out
}

pub fn accesses(ctx: &PlanCtx, migrated: &[&Global]) -> Vec<Access> {
    let roles = roles(ctx);
    let callers = callers_of(ctx);
    let mut uses: BTreeMap<FnRef, BTreeSet<String>> = BTreeMap::new();
    for g in migrated {
        let name = ctx.project.var(g.var).name.clone();
        let fns = g
            .readers
            .iter()
            .copied()
            .chain(g.writes.iter().map(|w| w.function));
        for f in fns {
            if !ctx.module.init_functions.contains(&f) {
                uses.entry(f).or_default().insert(name.clone());
            }
        }
    }
    let ty = ctx.state_type();
    let getter = ctx.state_getter();
    let def = ctx.def_name().unwrap_or("module_def").to_string();
    let mut out = Vec::new();
    for (f, used) in uses {
        let function = ctx.function(f);
        let name = function.name.clone();
        let self_name = function
            .params
            .first()
            .and_then(|p| p.name.clone())
            .unwrap_or_else(|| "self".into());
        let has_object_param = function
            .params
            .iter()
            .any(|p| p.pointers > 0 && ctx.layouts.is_object(&p.type_name));
        let (kind, how, chain) = if roles.module_functions.contains(&name) {
            (
                AccessKind::ModuleFunction,
                format!("{ty} *state = {getter}({self_name});"),
                Vec::new(),
            )
        } else if roles.methods.contains(&name) {
            (
                AccessKind::Method,
                format!(
                    "/* 3.9+: take `PyTypeObject *defining_class` (METH_METHOD|METH_FASTCALL|METH_KEYWORDS) */\n{ty} *state = PyType_GetModuleState(defining_class);\n/* or, 3.11+, keeping the signature: */\n{ty} *state = {getter}(PyType_GetModuleByDef(Py_TYPE({self_name}), &{def}));"
                ),
                Vec::new(),
            )
        } else if roles.slots.contains(&name) {
            (
                AccessKind::Slot,
                format!(
                    "/* 3.11+ */\nPyObject *module = PyType_GetModuleByDef(Py_TYPE({self_name}), &{def});\nif (module == NULL) {{\n    /* return the slot's error value */\n}}\n{ty} *state = {getter}(module);"
                ),
                Vec::new(),
            )
        } else {
            let chains = chains_up(&name, &callers, &roles);
            if chains.is_empty() && !has_object_param {
                (
                    AccessKind::NeedsDesign,
                    format!(
                        "no caller in the module and no Python object among its parameters: `{name}` is likely a C callback. Pass the state through its user-data pointer if the C API has one; otherwise the state must stay process-wide, guarded by a lock."
                    ),
                    Vec::new(),
                )
            } else {
                (
                    AccessKind::Helper,
                    format!(
                        "add a parameter `{ty} *state` to `{name}`, and pass it from each caller"
                    ),
                    chains,
                )
            }
        };
        out.push(Access {
            function: name,
            site: ctx.fn_site(f),
            kind,
            uses: used.into_iter().collect(),
            how,
            callers: chain,
        });
    }
    out.sort_by(|a, b| a.site.cmp(&b.site));
    out
}

/// `helper ← caller ← meth (method)`: breadth first, up to a function with an object in reach.
fn chains_up(
    start: &str,
    callers: &BTreeMap<String, BTreeSet<String>>,
    roles: &Roles,
) -> Vec<String> {
    let label = |n: &str| -> Option<&'static str> {
        if roles.module_functions.contains(n) {
            Some("module function")
        } else if roles.methods.contains(n) {
            Some("method")
        } else if roles.slots.contains(n) {
            Some("slot")
        } else {
            None
        }
    };
    let mut out = Vec::new();
    let mut queue: VecDeque<Vec<String>> = VecDeque::from([vec![start.to_string()]]);
    let mut seen: BTreeSet<String> = BTreeSet::from([start.to_string()]);
    while let Some(path) = queue.pop_front() {
        if out.len() >= 6 || path.len() > 6 {
            break;
        }
        let Some(last) = path.last() else { continue };
        let Some(up) = callers.get(last) else {
            if path.len() > 1 {
                out.push(format!(
                    "{} (no caller: pass the state in)",
                    path.join(" ← ")
                ));
            }
            continue;
        };
        for c in up {
            if !seen.insert(c.clone()) {
                continue;
            }
            let mut next = path.clone();
            next.push(c.clone());
            match label(c) {
                Some(kind) => out.push(format!("{} ({kind})", next.join(" ← "))),
                None => queue.push_back(next),
            }
        }
    }
    out
}
