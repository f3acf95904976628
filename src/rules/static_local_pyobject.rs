use super::{declare_rule, write_summary, Ctx};
use crate::model::WriteClass;

declare_rule! {
    /// ## What it does
    /// Flags a function-local `static` that caches Python objects, such as
    /// `static PyObject *name = NULL; if (!name) name = PyUnicode_InternFromString("x");`.
    /// Not inside a `static` function of a header that the module cannot reach (no function,
    /// table or macro of the module names it, directly or through another reachable one):
    /// the shims of a vendored `pythoncapi_compat.h` that the module never calls are compiled
    /// into every file but are not its state. The same holds for what such a function writes.
    /// A static written only with CPython's immortal objects (the `Py_GetConstant` shim's
    /// `constants[]`) is the same in every interpreter: `idempotent-global` reports it.
    ///
    /// ## Why is this bad?
    /// A function-local static is as process-global as a file-scope one, only harder to see.
    /// The first interpreter that runs the function fills the cache; every other interpreter
    /// then uses that interpreter's object.
    ///
    /// ## Example
    /// ```c
    /// static PyObject *
    /// get_name(PyObject *self)
    /// {
    ///     static PyObject *name = NULL;
    ///     if (name == NULL) {
    ///         name = PyUnicode_InternFromString("name");
    ///     }
    ///     return Py_NewRef(name);
    /// }
    /// ```
    ///
    /// ## Use instead
    /// Create the object in the exec slot, keep it in module state, and read it from there:
    /// ```c
    /// static PyObject *
    /// get_name(PyObject *module)
    /// {
    ///     mod_state *st = PyModule_GetState(module);
    ///     return Py_NewRef(st->str_name);
    /// }
    /// ```
    ///
    /// ## Minimum Python
    /// 3.5.
    ///
    /// ## References
    /// - CPython HOWTO "Isolating Extension Modules": Module State
    pub static RULE = {
        id: "ISO005",
        name: "static-local-pyobject",
        severity: Warning,
        min_python: "3.5",
        summary: "function-local `static` cache of Python objects",
        blocks: SharedGil,
        check: check,
    };
}

fn check(ctx: &mut Ctx) {
    for g in &ctx.module.globals {
        let v = ctx.project.var(g.var);
        let Some(function) = v.function.as_deref() else {
            continue;
        };
        if v.is_thread_local || !ctx.layouts.variable_holds_objects(v) {
            continue;
        }
        // A static that is never assigned is a constant; one initialised from a call is
        // written once at first use.
        if g.class == WriteClass::NeverWritten
            && !matches!(v.init, Some(crate::facts::Init::Expr(ref e)) if e.callee().is_some())
        {
            continue;
        }
        // Only CPython's immortal objects (`pythoncapi_compat.h`'s `Py_GetConstant` shim):
        // the same objects in every interpreter; `idempotent-global` says so.
        if super::support::idempotent(ctx, g).is_some() {
            continue;
        }
        let message = format!(
            "`{}` in `{function}` is a function-local static cache of Python objects, {}",
            v.name,
            write_summary(ctx, g)
        );
        let help = "create the object in the exec slot and keep it in module state; reach it through the module or the defining class".to_string();
        let site = ctx.var_site(g.var);
        ctx.report(site, Some(&v.name), Some(function), message, help);
    }
}
