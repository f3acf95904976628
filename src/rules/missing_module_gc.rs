use super::support::{call_args_in, mentions_field, module_function};
use super::{declare_rule, Ctx};
use crate::facts::ExprKind;

declare_rule! {
    /// ## What it does
    /// Flags a module whose state struct (`m_size = sizeof(<state>)`) holds `PyObject *`
    /// fields while `m_traverse` is missing, `m_clear` and `m_free` are both missing, or they
    /// do not visit and clear every such field. When several modules of the scan define a state
    /// struct with the same tag (`struct module_state`), each module's own definition is the
    /// one read.
    ///
    /// ## Why is this bad?
    /// Module state is freed with the module. Without `m_traverse` the garbage collector
    /// cannot see the references the state holds, so cycles through the module (a type that
    /// refers to its module, which refers back to the type) are never collected, and the
    /// module, its types and everything they hold leak with every interpreter that imports it.
    /// Without `m_clear`/`m_free` the references are never released at all.
    ///
    /// ## Example
    /// ```c
    /// typedef struct { PyObject *error; PyTypeObject *Foo_Type; } mod_state;
    /// static struct PyModuleDef def = {
    ///     PyModuleDef_HEAD_INIT, .m_name = "mod", .m_size = sizeof(mod_state),
    ///     .m_slots = slots,
    /// };
    /// ```
    ///
    /// ## Use instead
    /// ```c
    /// static int mod_traverse(PyObject *m, visitproc visit, void *arg) {
    ///     mod_state *st = PyModule_GetState(m);
    ///     Py_VISIT(st->error);
    ///     Py_VISIT(st->Foo_Type);
    ///     return 0;
    /// }
    /// static int mod_clear(PyObject *m) {
    ///     mod_state *st = PyModule_GetState(m);
    ///     Py_CLEAR(st->error);
    ///     Py_CLEAR(st->Foo_Type);
    ///     return 0;
    /// }
    /// static void mod_free(void *m) { (void)mod_clear((PyObject *)m); }
    /// ```
    ///
    /// ## Minimum Python
    /// 3.5.
    ///
    /// ## References
    /// - CPython docs: `PyModuleDef.m_traverse`, `m_clear`, `m_free`
    /// - CPython HOWTO "Isolating Extension Modules": Module State
    pub static RULE = {
        id: "ISO017",
        name: "missing-module-gc",
        severity: Warning,
        min_python: "3.5",
        summary: "module state holds objects but `m_traverse`/`m_clear`/`m_free` miss them",
        blocks: Nothing,
        check: check,
    };
}

const CLEARS: &[&str] = &[
    "Py_CLEAR",
    "Py_XDECREF",
    "Py_DECREF",
    "Py_XSETREF",
    "Py_SETREF",
];

fn check(ctx: &mut Ctx) {
    let Some(def) = &ctx.module.def else { return };
    let Some(ExprKind::SizeOf(state_type)) = def.m_size().map(|e| &e.kind) else {
        return;
    };
    let state_type = state_type
        .trim_start_matches('(')
        .trim_end_matches(')')
        .trim();
    let Some(layout) = ctx.layouts.get_in(state_type, &ctx.module.files) else {
        return;
    };
    let object_fields: Vec<&str> = layout
        .fields
        .iter()
        .filter(|f| f.pointers > 0 && ctx.layouts.is_object(&f.type_name))
        .map(|f| f.name.as_str())
        .collect();
    if object_fields.is_empty() {
        return;
    }
    let site = ctx.var_site(def.var);
    let def_name = ctx.project.var(def.var).name.clone();
    let traverse = def
        .function_field("m_traverse")
        .and_then(|n| module_function(ctx, n));
    let clear = def
        .function_field("m_clear")
        .and_then(|n| module_function(ctx, n));
    let free = def
        .function_field("m_free")
        .and_then(|n| module_function(ctx, n));

    let mut problems = Vec::new();
    match traverse {
        None => problems.push(format!("`{def_name}` has no `m_traverse`")),
        Some((_, f)) => {
            let visited = call_args_in(ctx, f, &["Py_VISIT"]);
            let missed: Vec<&str> = object_fields
                .iter()
                .copied()
                .filter(|x| !mentions_field(&visited, x))
                .collect();
            if !missed.is_empty() {
                problems.push(format!("`{}` does not visit {}", f.name, quote(&missed)));
            }
        }
    }
    if clear.is_none() && free.is_none() {
        problems.push(format!("`{def_name}` has neither `m_clear` nor `m_free`"));
    } else {
        let mut cleared = Vec::new();
        for (_, f) in clear.iter().chain(free.iter()) {
            cleared.extend(call_args_in(ctx, f, CLEARS));
        }
        let missed: Vec<&str> = object_fields
            .iter()
            .copied()
            .filter(|x| !mentions_field(&cleared, x))
            .collect();
        if !missed.is_empty() {
            problems.push(format!(
                "`m_clear`/`m_free` do not clear {}",
                quote(&missed)
            ));
        }
    }
    if problems.is_empty() {
        return;
    }
    let message = format!(
        "the state of module `{}` (`{state_type}`) holds {} object field(s), but {}",
        ctx.module.name,
        object_fields.len(),
        problems.join(", and ")
    );
    let help = "define `m_traverse` (`Py_VISIT` every object field), `m_clear` (`Py_CLEAR` every object field) and `m_free` (call the clear function)".to_string();
    ctx.report(site, Some(&def_name), None, message, help);
}

fn quote(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
