use super::support::{call_args_in, call_site, calls_where, module_function};
use super::{declare_rule, Ctx, Site};
use crate::facts::ExprKind;
use crate::model::TypeKind;

declare_rule! {
    /// ## What it does
    /// Flags a heap type (`PyType_Spec`) that breaks the HOWTO's rules for heap types:
    /// - its instances hold references (object fields in the struct named by `basicsize`) but
    ///   its flags lack `Py_TPFLAGS_HAVE_GC`;
    /// - its `tp_traverse` does not visit `Py_TYPE(self)`;
    /// - its `tp_dealloc` does not untrack the object (GC types) or does not `Py_DECREF` its
    ///   type;
    /// - it overrides `tp_free`;
    /// - `PyObject_New` allocates instances of a GC type.
    ///
    /// ## Why is this bad?
    /// Instances of a heap type keep their type alive, and the type keeps its module alive.
    /// A dealloc that forgets `Py_DECREF(tp)` leaks the type and the module with every
    /// interpreter; a traverse that skips the type hides the cycle from the collector; a GC
    /// type allocated with `PyObject_New` is never tracked.
    ///
    /// ## Example
    /// ```c
    /// static void Foo_dealloc(FooObject *self) {
    ///     Py_XDECREF(self->value);
    ///     Py_TYPE(self)->tp_free((PyObject *)self);
    /// }
    /// ```
    ///
    /// ## Use instead
    /// ```c
    /// static int Foo_traverse(FooObject *self, visitproc visit, void *arg) {
    ///     Py_VISIT(Py_TYPE(self));
    ///     Py_VISIT(self->value);
    ///     return 0;
    /// }
    /// static void Foo_dealloc(FooObject *self) {
    ///     PyTypeObject *tp = Py_TYPE(self);
    ///     PyObject_GC_UnTrack(self);
    ///     Py_CLEAR(self->value);
    ///     tp->tp_free((PyObject *)self);
    ///     Py_DECREF(tp);
    /// }
    /// ```
    ///
    /// ## Minimum Python
    /// 3.9 (visiting the type in `tp_traverse`).
    ///
    /// ## References
    /// - CPython HOWTO "Isolating Extension Modules": Garbage-Collection Protocol
    pub static RULE = {
        id: "ISO018",
        name: "heap-type-gc-protocol",
        severity: Warning,
        min_python: "3.9",
        summary: "heap type breaks the GC protocol heap types need",
        blocks: Nothing,
        check: check,
    };
}

const DECREFS: &[&str] = &["Py_DECREF", "Py_XDECREF", "Py_CLEAR"];

fn decrefs_type(args: &[String]) -> bool {
    args.iter().any(|a| {
        let a = a.trim();
        a.contains("Py_TYPE(")
            || matches!(a, "tp" | "type" | "typ" | "cls" | "tp_" | "self_type")
            || a.ends_with("type")
            || a.ends_with("_tp")
    })
}

fn check(ctx: &mut Ctx) {
    let project = ctx.project;
    for t in ctx.module.types.iter().filter(|t| t.kind == TypeKind::Heap) {
        let spec = project.var(t.var);
        let name = t.tp_name.clone().unwrap_or_else(|| spec.name.clone());
        let flags = t
            .slots
            .get("tp_flags")
            .map(|e| e.text.as_str())
            .unwrap_or("");
        let is_gc = flags.contains("Py_TPFLAGS_HAVE_GC");
        let instance = t.slots.get("tp_basicsize").and_then(|e| match &e.kind {
            ExprKind::SizeOf(s) => {
                Some(s.trim_matches(|c| c == '(' || c == ')').trim().to_string())
            }
            _ => None,
        });
        let holds = t
            .slots
            .get("tp_basicsize")
            .is_some_and(|size| !ctx.layouts.instance_object_fields(size).is_empty());
        let help = "follow the HOWTO's heap-type GC protocol: `Py_TPFLAGS_HAVE_GC`, visit `Py_TYPE(self)` in `tp_traverse`, untrack and `Py_DECREF` the type in `tp_dealloc`, keep the default `tp_free`".to_string();
        if holds && !is_gc {
            let message = format!("heap type `{name}`: instances of `{}` hold references, but the flags lack `Py_TPFLAGS_HAVE_GC`", instance.as_deref().unwrap_or("?"));
            let site = ctx.var_site(t.var);
            ctx.report(site, Some(&spec.name), None, message, help.clone());
        }
        let slot_function = |slot: &str| {
            t.slots
                .get(slot)
                .and_then(|e| e.ident())
                .and_then(|n| module_function(ctx, n))
        };
        let (traverse, dealloc) = (slot_function("tp_traverse"), slot_function("tp_dealloc"));
        if let Some((fi, f)) = traverse {
            let visited = call_args_in(ctx, f, &["Py_VISIT"]);
            if !visited.iter().any(|a| a.contains("Py_TYPE(")) {
                let message = format!(
                    "`tp_traverse` of heap type `{name}` (`{}`) does not visit `Py_TYPE(self)`",
                    f.name
                );
                let site = Site {
                    file: fi,
                    span: f.span,
                    versions: f.versions,
                    uncertain: f.uncertain,
                };
                ctx.report(site, Some(&f.name), Some(&f.name), message, help.clone());
            }
        }
        if let Some((fi, f)) = dealloc {
            let mut missing = Vec::new();
            let untracks = call_args_in(ctx, f, &["PyObject_GC_UnTrack", "_PyObject_GC_UNTRACK"]);
            if is_gc && untracks.is_empty() {
                missing.push("untrack the object (`PyObject_GC_UnTrack`)");
            }
            if !decrefs_type(&call_args_in(ctx, f, DECREFS)) {
                missing.push("`Py_DECREF` its type");
            }
            if !missing.is_empty() {
                let message = format!(
                    "`tp_dealloc` of heap type `{name}` (`{}`) does not {}",
                    f.name,
                    missing.join(" or ")
                );
                let site = Site {
                    file: fi,
                    span: f.span,
                    versions: f.versions,
                    uncertain: f.uncertain,
                };
                ctx.report(site, Some(&f.name), Some(&f.name), message, help.clone());
            }
        }
        if let Some(free) = t.slots.get("tp_free") {
            let message = format!(
                "heap type `{name}` overrides `tp_free` with `{}`",
                free.text
            );
            let site = Site {
                file: t.var.file,
                span: free.span,
                versions: spec.versions,
                uncertain: spec.uncertain,
            };
            ctx.report(site, Some(&spec.name), None, message, help.clone());
        }
        if let (true, Some(instance)) = (is_gc, instance.as_deref()) {
            for (fi, f, call) in calls_where(ctx, |c| c == "PyObject_New" || c == "PyObject_NewVar")
            {
                if call.args.first().is_some_and(|a| a.text == instance) {
                    let message = format!(
                        "`{}({instance}, ...)` allocates a GC type without tracking it",
                        call.callee
                    );
                    let help =
                        "allocate GC types with `PyObject_GC_New` (or the type's `tp_alloc`)"
                            .to_string();
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
    }
}
