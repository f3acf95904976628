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
    // A capsule hands a C-API table to other modules, which call through it.
    "PyCapsule_New",
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

/// The argument parsers: `&PyDict_Type` for an `O!` unit is read, any other address is an
/// output the parser stores into (`PyArg_ParseTuple(args, "I", &flags)`).
const ARGUMENT_PARSERS: &[&str] = &["PyArg_ParseTuple", "PyArg_ParseTupleAndKeywords"];

/// `&x` passed to a call that only reads through it, for this variable.
fn read_only_address_use(files: &[FileFacts], global: &Global, site: &WriteSite) -> bool {
    let Some(call) = site.via_call.as_deref() else {
        return false;
    };
    if READ_ONLY_ADDRESS_USERS.contains(&call) {
        return true;
    }
    ARGUMENT_PARSERS.contains(&call) && {
        // A table the parser reads: the keyword list (`&kwlist[0]`), or a type object for `O!`
        // (whose type name may be an export macro the grammar took for the type:
        // `NPY_NO_EXPORT PyTypeObject PyUFunc_Type = {...}`). Both have an aggregate
        // initializer; an output never does.
        let v = &files[global.var.file].variables[global.var.index];
        matches!(v.init, Some(crate::facts::Init::List(_)))
            || (v.pointers.is_empty() && super::pytypes::is_type_object(&v.type_name))
    }
}

/// The field names the module's code writes through a pointer: `x->f = ...` on a global or
/// through a local or parameter, and `&x->f` passed on (see
/// `Function::fields_written_through_locals`).
pub fn fields_written_through_pointers<'f>(
    files: &'f [FileFacts],
    members: &[usize],
) -> rustc_hash::FxHashSet<&'f str> {
    let mut out = rustc_hash::FxHashSet::default();
    for &fi in members {
        for f in &files[fi].functions {
            out.extend(
                f.fields_written_through_locals
                    .iter()
                    .map(|s| s.field.as_str()),
            );
            out.extend(
                f.writes
                    .iter()
                    .chain(&f.definition_writes)
                    .filter_map(|w| w.field.as_deref()),
            );
        }
    }
    out
}

/// A struct variable whose type is a struct of the module's files none of whose fields the
/// module writes through any pointer: storing its address in an object's field
/// (`self->encoding = &unicode_encoding`) lets nothing write it. (A copy of a whole struct
/// through a pointer, `*p = other`, or a `memcpy` into it, is not followed.)
fn never_written_through(
    files: &[FileFacts],
    members: &[usize],
    global: &Global,
    written_fields: &rustc_hash::FxHashSet<&str>,
) -> bool {
    let v = &files[global.var.file].variables[global.var.index];
    if !v.pointers.is_empty() || !v.inline_fields.is_empty() {
        return false;
    }
    let type_name = v
        .type_name
        .strip_prefix("struct ")
        .unwrap_or(&v.type_name)
        .trim();
    let mut defs = members
        .iter()
        .flat_map(|&fi| &files[fi].structs)
        .filter(|s| s.names.iter().any(|n| n == type_name))
        .peekable();
    defs.peek().is_some()
        && defs.all(|s| {
            !s.fields.is_empty()
                && s.fields
                    .iter()
                    .all(|f| !written_fields.contains(f.name.as_str()))
        })
}

pub fn classify_writes(
    files: &[FileFacts],
    members: &[usize],
    global: &Global,
    written_fields: &rustc_hash::FxHashSet<&str>,
) -> WriteClass {
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
            WriteKind::PassedByAddress if read_only_address_use(files, global, site) => continue,
            WriteKind::AddressTaken
                if site.stored_in_field.is_some()
                    && never_written_through(files, members, global, written_fields) =>
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
    let sites = global
        .writes
        .iter()
        .map(|w| &files[w.function.file].functions[w.function.index].writes[w.site]);
    fixed_of_writes(files, module_files, sites, true)
}

/// `fixed_values` over the write sites of one variable. `follow_capsules`: whether a capsule
/// import may be judged by the capsule the scan creates (one level: a capsule's table is not
/// itself filled from another capsule).
fn fixed_of_writes<'f>(
    files: &'f [FileFacts],
    module_files: &[usize],
    sites: impl Iterator<Item = &'f WriteSite>,
    follow_capsules: bool,
) -> Vec<FixedValue> {
    let mut kinds = Vec::new();
    // One value per slot: the variable itself, or each constant index of a table filled slot
    // by slot.
    let mut values: Vec<(Option<&str>, &str)> = Vec::new();
    for site in sites {
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
            WriteKind::Assign | WriteKind::CompoundAssign | WriteKind::FieldWrite
        ) || (site.kind == WriteKind::ElementWrite && site.index.is_some());
        // An element write at a computed index (`seen[i] = 1`) records which `i`, and that is
        // state; at a constant index it fills one slot of a table.
        // `Py_True` in one slot of a table of CPython's immortal objects (the
        // `Py_GetConstant` shim's `constants[]`) fills the table; alone it is a flag.
        let table_of_immortals = site.index.is_some() && site.written == Written::ImmortalObject;
        if !stores || (is_flag_value(site) && !table_of_immortals) {
            return Vec::new();
        }
        // One value, written again and again. Two different values (`p = &a; ... p = &b;`)
        // are a state that changes.
        let text = site.value.as_ref().map_or("", |e| e.text.as_str());
        let slot = site.index.as_deref();
        match values.iter().find(|(s, _)| *s == slot) {
            Some((_, v)) if *v != text => return Vec::new(),
            Some(_) => {}
            None => values.push((slot, text)),
        }
        let kind = match fixed_value(files, module_files, site) {
            None if follow_capsules && site.written == Written::CapsuleImport => site
                .reads
                .first()
                .filter(|name| provides_fixed_capsule(files, name))
                .map(|_| FixedValue::CapsuleImport),
            kind => kind,
        };
        match kind {
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

/// Whether a file of the scan creates the capsule `name` (as written, quotes and all) from a
/// static table of fixed values (see [`fixed_capsules`]): importing it stores the same pointer
/// in every interpreter.
fn provides_fixed_capsule(files: &[FileFacts], name: &str) -> bool {
    files
        .iter()
        .any(|file| file.fixed_capsules.iter().any(|c| c == name))
}

/// The capsules this file makes with `PyCapsule_New(table, name, ...)` over a static C table
/// whose every write stores a fixed value (`table[WRITE_INDEX] = (void *)write;`, or an
/// initializer and no write): a table of function addresses that is the same in every
/// interpreter. A file-local question, answered when the file's facts are read.
pub fn fixed_capsules(file: &FileFacts) -> Vec<String> {
    let mut names = Vec::new();
    for function in &file.functions {
        for call in &function.calls {
            if call.callee != "PyCapsule_New" {
                continue;
            }
            let (Some(table), Some(name)) = (
                call.args.first().and_then(|a| a.ident()),
                call.args.get(1).map(|n| n.text.as_str()),
            ) else {
                continue;
            };
            // The table: a static of this function, else of this file.
            let Some(var) = file
                .variables
                .iter()
                .filter(|v| v.name == table && v.is_static)
                .min_by_key(|v| v.function.as_deref() != Some(function.name.as_str()))
            else {
                continue;
            };
            let writes: Vec<&WriteSite> = file
                .functions
                .iter()
                .filter(|f| var.function.as_ref().is_none_or(|owner| *owner == f.name))
                .flat_map(|f| f.writes.iter().filter(|w| w.target == table))
                .collect();
            let never_written = writes.is_empty() && var.init.is_some();
            let files = std::slice::from_ref(file);
            if never_written || !fixed_of_writes(files, &[0], writes.into_iter(), false).is_empty()
            {
                names.push(name.to_string());
            }
        }
    }
    names
}

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
    /// One of CPython's immortal objects (`Py_None`, a small int, the empty tuple): the same
    /// object in every interpreter from 3.12 on, never freed.
    ImmortalObject,
}

impl FixedValue {
    pub fn describe(self) -> &'static str {
        match self {
            FixedValue::Constant => "a C constant",
            FixedValue::AddressOfStatic => "the address of a static",
            FixedValue::PureC => "a C computation that reads no Python state",
            FixedValue::CapsuleImport => "the pointer of a process-wide capsule",
            FixedValue::ImmortalObject => "one of CPython's immortal objects (`Py_None`, a small int, an empty str, bytes or tuple)",
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
    // A prototype written through macros (`static RET name PROTO;`) reads as a variable; the
    // function defined under that name says what it is.
    let is_function = |name: &str| {
        module_files
            .iter()
            .any(|&f| files[f].functions.iter().any(|fun| fun.name == name))
    };
    let reads_variable = || {
        site.reads.iter().any(|name| {
            !is_function(name)
                && module_files.iter().any(|&f| {
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
        Written::ImmortalObject => Some(FixedValue::ImmortalObject),
        Written::PureC if !reads_variable() => Some(FixedValue::PureC),
        Written::Constant | Written::PureC => None,
    }
}
