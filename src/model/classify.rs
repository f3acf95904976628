//! Write-site classification: never written, written only at init, address escapes, or written
//! at run time.

use super::{Global, WriteClass};
use crate::facts::{FileFacts, WriteKind, WriteSite, Written};

/// Calls that take the address of a definition and only read through it (or manage it as the
/// C API intends): passing `&def` to them is not a write by the module.
pub const READ_ONLY_ADDRESS_USERS: &[&str] = &[
    "PyModule_Create",
    "PyModule_Create2",
    "PyModuleDef_Init",
    "PyModule_FromDefAndSpec",
    "PyModule_FromDefAndSpec2",
    "PyModule_AddFunctions",
    "PyState_FindModule",
    "PyState_AddModule",
    "PyState_RemoveModule",
    "PyType_FromSpec",
    "PyType_FromSpecWithBases",
    "PyType_FromModuleAndSpec",
    "PyType_FromMetaclass",
    "PyType_GetModuleByDef",
    "PyObject_TypeCheck",
    "Py_IS_TYPE",
    "PyType_IsSubtype",
    "PyObject_IsInstance",
    "PyObject_New",
    "PyObject_NewVar",
    "PyObject_GC_New",
    "PyObject_GC_NewVar",
    "PyObject_Init",
    "PyObject_INIT",
    "PyArg_ParseTupleAndKeywords",
    "PyArg_ParseTuple",
    "_PyArg_ParseTupleAndKeywordsFast",
    "_PyArg_UnpackKeywords",
    "PyCFunction_New",
    "PyCFunction_NewEx",
    "PyCMethod_New",
    "PyDescr_NewMethod",
    "PyDescr_NewClassMethod",
    "PyDescr_NewGetSet",
    "PyDescr_NewMember",
    "Py_INCREF",
    "Py_XINCREF",
    "Py_NewRef",
    "Py_XNewRef",
    "memcmp",
    "strcmp",
    "strlen",
    "sizeof",
];

pub fn classify_writes(files: &[FileFacts], global: &Global) -> WriteClass {
    let mut class = if global.address_in_initializers.is_empty() {
        WriteClass::NeverWritten
    } else {
        WriteClass::AddressEscapes
    };
    for w in &global.writes {
        let site = &files[w.function.file].functions[w.function.index].writes[w.site];
        if site.versions.python2_only() {
            continue;
        }
        let this = match site.kind {
            WriteKind::PassedByAddress
                if site
                    .via_call
                    .as_deref()
                    .is_some_and(|c| READ_ONLY_ADDRESS_USERS.contains(&c)) =>
            {
                continue
            }
            WriteKind::AddressTaken | WriteKind::PassedByAddress => WriteClass::AddressEscapes,
            _ if w.at_init => WriteClass::InitOnly,
            _ => WriteClass::Runtime,
        };
        class = class.max(this);
    }
    class
}

/// The kinds of fixed value a global's writes store, when every write that counts stores
/// one (see `Global::fixed`); empty otherwise.
pub fn fixed_values(
    files: &[FileFacts],
    module_files: &[usize],
    global: &Global,
) -> Vec<FixedValue> {
    if !global.address_in_initializers.is_empty() {
        return Vec::new();
    }
    let mut kinds = Vec::new();
    let mut value: Option<&str> = None;
    for w in &global.writes {
        let site = &files[w.function.file].functions[w.function.index].writes[w.site];
        if site.versions.python2_only() {
            continue;
        }
        let read_only_use = site.kind == WriteKind::PassedByAddress
            && site
                .via_call
                .as_deref()
                .is_some_and(|c| READ_ONLY_ADDRESS_USERS.contains(&c));
        if read_only_use {
            continue;
        }
        let stores = matches!(
            site.kind,
            // Not an element write: `seen[i] = 1` records which `i`, and that is state.
            WriteKind::Assign | WriteKind::CompoundAssign | WriteKind::FieldWrite
        );
        if !stores || is_flag_value(site) {
            return Vec::new();
        }
        // One value, written again and again. Two different values (`p = &a; ... p = &b;`)
        // are a state that changes.
        let text = site.value.as_ref().map_or("", |e| e.text.as_str());
        if value.is_some_and(|v| v != text) {
            return Vec::new();
        }
        value = Some(text);
        match fixed_value(files, module_files, site) {
            Some(k) if !kinds.contains(&k) => kinds.push(k),
            Some(_) => {}
            None => return Vec::new(),
        }
    }
    kinds
}

/// A literal number, `NULL` or a truth value: the write flips a flag or resets a pointer
/// (`initialized = 1;`, `cache = NULL;`), and code that reads the flag behaves differently
/// before and after it, in every interpreter after the first. That is state, not a value
/// computed again.
fn is_flag_value(site: &WriteSite) -> bool {
    use crate::facts::ExprKind;
    let Some(value) = site.value.as_ref() else {
        return true;
    };
    // tree-sitter reads `TRUE`/`true` as a literal node of its own, not an identifier.
    let truth = matches!(
        value.text.as_str(),
        "true" | "false" | "TRUE" | "FALSE" | "True" | "False" | "Py_True" | "Py_False"
    );
    truth || matches!(value.kind, ExprKind::Number(_) | ExprKind::Null)
}

/// Capsules whose pointer is the same in every interpreter: CPython's own, which point at
/// static C tables of static types (`PyDateTime_IMPORT` fills `PyDateTimeAPI` from this one).
pub const PROCESS_WIDE_CAPSULES: &[&str] =
    &["PyDateTime_CAPSULE_NAME", "\"datetime.datetime_CAPI\""];

/// How a write's value looks to the rules: the same in every interpreter and run (and
/// which kind), or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FixedValue {
    /// A C constant, a macro, a function's address.
    Constant,
    /// The address of a static.
    AddressOfStatic,
    /// A C computation over constants that reads no Python state.
    PureC,
    /// The pointer of a process-wide capsule (`PyDateTime_IMPORT`).
    CapsuleImport,
}

impl FixedValue {
    pub fn describe(self) -> &'static str {
        match self {
            FixedValue::Constant => "a C constant",
            FixedValue::AddressOfStatic => "the address of a static",
            FixedValue::PureC => "a C computation that reads no Python state",
            FixedValue::CapsuleImport => "the pointer of a process-wide capsule",
        }
    }
}

/// The kind of fixed value a write stores, or `None` when it may differ between interpreters
/// or runs. A name the value reads that is a mutable variable of the module's files makes it
/// unknown: the facts of one file cannot tell a macro from another file's global.
pub fn fixed_value(
    files: &[FileFacts],
    module_files: &[usize],
    site: &WriteSite,
) -> Option<FixedValue> {
    let reads_variable = || {
        site.reads.iter().any(|name| {
            module_files.iter().any(|&f| {
                files[f]
                    .variables
                    .iter()
                    // An array's name is its address: fixed, whatever its elements hold.
                    .any(|v| {
                        &v.name == name
                            && v.function.is_none()
                            && !v.is_immutable()
                            && v.array_dims == 0
                    })
            })
        })
    };
    match site.written {
        Written::Unknown | Written::PythonObject => None,
        Written::CapsuleImport => site
            .reads
            .first()
            .filter(|name| PROCESS_WIDE_CAPSULES.contains(&name.as_str()))
            .map(|_| FixedValue::CapsuleImport),
        Written::Constant if !reads_variable() => Some(FixedValue::Constant),
        Written::AddressOfStatic => Some(FixedValue::AddressOfStatic),
        Written::PureC if !reads_variable() => Some(FixedValue::PureC),
        Written::Constant | Written::PureC => None,
    }
}
