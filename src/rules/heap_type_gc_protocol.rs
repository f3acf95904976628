use super::support::{call_args_in, call_site, calls_where, module_function};
use super::{declare_rule, Ctx, Site};
use crate::facts::{ExprKind, HEAP_TYPE_CREATORS};
use crate::model::{TypeDef, TypeKind};

declare_rule! {
    /// ## What it does
    /// Flags a heap type (`PyType_Spec`) that breaks the HOWTO's rules for heap types:
    /// - its instances hold references (object fields in the struct named by `basicsize`) but
    ///   its flags lack `Py_TPFLAGS_HAVE_GC`, also through the project's flag macros (unless it is made from a base and defines no
    ///   `tp_traverse` or `tp_clear` of its own: CPython then copies the base's GC flag and
    ///   functions, so `CIMultiDict` made from `MultiDict` is collected like its base; the
    ///   base counts when a GC heap type of the module has the same instance struct and the
    ///   type is not made directly with a NULL base);
    /// - its `tp_traverse` does not visit `Py_TYPE(self)`;
    /// - its `tp_dealloc` does not untrack the object (GC types) or does not `Py_DECREF` its
    ///   type;
    /// - its `tp_free` does not match its GC flag (`PyObject_Del` or `PyObject_Free` on a GC
    ///   type, `PyObject_GC_Del` on a type without GC); `PyObject_GC_Del` on a GC type is what
    ///   CPython would use anyway and is not flagged;
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

/// Whether a flags expression names `flag`, directly or through the module's object-like
/// macros (zope.interface: `.flags = WEAKREFTYPE_FLAGS`, `#define WEAKREFTYPE_FLAGS
/// BASETYPE_FLAGS | ...`, `#define BASETYPE_FLAGS ... | Py_TPFLAGS_HAVE_GC`). A macro with
/// several definitions (`#if` branches) counts when any of them names it.
fn flags_mention(ctx: &Ctx, text: &str, flag: &str, depth: usize) -> bool {
    if text.contains(flag) {
        return true;
    }
    if depth > 8 {
        return false;
    }
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| !word.is_empty() && !word.starts_with("Py_TPFLAGS_"))
        .any(|word| {
            ctx.module.files.iter().any(|&fi| {
                ctx.project.files[fi]
                    .macros
                    .iter()
                    .filter(|m| m.name == word && m.params.is_none())
                    .any(|m| flags_mention(ctx, &m.body, flag, depth + 1))
            })
        })
}

/// Frees for objects the collector does not track.
const NON_GC_FREES: &[&str] = &[
    "PyObject_Del",
    "PyObject_Free",
    "PyObject_DEL",
    "PyObject_FREE",
];

/// `NULL` or `0`, casts and parentheses read through by the facts.
fn is_null(e: &crate::facts::Expr) -> bool {
    matches!(e.kind, ExprKind::Null | ExprKind::Number(Some(0)))
}

/// The struct named by the type's `basicsize` (`sizeof(BoxObject)` → `BoxObject`).
fn instance_struct(t: &TypeDef) -> Option<String> {
    t.slots.get("tp_basicsize").and_then(|e| match &e.kind {
        ExprKind::SizeOf(s) => Some(s.trim_matches(|c| c == '(' || c == ')').trim().to_string()),
        _ => None,
    })
}

fn has_gc_flag(ctx: &Ctx, t: &TypeDef) -> bool {
    t.slots
        .get("tp_flags")
        .is_some_and(|f| flags_mention(ctx, &f.text, "Py_TPFLAGS_HAVE_GC", 0))
}

/// Whether another heap type of the module has the same instance struct and the GC flag: a
/// type with the same layout and no traverse of its own is made as its subclass (the base is
/// often passed through a project helper, whose arguments the model does not keep).
fn gc_sibling_of_same_layout(ctx: &Ctx, instance: Option<&str>) -> bool {
    let Some(instance) = instance else {
        return false;
    };
    ctx.module
        .types
        .iter()
        .filter(|t| t.kind == TypeKind::Heap)
        .any(|t| instance_struct(t).as_deref() == Some(instance) && has_gc_flag(ctx, t))
}

/// Whether a creation call of this module passes `&spec` with a base (or bases) that is not
/// NULL: `None` when no creation call names the spec (a project helper makes the type).
fn made_with_base(ctx: &Ctx, spec: &str) -> Option<bool> {
    let mut seen = None;
    for (_, _, call) in calls_where(ctx, |c| HEAP_TYPE_CREATORS.contains(&c)) {
        let (spec_at, bases_at) = match call.callee.as_str() {
            "PyType_FromSpecWithBases" => (0, 1),
            "PyType_FromModuleAndSpec" => (1, 2),
            _ => (2, 3), // PyType_FromMetaclass(meta, module, spec, bases)
        };
        if call.args.get(spec_at).and_then(|a| a.ident()) == Some(spec) {
            let with_base = call.args.get(bases_at).is_some_and(|b| !is_null(b));
            seen = Some(seen.unwrap_or(false) || with_base);
        }
    }
    seen
}

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
        // Flags are often a project macro (`#define BASETYPE_FLAGS Py_TPFLAGS_DEFAULT | ...`).
        let is_gc = has_gc_flag(ctx, t);
        let instance = instance_struct(t);
        let holds = t
            .slots
            .get("tp_basicsize")
            .is_some_and(|size| !ctx.layouts.instance_object_fields(size).is_empty());
        let help = "follow the HOWTO's heap-type GC protocol: `Py_TPFLAGS_HAVE_GC`, visit `Py_TYPE(self)` in `tp_traverse`, untrack and `Py_DECREF` the type in `tp_dealloc`, keep the default `tp_free`".to_string();
        let defines = |slot: &str| t.slots.get(slot).is_some_and(|e| !is_null(e));
        // The base's GC flag is only known for a GC heap type of the module with the same
        // instance struct; a type made directly with a NULL base has none to inherit.
        let inherits_gc = !defines("tp_traverse")
            && !defines("tp_clear")
            && gc_sibling_of_same_layout(ctx, instance.as_deref())
            && (defines("tp_base")
                || defines("tp_bases")
                || made_with_base(ctx, &spec.name) != Some(false));
        if holds && !is_gc && !inherits_gc {
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
        let mismatched_free = t.slots.get("tp_free").filter(|free| {
            let function = free.text.trim();
            if is_gc {
                NON_GC_FREES.contains(&function)
            } else {
                function == "PyObject_GC_Del" && !inherits_gc
            }
        });
        if let Some(free) = mismatched_free {
            let message = if is_gc {
                format!(
                    "heap type `{name}` is a GC type, but its `tp_free` is `{}`: its instances are freed without leaving the collector's lists",
                    free.text
                )
            } else {
                format!(
                    "heap type `{name}` has no `Py_TPFLAGS_HAVE_GC`, but its `tp_free` is `PyObject_GC_Del`"
                )
            };
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
