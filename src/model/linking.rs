//! Which files make up which module. In this order of trust:
//!
//! 1. the build (`crate::buildfiles`): the target whose sources hold the module's `PyInit`
//!    gives the exact translation units, plus the headers they `#include`;
//! 2. otherwise the `PyInit` file, the files it `#include`s, and the files it links with:
//!    `.c` files that define a function it calls or a global it declares `extern`. That
//!    linking never crosses into a `tests/` or `test/` folder the module does not live in, and
//!    never takes a file the build gives to another module.

use super::FnRef;
use crate::buildfiles::{file_key, BuildInfo, BuildTarget, FilesFrom};
use crate::facts::{FileFacts, Function, SourceKindFact};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

#[derive(Clone)]
pub struct ModuleGroup {
    pub name: String,
    pub init: FnRef,
    pub files: Vec<usize>,
    pub files_from: FilesFrom,
    /// The dotted import name the build gives the module.
    pub import_name: Option<String>,
    /// The build names the module's translation units (not a group it links from) and every
    /// one of them is in the scan: no caller of its functions is a file the scan lacks.
    pub closed: bool,
}

/// What linking needs of a file, taken from its facts: small enough to keep for every file of
/// a scan while the facts themselves wait on disk for their module's turn, and kept in the
/// facts cache beside them.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LinkFacts {
    pub path: PathBuf,
    pub kind: SourceKindFact,
    /// `#include` targets, in order.
    pub includes: Vec<String>,
    /// `#include` targets in code no build compiles (see [`not_compiled_files`]).
    pub uncompiled_includes: Vec<String>,
    /// Function-like macros whose body pastes a module init name (`PyInit_##name`).
    pub init_macros: Vec<String>,
    /// Functions that may be a module's `PyInit`, in file order.
    pub inits: Vec<InitCandidate>,
    /// The non-static functions and globals the file defines.
    pub provides: Vec<String>,
    /// Names the file uses but does not define itself (see [`external_names`]).
    pub wants: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct InitCandidate {
    /// The function's index in its file.
    pub index: usize,
    pub name: InitName,
    /// It only hands over to another `PyInit_` (see [`is_alias_init`]).
    pub alias: bool,
    /// The `PyInit_` functions it calls.
    pub calls_inits: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum InitName {
    /// Known from the file alone.
    Known(String),
    /// A head written through a macro `macro_name(first, ...)`: the module is `first` when the
    /// macro pastes `PyInit_` (`local`: the file's own definition of it does).
    Macro {
        macro_name: String,
        first: Option<String>,
        local: bool,
    },
}

impl LinkFacts {
    pub fn of(file: &FileFacts) -> Self {
        let init_macros = file
            .macros
            .iter()
            .filter(|m| {
                m.params.is_some() && m.body.contains("PyInit_") && !m.versions.python2_only()
            })
            .map(|m| m.name.clone())
            .collect();
        let inits = file
            .functions
            .iter()
            .enumerate()
            .filter_map(|(index, function)| {
                let name = local_module_name(file, function)?;
                Some(InitCandidate {
                    index,
                    name,
                    alias: is_alias_init(function),
                    calls_inits: function
                        .calls
                        .iter()
                        .filter(|c| c.callee.starts_with("PyInit_"))
                        .map(|c| c.callee.clone())
                        .collect(),
                })
            })
            .collect();
        let mut provides = Vec::new();
        if file.kind == SourceKindFact::C {
            let functions = file
                .functions
                .iter()
                .filter(|x| !x.is_static)
                .map(|x| x.name.clone());
            let globals = file
                .variables
                .iter()
                .filter(|v| v.function.is_none() && !v.is_static && v.is_definition())
                .map(|v| v.name.clone());
            provides.extend(functions.chain(globals));
        }
        Self {
            path: file.path.clone(),
            kind: file.kind,
            includes: file
                .includes
                .iter()
                .filter(|i| i.compiled)
                .map(|i| i.target.clone())
                .collect(),
            uncompiled_includes: file
                .includes
                .iter()
                .filter(|i| !i.compiled)
                .map(|i| i.target.clone())
                .collect(),
            init_macros,
            inits,
            provides,
            wants: external_names(file)
                .into_iter()
                .map(str::to_string)
                .collect(),
        }
    }
}

/// What the file alone says of a function's module name: `PyInit_foo`, or a function whose
/// head is a macro that pastes `PyInit_##name` (which the scan's other files may define).
fn local_module_name(file: &FileFacts, function: &crate::facts::Function) -> Option<InitName> {
    if function.versions.python2_only() {
        return None;
    }
    if function.macro_head.is_none() {
        if let Some(name) = init_name_in(&function.name) {
            return Some(InitName::Known(name));
        }
        // `#define INITFUNC PyInit_heapyc` then `PyMODINIT_FUNC INITFUNC(void)`.
        let alias = file
            .macros
            .iter()
            .find(|m| m.params.is_none() && m.name == function.name && !m.versions.python2_only());
        if let Some(name) = alias.and_then(|m| m.body.trim().strip_prefix("PyInit_")) {
            if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Some(InitName::Known(name.to_string()));
            }
        }
        return None;
    }
    let (macro_name, args) = function.macro_head.as_ref()?;
    // `PyMODINIT_FUNC\nEXPORT_MACRO\nPyInit_foo(void)`: the unknown word reads as the type,
    // and `PyInit_foo(void)` as a macro call with the argument `void`.
    if args.iter().all(|a| a.is_empty() || a == "void") {
        if let Some(name) = init_name_in(macro_name) {
            return Some(InitName::Known(name));
        }
    }
    // `PyMODINIT_FUNC EXPORT_MACRO PyInit_foo(void)`: a word between the return type and the
    // name makes the head look like a macro call whose argument is the real name.
    if let Some(name) = args.iter().find_map(|a| init_name_in(a)) {
        return Some(InitName::Known(name));
    }
    let local = file
        .macros
        .iter()
        .find(|m| &m.name == macro_name)
        .is_some_and(|m| m.body.contains("PyInit_"));
    Some(InitName::Macro {
        macro_name: macro_name.clone(),
        first: args.first().cloned(),
        local,
    })
}

/// The module name of an init candidate, given the init macros of the whole scan (a shared
/// compat header's macro counts before the file's own definition).
fn module_name_of(name: &InitName, init_macros: &HashSet<&str>) -> Option<String> {
    match name {
        InitName::Known(name) => Some(name.clone()),
        InitName::Macro {
            macro_name,
            first,
            local,
        } => {
            if init_macros.contains(macro_name.as_str()) || *local {
                first.clone()
            } else {
                None
            }
        }
    }
}

/// `foo` from text that starts with `PyInit_foo` (`PyInit_foo(void)` included).
fn init_name_in(text: &str) -> Option<String> {
    let rest = text.trim_start().strip_prefix("PyInit_")?;
    let name: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

/// A `PyInit_` that only hands over to another one (`return PyInit__impl();`), e.g. the
/// Windows-only `PyInit___init__` some packages add: not a module of its own.
fn is_alias_init(function: &Function) -> bool {
    !function.calls.is_empty()
        && function.writes.is_empty()
        && function
            .calls
            .iter()
            .all(|c| c.callee.starts_with("PyInit_") && c.callee != function.name)
}

/// The modules, and the files [`not_compiled_files`] leaves out of the loose code.
pub fn group_files(files: &[FileFacts], build: &BuildInfo) -> (Vec<ModuleGroup>, HashSet<usize>) {
    let links: Vec<LinkFacts> = files.iter().map(LinkFacts::of).collect();
    (group_links(&links, build), not_compiled_files(&links))
}

pub fn group_links(files: &[LinkFacts], build: &BuildInfo) -> Vec<ModuleGroup> {
    // Function-like macros that paste a module init name, from every file (they often live in a
    // shared compat header).
    let init_macros: HashSet<&str> = files
        .iter()
        .flat_map(|f| f.init_macros.iter().map(String::as_str))
        .collect();
    let resolver = IncludeResolver::new(files);
    let mut roots: Vec<(String, FnRef)> = Vec::new();
    let mut aliases: Vec<(String, FnRef, &InitCandidate)> = Vec::new();
    let mut seen = HashSet::new();
    for (fi, file) in files.iter().enumerate() {
        for candidate in &file.inits {
            if let Some(name) = module_name_of(&candidate.name, &init_macros) {
                if seen.insert((fi, name.clone())) {
                    let r = FnRef {
                        file: fi,
                        index: candidate.index,
                    };
                    if candidate.alias {
                        aliases.push((name, r, candidate));
                    } else {
                        roots.push((name, r));
                    }
                }
            }
        }
    }
    // An alias whose target is not in the scan is the only module there is.
    let real: HashSet<String> = roots.iter().map(|(n, _)| format!("PyInit_{n}")).collect();
    roots.extend(
        aliases
            .into_iter()
            .filter(|(_, _, c)| !c.calls_inits.iter().any(|callee| real.contains(callee)))
            .map(|(n, r, _)| (n, r)),
    );
    let root_files: HashSet<usize> = roots.iter().map(|(_, r)| r.file).collect();
    // The build's targets, as scanned files.
    let index_of: HashMap<PathBuf, usize> = if build.is_empty() {
        HashMap::new()
    } else {
        files
            .iter()
            .enumerate()
            .map(|(i, f)| (file_key(&f.path), i))
            .collect()
    };
    // Each target with its scanned sources, and whether all of its sources are scanned.
    let targets: Vec<(&BuildTarget, BTreeSet<usize>, bool)> = build
        .targets
        .iter()
        .map(|t| {
            let found: Vec<usize> = t
                .sources
                .iter()
                .filter_map(|s| index_of.get(&file_key(s)).copied())
                .collect();
            let complete = t.all_sources_c && found.len() == t.sources.len();
            (t, found.into_iter().collect(), complete)
        })
        .filter(|(_, m, _): &(&BuildTarget, BTreeSet<usize>, bool)| !m.is_empty())
        .collect();
    // One extension written twice in a build file (`if USE_SYSTEM_LIB:` one source, `else:`
    // the bundled library too): whichever the build takes, the module is at most the union.
    let mut merged: Vec<(&BuildTarget, BTreeSet<usize>, bool)> = Vec::new();
    for (target, members, complete) in targets {
        let same = merged.iter_mut().find(|(t, _, _)| {
            t.name.is_some()
                && t.name == target.name
                && t.from == target.from
                && t.build_file == target.build_file
        });
        match same {
            Some((_, existing, all)) => {
                existing.extend(members);
                *all &= complete;
            }
            None => merged.push((target, members, complete)),
        }
    }
    let targets = merged;
    let target_of = |name: &str, init_file: usize| -> Option<usize> {
        let candidates = targets
            .iter()
            .enumerate()
            .filter(|(_, (t, m, _))| !t.open_group && m.contains(&init_file));
        // Not a target named for another module, then the most trusted source.
        candidates
            .min_by_key(|(_, (t, _, _))| {
                let other_name = t
                    .name
                    .as_deref()
                    .is_some_and(|n| n.rsplit('.').next() != Some(name));
                (other_name, t.from)
            })
            .map(|(i, _)| i)
    };
    // The dotted name a build file gives the module, even when another build file (a compile
    // database, which names no modules) gives its files.
    let build_name = |name: &str, init_file: usize| -> Option<String> {
        let mut named = targets
            .iter()
            .filter(|(_, m, _)| m.contains(&init_file))
            .filter_map(|(t, _, _)| t.name.as_deref())
            .chain(build.unread_names.iter().map(String::as_str))
            .filter(|n| n.rsplit('.').next() == Some(name));
        named.next().map(str::to_string)
    };
    // Files the build gives to a module: include linking of another module never takes them.
    let mut claimed: HashMap<usize, BTreeSet<usize>> = HashMap::new();
    for (name, init) in &roots {
        if let Some(t) = target_of(name, init.file) {
            for &f in &targets[t].1 {
                claimed.entry(f).or_default().insert(t);
            }
        }
    }

    // Which translation units define each non-static name.
    let mut providers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (fi, f) in files.iter().enumerate() {
        if f.kind != SourceKindFact::C || root_files.contains(&fi) {
            continue;
        }
        for name in &f.provides {
            providers.entry(name.as_str()).or_default().push(fi);
        }
    }
    let test_dirs: Vec<Option<PathBuf>> = resolver.paths.iter().map(|p| test_dir(p)).collect();

    roots
        .into_iter()
        .map(|(name, init)| {
            let exact = target_of(&name, init.file);
            let open = targets
                .iter()
                .position(|(t, m, _)| t.open_group && m.contains(&init.file));
            let (mut queue, allowed, files_from, import_name, closed) = match (exact, open) {
                (Some(t), _) => {
                    let (target, members, complete) = &targets[t];
                    let seeds: Vec<usize> = members.iter().copied().collect();
                    let import_name = target.name.clone().or_else(|| build_name(&name, init.file));
                    (seeds, Some(members), target.from, import_name, *complete)
                }
                // A group the module takes its files from: a file of the group outside the
                // module may still be linked with it.
                (None, Some(t)) => {
                    let (target, members, _) = &targets[t];
                    let import_name = build_name(&name, init.file);
                    (
                        vec![init.file],
                        Some(members),
                        target.from,
                        import_name,
                        false,
                    )
                }
                (None, None) => {
                    let import_name = build_name(&name, init.file);
                    (
                        vec![init.file],
                        None,
                        FilesFrom::Includes,
                        import_name,
                        false,
                    )
                }
            };
            let linking = exact.is_none();
            let home = &resolver.paths[init.file];
            let mut members: BTreeSet<usize> = BTreeSet::new();
            while let Some(f) = queue.pop() {
                if !members.insert(f) {
                    continue;
                }
                for include in &files[f].includes {
                    if let Some(target) = resolver.resolve(&files[f].path, include) {
                        queue.push(target);
                    }
                }
                if !linking {
                    continue;
                }
                // Link with other translation units that provide what this file needs. When
                // several do (two packages of a monorepo, each with its own copy of a
                // library), the nearest ones: a build links its own copy.
                for want in &files[f].wants {
                    let Some(candidates) = providers.get(want.as_str()) else {
                        continue;
                    };
                    let candidates: Vec<usize> = candidates
                        .iter()
                        .copied()
                        .filter(|c| allowed.is_none_or(|a| a.contains(c)))
                        .filter(|c| !claimed.contains_key(c))
                        .filter(|&c| {
                            test_dirs[c]
                                .as_ref()
                                .is_none_or(|dir| home.starts_with(dir))
                        })
                        .collect();
                    for other in nearest(&resolver.paths, f, &candidates) {
                        if !members.contains(&other) {
                            queue.push(other);
                        }
                    }
                }
            }
            ModuleGroup {
                name,
                init,
                files: members.into_iter().collect(),
                files_from,
                import_name,
                closed,
            }
        })
        .collect()
}

/// The `tests/` or `test/` folder a path lies in (the outermost one), if any.
fn test_dir(path: &Path) -> Option<PathBuf> {
    let mut prefix = PathBuf::new();
    for c in path.parent()?.components() {
        prefix.push(c);
        if matches!(c.as_os_str().to_str(), Some("tests" | "test")) {
            return Some(prefix);
        }
    }
    None
}

/// The candidates whose paths share the longest prefix with file `from`'s.
fn nearest(paths: &[std::path::PathBuf], from: usize, candidates: &[usize]) -> Vec<usize> {
    if candidates.len() < 2 {
        return candidates.to_vec();
    }
    let dir = paths[from].parent().unwrap_or(Path::new(""));
    let shared: Vec<usize> = candidates
        .iter()
        .map(|&c| common_prefix(&paths[c], dir))
        .collect();
    let best = shared.iter().copied().max().unwrap_or(0);
    candidates
        .iter()
        .zip(&shared)
        .filter(|(_, &s)| s == best)
        .map(|(&c, _)| c)
        .collect()
}

/// Names a file uses but does not define itself: calls, references and `extern` declarations.
fn external_names(file: &FileFacts) -> BTreeSet<&str> {
    let own: HashSet<&str> = file
        .functions
        .iter()
        .map(|f| f.name.as_str())
        .chain(
            file.variables
                .iter()
                .filter(|v| v.is_definition())
                .map(|v| v.name.as_str()),
        )
        .collect();
    let mut out = BTreeSet::new();
    for f in &file.functions {
        for c in &f.calls {
            out.insert(c.callee.as_str());
        }
        for r in &f.references {
            out.insert(r.name.as_str());
        }
    }
    for v in file
        .variables
        .iter()
        .filter(|v| v.is_extern && v.init.is_none())
    {
        out.insert(v.name.as_str());
    }
    for d in &file.function_declarations {
        out.insert(d.as_str());
    }
    out.retain(|n| !own.contains(n) && !n.starts_with("Py") && !n.starts_with("_Py"));
    out
}

/// Files that a file of the scan `#include`s only in code no build compiles
/// (pyahocorasick's `#ifdef PYCALLS_INJECT_FAULTS` / `#include "pycallfault/pycallfault.c"`)
/// and that no compiled `#include` reaches: when no module takes them either (the build does
/// not list them as sources), they are not read as loose code of their own.
pub fn not_compiled_files(files: &[LinkFacts]) -> HashSet<usize> {
    if files.iter().all(|f| f.uncompiled_includes.is_empty()) {
        return HashSet::new();
    }
    let resolver = IncludeResolver::new(files);
    let targets = |compiled: bool| -> HashSet<usize> {
        files
            .iter()
            .flat_map(|f| {
                let list = if compiled {
                    &f.includes
                } else {
                    &f.uncompiled_includes
                };
                list.iter().filter_map(|t| resolver.resolve(&f.path, t))
            })
            .collect()
    };
    let reached = targets(true);
    targets(false)
        .into_iter()
        .filter(|t| !reached.contains(t))
        .collect()
}

/// Maps `#include "x.h"` to a scanned file: next to the includer first, then anywhere in the
/// scan by path suffix.
struct IncludeResolver {
    by_path: HashMap<std::path::PathBuf, usize>,
    by_name: HashMap<String, Vec<usize>>,
    paths: Vec<std::path::PathBuf>,
}

impl IncludeResolver {
    fn new(files: &[LinkFacts]) -> Self {
        let mut by_path = HashMap::new();
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        let paths: Vec<std::path::PathBuf> = files.iter().map(|f| normalize(&f.path)).collect();
        for (i, f) in files.iter().enumerate() {
            by_path.insert(paths[i].clone(), i);
            if let Some(name) = f.path.file_name().and_then(|n| n.to_str()) {
                by_name.entry(name.to_string()).or_default().push(i);
            }
        }
        Self {
            by_path,
            by_name,
            paths,
        }
    }

    fn resolve(&self, includer: &Path, target: &str) -> Option<usize> {
        // No scanned file has the included file's name (`<stdio.h>`, `"Python.h"`, most
        // includes): nothing can match, by path or by name, and no path is built.
        let name = Path::new(target).file_name()?.to_str()?;
        let candidates = self.by_name.get(name)?;
        let dir = includer.parent().unwrap_or(Path::new(""));
        if let Some(&i) = self.by_path.get(&normalize(&dir.join(target))) {
            return Some(i);
        }
        let suffix = normalize(Path::new(target));
        candidates
            .iter()
            .copied()
            .filter(|&c| self.paths[c].ends_with(&suffix))
            // The candidate nearest the includer wins: longest shared prefix.
            .max_by_key(|&c| common_prefix(&self.paths[c], &normalize(dir)))
    }
}

fn common_prefix(a: &Path, b: &Path) -> usize {
    a.components()
        .zip(b.components())
        .take_while(|(x, y)| x == y)
        .count()
}

fn normalize(path: &Path) -> std::path::PathBuf {
    let mut out = std::path::PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}
