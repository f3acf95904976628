use super::{declare_rule, Ctx, Site};
use crate::model::pytypes::{is_definition_table, is_type_object};

declare_rule! {
    /// ## What it does
    /// Flags a write at run time to a definition the C API reads: a `PyModuleDef`,
    /// `PyMethodDef[]`, `PyTypeObject`, `PyType_Spec` or slot array, e.g. `def.m_name = name;`,
    /// `Foo_Type.tp_new = PyType_GenericNew;` or patching `ml_meth` in a method table.
    ///
    /// Definitions the module does not own count too: the `PyMethodDef` behind a function
    /// object (`((PyCFunctionObject *)func)->m_ml->ml_meth = replacement;`, numpy's
    /// `add_docstring` writing `ml_doc`) and the slots of CPython's static types
    /// (`PyFloat_Type.tp_repr = my_repr;`: a type CPython's headers export, which the scan does
    /// not declare).
    ///
    /// A fixed value (a C constant, the address of a static: `Foo_Type.tp_base =
    /// &PyBaseObject_Type;`) stored into a static type while the module initialises is not a
    /// finding of its own: the type's `static-type-object` finding already says the object is
    /// shared, and lists the write as a related place. The same holds for a `tp_as_*`
    /// sub-table (`PySequenceMethods`, `PyNumberMethods`, ...) filled so while the module
    /// initialises and hung on a static type there (`Foo_as_sequence.sq_length = foo_len;`,
    /// `Foo_Type.tp_as_sequence = &Foo_as_sequence;`). Anything else written into it (a Python
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
        reads_findings: true,
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
            // A `tp_as_*` sub-table filled while the module initialises and hung on a static
            // type there (`automaton_as_sequence.sq_length = automaton_len;` then
            // `automaton_type.tp_as_sequence = &automaton_as_sequence;`) is part of that type.
            let owner = if is_type_object(&v.type_name) {
                Some(g.var)
            } else {
                sub_table_owner(ctx, &v.type_name, &v.name)
            };
            if let (true, Some(fixed), Some(owner)) = (w.at_init, fixed, owner) {
                let message = format!(
                    "{what} gets `{}` ({}) in `{function}` while the module initialises",
                    site.value.as_ref().map_or("?", |e| e.text.as_str()),
                    fixed.describe()
                );
                if ctx.relate("ISO003", ctx.var_site(owner), at, message) {
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
    shared_definitions_of_cpython(ctx);
}

/// For a `tp_as_*` sub-table (`PySequenceMethods`, ...): the static type of the module that
/// gets its address while the module initialises.
fn sub_table_owner(ctx: &Ctx, type_name: &str, name: &str) -> Option<crate::model::VarRef> {
    const SUB_TABLES: &[&str] = &[
        "PySequenceMethods",
        "PyNumberMethods",
        "PyMappingMethods",
        "PyAsyncMethods",
        "PyBufferProcs",
    ];
    if !SUB_TABLES.contains(&crate::model::pytypes::bare_type(type_name)) {
        return None;
    }
    let project = ctx.project;
    let address = format!("&{name}");
    ctx.module.globals.iter().find_map(|t| {
        let tv = project.var(t.var);
        let holds = is_type_object(&tv.type_name)
            && tv.pointers.is_empty()
            && t.writes.iter().any(|w| {
                let site = project.write_site(w);
                w.at_init
                    && site
                        .field
                        .as_deref()
                        .is_some_and(|f| f.starts_with("tp_as_"))
                    && site.value.as_ref().is_some_and(|e| e.text == address)
            });
        holds.then_some(t.var)
    })
}

/// The static types CPython's headers export (`PyAPI_DATA(PyTypeObject)`, 3.13): sorted.
const CPYTHON_STATIC_TYPES: &[&str] = &[
    "PyAsyncGen_Type",
    "PyBaseObject_Type",
    "PyBool_Type",
    "PyByteArrayIter_Type",
    "PyByteArray_Type",
    "PyBytesIter_Type",
    "PyBytes_Type",
    "PyCFunction_Type",
    "PyCMethod_Type",
    "PyCallIter_Type",
    "PyCapsule_Type",
    "PyCell_Type",
    "PyClassMethodDescr_Type",
    "PyClassMethod_Type",
    "PyCode_Type",
    "PyComplex_Type",
    "PyContextToken_Type",
    "PyContextVar_Type",
    "PyContext_Type",
    "PyCoro_Type",
    "PyDictItems_Type",
    "PyDictIterItem_Type",
    "PyDictIterKey_Type",
    "PyDictIterValue_Type",
    "PyDictKeys_Type",
    "PyDictProxy_Type",
    "PyDictRevIterItem_Type",
    "PyDictRevIterKey_Type",
    "PyDictRevIterValue_Type",
    "PyDictValues_Type",
    "PyDict_Type",
    "PyEllipsis_Type",
    "PyEnum_Type",
    "PyFilter_Type",
    "PyFloat_Type",
    "PyFrameLocalsProxy_Type",
    "PyFrame_Type",
    "PyFrozenSet_Type",
    "PyFunction_Type",
    "PyGen_Type",
    "PyGetSetDescr_Type",
    "PyInstanceMethod_Type",
    "PyListIter_Type",
    "PyListRevIter_Type",
    "PyList_Type",
    "PyLongRangeIter_Type",
    "PyLong_Type",
    "PyMap_Type",
    "PyMemberDescr_Type",
    "PyMemoryView_Type",
    "PyMethodDescr_Type",
    "PyMethod_Type",
    "PyModuleDef_Type",
    "PyModule_Type",
    "PyODictItems_Type",
    "PyODictIter_Type",
    "PyODictKeys_Type",
    "PyODictValues_Type",
    "PyODict_Type",
    "PyPickleBuffer_Type",
    "PyProperty_Type",
    "PyRangeIter_Type",
    "PyRange_Type",
    "PyReversed_Type",
    "PySeqIter_Type",
    "PySetIter_Type",
    "PySet_Type",
    "PySlice_Type",
    "PyStaticMethod_Type",
    "PyStdPrinter_Type",
    "PySuper_Type",
    "PyTraceBack_Type",
    "PyTupleIter_Type",
    "PyTuple_Type",
    "PyType_Type",
    "PyUnicodeIter_Type",
    "PyUnicode_Type",
    "PyWrapperDescr_Type",
    "PyZip_Type",
    "_PyAsyncGenASend_Type",
    "_PyNone_Type",
    "_PyNotImplemented_Type",
    "_PyUnion_Type",
];

fn cpython_type_name(name: &str) -> bool {
    CPYTHON_STATIC_TYPES.binary_search(&name).is_ok()
}

/// Writes into definitions the module does not own: the `PyMethodDef` behind a builtin
/// function object (`func->m_ml->ml_meth = f;`), the slots of CPython's static types
/// (`PyFloat_Type.tp_repr = f;`). Every interpreter shares them.
fn shared_definitions_of_cpython(ctx: &mut Ctx) {
    let project = ctx.project;
    let declared = |name: &str| {
        project
            .files
            .iter()
            .any(|f| f.variables.iter().any(|v| v.name == name))
    };
    let mut found = Vec::new();
    for &fi in &ctx.module.files {
        for f in &project.files[fi].functions {
            let mut seen: Vec<(&str, &str)> = Vec::new();
            for w in &f.definition_writes {
                let field = w.field.as_deref().unwrap_or("?");
                if w.versions.python2_only() || seen.contains(&(w.target.as_str(), field)) {
                    continue;
                }
                seen.push((w.target.as_str(), field));
                let message = format!(
                    "`{}->{field}` is written in `{}`: it patches the `PyMethodDef` a function object was made from, which may be another module's or a builtin's, shared by every interpreter",
                    w.target, f.name
                );
                found.push((fi, f, w, Some(format!("m_ml->{field}")), message));
            }
            for w in &f.writes {
                let Some(field) = w.field.as_deref().filter(|f| f.starts_with("tp_")) else {
                    continue;
                };
                if w.kind.escapes()
                    || w.versions.python2_only()
                    || !cpython_type_name(&w.target)
                    || seen.contains(&(w.target.as_str(), field))
                    || declared(&w.target)
                {
                    continue;
                }
                seen.push((w.target.as_str(), field));
                let message = format!(
                    "`{}.{field}` is written in `{}`: `{}` is a static type of CPython, shared by every interpreter and every module",
                    w.target, f.name, w.target
                );
                found.push((fi, f, w, Some(w.target.clone()), message));
            }
        }
    }
    for (fi, f, w, symbol, message) in found {
        let at = Site {
            file: fi,
            span: w.span,
            versions: w.versions,
            uncertain: w.uncertain,
        };
        let help = "leave CPython's definitions alone: wrap the object or subclass the type in the module, and keep what differs in module state".to_string();
        ctx.report(at, symbol.as_deref(), Some(&f.name), message, help);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpython_types_are_sorted() {
        let mut sorted = super::CPYTHON_STATIC_TYPES.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, super::CPYTHON_STATIC_TYPES);
        assert!(super::cpython_type_name("PyFloat_Type"));
        assert!(!super::cpython_type_name("PyArrayDescr_Type"));
    }
}
