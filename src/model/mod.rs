//! The model: one `ExtensionModule` per `PyInit_<name>`, built from the facts of every file.
//! Rules read only this (and the facts it points into), never a tree.

mod classify;
mod definitions;
mod linking;
pub mod pytypes;

use crate::facts::{Call, FileFacts, Function, Variable, WriteSite};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};

pub use classify::{fixed_capsules, fixed_value, FixedValue};
pub use definitions::{
    current_entries, module_def_fields, ModuleDef, SlotValue, TypeDef, TypeKind, MODULE_DEF_FIELDS,
};
pub use linking::{group_links, not_compiled_files, LinkFacts, ModuleGroup};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct VarRef {
    pub file: usize,
    pub index: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct FnRef {
    pub file: usize,
    pub index: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InitStyle {
    SinglePhase,
    MultiPhase,
    Unknown,
}

impl InitStyle {
    pub fn as_str(self) -> &'static str {
        match self {
            InitStyle::SinglePhase => "single-phase",
            InitStyle::MultiPhase => "multi-phase",
            InitStyle::Unknown => "unknown",
        }
    }
}

/// How a global is written, from weakest to strongest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WriteClass {
    /// Never written after its initializer: it could be const.
    NeverWritten,
    /// Written only while the module initialises (`PyInit`, exec slots and what only they call).
    InitOnly,
    /// Its address escapes to code that may write through it.
    AddressEscapes,
    /// Written at run time.
    Runtime,
}

#[derive(Debug, Clone)]
pub struct GlobalWrite {
    pub function: FnRef,
    pub site: usize,
    pub at_init: bool,
}

#[derive(Debug, Clone)]
pub struct Global {
    pub var: VarRef,
    /// The other declarations of the same variable: tentative definitions before it in its
    /// file and `extern` declarations (in headers) of a non-static definition. One variable,
    /// reported once at `var`, with these as related places.
    pub declarations: Vec<VarRef>,
    /// Globals whose initializers take this one's address (`{"Error", &Error}`).
    pub address_in_initializers: Vec<VarRef>,
    pub readers: Vec<FnRef>,
    pub writes: Vec<GlobalWrite>,
    pub class: WriteClass,
    /// Every write stores a value that is the same in every interpreter and every run (the
    /// kinds, each once): the variable is idempotent, not state. Empty when some write may
    /// store something else, escapes, or when it is never written.
    pub fixed: Vec<FixedValue>,
}

/// How `PyInit_<name>` creates its module.
#[derive(Debug, Clone)]
pub struct ModuleCreation {
    pub function: FnRef,
    pub call: usize,
    /// The call is inside a helper or a macro, not in `PyInit` itself.
    pub via: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ExtensionModule {
    pub name: String,
    /// Its place among the scan's units ([`Project::units`]): modules in order, then the
    /// unattached code.
    pub unit: usize,
    /// Where `files` came from: the build, or include-and-definition linking.
    pub files_from: crate::buildfiles::FilesFrom,
    /// The dotted import name the build file gives (`pkg.sub._ext`).
    pub build_name: Option<String>,
    /// `None` for the code that no scanned `PyInit` reaches.
    pub init_function: Option<FnRef>,
    pub files: Vec<usize>,
    pub init_style: InitStyle,
    pub creation: Option<ModuleCreation>,
    pub def: Option<ModuleDef>,
    pub types: Vec<TypeDef>,
    pub globals: Vec<Global>,
    /// Functions that run while the module initialises.
    pub init_functions: BTreeSet<FnRef>,
    /// The `Py_mod_gil` value a single-phase module passes to `PyUnstable_Module_SetGIL`
    /// while it initialises, as a slot would declare it.
    pub set_gil_slot: Option<SlotValue>,
    /// How a single-phase module declares its GIL use on free-threaded builds.
    pub set_gil: Option<SetGil>,
}

/// A `PyUnstable_Module_SetGIL(m, value)` call.
#[derive(Debug, Clone)]
pub struct SetGil {
    pub function: FnRef,
    pub call: usize,
    /// The second argument as written: `Py_MOD_GIL_NOT_USED` or `Py_MOD_GIL_USED`.
    pub value: String,
}

impl ExtensionModule {
    /// The dotted name `import` takes: the build file's, else `m_name` when it is a string
    /// literal.
    pub fn import_name(&self) -> Option<String> {
        self.build_name.clone().or_else(|| {
            let m_name = self.def.as_ref()?.field("m_name")?;
            if m_name.kind != crate::facts::ExprKind::Str {
                return None;
            }
            let text = m_name.text.trim();
            let inner = text.strip_prefix('"')?.strip_suffix('"')?;
            let valid = !inner.is_empty()
                && inner
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
            valid.then(|| inner.to_string())
        })
    }
    pub fn is_real(&self) -> bool {
        self.init_function.is_some()
    }
    /// A slot the module declares; for a single-phase module, `Py_mod_gil` is what it passes
    /// to `PyUnstable_Module_SetGIL`.
    pub fn slot(&self, name: &str) -> Option<&SlotValue> {
        self.def
            .as_ref()
            .and_then(|d| d.slots.iter().find(|s| s.slot == name))
            .or_else(|| self.set_gil_slot.as_ref().filter(|s| s.slot == name))
    }
    /// Single-phase init with `m_size = -1`: CPython runs `PyInit` once per process (per
    /// runtime, between `Py_Initialize` and `Py_Finalize`). Later legacy sub-interpreters get a
    /// copy of the first module's dict, and isolated ones refuse the module, so what `PyInit`
    /// stores is the first interpreter's, shared by every later one.
    pub fn initialises_once_per_process(&self) -> bool {
        self.init_style == InitStyle::SinglePhase
            && self
                .def
                .as_ref()
                .and_then(|d| d.m_size())
                .is_some_and(|e| e.kind == crate::facts::ExprKind::Number(Some(-1)))
    }
}

#[derive(Debug)]
pub struct Project {
    pub files: Vec<FileFacts>,
    pub modules: Vec<ExtensionModule>,
    /// Globals in files that no module reaches: still reported, with no module. One unit per
    /// package (see [`unattached_files`]), at least one.
    pub unattached: Vec<ExtensionModule>,
    /// The C API calls of the scan's C++ files, which no rule reports on: read only so that
    /// "the module never changes this container" is not claimed over C++ code that does.
    pub foreign_calls: Vec<crate::facts::cpp::ForeignCall>,
    /// For each file, the first unit holding it (its `ExtensionModule::unit`).
    pub owners: Vec<usize>,
    /// How many modules the scan has: `modules` may hold only those whose files are loaded.
    pub module_count: usize,
}

impl Project {
    pub fn var(&self, r: VarRef) -> &Variable {
        &self.files[r.file].variables[r.index]
    }
    pub fn function(&self, r: FnRef) -> &Function {
        &self.files[r.file].functions[r.index]
    }
    pub fn write_site(&self, w: &GlobalWrite) -> &WriteSite {
        &self.function(w.function).writes[w.site]
    }
    pub fn call(&self, f: FnRef, call: usize) -> &Call {
        &self.function(f).calls[call]
    }
    /// Every unit rules run over: the modules, then the unattached code.
    pub fn units(&self) -> impl Iterator<Item = &ExtensionModule> {
        self.modules.iter().chain(&self.unattached)
    }

    /// The model of files of one package.
    pub fn build(files: Vec<FileFacts>) -> Project {
        let packages = vec![0; files.len()];
        Self::build_with(files, &crate::buildfiles::BuildInfo::default(), &packages)
    }

    /// The model, with the file lists the build gives where it gives them. `packages` gives
    /// each file's package (any number, the same for files of one package): the code no module
    /// holds is one unit per package.
    pub fn build_with(
        mut files: Vec<FileFacts>,
        build: &crate::buildfiles::BuildInfo,
        packages: &[usize],
    ) -> Project {
        for file in &mut files {
            file.fixed_capsules = fixed_capsules(file);
        }
        let (mut groups, not_compiled) = linking::group_files(&files, build);
        sort_groups(&mut groups);
        let rest = unattached_files(files.len(), &groups, &not_compiled, packages);
        let owners = owners(files.len(), &groups, &rest);
        // Modules are independent of each other: built on every worker, not after the scan on
        // one thread alone.
        let module_count = groups.len();
        let modules: Vec<ExtensionModule> = groups
            .into_par_iter()
            .enumerate()
            .map(|(unit, group)| build_group(&files, unit, group))
            .collect();
        let unattached = rest
            .into_iter()
            .enumerate()
            .map(|(k, files_of)| build_unattached(&files, module_count + k, files_of))
            .collect();
        Project {
            files,
            modules,
            unattached,
            foreign_calls: Vec::new(),
            owners,
            module_count,
        }
    }
}

/// Modules in the order they are reported: by name, then by where their `PyInit` is.
pub fn sort_groups(groups: &mut [ModuleGroup]) {
    groups.sort_by(|a, b| a.name.cmp(&b.name).then(a.init.cmp(&b.init)));
}

/// The files no module holds, in order, one unit per package (`packages[f]` is file `f`'s; the
/// units in the order of their first files): the unattached units. Code of one package is
/// never linked by name with another's, so a scan of many packages checks each package's loose
/// code alone, and memory follows the largest package, not the tree. At least one unit, empty
/// when every file is in a module. A file only `#include`d in code no build compiles is not
/// among them (see [`not_compiled_files`]).
pub fn unattached_files(
    files: usize,
    groups: &[ModuleGroup],
    not_compiled: &std::collections::HashSet<usize>,
    packages: &[usize],
) -> Vec<Vec<usize>> {
    let mut attached = vec![false; files];
    for &f in not_compiled {
        if let Some(a) = attached.get_mut(f) {
            *a = true;
        }
    }
    for group in groups {
        for &f in &group.files {
            attached[f] = true;
        }
    }
    let mut units: Vec<Vec<usize>> = Vec::new();
    let mut unit_of: HashMap<usize, usize> = HashMap::new();
    for f in (0..files).filter(|&f| !attached[f]) {
        let package = packages.get(f).copied().unwrap_or(0);
        let unit = *unit_of.entry(package).or_insert_with(|| {
            units.push(Vec::new());
            units.len() - 1
        });
        units[unit].push(f);
    }
    if units.is_empty() {
        units.push(Vec::new());
    }
    units
}

/// For each file, the first unit (sorted modules, then the unattached units) holding it.
pub fn owners(files: usize, groups: &[ModuleGroup], unattached: &[Vec<usize>]) -> Vec<usize> {
    let mut owners = vec![groups.len(); files];
    for (k, unit) in unattached.iter().enumerate() {
        for &f in unit {
            owners[f] = groups.len() + k;
        }
    }
    for (unit, group) in groups.iter().enumerate().rev() {
        for &f in &group.files {
            owners[f] = unit;
        }
    }
    owners
}

/// The module of one group; `files` needs only the group's own files loaded.
pub fn build_group(files: &[FileFacts], unit: usize, group: ModuleGroup) -> ExtensionModule {
    let mut module = definitions::build_module(
        files,
        group.name,
        Some(group.init),
        group.files,
        group.closed,
    );
    module.unit = unit;
    module.files_from = group.files_from;
    module.build_name = group.import_name;
    module
}

/// Code no module reaches (one package's), as the unit at `index`, after the modules.
pub fn build_unattached(files: &[FileFacts], index: usize, rest: Vec<usize>) -> ExtensionModule {
    let mut unit = definitions::build_module(files, String::new(), None, rest, false);
    unit.unit = index;
    unit
}

impl Project {
    /// A project whose files are all [`FileFacts::placeholder`]s, to be loaded module by
    /// module.
    pub fn unloaded(
        files: Vec<FileFacts>,
        owners: Vec<usize>,
        module_count: usize,
        foreign_calls: Vec<crate::facts::cpp::ForeignCall>,
    ) -> Project {
        Project {
            files,
            modules: Vec::new(),
            unattached: Vec::new(),
            foreign_calls,
            owners,
            module_count,
        }
    }
}

/// Summary of a module for reporters.
#[derive(Debug, Clone, Serialize)]
pub struct ModuleSummary {
    pub name: String,
    /// The dotted name `import` takes: the build file's, else a string-literal `m_name`.
    pub import_name: Option<String>,
    /// Where `files` came from (`setup.py`, `includes`, ...).
    pub files_from: &'static str,
    pub path: std::path::PathBuf,
    pub line: usize,
    pub init: &'static str,
    pub m_size: Option<String>,
    pub slots: BTreeMap<&'static str, Option<String>>,
    pub files: Vec<std::path::PathBuf>,
    pub static_types: usize,
    pub heap_types: usize,
    /// Declared and supported isolation levels, from the findings (set once rules have run).
    pub verdict: Option<crate::rules::Verdict>,
}

impl ModuleSummary {
    pub fn of(project: &Project, module: &ExtensionModule) -> Option<Self> {
        let init = module.init_function?;
        let f = project.function(init);
        let slot = |name: &str| module.slot(name).map(|s| s.value.text.clone());
        let mut slots = BTreeMap::new();
        slots.insert(
            "multiple_interpreters",
            slot("Py_mod_multiple_interpreters"),
        );
        slots.insert("gil", slot("Py_mod_gil"));
        Some(Self {
            name: module.name.clone(),
            import_name: module.import_name(),
            files_from: module.files_from.as_str(),
            path: project.files[init.file].path.clone(),
            line: f.span.line,
            init: module.init_style.as_str(),
            m_size: module
                .def
                .as_ref()
                .and_then(|d| d.m_size())
                .map(|e| e.text.clone()),
            slots,
            files: module
                .files
                .iter()
                .map(|&i| project.files[i].path.clone())
                .collect(),
            static_types: module
                .types
                .iter()
                .filter(|t| t.kind == TypeKind::Static)
                .count(),
            heap_types: module
                .types
                .iter()
                .filter(|t| t.kind == TypeKind::Heap)
                .count(),
            verdict: None,
        })
    }
}
