//! What a declared C type means to CPython: does it hold Python objects, is it a definition
//! table the interpreter only reads, is it a type object.

use crate::facts::{FileFacts, StructDef, Variable};
use std::collections::HashMap;

/// Tables of the C API that describe a module or type and are only read by the interpreter.
pub const DEFINITION_TABLE_TYPES: &[&str] = &[
    "PyMethodDef",
    "PyMemberDef",
    "PyGetSetDef",
    "PyModuleDef",
    "PyModuleDef_Slot",
    "PyType_Slot",
    "PyType_Spec",
    "PyStructSequence_Desc",
    "PyStructSequence_Field",
    "PyNumberMethods",
    "PySequenceMethods",
    "PyMappingMethods",
    "PyAsyncMethods",
    "PyBufferProcs",
    "_PyArg_Parser",
];

pub fn bare_type(type_name: &str) -> &str {
    type_name
        .trim_start_matches("struct ")
        .trim_start_matches("const ")
        .trim()
}

pub fn is_definition_table(type_name: &str) -> bool {
    DEFINITION_TABLE_TYPES.contains(&bare_type(type_name))
}

pub fn is_type_object(type_name: &str) -> bool {
    matches!(
        bare_type(type_name),
        "PyTypeObject" | "_typeobject" | "PyHeapTypeObject"
    )
}

/// `PyObject`, `PyTypeObject`, `PyLongObject`, `PyDictObject`...
pub fn is_api_object_type(type_name: &str) -> bool {
    let t = bare_type(type_name);
    t == "PyObject"
        || t == "PyVarObject"
        || t == "_object"
        || is_type_object(t)
        || (t.starts_with("Py") && t.ends_with("Object"))
        || (t.starts_with("_Py") && t.ends_with("Object"))
}

/// Struct layouts known in the scanned code, by tag and typedef name.
#[derive(Default)]
pub struct Layouts<'a> {
    by_name: HashMap<&'a str, &'a StructDef>,
    /// Every definition of a name that several files define differently (two modules'
    /// `struct module_state`), with the file that defines it.
    several: HashMap<&'a str, Vec<(usize, &'a StructDef)>>,
}

impl<'a> Layouts<'a> {
    pub fn new<'f>(files: impl Iterator<Item = &'a FileFacts>) -> Self {
        Self::of_structs(
            files
                .enumerate()
                .flat_map(|(fi, f)| f.structs.iter().map(move |s| (fi, s))),
        )
    }

    /// The layouts of these structs, each with the index of its file; the first of a name
    /// wins, except in [`Layouts::get_in`].
    pub fn of_structs(structs: impl Iterator<Item = (usize, &'a StructDef)>) -> Self {
        let mut by_name = HashMap::new();
        let mut all: HashMap<&'a str, Vec<(usize, &'a StructDef)>> = HashMap::new();
        for (fi, s) in structs {
            for n in &s.names {
                by_name.entry(n.as_str()).or_insert(s);
                all.entry(n.as_str()).or_default().push((fi, s));
            }
        }
        all.retain(|_, defs| defs.len() > 1);
        Self {
            by_name,
            several: all,
        }
    }

    pub fn get(&self, type_name: &str) -> Option<&'a StructDef> {
        self.by_name.get(bare_type(type_name)).copied()
    }

    /// The layout a module's code means by `type_name`: the definition in one of the module's
    /// files when several files define that name, else the scan's.
    pub fn get_in(&self, type_name: &str, module_files: &[usize]) -> Option<&'a StructDef> {
        let name = bare_type(type_name);
        self.several
            .get(name)
            .and_then(|defs| {
                defs.iter()
                    .find(|(fi, _)| module_files.contains(fi))
                    .map(|(_, s)| *s)
            })
            .or_else(|| self.get(name))
    }

    /// Instances of this type are Python objects (`PyObject`, or a struct that starts with
    /// `PyObject_HEAD`).
    pub fn is_object(&self, type_name: &str) -> bool {
        is_api_object_type(type_name) || self.get(type_name).is_some_and(|s| s.is_object_layout())
    }

    /// The fields after the object header of the instance struct a type's `tp_basicsize`
    /// names (`sizeof(FooObject)`) that point to Python objects: what makes its instances
    /// hold references, so the type needs the GC protocol. Empty when the struct is unknown.
    pub fn instance_object_fields(&self, basicsize: &crate::facts::Expr) -> Vec<&'a str> {
        let crate::facts::ExprKind::SizeOf(instance) = &basicsize.kind else {
            return Vec::new();
        };
        let instance = instance.trim_matches(|c| c == '(' || c == ')').trim();
        self.get(instance)
            .map(|layout| {
                layout
                    .fields
                    .iter()
                    .skip(1)
                    .filter(|f| f.pointers > 0 && self.is_object(&f.type_name))
                    .map(|f| f.name.as_str())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A value of this type (with these pointer levels) holds a reference to a Python object.
    pub fn holds_objects(&self, type_name: &str, pointers: usize, depth: usize) -> bool {
        if pointers > 0 {
            return self.is_object(type_name)
                || (pointers == 1 && self.struct_holds_objects(type_name, depth));
        }
        // A struct (or array of structs) by value, whose fields hold objects. An object layout
        // by value is a statically allocated object, not a holder.
        if self.get(type_name).is_some_and(|s| s.is_object_layout()) {
            return false;
        }
        self.struct_holds_objects(type_name, depth)
    }

    fn struct_holds_objects(&self, type_name: &str, depth: usize) -> bool {
        if depth > 3 {
            return false;
        }
        self.get(type_name).is_some_and(|s| {
            s.fields.iter().any(|f| {
                if f.pointers > 0 {
                    self.is_object(&f.type_name)
                } else {
                    !self.get(&f.type_name).is_some_and(|x| x.is_object_layout())
                        && self.struct_holds_objects(&f.type_name, depth + 1)
                }
            })
        })
    }

    pub fn variable_holds_objects(&self, v: &Variable) -> bool {
        if !v.inline_fields.is_empty() && v.pointers.is_empty() {
            return v
                .inline_fields
                .iter()
                .any(|f| f.pointers > 0 && self.is_object(&f.type_name));
        }
        self.holds_objects(&v.type_name, v.pointers.len(), 0)
    }

    /// A Python object allocated statically: `static PyObject x = {...}` or a static instance
    /// of a struct that starts with `PyObject_HEAD`. Type objects are counted separately.
    pub fn is_static_object(&self, v: &Variable) -> bool {
        v.pointers.is_empty()
            && !is_type_object(&v.type_name)
            && (matches!(bare_type(&v.type_name), "PyObject" | "PyVarObject")
                || self.get(&v.type_name).is_some_and(|s| s.is_object_layout())
                || (bare_type(&v.type_name).starts_with("Py")
                    && bare_type(&v.type_name).ends_with("Object")))
    }
}
