//! Finding the C sources to scan. Walking only: no reading, no parsing.

use ignore::WalkBuilder;
use std::path::{Path, PathBuf};

/// Folders that hold build output, environments or dependencies, never the extension's sources.
pub const DEFAULT_EXCLUDED_DIRS: &[&str] = &[
    "build",
    "dist",
    ".tox",
    ".nox",
    ".venv",
    "venv",
    "site-packages",
    "node_modules",
    "target",
    "__pycache__",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SourceKind {
    C,
    Header,
    /// Argument Clinic output (`*.c.h`), included by the module's `.c` file.
    Clinic,
    Inc,
}

#[derive(Debug, Default)]
pub struct Discovery {
    pub sources: Vec<(PathBuf, SourceKind)>,
    /// C++ sources: reported as skipped, never silently ignored.
    pub skipped_cpp: Vec<PathBuf>,
    pub errors: Vec<(PathBuf, String)>,
}

pub fn classify(path: &Path) -> Option<SourceKind> {
    let name = path.file_name()?.to_str()?.to_ascii_lowercase();
    if name.ends_with(".c.h") {
        Some(SourceKind::Clinic)
    } else if name.ends_with(".c") {
        Some(SourceKind::C)
    } else if name.ends_with(".h") {
        Some(SourceKind::Header)
    } else if name.ends_with(".inc") {
        Some(SourceKind::Inc)
    } else {
        None
    }
}

fn is_cpp(path: &Path) -> bool {
    matches!(
        path.extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .as_deref(),
        Some("cc" | "cpp" | "cxx" | "c++" | "hpp" | "hh" | "hxx")
    )
}

#[derive(Debug, Clone, Default)]
pub struct DiscoverOptions {
    /// Extra folder or file names to skip, on top of the defaults.
    pub extra_excludes: Vec<String>,
    /// Replace the default excluded folder names.
    pub excludes: Option<Vec<String>>,
}

pub fn discover(roots: &[PathBuf], options: &DiscoverOptions) -> Discovery {
    let mut found = Discovery::default();
    let excluded: Vec<String> = options
        .excludes
        .clone()
        .unwrap_or_else(|| {
            DEFAULT_EXCLUDED_DIRS
                .iter()
                .map(|s| s.to_string())
                .collect()
        })
        .into_iter()
        .chain(options.extra_excludes.iter().cloned())
        .collect();
    for root in roots {
        let meta = match std::fs::metadata(root) {
            Ok(meta) => meta,
            Err(err) => {
                found.errors.push((root.clone(), describe_io_error(&err)));
                continue;
            }
        };
        if meta.is_file() {
            // A file named explicitly is scanned whatever its name says, except C++.
            if is_cpp(root) {
                found.skipped_cpp.push(root.clone());
            } else {
                found
                    .sources
                    .push((root.clone(), classify(root).unwrap_or(SourceKind::C)));
            }
            continue;
        }
        let excluded = excluded.clone();
        let walker = WalkBuilder::new(root)
            .hidden(true)
            .git_ignore(true)
            .git_global(false)
            .git_exclude(true)
            .require_git(false)
            .follow_links(false)
            .sort_by_file_name(|a, b| a.cmp(b))
            .filter_entry(move |entry| {
                let is_dir = entry.file_type().is_some_and(|t| t.is_dir());
                !(is_dir
                    && entry.depth() > 0
                    && entry
                        .file_name()
                        .to_str()
                        .is_some_and(|n| excluded.iter().any(|e| e == n)))
            })
            .build();
        for entry in walker {
            match entry {
                Ok(entry) => {
                    if !entry.file_type().is_some_and(|t| t.is_file()) {
                        continue;
                    }
                    let path = entry.into_path();
                    if let Some(kind) = classify(&path) {
                        found.sources.push((path, kind));
                    } else if is_cpp(&path) {
                        found.skipped_cpp.push(path);
                    }
                }
                Err(err) => {
                    let path = error_path(&err).unwrap_or_else(|| root.clone());
                    found.errors.push((path, err.to_string()));
                }
            }
        }
    }
    found.sources.sort();
    found.sources.dedup();
    found.skipped_cpp.sort();
    found.skipped_cpp.dedup();
    found
}

fn error_path(err: &ignore::Error) -> Option<PathBuf> {
    match err {
        ignore::Error::WithPath { path, .. } => Some(path.clone()),
        ignore::Error::WithDepth { err, .. } => error_path(err),
        ignore::Error::Loop { child, .. } => Some(child.clone()),
        _ => None,
    }
}

pub fn describe_io_error(err: &std::io::Error) -> String {
    match err.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => err.to_string(),
    }
}
