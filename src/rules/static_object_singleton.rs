use super::{declare_rule, Ctx};

declare_rule! {
    /// ## What it does
    /// Flags a Python object allocated statically: `static PyObject x = {...}`
    /// (`PyObject_HEAD_INIT`), or a static instance of a struct that starts with
    /// `PyObject_HEAD`. Static type objects have their own rule.
    ///
    /// ## Why is this bad?
    /// A statically allocated object is one object for the whole process. Every interpreter
    /// changes its reference count without a lock (under per-interpreter GILs that races), and
    /// every interpreter that reaches it sees the same object, with whatever state another
    /// interpreter left in it.
    ///
    /// ## Example
    /// ```c
    /// static PyObject _Unset_Object = {PyObject_HEAD_INIT(&Unset_Type)};
    /// #define UNSET (&_Unset_Object)
    /// ```
    ///
    /// ## Use instead
    /// Create the singleton in the exec slot and keep it in module state:
    /// ```c
    /// st->unset = PyObject_CallNoArgs((PyObject *)st->Unset_Type);
    /// ```
    ///
    /// ## Minimum Python
    /// 3.5.
    ///
    /// ## References
    /// - CPython HOWTO "Isolating Extension Modules"
    pub static RULE = {
        id: "ISO012",
        name: "static-object-singleton",
        severity: Warning,
        min_python: "3.5",
        summary: "statically allocated Python object",
        blocks: SharedGil,
        check: check,
    };
}

fn check(ctx: &mut Ctx) {
    for g in &ctx.module.globals {
        let v = ctx.project.var(g.var);
        if v.array_dims > 0 || !ctx.layouts.is_static_object(v) {
            continue;
        }
        let message = format!("`{}` (`{}`) is a statically allocated Python object, shared by every interpreter in the process", v.name, v.type_display().trim());
        let help = "create the object in the exec slot and keep it in module state".to_string();
        let site = ctx.var_site(g.var);
        ctx.report(site, Some(&v.name), v.function.as_deref(), message, help);
    }
}
