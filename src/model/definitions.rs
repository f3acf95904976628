//! Reading one module out of the facts: how it is created, its `PyModuleDef` and slots, its
//! types, and its globals with their readers and writers.

use super::classify::classify_writes;
use super::pytypes::{bare_type, is_type_object};
use super::{ExtensionModule, FnRef, Global, InitStyle, ModuleCreation, SetGil, VarRef};
use crate::facts::{Expr, ExprKind, FileFacts, Init, InitEntry, InitList};
use crate::version::{py, VersionRange};
// Looked up for every name every function uses: Fx, not SipHash.
use rustc_hash::FxHashMap as HashMap;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// A current Python; positional initializers follow the `#if` branch it compiles.
const CURRENT: crate::version::PyVersion = py(3, 13);

#[derive(Debug, Clone)]
pub struct SlotValue {
    pub slot: String,
    pub value: Expr,
    pub versions: VersionRange,
}

#[derive(Debug, Clone)]
pub struct ModuleDef {
    pub var: VarRef,
    pub fields: BTreeMap<String, Expr>,
    /// The `PyModuleDef_Slot[]` named by `m_slots`.
    pub slots_var: Option<VarRef>,
    pub slots: Vec<SlotValue>,
}

impl ModuleDef {
    pub fn field(&self, name: &str) -> Option<&Expr> {
        self.fields.get(name)
    }
    pub fn m_size(&self) -> Option<&Expr> {
        self.fields.get("m_size")
    }
    /// A function named by `m_traverse` and friends; `NULL`/`0` is no function.
    pub fn function_field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).and_then(|e| match &e.kind {
            ExprKind::Ident(n) | ExprKind::AddressOf(n) => Some(n.as_str()),
            _ => None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeKind {
    /// `static PyTypeObject X = {...}`.
    Static,
    /// A `PyType_Spec`, created at run time.
    Heap,
}

#[derive(Debug, Clone)]
pub struct TypeDef {
    pub var: VarRef,
    pub kind: TypeKind,
    /// The Python-visible name (`"mod.Foo"`).
    pub tp_name: Option<String>,
    /// `tp_dealloc` → `Foo_dealloc`, from designated or positional entries, or `Py_tp_*` slots.
    pub slots: BTreeMap<String, Expr>,
    /// The `PyType_Slot[]` of a spec.
    pub slots_var: Option<VarRef>,
}

/// `PyModuleDef`'s fields in declaration order (positional initializers follow it).
pub const MODULE_DEF_FIELDS: &[&str] = &[
    "m_base",
    "m_name",
    "m_doc",
    "m_size",
    "m_methods",
    "m_slots",
    "m_traverse",
    "m_clear",
    "m_free",
];

const TYPE_OBJECT_FIELDS_AFTER_NAME: &[&str] = &[
    "tp_basicsize",
    "tp_itemsize",
    "tp_dealloc",
    "tp_vectorcall_offset",
    "tp_getattr",
    "tp_setattr",
    "tp_as_async",
    "tp_repr",
    "tp_as_number",
    "tp_as_sequence",
    "tp_as_mapping",
    "tp_hash",
    "tp_call",
    "tp_str",
    "tp_getattro",
    "tp_setattro",
    "tp_as_buffer",
    "tp_flags",
    "tp_doc",
    "tp_traverse",
    "tp_clear",
    "tp_richcompare",
    "tp_weaklistoffset",
    "tp_iter",
    "tp_iternext",
    "tp_methods",
    "tp_members",
    "tp_getset",
    "tp_base",
    "tp_dict",
    "tp_descr_get",
    "tp_descr_set",
    "tp_dictoffset",
    "tp_init",
    "tp_alloc",
    "tp_new",
    "tp_free",
    "tp_is_gc",
    "tp_bases",
    "tp_mro",
    "tp_cache",
    "tp_subclasses",
    "tp_weaklist",
    "tp_del",
    "tp_version_tag",
    "tp_finalize",
    "tp_vectorcall",
];

const SPEC_FIELDS: &[&str] = &["name", "basicsize", "itemsize", "flags", "slots"];

/// Calls that create a module object, and the init style each implies.
const CREATORS: &[(&str, InitStyle)] = &[
    ("PyModuleDef_Init", InitStyle::MultiPhase),
    ("PyModule_Create", InitStyle::SinglePhase),
    ("PyModule_Create2", InitStyle::SinglePhase),
    ("PyModule_New", InitStyle::SinglePhase),
    ("PyModule_NewObject", InitStyle::SinglePhase),
    ("Py_InitModule", InitStyle::SinglePhase),
    ("Py_InitModule3", InitStyle::SinglePhase),
    ("Py_InitModule4", InitStyle::SinglePhase),
];

/// The entries a compiler for a current Python sees: one spelling per entry.
pub fn current_entries(list: &InitList) -> impl Iterator<Item = &InitEntry> {
    list.entries
        .iter()
        .filter(|e| !e.alternative && e.versions.contains(CURRENT))
}

pub struct Scope<'a> {
    pub files: &'a [FileFacts],
    pub members: &'a BTreeSet<usize>,
    functions: HashMap<&'a str, Vec<FnRef>>,
    globals: HashMap<&'a str, Vec<VarRef>>,
}

impl<'a> Scope<'a> {
    /// Name tables of the member files only: the cost follows the module's size, not the
    /// project's.
    fn new(files: &'a [FileFacts], members: &'a BTreeSet<usize>) -> Self {
        let mut functions: HashMap<&'a str, Vec<FnRef>> = HashMap::default();
        let mut globals: HashMap<&'a str, Vec<VarRef>> = HashMap::default();
        for &fi in members {
            for (i, f) in files[fi].functions.iter().enumerate() {
                functions
                    .entry(f.name.as_str())
                    .or_default()
                    .push(FnRef { file: fi, index: i });
            }
            for (i, v) in files[fi].variables.iter().enumerate() {
                if v.function.is_none() && v.is_definition() {
                    globals
                        .entry(v.name.as_str())
                        .or_default()
                        .push(VarRef { file: fi, index: i });
                }
            }
        }
        Self {
            files,
            members,
            functions,
            globals,
        }
    }

    /// A function by name, as seen from `from_file` (its own statics first).
    pub fn function(&self, name: &str, from_file: usize) -> Option<FnRef> {
        let candidates = self.functions.get(name)?;
        candidates
            .iter()
            .copied()
            .find(|r| r.file == from_file)
            .or_else(|| {
                candidates
                    .iter()
                    .copied()
                    .find(|r| !self.files[r.file].functions[r.index].is_static)
            })
    }

    /// Every function of this name in the file that [`Scope::function`] picks: the `#if`
    /// variants of one function (`#ifdef MS_WINDOWS ... #else ... #endif`), any of which may
    /// be the one compiled.
    pub fn function_variants(
        &self,
        name: &str,
        from_file: usize,
    ) -> impl Iterator<Item = FnRef> + '_ {
        let candidates: &[FnRef] = self.functions.get(name).map_or(&[], Vec::as_slice);
        let chosen = candidates
            .iter()
            .copied()
            .find(|r| r.file == from_file)
            .or_else(|| {
                candidates
                    .iter()
                    .copied()
                    .find(|r| !self.files[r.file].functions[r.index].is_static)
            });
        candidates
            .iter()
            .copied()
            .filter(move |r| chosen.is_some_and(|c| c.file == r.file))
    }

    /// A variable by name, as seen from a function body (its own local statics first: the
    /// ones declared inside this very definition, so that each `#if` variant of a function has
    /// its own) or from file scope of `from_file`.
    pub fn variable_from(
        &self,
        name: &str,
        from_file: usize,
        from_function: Option<&crate::facts::Function>,
    ) -> Option<VarRef> {
        if let Some(function) = from_function {
            let file = &self.files[from_file];
            let local = |v: &crate::facts::Variable| {
                v.name == name && v.function.as_deref() == Some(function.name.as_str())
            };
            let inside = |v: &crate::facts::Variable| {
                function.def_span.start <= v.span.start && v.span.end <= function.def_span.end
            };
            let found = file
                .variables
                .iter()
                .position(|v| local(v) && inside(v))
                .or_else(|| file.variables.iter().position(local));
            if let Some(index) = found {
                return Some(VarRef {
                    file: from_file,
                    index,
                });
            }
        }
        self.variable(name, from_file, None)
    }

    /// Calls `each` with `var` and with the other definitions of its name at file scope of its
    /// file whose versions overlap `versions`: same-named globals in different `#if` branches
    /// are separate variables, and a write that may reach either counts for each.
    pub fn for_each_variant(
        &self,
        var: VarRef,
        versions: &VersionRange,
        mut each: impl FnMut(VarRef),
    ) {
        let v = &self.files[var.file].variables[var.index];
        let others = match (&v.function, self.globals.get(v.name.as_str())) {
            (None, Some(all)) if all.len() > 1 => all,
            _ => return each(var),
        };
        each(var);
        for &r in others {
            if r != var
                && r.file == var.file
                && self.files[r.file].variables[r.index]
                    .versions
                    .overlaps(versions)
            {
                each(r);
            }
        }
    }

    /// A variable by name, as seen from function `from` (or from file scope of `from_file`).
    pub fn variable(
        &self,
        name: &str,
        from_file: usize,
        from_function: Option<&str>,
    ) -> Option<VarRef> {
        if let Some(fname) = from_function {
            let file = &self.files[from_file];
            if let Some(i) = file
                .variables
                .iter()
                .position(|v| v.name == name && v.function.as_deref() == Some(fname))
            {
                return Some(VarRef {
                    file: from_file,
                    index: i,
                });
            }
        }
        let candidates = self.globals.get(name)?;
        let has_init = |r: &VarRef| self.files[r.file].variables[r.index].init.is_some();
        // A tentative definition (`static PyModuleDef def;` before the real one) is not the
        // definition to read.
        candidates
            .iter()
            .copied()
            .find(|r| r.file == from_file && has_init(r))
            .or_else(|| candidates.iter().copied().find(|r| r.file == from_file))
            .or_else(|| {
                candidates
                    .iter()
                    .copied()
                    .find(|r| !self.files[r.file].variables[r.index].is_static)
            })
            // A static defined in a header the module includes.
            .or_else(|| candidates.first().copied())
    }
}

/// `closed`: the build names every translation unit of the module and each is in the scan, so
/// a call to one of its functions from outside the scan can only come through an export (see
/// [`unreachable_functions`]).
pub fn build_module(
    files: &[FileFacts],
    name: String,
    init: Option<FnRef>,
    member_files: Vec<usize>,
    closed: bool,
) -> ExtensionModule {
    let members: BTreeSet<usize> = member_files.iter().copied().collect();
    let scope = Scope::new(files, &members);

    let (init_style, creation) = match init {
        Some(init) => find_creation(&scope, init),
        None => (InitStyle::Unknown, None),
    };
    let def = find_module_def(&scope, init, creation.as_ref());

    // Functions that run at init: PyInit, exec and create slots, and what they call.
    let mut starts: Vec<FnRef> = init.into_iter().collect();
    if let (Some(def), Some(init)) = (&def, init) {
        for slot in &def.slots {
            if matches!(slot.slot.as_str(), "Py_mod_exec" | "Py_mod_create") {
                if let Some(f) = slot
                    .value
                    .ident()
                    .and_then(|n| scope.function(n, def.var.file.min(init.file)))
                {
                    starts.push(f);
                } else if let Some(f) = slot
                    .value
                    .ident()
                    .and_then(|n| scope.function(n, def.var.file))
                {
                    starts.push(f);
                }
            }
        }
    }
    let init_functions = init_only(&scope, call_closure(&scope, &starts), &starts);

    let types = find_types(&scope);
    let globals = collect_globals(&scope, &init_functions, init, closed);
    let set_gil_slot = match init {
        Some(init) if init_style == InitStyle::SinglePhase => {
            declared_gil_by_call(&scope, init, &init_functions)
        }
        _ => None,
    };

    let set_gil = find_set_gil(files, &member_files);
    ExtensionModule {
        name,
        unit: 0,
        files_from: crate::buildfiles::FilesFrom::Includes,
        build_name: None,
        init_function: init,
        set_gil_slot,
        files: member_files,
        init_style,
        creation,
        def,
        types,
        globals,
        init_functions,
        set_gil,
    }
}

/// `PyUnstable_Module_SetGIL(m, Py_MOD_GIL_NOT_USED)` while a single-phase module initialises:
/// its `Py_mod_gil` declaration.
fn declared_gil_by_call(
    scope: &Scope,
    init: FnRef,
    init_functions: &BTreeSet<FnRef>,
) -> Option<SlotValue> {
    std::iter::once(init)
        .chain(init_functions.iter().copied())
        .flat_map(|f| scope.files[f.file].functions[f.index].calls.iter())
        .filter(|c| c.callee == "PyUnstable_Module_SetGIL" && !c.versions.python2_only())
        .find_map(|c| {
            Some(SlotValue {
                slot: "Py_mod_gil".to_string(),
                value: c.args.get(1)?.clone(),
                versions: c.versions,
            })
        })
}

fn call_closure(scope: &Scope, starts: &[FnRef]) -> BTreeSet<FnRef> {
    let mut seen = BTreeSet::new();
    let mut queue: VecDeque<FnRef> = starts.iter().copied().collect();
    while let Some(f) = queue.pop_front() {
        if !seen.insert(f) {
            continue;
        }
        for call in &scope.files[f.file].functions[f.index].calls {
            queue.extend(scope.function_variants(&call.callee, f.file));
        }
    }
    seen
}

/// Narrows the functions reachable from init to those that run only at init: a helper that a
/// method also calls, or that a method table names, runs at run time too.
fn init_only(scope: &Scope, mut set: BTreeSet<FnRef>, starts: &[FnRef]) -> BTreeSet<FnRef> {
    // Only functions besides the starts can leave the set: with none (the code no module
    // holds has no init at all), it is the answer as it is, without reading every table and
    // call of the unit.
    if set.iter().all(|f| starts.contains(f)) {
        return set;
    }
    let mut named_in_tables: BTreeSet<FnRef> = BTreeSet::new();
    for &fi in scope.members {
        for v in &scope.files[fi].variables {
            if let Some(Init::List(list)) = &v.init {
                let mut names = Vec::new();
                collect_idents(list, &mut names, 0);
                named_in_tables.extend(
                    names
                        .into_iter()
                        .flat_map(|n| scope.function_variants(n, fi)),
                );
            }
        }
    }
    set.retain(|f| starts.contains(f) || !named_in_tables.contains(f));
    // Whatever a function outside the set calls runs after init too: a worklist from every
    // such function, each visited once. Code only Python 2 compiles (its `init<name>`, which
    // calls the shared init helper) never runs.
    let mut runtime: Vec<FnRef> = scope
        .members
        .iter()
        .flat_map(|&fi| {
            (0..scope.files[fi].functions.len()).map(move |index| FnRef { file: fi, index })
        })
        .filter(|f| {
            !set.contains(f)
                && !scope.files[f.file].functions[f.index]
                    .versions
                    .python2_only()
        })
        .collect();
    while let Some(caller) = runtime.pop() {
        let function = &scope.files[caller.file].functions[caller.index];
        let used = function
            .calls
            .iter()
            .map(|c| c.callee.as_str())
            .chain(function.references.iter().map(|r| r.name.as_str()));
        for name in used {
            for callee in scope.function_variants(name, caller.file) {
                if !starts.contains(&callee) && set.remove(&callee) {
                    runtime.push(callee);
                }
            }
        }
    }
    set
}

fn collect_idents<'l>(list: &'l InitList, out: &mut Vec<&'l str>, depth: usize) {
    if depth > 8 {
        return;
    }
    out.extend(list.names.iter().flatten().map(String::as_str));
    for entry in &list.entries {
        match &entry.value {
            Init::Expr(e) => {
                if let Some(name) = e.ident() {
                    out.push(name);
                }
            }
            Init::List(inner) => collect_idents(inner, out, depth + 1),
        }
    }
}

/// Macros (from any member file) whose body calls a module creator.
fn creator_in_macro(scope: &Scope, name: &str) -> Option<(&'static str, InitStyle)> {
    for &fi in scope.members {
        for m in scope.files[fi].macros.iter().filter(|m| m.name == name) {
            for (creator, style) in CREATORS {
                if m.body.contains(&format!("{creator}(")) {
                    return Some((creator, *style));
                }
            }
        }
    }
    None
}

fn find_creation(scope: &Scope, init: FnRef) -> (InitStyle, Option<ModuleCreation>) {
    let mut best: Option<(InitStyle, ModuleCreation, bool)> = None;
    let mut seen = BTreeSet::new();
    let mut queue = VecDeque::from([init]);
    while let Some(f) = queue.pop_front() {
        if !seen.insert(f) {
            continue;
        }
        let function = &scope.files[f.file].functions[f.index];
        for (ci, call) in function.calls.iter().enumerate() {
            if call.versions.python2_only() {
                continue;
            }
            let direct = CREATORS
                .iter()
                .find(|(c, _)| *c == call.callee)
                .map(|(_, s)| (*s, None));
            let found = direct.or_else(|| {
                creator_in_macro(scope, &call.callee)
                    .map(|(c, s)| (s, Some(format!("macro `{}` ({c})", call.callee))))
            });
            if let Some((style, via_macro)) = found {
                let via = via_macro.or_else(|| (f != init).then(|| format!("`{}`", function.name)));
                let current = call.versions.contains(CURRENT);
                let better = match &best {
                    None => true,
                    Some((_, _, best_current)) => current && !best_current,
                };
                if better {
                    best = Some((
                        style,
                        ModuleCreation {
                            function: f,
                            call: ci,
                            via,
                        },
                        current,
                    ));
                }
            } else {
                queue.extend(scope.function_variants(&call.callee, f.file));
            }
        }
    }
    match best {
        Some((style, creation, _)) => (style, Some(creation)),
        None => (InitStyle::Unknown, None),
    }
}

fn find_module_def(
    scope: &Scope,
    init: Option<FnRef>,
    creation: Option<&ModuleCreation>,
) -> Option<ModuleDef> {
    let init = init?;
    let from_call = creation.and_then(|c| {
        let call = &scope.files[c.function.file].functions[c.function.index].calls[c.call];
        call.args
            .first()
            .and_then(|a| a.ident())
            .and_then(|n| scope.variable(n, c.function.file, None))
    });
    let var = from_call.or_else(|| {
        let defs: Vec<VarRef> = scope
            .members
            .iter()
            .flat_map(|&fi| {
                scope.files[fi]
                    .variables
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| bare_type(&v.type_name) == "PyModuleDef" && v.init.is_some())
                    .map(move |(i, _)| VarRef { file: fi, index: i })
            })
            .collect();
        defs.iter()
            .copied()
            .find(|r| r.file == init.file)
            .or_else(|| defs.first().copied())
    })?;
    let v = &scope.files[var.file].variables[var.index];
    let Some(Init::List(list)) = &v.init else {
        return Some(ModuleDef {
            var,
            fields: BTreeMap::new(),
            slots_var: None,
            slots: Vec::new(),
        });
    };
    let mut fields = module_def_fields(list);
    // `m_size` left out of the initializer (designated, or positional entries that stop
    // before it) is zero, as C zero-fills what an initializer does not name.
    if !list.opaque && !fields.contains_key("m_size") {
        fields.insert(
            "m_size".to_string(),
            Expr {
                text: "0".to_string(),
                kind: ExprKind::Number(Some(0)),
                span: list.span,
            },
        );
    }
    let slots_var = fields
        .get("m_slots")
        .and_then(|e| e.ident())
        .and_then(|n| scope.variable(n, var.file, None));
    let slots = slots_var
        .map(|s| read_slot_array(scope, s, "slot", "value"))
        .unwrap_or_default();
    Some(ModuleDef {
        var,
        fields,
        slots_var,
        slots,
    })
}

/// The fields of a `PyModuleDef` initializer, designated or positional.
pub fn module_def_fields(list: &InitList) -> BTreeMap<String, Expr> {
    named_fields(list, MODULE_DEF_FIELDS, 0)
}

/// Designated entries by name, positional ones by their place after `skip` leading entries.
fn named_fields(list: &InitList, order: &[&str], skip: usize) -> BTreeMap<String, Expr> {
    let mut out = BTreeMap::new();
    let mut position = 0usize;
    for entry in current_entries(list) {
        match &entry.designator {
            Some(d) => {
                if let Init::Expr(e) = &entry.value {
                    out.insert(d.clone(), e.clone());
                }
            }
            None => {
                if position >= skip {
                    if let (Some(name), Init::Expr(e)) = (order.get(position - skip), &entry.value)
                    {
                        out.insert(name.to_string(), e.clone());
                    }
                }
                position += 1;
            }
        }
    }
    out
}

/// `{Py_mod_exec, fn}` / `{.slot = ..., .pfunc = ...}` entries of a slot array.
fn read_slot_array(
    scope: &Scope,
    var: VarRef,
    id_field: &str,
    value_field: &str,
) -> Vec<SlotValue> {
    let v = &scope.files[var.file].variables[var.index];
    let Some(Init::List(list)) = &v.init else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in list.entries.iter().filter(|e| !e.alternative) {
        let Init::List(pair) = &entry.value else {
            continue;
        };
        let fields = named_fields(pair, &[id_field, value_field], 0);
        let (Some(id), Some(value)) = (
            fields.get(id_field),
            fields.get(value_field).or_else(|| fields.get("pfunc")),
        ) else {
            continue;
        };
        let Some(slot) = id.ident() else { continue };
        out.push(SlotValue {
            slot: slot.to_string(),
            value: value.clone(),
            versions: entry.versions.intersect(&v.versions),
        });
    }
    out
}

fn find_types(scope: &Scope) -> Vec<TypeDef> {
    let mut out = Vec::new();
    for &fi in scope.members {
        for (i, v) in scope.files[fi].variables.iter().enumerate() {
            let var = VarRef { file: fi, index: i };
            if !v.is_definition()
                || !v.pointers.is_empty()
                || v.array_dims > 0
                || is_superseded(&scope.files[fi], i)
            {
                continue;
            }
            if is_type_object(&v.type_name) {
                let (tp_name, slots) = match &v.init {
                    Some(Init::List(list)) => static_type_fields(list),
                    _ => (None, BTreeMap::new()),
                };
                out.push(TypeDef {
                    var,
                    kind: TypeKind::Static,
                    tp_name,
                    slots,
                    slots_var: None,
                });
            } else if bare_type(&v.type_name) == "PyType_Spec" {
                let Some(Init::List(list)) = &v.init else {
                    continue;
                };
                let fields = named_fields(list, SPEC_FIELDS, 0);
                let tp_name = fields
                    .get("name")
                    .map(|e| e.text.trim_matches('"').to_string());
                let slots_var = fields
                    .get("slots")
                    .and_then(|e| e.ident())
                    .and_then(|n| scope.variable(n, fi, None));
                let mut slots: BTreeMap<String, Expr> = BTreeMap::new();
                if let Some(flags) = fields.get("flags") {
                    slots.insert("tp_flags".into(), flags.clone());
                }
                if let Some(basic) = fields.get("basicsize") {
                    slots.insert("tp_basicsize".into(), basic.clone());
                }
                for s in slots_var
                    .map(|s| read_slot_array(scope, s, "slot", "pfunc"))
                    .unwrap_or_default()
                {
                    let key = s.slot.strip_prefix("Py_").unwrap_or(&s.slot).to_string();
                    slots.insert(key, s.value);
                }
                out.push(TypeDef {
                    var,
                    kind: TypeKind::Heap,
                    tp_name,
                    slots,
                    slots_var,
                });
            }
        }
    }
    out
}

/// Positional type initializers are anchored on `tp_name`, the first string: whatever the
/// head-init macro expanded to before it does not shift the slots after it.
fn static_type_fields(list: &InitList) -> (Option<String>, BTreeMap<String, Expr>) {
    let mut slots = BTreeMap::new();
    let mut tp_name = None;
    let mut after_name: Option<usize> = None;
    for entry in current_entries(list) {
        match (&entry.designator, &entry.value) {
            (Some(d), Init::Expr(e)) => {
                if d == "tp_name" {
                    tp_name = Some(e.text.trim_matches('"').to_string());
                } else {
                    slots.insert(d.clone(), e.clone());
                }
            }
            (None, Init::Expr(e)) => match after_name {
                None if e.kind == ExprKind::Str => {
                    tp_name = Some(e.text.trim_matches('"').to_string());
                    after_name = Some(0);
                }
                None => {}
                Some(n) => {
                    if let Some(name) = TYPE_OBJECT_FIELDS_AFTER_NAME.get(n) {
                        slots.insert(name.to_string(), e.clone());
                    }
                    after_name = Some(n + 1);
                }
            },
            (None, Init::List(_)) => {
                if let Some(n) = after_name {
                    after_name = Some(n + 1);
                }
            }
            _ => {}
        }
    }
    (tp_name, slots)
}

/// Identifiers in a piece of C text (an initializer, a macro body).
fn identifiers(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_'))
}

fn init_names<'a>(init: &'a Init, out: &mut rustc_hash::FxHashSet<&'a str>) -> bool {
    match init {
        // A literal names nothing, however long (a docstring in a method table).
        Init::Expr(e) if matches!(e.kind, ExprKind::Str | ExprKind::Number(_) | ExprKind::Null) => {
            true
        }
        Init::Expr(e) => {
            out.extend(identifiers(&e.text));
            // A folded text was cut: what it named past the cut is unknown.
            e.text.len() < 150
        }
        Init::List(list) => {
            let mut complete = list.names_known();
            out.extend(list.names.iter().flatten().map(String::as_str));
            for entry in &list.entries {
                complete &= init_names(&entry.value, out);
            }
            complete
        }
    }
}

fn holds_plain_data(type_name: &str) -> bool {
    let base = type_name
        .split_whitespace()
        .filter(|w| !matches!(*w, "const" | "static" | "unsigned" | "signed" | "volatile"))
        .collect::<Vec<_>>()
        .join(" ");
    // Integer typedefs by the usual convention (zstd's `U32`, `S16`, `BYTE`).
    let numeric_typedef = base == "BYTE"
        || (base.len() <= 3
            && base.starts_with(['U', 'S', 'I'])
            && base[1..].bytes().all(|b| b.is_ascii_digit())
            && base.len() > 1);
    // `unsigned` alone is `unsigned int`.
    let bare_sign = base.is_empty() && type_name.contains("signed");
    numeric_typedef
        || bare_sign
        || matches!(
            base.as_str(),
            "char"
                | "short"
                | "int"
                | "long"
                | "long long"
                | "float"
                | "double"
                | "size_t"
                | "Py_ssize_t"
                | "Py_UCS1"
                | "Py_UCS2"
                | "Py_UCS4"
                | "Py_UNICODE"
                | "bool"
                | "_Bool"
                | "uint8_t"
                | "uint16_t"
                | "uint32_t"
                | "uint64_t"
                | "int8_t"
                | "int16_t"
                | "int32_t"
                | "int64_t"
                | "wchar_t"
        )
}

/// Functions with external linkage that code outside the module's files may call although
/// nothing in them names the function: the entry points the OS loader or COM calls by name.
const LOADER_ENTRY_POINTS: &[&str] = &[
    "main",
    "wmain",
    "WinMain",
    "wWinMain",
    "DllMain",
    "DllGetClassObject",
    "DllCanUnloadNow",
    "DllRegisterServer",
    "DllUnregisterServer",
    "DllInstall",
    "_init",
    "_fini",
];

/// Functions no code of the module can reach; what they write is not the module's state.
///
/// The candidates are `static` functions defined in a header (compatibility shims such as the
/// `static inline` functions of a vendored `pythoncapi_compat.h`, which every including file
/// compiles and none calls) and, when the module is `closed` (the build lists its translation
/// units and all of them are scanned), the functions with external linkage of its files
/// (a time library's `gmtime64`, unused beside the `_r` variant the module calls). An external
/// function stays live when code outside the scan may call it: a `PyInit_` function, one
/// whose definition or prototype exports it (`__declspec(dllexport)`,
/// `visibility("default")`, `PyAPI_FUNC`, a project macro such as CPython's
/// `EXPORT(int)`, which ctypes tests call) or has the loader call it
/// (`__attribute__((constructor))`, `DllGetClassObject`), a head written through a macro
/// (its name is not known) or one the parser was unsure of. Without a build, or with sources
/// of the build missing from the scan, a caller may be a file the scan does not hold (an
/// editor's one-file scan): then only header statics are candidates. So are they when a
/// member file has code the parser could not read, which may hold a call. Not seen: a
/// prebuilt library the build links (`libraries=[...]`) that calls a function of the module
/// by name.
///
/// A function is reachable when a function that is not a candidate, an initializer, a
/// file-scope macro call or a macro body names it, or a reachable candidate does. When an
/// initializer's text was cut or a table was not read, nothing is taken as unreachable.
fn unreachable_functions(scope: &Scope, init: Option<FnRef>, closed: bool) -> BTreeSet<FnRef> {
    use crate::facts::SourceKindFact;
    let closed = closed
        && scope
            .members
            .iter()
            .all(|&fi| scope.files[fi].parse_errors.unreadable_bytes == 0);
    let exported_by_prototype: rustc_hash::FxHashSet<&str> = if closed {
        scope
            .members
            .iter()
            .flat_map(|&fi| scope.files[fi].exported_declarations.iter())
            .map(String::as_str)
            .collect()
    } else {
        Default::default()
    };
    let external_candidate = |r: FnRef, f: &crate::facts::Function| {
        closed
            && !f.is_static
            && !f.exported
            && !f.uncertain
            && f.macro_head.is_none()
            && Some(r) != init
            && !f.name.starts_with("PyInit")
            && !LOADER_ENTRY_POINTS.contains(&f.name.as_str())
            && !exported_by_prototype.contains(f.name.as_str())
    };
    let candidates: BTreeSet<FnRef> = scope
        .members
        .iter()
        .flat_map(|&fi| {
            let header = scope.files[fi].kind == SourceKindFact::Header;
            scope.files[fi]
                .functions
                .iter()
                .enumerate()
                .map(move |(index, f)| (FnRef { file: fi, index }, f, header))
        })
        .filter(|&(r, f, header)| (header && f.is_static) || external_candidate(r, f))
        .map(|(r, _, _)| r)
        .collect();
    if candidates.is_empty() {
        return candidates;
    }
    let mut named: rustc_hash::FxHashSet<&str> = Default::default();
    for &fi in scope.members {
        let file = &scope.files[fi];
        for v in &file.variables {
            if let Some(init) = &v.init {
                // A table of numbers or strings names no function even when it was not read.
                if !init_names(init, &mut named) && !holds_plain_data(&v.type_name) {
                    return BTreeSet::new();
                }
            }
        }
        for m in &file.macros {
            named.extend(identifiers(&m.body));
        }
        // `REGISTER(handler);` at file scope. A literal names nothing (a `PyDoc_STRVAR`
        // text is often cut); any other argument cut short may name anything.
        for call in &file.file_scope_calls {
            named.insert(call.callee.as_str());
            for arg in &call.args {
                match arg.kind {
                    ExprKind::Str | ExprKind::Number(_) | ExprKind::Null => {}
                    _ if arg.text.ends_with("...") => return BTreeSet::new(),
                    _ => named.extend(identifiers(&arg.text)),
                }
            }
        }
    }
    fn names_of(f: &crate::facts::Function) -> impl Iterator<Item = &str> {
        f.references
            .iter()
            .map(|r| r.name.as_str())
            .chain(f.calls.iter().map(|c| c.callee.as_str()))
    }
    let mut live: Vec<FnRef> = Vec::new();
    for &fi in scope.members {
        for (index, f) in scope.files[fi].functions.iter().enumerate() {
            if !candidates.contains(&FnRef { file: fi, index }) {
                named.extend(names_of(f));
            }
        }
    }
    let mut dead = candidates;
    loop {
        live.clear();
        live.extend(
            dead.iter()
                .copied()
                .filter(|r| named.contains(scope.files[r.file].functions[r.index].name.as_str())),
        );
        if live.is_empty() {
            return dead;
        }
        for r in &live {
            dead.remove(r);
            named.extend(names_of(&scope.files[r.file].functions[r.index]));
        }
    }
}

fn collect_globals(
    scope: &Scope,
    init_functions: &BTreeSet<FnRef>,
    init: Option<FnRef>,
    closed: bool,
) -> Vec<Global> {
    let has_init = init.is_some();
    let mut globals: BTreeMap<VarRef, Global> = BTreeMap::new();
    let unreachable = unreachable_functions(scope, init, closed);
    let unreachable_names: rustc_hash::FxHashSet<(usize, &str)> = unreachable
        .iter()
        .map(|r| (r.file, scope.files[r.file].functions[r.index].name.as_str()))
        .collect();
    let in_unreachable = |fi: usize, function: &str| unreachable_names.contains(&(fi, function));
    for &fi in scope.members {
        for (i, v) in scope.files[fi].variables.iter().enumerate() {
            let dead_local = v.function.as_deref().is_some_and(|f| in_unreachable(fi, f));
            if v.is_definition() && !is_superseded(&scope.files[fi], i) && !dead_local {
                let var = VarRef { file: fi, index: i };
                globals.insert(
                    var,
                    Global {
                        var,
                        declarations: Vec::new(),
                        address_in_initializers: Vec::new(),
                        readers: Vec::new(),
                        writes: Vec::new(),
                        class: super::WriteClass::NeverWritten,
                        fixed: Vec::new(),
                    },
                );
            }
        }
    }
    for &fi in scope.members {
        for (i, function) in scope.files[fi].functions.iter().enumerate() {
            let fref = FnRef { file: fi, index: i };
            if unreachable.contains(&fref) {
                continue;
            }
            for r in &function.references {
                if let Some(var) = scope.variable_from(&r.name, fi, Some(function)) {
                    scope.for_each_variant(var, &function.versions, |var| {
                        if let Some(g) = globals.get_mut(&var) {
                            if g.readers.last() != Some(&fref) {
                                g.readers.push(fref);
                            }
                        }
                    });
                }
            }
            for (si, w) in function.writes.iter().enumerate() {
                if let Some(var) = scope.variable_from(&w.target, fi, Some(function)) {
                    scope.for_each_variant(var, &w.versions, |var| {
                        if let Some(g) = globals.get_mut(&var) {
                            g.writes.push(super::GlobalWrite {
                                function: fref,
                                site: si,
                                at_init: has_init && init_functions.contains(&fref),
                            });
                        }
                    });
                }
            }
        }
    }
    // `{"m.Error", &Error}` in a table: the address escapes into data the code may write
    // through.
    for &fi in scope.members {
        for (i, v) in scope.files[fi].variables.iter().enumerate() {
            let Some(Init::List(list)) = &v.init else {
                continue;
            };
            let holder = VarRef { file: fi, index: i };
            let mut addressed = Vec::new();
            collect_addresses(list, &mut addressed, 0);
            for name in addressed {
                if let Some(target) = scope.variable(name, fi, v.function.as_deref()) {
                    if let Some(g) = globals.get_mut(&target) {
                        if target != holder && !g.address_in_initializers.contains(&holder) {
                            g.address_in_initializers.push(holder);
                        }
                    }
                }
            }
        }
    }
    link_declarations(scope, &mut globals);
    let mut out: Vec<Global> = globals.into_values().collect();
    let members: Vec<usize> = scope.members.iter().copied().collect();
    let written_fields = super::classify::fields_written_through_pointers(scope.files, &members);
    for g in &mut out {
        g.class = classify_writes(scope.files, &members, g, &written_fields);
        g.fixed = super::classify::fixed_values(scope.files, &members, g);
    }
    out
}

/// Gives each global its other declarations: the tentative definitions its file supersedes,
/// and the file-scope `extern` declarations of its name when it is not `static` (a `static`
/// is not the variable another file's `extern` names). With several non-static definitions
/// of one name (two `#if` variants), each gets the declarations.
fn link_declarations(scope: &Scope, globals: &mut BTreeMap<VarRef, Global>) {
    for &fi in scope.members {
        for (i, d) in scope.files[fi].variables.iter().enumerate() {
            if d.function.is_some() {
                continue;
            }
            let tentative = is_superseded(&scope.files[fi], i);
            let external = d.is_extern && d.init.is_none();
            if !tentative && !external {
                continue;
            }
            let decl = VarRef { file: fi, index: i };
            for g in globals.values_mut() {
                let v = &scope.files[g.var.file].variables[g.var.index];
                if v.name != d.name || v.function.is_some() || g.var == decl {
                    continue;
                }
                let same_variable = if tentative {
                    g.var.file == fi && v.is_static == d.is_static
                } else {
                    !v.is_static || g.var.file == fi
                };
                if same_variable && !g.declarations.contains(&decl) {
                    g.declarations.push(decl);
                }
            }
        }
    }
}

fn collect_addresses<'l>(list: &'l InitList, out: &mut Vec<&'l str>, depth: usize) {
    if depth > 8 {
        return;
    }
    for entry in &list.entries {
        match &entry.value {
            Init::Expr(e) => {
                if let ExprKind::AddressOf(name) = &e.kind {
                    out.push(name);
                }
            }
            Init::List(inner) => collect_addresses(inner, out, depth + 1),
        }
    }
}

/// A tentative definition (`static PyTypeObject Foo_Type;`) followed in the same file by the
/// definition with an initializer: one variable, reported once, at the definition.
///
/// Only a definition with the same qualifiers and pointer levels supersedes it: C requires a
/// tentative definition and the definition to agree, so `static size_t n;` beside `static const
/// size_t n = 256;` are two variables in exclusive `#if` branches (one written at run time, one
/// constant), not one. The type names are not compared: `PyModuleDef` and `struct PyModuleDef`
/// are one type spelled two ways.
pub fn is_superseded(file: &FileFacts, index: usize) -> bool {
    let v = &file.variables[index];
    v.init.is_none()
        && v.function.is_none()
        && file.variables.iter().enumerate().any(|(j, o)| {
            j != index
                && o.name == v.name
                && o.function.is_none()
                && o.init.is_some()
                && !o.is_extern
                && o.type_const == v.type_const
                && o.pointers == v.pointers
                && o.is_function_pointer == v.is_function_pointer
        })
}

/// The first `PyUnstable_Module_SetGIL(m, value)` call in the module's files.
fn find_set_gil(files: &[FileFacts], member_files: &[usize]) -> Option<SetGil> {
    member_files.iter().find_map(|&fi| {
        files[fi]
            .functions
            .iter()
            .enumerate()
            .find_map(|(index, f)| {
                f.calls
                    .iter()
                    .position(|c| c.callee == "PyUnstable_Module_SetGIL")
                    .map(|call| SetGil {
                        function: FnRef { file: fi, index },
                        call,
                        value: f.calls[call]
                            .args
                            .get(1)
                            .map(|a| a.text.clone())
                            .unwrap_or_default(),
                    })
            })
    })
}
