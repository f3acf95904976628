use super::{declare_rule, Ctx};
use crate::model::TypeKind;

declare_rule! {
    /// ## What it does
    /// Flags a statically allocated type object: `static PyTypeObject Foo_Type = {...}`, or a
    /// `PyTypeObject` defined at file scope without `static`. The finding lists as related
    /// places the type's `extern` declarations and the fixed values stored into it while the
    /// module initialises (`Foo_Type.tp_base = &PyBaseObject_Type;`).
    ///
    /// ## Why is this bad?
    /// A static type is one object for the whole process. Every interpreter that imports the
    /// module shares it, with its `tp_dict`, its subclasses list and its reference count, and
    /// the objects reachable from it. Attribute caches and class attributes then leak between
    /// interpreters, and isolated interpreters cannot use it safely.
    ///
    /// It blocks `shared-gil` too, not only `per-interpreter-gil`: interpreters that share
    /// one GIL still share the one type object, so a subclass, a class attribute or a cached
    /// lookup that one interpreter stores in it is reached from the others, and outlives the
    /// interpreter it belongs to when that one is finalized.
    ///
    /// ## Example
    /// ```c
    /// static PyTypeObject Foo_Type = {
    ///     PyVarObject_HEAD_INIT(NULL, 0)
    ///     .tp_name = "mod.Foo",
    ///     .tp_basicsize = sizeof(FooObject),
    /// };
    /// ```
    ///
    /// ## Use instead
    /// A heap type, created per module in the exec slot and kept in module state:
    /// ```c
    /// static PyType_Slot Foo_slots[] = {
    ///     {Py_tp_dealloc, Foo_dealloc},
    ///     {0, NULL},
    /// };
    /// static PyType_Spec Foo_spec = {
    ///     .name = "mod.Foo",
    ///     .basicsize = sizeof(FooObject),
    ///     .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    ///     .slots = Foo_slots,
    /// };
    /// /* in the exec slot */
    /// state->Foo_Type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &Foo_spec, NULL);
    /// ```
    ///
    /// ## Minimum Python
    /// 3.9 (`PyType_FromModuleAndSpec`); 3.10 for `Py_TPFLAGS_IMMUTABLETYPE`.
    ///
    /// ## References
    /// - CPython HOWTO "Isolating Extension Modules": Heap Types
    /// - PEP 573: Module State Access from C Extension Methods
    pub static RULE = {
        id: "ISO003",
        name: "static-type-object",
        severity: Warning,
        min_python: "3.9",
        summary: "static `PyTypeObject` shared by every interpreter",
        blocks: SharedGil,
        check: check,
    };
}

fn check(ctx: &mut Ctx) {
    for t in ctx
        .module
        .types
        .iter()
        .filter(|t| t.kind == TypeKind::Static)
    {
        let v = ctx.project.var(t.var);
        let shown = t
            .tp_name
            .as_deref()
            .map(|n| format!(" (`{n}`)"))
            .unwrap_or_default();
        let message = format!(
            "`{}`{shown} is a static type object, shared by every interpreter in the process",
            v.name
        );
        let help = "convert it to a heap type: a `PyType_Spec` with `PyType_Slot`s, created with `PyType_FromModuleAndSpec` in the exec slot and kept in module state".to_string();
        let site = ctx.var_site(t.var);
        ctx.report(site, Some(&v.name), v.function.as_deref(), message, help);
    }
}
