//! What the project's build says about its extension modules: which source files each one is
//! compiled from, its dotted import name, and the `-D`/`-U` macros it is compiled with.
//!
//! Build files are read statically, never run: `compile_commands.json`, `setup.py` (parsed with
//! tree-sitter-python), `pyproject.toml` (`[tool.setuptools] ext-modules`), `meson.build` and
//! `CMakeLists.txt`. Only what can be read without running anything is taken (string literals,
//! lists of them, `glob` with a literal pattern, `os.path.join` of literals, a name assigned
//! once); an extension whose sources are computed is left out with a note, and its module's
//! files are then found by include-and-definition linking (`model::linking`).

mod cmake;
mod compile_db;
mod meson;
mod pyproject;
mod setup_py;

use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// Where a module's file list came from, in the order they are trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum FilesFrom {
    #[serde(rename = "compile_commands.json")]
    CompileCommands,
    #[serde(rename = "setup.py")]
    SetupPy,
    #[serde(rename = "pyproject.toml")]
    PyprojectToml,
    #[serde(rename = "meson.build")]
    MesonBuild,
    #[serde(rename = "CMakeLists.txt")]
    CMakeLists,
    /// No build file named the module's sources: its `#include`s and the translation units
    /// that define what it uses.
    #[serde(rename = "includes")]
    Includes,
}

impl FilesFrom {
    pub fn as_str(self) -> &'static str {
        match self {
            FilesFrom::CompileCommands => "compile_commands.json",
            FilesFrom::SetupPy => "setup.py",
            FilesFrom::PyprojectToml => "pyproject.toml",
            FilesFrom::MesonBuild => "meson.build",
            FilesFrom::CMakeLists => "CMakeLists.txt",
            FilesFrom::Includes => "includes",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [
            FilesFrom::CompileCommands,
            FilesFrom::SetupPy,
            FilesFrom::PyprojectToml,
            FilesFrom::MesonBuild,
            FilesFrom::CMakeLists,
            FilesFrom::Includes,
        ]
        .into_iter()
        .find(|f| f.as_str() == name)
    }
}

/// One compiled extension (or, from a compile database, one group of translation units).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BuildTarget {
    /// The dotted import name (`pkg.sub._ext`), when the build file gives one.
    pub name: Option<String>,
    /// The source files, lexically normalised (see [`normalize`]).
    pub sources: Vec<PathBuf>,
    pub from: FilesFrom,
    /// The build file that says so.
    pub build_file: PathBuf,
    /// `-DNAME` / `-UNAME` (`true` = defined), per source file when the build gives them.
    pub defines: Vec<(String, bool)>,
    /// The file set is a group of compiled files whose links the build does not spell out (a
    /// compile database without per-target output folders): the module takes the files it
    /// needs from the group by linking, but nothing outside it.
    pub open_group: bool,
    /// Every source the build names is C the scan can read: no C++ file, no `.pyx` without
    /// its generated C, no object file, no entry left unread. Only then can the scanned
    /// sources hold every caller of the module's functions.
    pub all_sources_c: bool,
}

/// A build file that could not be read, or an extension it could not be read for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct BuildNote {
    pub path: PathBuf,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct BuildInfo {
    pub targets: Vec<BuildTarget>,
    pub notes: Vec<BuildNote>,
    /// Dotted names of extensions whose sources could not be read: a module found by includes
    /// whose `PyInit_` name ends one of them still gets its import name.
    pub unread_names: Vec<String>,
    /// Per source file (by [`file_key`]), the `-D`/`-U` macros its compile command gives.
    pub defines: BTreeMap<PathBuf, Vec<(String, bool)>>,
}

impl BuildInfo {
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Macros defined or undefined for every compiled file: what a header sees whichever
    /// translation unit includes it.
    pub fn common_defines(&self) -> Vec<(String, bool)> {
        let mut lists = self.defines.values();
        let Some(first) = lists.next() else {
            return Vec::new();
        };
        let mut common = first.clone();
        for list in lists {
            common.retain(|d| list.contains(d));
        }
        common
    }

    /// The macros the build gives the file at `path`; `common` is [`Self::common_defines`],
    /// computed once per scan.
    pub fn defines_for(&self, path: &Path, common: &[(String, bool)]) -> Vec<(String, bool)> {
        if self.defines.is_empty() {
            return Vec::new();
        }
        match self.defines.get(&file_key(path)) {
            Some(list) => list.clone(),
            None => common.to_vec(),
        }
    }
}

/// Options that say where to look.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// `--compile-commands FILE`.
    pub compile_commands: Option<PathBuf>,
    /// Do not look for build files in the scanned folders (`--compile-commands` still counts).
    pub ignore_build_files: bool,
}

/// Reads what the build files in the scanned folders (and `--compile-commands`) say. A file
/// that cannot be read becomes a note; it never stops the scan.
pub fn read_build(roots: &[PathBuf], options: &BuildOptions) -> BuildInfo {
    let mut info = BuildInfo::default();
    if let Some(db) = &options.compile_commands {
        compile_db::read(db, &mut info);
    }
    if options.ignore_build_files {
        return info;
    }
    for root in roots.iter().filter(|r| r.is_dir()) {
        if options.compile_commands.is_none() {
            for candidate in [
                root.join("compile_commands.json"),
                root.join("build").join("compile_commands.json"),
            ] {
                if candidate.is_file() {
                    compile_db::read(&candidate, &mut info);
                    break;
                }
            }
        }
        for dir in project_dirs(root) {
            let setup = dir.join("setup.py");
            if setup.is_file() {
                setup_py::read(&setup, &mut info);
            }
            let pyproject = dir.join("pyproject.toml");
            if pyproject.is_file() {
                pyproject::read(&pyproject, &mut info);
            }
            let meson = dir.join("meson.build");
            if meson.is_file() {
                meson::read(&meson, &mut info);
            }
            let cmake = dir.join("CMakeLists.txt");
            if cmake.is_file() {
                cmake::read(&cmake, &mut info);
            }
        }
    }
    info.targets.retain(|t| !t.sources.is_empty());
    info
}

/// What one build file's text says, read as the file `path` (its name picks the reader;
/// relative sources are taken from its folder). For tests and the fuzzer: nothing is run, and
/// any text gives a result or notes, never a panic.
pub fn read_build_text(path: &Path, text: &str) -> BuildInfo {
    let mut info = BuildInfo::default();
    match path.file_name().and_then(|n| n.to_str()) {
        Some("compile_commands.json") => compile_db::read_text_of(path, text, &mut info),
        Some("pyproject.toml") => pyproject::read_text_of(path, text, &mut info),
        Some("meson.build") => meson::read_text_of(path, text, &mut info),
        Some("CMakeLists.txt") => cmake::read_text_of(path, text, &mut info),
        _ => setup_py::read_text_of(path, text, &mut info),
    }
    info
}

/// The scanned folder and the folders below it that hold a `setup.py` or `pyproject.toml`
/// of their own (the packages of a monorepo), two levels deep at most. `meson.build` and
/// `CMakeLists.txt` below the root are reached through `subdir()` / `add_subdirectory()`.
fn project_dirs(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_path_buf()];
    let mut level = vec![root.to_path_buf()];
    for _ in 0..2 {
        let mut next = Vec::new();
        for dir in &level {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut children: Vec<PathBuf> = entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| !n.starts_with('.') && !is_excluded_dir(n))
                })
                .collect();
            children.sort();
            for child in children {
                if is_package_dir(&child) {
                    out.push(child.clone());
                }
                next.push(child);
            }
        }
        level = next;
    }
    out
}

/// A folder that holds a Python package's build: a `setup.py` or a `pyproject.toml`.
fn is_package_dir(dir: &Path) -> bool {
    dir.join("setup.py").is_file() || dir.join("pyproject.toml").is_file()
}

/// The Python package each file belongs to: the nearest folder above it holding a `setup.py`
/// or `pyproject.toml` (what `project_dirs` takes for a package of a monorepo, at any depth
/// here), `None` when no folder above it does. Files of different packages are separate
/// programs: nothing links code of one with code of another by name. Each folder is looked at
/// once.
#[derive(Default)]
pub struct PackageRoots {
    /// Folder → the package folder it lies in.
    known: std::collections::HashMap<PathBuf, Option<PathBuf>>,
}

impl PackageRoots {
    pub fn of(&mut self, file: &Path) -> Option<PathBuf> {
        let dir = file.parent()?;
        self.of_dir(dir)
    }

    fn of_dir(&mut self, dir: &Path) -> Option<PathBuf> {
        if let Some(known) = self.known.get(dir) {
            return known.clone();
        }
        let root = if is_package_dir(dir) {
            Some(dir.to_path_buf())
        } else {
            match dir.parent() {
                Some(parent) if !dir.as_os_str().is_empty() => self.of_dir(parent),
                _ => None,
            }
        };
        self.known.insert(dir.to_path_buf(), root.clone());
        root
    }
}

fn is_excluded_dir(name: &str) -> bool {
    crate::discover::DEFAULT_EXCLUDED_DIRS.contains(&name)
}

/// A path without `.` components and with `..` folded, so that `./src/a.c` (the scan's
/// spelling) and `src/../src/a.c` (a build file's) compare equal.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// The one spelling of a file's path that the scan and every build file agree on: the
/// canonical path when the file exists, else the normalised absolute path.
pub fn file_key(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| {
        let absolute = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir().unwrap_or_default().join(path)
        };
        normalize(&absolute)
    })
}

/// `-DNAME`, `-DNAME=value`, `-D NAME`, `-UNAME` in a compiler's argument list.
pub(crate) fn defines_in_arguments(args: &[String]) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let (flag, rest) = if let Some(r) = arg.strip_prefix("-D") {
            (true, r)
        } else if let Some(r) = arg.strip_prefix("-U") {
            (false, r)
        } else if let Some(r) = arg.strip_prefix("/D") {
            (true, r)
        } else {
            continue;
        };
        let spec = if rest.is_empty() {
            match iter.next() {
                Some(next) => next.as_str(),
                None => break,
            }
        } else {
            rest
        };
        let (name, value) = spec.split_once('=').unwrap_or((spec, "1"));
        // `-DFOO=0` is defined for `#ifdef` but false for `#if FOO`: the condition code
        // cannot tell those apart, so it is not used.
        if value.trim() == "0" {
            continue;
        }
        if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            out.retain(|(n, _): &(String, bool)| n != name);
            out.push((name.to_string(), flag));
        }
    }
    out
}

/// Files of a source list that the scan reads: C sources and the `.c` a Cython `.pyx` is
/// compiled to, when the sdist ships it.
pub(crate) fn c_source(base: &Path, source: &str) -> Option<PathBuf> {
    let path = normalize(&base.join(source));
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext {
        "c" | "h" | "inc" => Some(path),
        "pyx" | "py" => {
            let c = path.with_extension("c");
            c.is_file().then_some(c)
        }
        _ => None,
    }
}

/// The text of a build file, or a note that it could not be read.
pub(crate) fn read_text(path: &Path, info: &mut BuildInfo) -> Option<String> {
    match std::fs::read(path) {
        Ok(bytes) if bytes.len() > 4 * 1024 * 1024 => {
            info.notes.push(BuildNote {
                path: path.to_path_buf(),
                message: "build file over 4 MB: not read".into(),
            });
            None
        }
        Ok(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
        Err(e) => {
            info.notes.push(BuildNote {
                path: path.to_path_buf(),
                message: format!("cannot read build file: {e}"),
            });
            None
        }
    }
}

/// Expands a literal glob pattern (`src/*.c`, `lib/**/*.c`) against the folder `base`: the
/// matching files, relative to `base`.
pub(crate) fn expand_glob(base: &Path, pattern: &str) -> Option<Vec<PathBuf>> {
    let glob = globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .ok()?
        .compile_matcher();
    // Walk from the longest literal folder prefix of the pattern only.
    let literal: PathBuf = Path::new(pattern)
        .components()
        .take_while(|c| {
            let s = c.as_os_str().to_string_lossy();
            !s.contains(['*', '?', '[', '{'])
        })
        .collect();
    let start = base.join(&literal);
    let mut out = Vec::new();
    let mut stack = vec![start];
    let mut visited = 0usize;
    while let Some(dir) = stack.pop() {
        visited += 1;
        if visited > 10_000 {
            break;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(|e| e.ok()) {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            } else if let Ok(relative) = path.strip_prefix(base) {
                if glob.is_match(relative) {
                    out.push(relative.to_path_buf());
                }
            }
        }
    }
    out.sort();
    Some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_file_belongs_to_the_nearest_package_above_it() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        for dir in ["outer/inner/src", "outer/lib", "loose"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        std::fs::write(root.join("outer/setup.py"), "").unwrap();
        std::fs::write(root.join("outer/inner/pyproject.toml"), "").unwrap();
        let mut roots = PackageRoots::default();
        let inner = roots.of(&root.join("outer/inner/src/a.c"));
        assert_eq!(inner, Some(root.join("outer/inner")));
        assert_eq!(
            roots.of(&root.join("outer/lib/b.c")),
            Some(root.join("outer"))
        );
        assert_eq!(roots.of(&root.join("outer/c.c")), Some(root.join("outer")));
        // Asked again, from what it learnt: the same answer.
        assert_eq!(roots.of(&root.join("outer/inner/d.h")), inner);
        // No package above: the temporary folder's parents hold none either.
        assert_eq!(roots.of(&root.join("loose/e.c")), None);
    }

    use super::*;

    #[test]
    fn defines_from_arguments() {
        let args: Vec<String> = [
            "cc",
            "-DFOO",
            "-D",
            "BAR=1",
            "-UBAZ",
            "-Iinclude",
            "-DFOO=2",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            defines_in_arguments(&args),
            vec![
                ("BAR".to_string(), true),
                ("BAZ".to_string(), false),
                ("FOO".to_string(), true)
            ]
        );
    }

    #[test]
    fn normalize_folds_dots() {
        assert_eq!(
            normalize(Path::new("./src/../src/a.c")),
            PathBuf::from("src/a.c")
        );
    }
}
