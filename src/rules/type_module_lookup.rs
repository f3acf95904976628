use super::support::{call_site, module_function};
use super::{declare_rule, Ctx};
use crate::facts::Init;
use crate::model::TypeKind;
use std::collections::BTreeSet;

declare_rule! {
    /// ## What it does
    /// Flags `PyType_GetModule(Py_TYPE(self))` and `PyType_GetModuleState(Py_TYPE(self))` in a
    /// method or slot of a heap type that can be subclassed (`Py_TPFLAGS_BASETYPE`).
    ///
    /// ## Why is this bad?
    /// For an instance of a subclass defined in Python, `Py_TYPE(self)` is the subclass, which
    /// has no module: the call fails, or returns another module's state.
    ///
    /// ## Example
    /// ```c
    /// static PyObject *
    /// Foo_get(FooObject *self, PyObject *unused)
    /// {
    ///     mod_state *st = PyType_GetModuleState(Py_TYPE(self));
    ///     ...
    /// }
    /// ```
    ///
    /// ## Use instead
    /// ```c
    /// PyObject *m = PyType_GetModuleByDef(Py_TYPE(self), &moduledef);    /* 3.11+ */
    /// /* or a METH_METHOD | METH_FASTCALL | METH_KEYWORDS method: */
    /// mod_state *st = PyType_GetModuleState(defining_class);             /* 3.9+ */
    /// ```
    ///
    /// ## Minimum Python
    /// 3.9 (`defining_class`); 3.11 (`PyType_GetModuleByDef`).
    ///
    /// ## References
    /// - PEP 573; CPython HOWTO "Isolating Extension Modules": Module State Access from Classes
    pub static RULE = {
        id: "ISO019",
        name: "type-module-lookup",
        severity: Warning,
        min_python: "3.9",
        summary: "module found through `Py_TYPE(self)` in a subclassable type",
        blocks: Nothing,
        check: check,
    };
}

const LOOKUPS: &[&str] = &["PyType_GetModule", "PyType_GetModuleState"];

/// Functions named in a method or getset table: `{"name", function, ...}`.
fn table_functions(ctx: &Ctx, table: &str, out: &mut BTreeSet<String>) {
    for &fi in &ctx.module.files {
        for v in ctx.project.files[fi]
            .variables
            .iter()
            .filter(|v| v.name == table)
        {
            let Some(Init::List(list)) = &v.init else {
                continue;
            };
            for entry in &list.entries {
                let Init::List(row) = &entry.value else {
                    continue;
                };
                for cell in &row.entries {
                    if let Init::Expr(e) = &cell.value {
                        if let Some(name) = e.ident() {
                            out.insert(name.to_string());
                        }
                    }
                }
            }
        }
    }
}

fn check(ctx: &mut Ctx) {
    let mut functions = BTreeSet::new();
    for t in ctx.module.types.iter().filter(|t| t.kind == TypeKind::Heap) {
        let subclassable = t
            .slots
            .get("tp_flags")
            .is_some_and(|f| f.text.contains("Py_TPFLAGS_BASETYPE"));
        if !subclassable {
            continue;
        }
        for (slot, value) in &t.slots {
            let Some(name) = value.ident() else { continue };
            if matches!(slot.as_str(), "tp_methods" | "tp_getset") {
                table_functions(ctx, name, &mut functions);
            } else {
                functions.insert(name.to_string());
            }
        }
    }
    for name in functions {
        let Some((fi, f)) = module_function(ctx, &name) else {
            continue;
        };
        for call in f
            .calls
            .iter()
            .filter(|c| LOOKUPS.contains(&c.callee.as_str()))
        {
            if !call
                .args
                .first()
                .is_some_and(|a| a.text.contains("Py_TYPE("))
            {
                continue;
            }
            let message = format!("`{}(Py_TYPE(...))` in `{}`, a method of a subclassable type: for a subclass instance it finds no module", call.callee, f.name);
            let help = "use `PyType_GetModuleByDef(Py_TYPE(self), &def)` (3.11+) or the `defining_class` argument of a `METH_METHOD` method (3.9+)".to_string();
            ctx.report(
                call_site(fi, call),
                Some(&call.callee),
                Some(&f.name),
                message,
                help,
            );
        }
    }
}
