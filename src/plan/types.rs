//! Stage 2: each `static PyTypeObject` becomes a `PyType_Spec` with its `PyType_Slot[]`,
//! created per module in exec and kept in the module state.

use super::context::{last_ident, PlanCtx};
use crate::facts::{Expr, ExprKind, Init};
use crate::model::{TypeDef, TypeKind};
use std::collections::BTreeMap;

/// `tp_*` fields that have a `Py_tp_*` slot id (Include/typeslots.h). `tp_vectorcall` only has
/// one from 3.14 and is left out.
pub(super) const TP_SLOTS: &[&str] = &[
    "tp_alloc",
    "tp_base",
    "tp_bases",
    "tp_call",
    "tp_clear",
    "tp_dealloc",
    "tp_del",
    "tp_descr_get",
    "tp_descr_set",
    "tp_doc",
    "tp_getattr",
    "tp_getattro",
    "tp_hash",
    "tp_init",
    "tp_is_gc",
    "tp_iter",
    "tp_iternext",
    "tp_methods",
    "tp_new",
    "tp_repr",
    "tp_richcompare",
    "tp_setattr",
    "tp_setattro",
    "tp_str",
    "tp_traverse",
    "tp_members",
    "tp_getset",
    "tp_free",
    "tp_finalize",
];

/// Sub-tables whose fields become `Py_<prefix>_*` slots.
pub(super) const SUB_TABLES: &[(&str, &str)] = &[
    ("tp_as_async", "am"),
    ("tp_as_number", "nb"),
    ("tp_as_sequence", "sq"),
    ("tp_as_mapping", "mp"),
    ("tp_as_buffer", "bf"),
];

/// Fields that are not slots and need a note rather than code.
pub(super) const NOTED: &[(&str, &str)] = &[
    ("tp_weaklistoffset", "a `__weaklistoffset__` member in `Py_tp_members` (3.9+), or `Py_TPFLAGS_MANAGED_WEAKREF` (3.12+)"),
    ("tp_dictoffset", "a `__dictoffset__` member in `Py_tp_members` (3.9+), or `Py_TPFLAGS_MANAGED_DICT` (3.12+)"),
    ("tp_vectorcall_offset", "a `__vectorcalloffset__` member in `Py_tp_members` (3.9+) and `Py_TPFLAGS_HAVE_VECTORCALL`"),
    ("tp_vectorcall", "`Py_tp_vectorcall` (3.14+); before that, keep it unset"),
    ("tp_dict", "set attributes after `PyType_FromModuleAndSpec` instead"),
];

pub struct HeapType {
    pub var_name: String,
    pub tp_name: String,
    pub spec_name: String,
    pub code: String,
    pub notes: Vec<String>,
    pub dealloc: Option<String>,
    /// The existing dealloc's parameter as declared (`FooObject *self`), so the template keeps
    /// the signature its prototype already has.
    pub dealloc_param: Option<String>,
    pub traverse: Option<String>,
    /// The plan adds `traverse` (the static type had none, its instances hold references).
    pub traverse_is_new: bool,
    pub gc: bool,
    /// The static base type it named in `tp_base`, created first.
    pub base: Option<String>,
}

/// The frees a `tp_free` slot may name that the GC default replaces.
pub const PLAIN_FREES: &[&str] = &[
    "PyObject_Del",
    "PyObject_DEL",
    "PyObject_Free",
    "PyObject_FREE",
    "PyObject_GC_Del",
];

fn normalize_call(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace()).collect()
}

fn is_nothing(e: &Expr) -> bool {
    matches!(e.kind, ExprKind::Null | ExprKind::Number(Some(0)))
        || matches!(e.text.trim(), "0" | "NULL" | "(void *)0")
}

fn function_of(e: &Expr) -> Option<String> {
    e.ident()
        .map(str::to_string)
        .or_else(|| last_ident(&e.text))
}

pub fn heap_type(ctx: &PlanCtx, t: &TypeDef) -> Option<HeapType> {
    if t.kind != TypeKind::Static {
        return None;
    }
    let v = ctx.project.var(t.var);
    let var_name = v.name.clone();
    let tp_name = t.tp_name.clone().unwrap_or_else(|| var_name.clone());
    let slots_name = ctx.fresh(&format!("{var_name}_slots"));
    let spec_name = ctx.fresh(&format!("{var_name}_spec"));
    let mut notes = Vec::new();
    let mut slot_lines = Vec::new();
    let mut base = None;
    // A `tp_traverse` the plan adds, for a type whose instances hold references.
    let mut new_traverse: Option<String> = None;
    let has = |k: &str| t.slots.get(k).filter(|e| !is_nothing(e));
    for (field, value) in &t.slots {
        if is_nothing(value) {
            continue;
        }
        if field == "tp_free" && PLAIN_FREES.contains(&normalize_call(&value.text).as_str()) {
            // A GC heap type gets `PyObject_GC_Del` by default; a plain free would corrupt it.
            continue;
        }
        if TP_SLOTS.contains(&field.as_str()) {
            let mut text = value.text.clone();
            if field == "tp_base" {
                if let ExprKind::AddressOf(b) = &value.kind {
                    if ctx
                        .module
                        .types
                        .iter()
                        .any(|o| o.kind == TypeKind::Static && ctx.project.var(o.var).name == *b)
                    {
                        // The base is migrated too: use the module's instance of it.
                        base = Some(b.clone());
                        text = format!("state->{b}");
                    }
                }
            }
            if field == "tp_doc" && !text.trim_start().starts_with('"') {
                // `PyDoc_STRVAR` makes a `const char[]`; the slot is a `void *`.
                text = format!("(void *){text}");
            }
            slot_lines.push(format!("    {{Py_{field}, {text}}},"));
        } else if let Some((_, prefix)) = SUB_TABLES.iter().find(|(f, _)| f == field) {
            slot_lines.extend(sub_table_slots(ctx, value, prefix, &mut notes));
        } else if let Some((_, how)) = NOTED.iter().find(|(f, _)| f == field) {
            notes.push(format!(
                "`{field}` ({}) has no slot: use {how}.",
                value.text
            ));
        }
    }
    let mut flags = t
        .slots
        .get("tp_flags")
        .filter(|e| !is_nothing(e))
        .map(|e| e.text.clone())
        .unwrap_or_else(|| "Py_TPFLAGS_DEFAULT".to_string());
    // Instances that hold references need the GC protocol as heap types, traverse or not
    // (the `heap-type-gc-protocol` rule asks the same of the result).
    let object_fields: Vec<String> = t
        .slots
        .get("tp_basicsize")
        .map(|size| ctx.layouts.instance_object_fields(size))
        .unwrap_or_default()
        .into_iter()
        .map(str::to_string)
        .collect();
    // Every heap type follows the HOWTO's GC protocol: its instances hold a reference to
    // their type, and the type one to its module, whose state holds the type: a cycle only
    // the collector can break, and only when the instances are visited.
    let gc = true;
    // A type based on another static type of the module, with no traverse of its own,
    // inherits `Py_TPFLAGS_HAVE_GC` with the base's traverse, which visits the instance's own
    // type (the flag without a traverse is an error).
    let inherits_gc = base.is_some() && has("tp_traverse").is_none();
    if has("tp_traverse").is_none() && !inherits_gc {
        let traverse = ctx.fresh(&format!("{var_name}_traverse"));
        slot_lines.push(format!("    {{Py_tp_traverse, {traverse}}},"));
        new_traverse = Some(traverse);
    }
    if !inherits_gc && !flags.contains("Py_TPFLAGS_HAVE_GC") {
        flags.push_str(" | Py_TPFLAGS_HAVE_GC");
    }
    if !flags.contains("Py_TPFLAGS_IMMUTABLETYPE") {
        flags.push_str(" | Py_TPFLAGS_IMMUTABLETYPE");
    }
    // A static type with no `tp_new` (and no static base) could not be instantiated from
    // Python; a heap type would inherit `object.__new__` unless told otherwise.
    if has("tp_new").is_none() && base.is_none() && has("tp_base").is_none() {
        flags.push_str(" | Py_TPFLAGS_DISALLOW_INSTANTIATION");
    }
    let basicsize = t
        .slots
        .get("tp_basicsize")
        .map(|e| e.text.clone())
        .unwrap_or_else(|| "0".into());
    let itemsize = t
        .slots
        .get("tp_itemsize")
        .map(|e| e.text.clone())
        .unwrap_or_else(|| "0".into());
    let instance = t.slots.get("tp_basicsize").and_then(|e| match &e.kind {
        ExprKind::SizeOf(s) => Some(s.trim_matches(|c| c == '(' || c == ')').trim().to_string()),
        _ => None,
    });
    // A traverse the plan adds is complete (the type, then every object field), so it is
    // declared with the spec that names it.
    let traverse_code = new_traverse
        .as_deref()
        .map(|traverse| new_traverse_function(traverse, instance.as_deref(), &object_fields))
        .unwrap_or_default();
    let code = format!(
        "{traverse_code}static PyType_Slot {slots_name}[] = {{\n{}\n    {{0, NULL}},\n}};\n\nstatic PyType_Spec {spec_name} = {{\n    .name = \"{tp_name}\",\n    .basicsize = {basicsize},\n    .itemsize = {itemsize},\n    .flags = {flags},\n    .slots = {slots_name},\n}};\n",
        slot_lines.join("\n"),
    );
    // `state->Base` in a slot array would not compile at file scope: the base goes in the
    // `bases` argument instead.
    let code = if base.is_some() {
        code.lines()
            .filter(|l| !l.contains("{Py_tp_base, state->"))
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    } else {
        code
    };
    Some(HeapType {
        var_name,
        tp_name,
        spec_name,
        code,
        notes,
        dealloc_param: has("tp_dealloc")
            .and_then(function_of)
            .and_then(|name| first_param(ctx, &name)),
        dealloc: has("tp_dealloc").and_then(function_of),
        traverse_is_new: new_traverse.is_some(),
        traverse: new_traverse.or_else(|| has("tp_traverse").and_then(function_of)),
        gc,
        base,
    })
}

/// `tp_as_number = &Foo_as_number`: each non-empty field of that table becomes `Py_nb_*`.
fn sub_table_slots(
    ctx: &PlanCtx,
    value: &Expr,
    prefix: &str,
    notes: &mut Vec<String>,
) -> Vec<String> {
    let Some(name) = value.ident() else {
        notes.push(format!(
            "expand `{}` into `Py_{prefix}_*` slots by hand.",
            value.text
        ));
        return Vec::new();
    };
    let table = ctx.module.files.iter().find_map(|&fi| {
        ctx.project.files[fi]
            .variables
            .iter()
            .find(|v| v.name == name && v.function.is_none() && v.init.is_some())
    });
    let Some(Init::List(list)) = table.and_then(|t| t.init.as_ref()) else {
        notes.push(format!(
            "expand `{name}` into `Py_{prefix}_*` slots by hand."
        ));
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut positional = false;
    for entry in crate::model::current_entries(list) {
        match (&entry.designator, &entry.value) {
            (Some(d), Init::Expr(e)) if !is_nothing(e) => {
                out.push(format!("    {{Py_{d}, {}}},", e.text));
            }
            (None, Init::Expr(e)) if !is_nothing(e) => positional = true,
            _ => {}
        }
    }
    if positional {
        notes.push(format!(
            "`{name}` is initialised positionally: move each of its non-NULL fields into a `Py_{prefix}_*` slot."
        ));
    }
    out
}

/// The exec code that creates the type for this module and adds it.
pub fn exec_lines(ht: &HeapType, state_var: &str) -> String {
    let bases = match &ht.base {
        Some(b) => format!("(PyObject *){state_var}->{b}"),
        None => "NULL".into(),
    };
    let attr = ht.tp_name.rsplit('.').next().unwrap_or(&ht.tp_name);
    format!(
        "    {state_var}->{v} = (PyTypeObject *)PyType_FromModuleAndSpec(module, &{spec}, {bases});\n    if ({state_var}->{v} == NULL) {{\n        return -1;\n    }}\n    if (PyModule_AddObjectRef(module, \"{attr}\", (PyObject *){state_var}->{v}) < 0) {{\n        return -1;\n    }}\n",
        v = ht.var_name,
        spec = ht.spec_name,
    )
}

/// The `tp_traverse` of a type that had none: its type, then every object field.
fn new_traverse_function(traverse: &str, instance: Option<&str>, fields: &[String]) -> String {
    let instance = instance.unwrap_or("PyObject");
    let mut visits = String::new();
    for field in fields {
        visits.push_str(&format!("    Py_VISIT((({instance} *)self)->{field});\n"));
    }
    format!(
        "/* {traverse}: new with Py_TPFLAGS_HAVE_GC: the type, then every object field. */\nstatic int\n{traverse}(PyObject *self, visitproc visit, void *arg)\n{{\n    Py_VISIT(Py_TYPE(self));\n{visits}    return 0;\n}}\n\n"
    )
}

/// `FooObject *self` for the module's function `name`, as its definition declares it.
fn first_param(ctx: &PlanCtx, name: &str) -> Option<String> {
    let f = ctx
        .module
        .files
        .iter()
        .flat_map(|&fi| ctx.project.files[fi].functions.iter())
        .find(|f| f.name == name)?;
    let p = f.params.first()?;
    let param = p.name.clone().unwrap_or_else(|| "self".into());
    Some(format!(
        "{} {}{param}",
        p.type_name.trim(),
        "*".repeat(p.pointers)
    ))
}

/// The dealloc and traverse bodies the HOWTO asks of a heap type.
pub fn instance_changes(ht: &HeapType) -> String {
    let mut out = String::new();
    let dealloc = ht
        .dealloc
        .clone()
        .unwrap_or_else(|| format!("{}_dealloc", ht.var_name));
    // The existing definition's parameter, so the template matches its prototype.
    let param = ht
        .dealloc_param
        .clone()
        .unwrap_or_else(|| "PyObject *self".into());
    let self_name = param
        .rsplit(|c: char| c == '*' || c.is_whitespace())
        .next()
        .filter(|n| !n.is_empty())
        .unwrap_or("self")
        .to_string();
    out.push_str(&format!(
        "/* {dealloc}: a heap type's instances own a reference to their type. */\nstatic void\n{dealloc}({param})\n{{\n    PyTypeObject *tp = Py_TYPE({self_name});\n"
    ));
    if ht.gc {
        out.push_str(&format!("    PyObject_GC_UnTrack({self_name});\n"));
    }
    out.push_str(&format!(
        "    /* ... release the instance's fields as before ... */\n    tp->tp_free((PyObject *){self_name});\n    Py_DECREF(tp);\n}}\n"
    ));
    if let Some(traverse) = ht.traverse.as_ref().filter(|_| !ht.traverse_is_new) {
        out.push_str(&format!(
            "\n/* {traverse}: visit the type first (3.9+). */\nstatic int\n{traverse}(PyObject *self, visitproc visit, void *arg)\n{{\n    Py_VISIT(Py_TYPE(self));\n    /* ... visit the instance's fields as before ... */\n    return 0;\n}}\n"
        ));
    }
    if ht.gc && ht.traverse_is_new {
        out.push_str("\n/* Instances are GC objects now: allocate them with `PyObject_GC_New` (or\n   `tp_alloc`), not `PyObject_New`, and track them once their fields are set. */\n");
    }
    out
}

/// Static types by name, in declaration order, bases first.
pub fn ordered(types: Vec<HeapType>) -> Vec<HeapType> {
    let mut by_name: BTreeMap<String, usize> = BTreeMap::new();
    for (i, t) in types.iter().enumerate() {
        by_name.insert(t.var_name.clone(), i);
    }
    let mut order: Vec<usize> = Vec::new();
    fn visit(
        i: usize,
        types: &[HeapType],
        by_name: &BTreeMap<String, usize>,
        order: &mut Vec<usize>,
        depth: usize,
    ) {
        if order.contains(&i) || depth > 16 {
            return;
        }
        if let Some(b) = types[i].base.as_ref().and_then(|b| by_name.get(b)) {
            visit(*b, types, by_name, order, depth + 1);
        }
        if !order.contains(&i) {
            order.push(i);
        }
    }
    for i in 0..types.len() {
        visit(i, &types, &by_name, &mut order, 0);
    }
    let mut slots: Vec<Option<HeapType>> = types.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}
