use super::{declare_rule, Ctx, Site};
use crate::model::pytypes::{is_definition_table, is_type_object};

declare_rule! {
    /// ## What it does
    /// Flags a write at run time to a definition the C API reads: a `PyModuleDef`,
    /// `PyMethodDef[]`, `PyTypeObject`, `PyType_Spec` or slot array, e.g. `def.m_name = name;`,
    /// `Foo_Type.tp_new = PyType_GenericNew;` or patching `ml_meth` in a method table.
    ///
    /// A fixed value (a C constant, the address of a static: `Foo_Type.tp_base =
    /// &PyBaseObject_Type;`) stored into a static type while the module initialises is not a
    /// finding of its own: the type's `static-type-object` finding already says the object is
    /// shared, and lists the write as a related place. Anything else written into it (a Python
    /// object, `Foo_Type.tp_dict = PyDict_New();`) is reported here.
    ///
    /// ## Why is this bad?
    /// These tables are process-global and the interpreter reads them while creating modules
    /// and types in every interpreter. A write from one interpreter changes what the others
    /// create, and with per-interpreter GILs it races with their reads.
    ///
    /// ## Example
    /// ```c
    /// PyMODINIT_FUNC
    /// PyInit_foo(void)
    /// {
    ///     Foo_Type.tp_new = PyType_GenericNew;
    ///     moduledef.m_doc = build_doc();
    ///     ...
    /// }
    /// ```
    ///
    /// ## Use instead
    /// Write the value into the initializer (`.tp_new = PyType_GenericNew`), or, for values
    /// only known at run time, set them on the objects created from the definition (the
    /// module's `__doc__`, the heap type's attributes).
    ///
    /// ## Minimum Python
    /// Any.
    ///
    /// ## References
    /// - CPython HOWTO "Isolating Extension Modules"
    pub static RULE = {
        id: "ISO014",
        name: "mutated-static-definition",
        severity: Warning,
        min_python: "any",
        summary: "run-time write to a module, type or method definition",
        blocks: SharedGil,
        check: check,
    };
}

fn check(ctx: &mut Ctx) {
    let project = ctx.project;
    for g in &ctx.module.globals {
        let v = project.var(g.var);
        if !(is_definition_table(&v.type_name)
            || (is_type_object(&v.type_name) && v.pointers.is_empty()))
        {
            continue;
        }
        let mut seen_functions = Vec::new();
        for w in &g.writes {
            let site = project.write_site(w);
            if site.kind.escapes() || site.versions.python2_only() {
                continue;
            }
            let function = &project.function(w.function).name;
            let what = site
                .field
                .as_deref()
                .map(|f| format!("`{}.{f}`", v.name))
                .unwrap_or_else(|| format!("`{}`", v.name));
            let at = Site {
                file: w.function.file,
                span: site.span,
                versions: site.versions,
                uncertain: site.uncertain,
            };
            // `Foo_Type.tp_base = &PyBaseObject_Type;` in init: the type is reported as a
            // static type already, and a fixed value stored while it is readied is part of
            // that finding, not a second one.
            let fixed = crate::model::fixed_value(&project.files, &ctx.module.files, site);
            if let (true, Some(fixed)) = (w.at_init && is_type_object(&v.type_name), fixed) {
                let message = format!(
                    "{what} gets `{}` ({}) in `{function}` while the module initialises",
                    site.value.as_ref().map_or("?", |e| e.text.as_str()),
                    fixed.describe()
                );
                if ctx.relate("ISO003", ctx.var_site(g.var), at, message) {
                    continue;
                }
            }
            if seen_functions.contains(&w.function) {
                continue;
            }
            seen_functions.push(w.function);
            let when = if w.at_init {
                "while the module initialises"
            } else {
                "at run time"
            };
            let message = format!("{what} is written {when} in `{function}`: the definition is shared by every interpreter that creates the module or type from it");
            let help = "set the value in the static initializer, or on the object created from the definition".to_string();
            ctx.report(at, Some(&v.name), Some(function), message, help);
        }
    }
}
