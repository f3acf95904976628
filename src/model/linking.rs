//! Which files make up which module. A module is its `PyInit_<name>` file, the files it
//! `#include`s, and the files it links with: `.c` files that define a function it calls or a
//! global it declares `extern`.

use super::FnRef;
use crate::facts::{FileFacts, SourceKindFact};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;

pub struct ModuleGroup {
    pub name: String,
    pub init: FnRef,
    pub files: Vec<usize>,
}

/// `PyInit_foo`, or a function whose head is a macro that pastes `PyInit_##name`.
pub fn module_name_of(
    file: &FileFacts,
    function: &crate::facts::Function,
    macros: &HashMap<&str, &str>,
) -> Option<String> {
    if function.versions.python2_only() {
        return None;
    }
    if let Some(name) = function.name.strip_prefix("PyInit_") {
        return Some(name.to_string());
    }
    // `#define INITFUNC PyInit_heapyc` then `PyMODINIT_FUNC INITFUNC(void)`.
    if function.macro_head.is_none() {
        let alias = file
            .macros
            .iter()
            .find(|m| m.params.is_none() && m.name == function.name && !m.versions.python2_only());
        if let Some(name) = alias.and_then(|m| m.body.trim().strip_prefix("PyInit_")) {
            if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Some(name.to_string());
            }
        }
    }
    let (macro_name, args) = function.macro_head.as_ref()?;
    let body = macros.get(macro_name.as_str()).copied().or_else(|| {
        file.macros
            .iter()
            .find(|m| &m.name == macro_name)
            .map(|m| m.body.as_str())
    })?;
    if body.contains("PyInit_") {
        return args.first().cloned();
    }
    None
}

pub fn group_files(files: &[FileFacts]) -> Vec<ModuleGroup> {
    // Function-like macros that paste a module init name, from every file (they often live in a
    // shared compat header).
    let mut init_macros: HashMap<&str, &str> = HashMap::new();
    for file in files {
        for m in &file.macros {
            if m.params.is_some() && m.body.contains("PyInit_") && !m.versions.python2_only() {
                init_macros.insert(m.name.as_str(), m.body.as_str());
            }
        }
    }
    let resolver = IncludeResolver::new(files);
    let mut roots: Vec<(String, FnRef)> = Vec::new();
    let mut seen = HashSet::new();
    for (fi, file) in files.iter().enumerate() {
        for (i, function) in file.functions.iter().enumerate() {
            if let Some(name) = module_name_of(file, function, &init_macros) {
                if seen.insert((fi, name.clone())) {
                    roots.push((name, FnRef { file: fi, index: i }));
                }
            }
        }
    }
    let root_files: HashSet<usize> = roots.iter().map(|(_, r)| r.file).collect();
    // Which translation units define each non-static name.
    let mut providers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (fi, f) in files.iter().enumerate() {
        if f.kind != SourceKindFact::C || root_files.contains(&fi) {
            continue;
        }
        let functions = f
            .functions
            .iter()
            .filter(|x| !x.is_static)
            .map(|x| x.name.as_str());
        let globals = f
            .variables
            .iter()
            .filter(|v| v.function.is_none() && !v.is_static && v.is_definition())
            .map(|v| v.name.as_str());
        for name in functions.chain(globals) {
            providers.entry(name).or_default().push(fi);
        }
    }
    let wants: Vec<BTreeSet<&str>> = files.iter().map(|f| external_names(f)).collect();

    roots
        .into_iter()
        .map(|(name, init)| {
            let mut members: BTreeSet<usize> = BTreeSet::new();
            let mut queue = vec![init.file];
            while let Some(f) = queue.pop() {
                if !members.insert(f) {
                    continue;
                }
                for include in &files[f].includes {
                    if let Some(target) = resolver.resolve(&files[f].path, &include.target) {
                        queue.push(target);
                    }
                }
                // Link with other translation units that provide what this file needs. When
                // several do (two packages of a monorepo, each with its own copy of a
                // library), the nearest ones: a build links its own copy.
                for want in &wants[f] {
                    let Some(candidates) = providers.get(want) else {
                        continue;
                    };
                    let nearest = nearest(&resolver.paths, f, candidates);
                    for other in nearest {
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
            }
        })
        .collect()
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

/// Maps `#include "x.h"` to a scanned file: next to the includer first, then anywhere in the
/// scan by path suffix.
struct IncludeResolver {
    by_path: HashMap<std::path::PathBuf, usize>,
    by_name: HashMap<String, Vec<usize>>,
    paths: Vec<std::path::PathBuf>,
}

impl IncludeResolver {
    fn new(files: &[FileFacts]) -> Self {
        let mut by_path = HashMap::new();
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, f) in files.iter().enumerate() {
            by_path.insert(normalize(&f.path), i);
            if let Some(name) = f.path.file_name().and_then(|n| n.to_str()) {
                by_name.entry(name.to_string()).or_default().push(i);
            }
        }
        Self {
            by_path,
            by_name,
            paths: files.iter().map(|f| normalize(&f.path)).collect(),
        }
    }

    fn resolve(&self, includer: &Path, target: &str) -> Option<usize> {
        let dir = includer.parent().unwrap_or(Path::new(""));
        if let Some(&i) = self.by_path.get(&normalize(&dir.join(target))) {
            return Some(i);
        }
        let name = Path::new(target).file_name()?.to_str()?;
        let candidates = self.by_name.get(name)?;
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
