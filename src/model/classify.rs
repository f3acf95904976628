//! Write-site classification: never written, written only at init, address escapes, or written
//! at run time.

use super::{Global, WriteClass};
use crate::facts::{FileFacts, WriteKind};

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
