//! `pyproject.toml`: setuptools' `[tool.setuptools] ext-modules` table (setuptools 74+).

use super::{c_source, read_text, BuildInfo, BuildNote, BuildTarget, FilesFrom};
use std::path::{Path, PathBuf};

pub(super) fn read(path: &Path, info: &mut BuildInfo) {
    if let Some(text) = read_text(path, info) {
        read_text_of(path, &text, info);
    }
}

pub(super) fn read_text_of(path: &Path, text: &str, info: &mut BuildInfo) {
    let table: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            info.notes.push(BuildNote {
                path: path.to_path_buf(),
                message: format!(
                    "not valid TOML ({}): its extensions are not read",
                    e.message()
                ),
            });
            return;
        }
    };
    let Some(modules) = table
        .get("tool")
        .and_then(|t| t.get("setuptools"))
        .and_then(|t| t.get("ext-modules"))
        .and_then(|m| m.as_array())
    else {
        return;
    };
    let base = path.parent().unwrap_or(Path::new(""));
    for module in modules {
        let name = module
            .get("name")
            .and_then(|n| n.as_str())
            .map(str::to_string);
        let Some(sources) = module.get("sources").and_then(|s| s.as_array()) else {
            continue;
        };
        let files: Vec<PathBuf> = sources
            .iter()
            .filter_map(|s| s.as_str())
            .filter_map(|s| c_source(base, s))
            .collect();
        let all_sources_c = files.len() == sources.len();
        if files.is_empty() {
            continue;
        }
        let mut defines = Vec::new();
        if let Some(list) = module.get("define-macros").and_then(|d| d.as_array()) {
            for pair in list {
                if let Some(n) = pair.get(0).and_then(|n| n.as_str()) {
                    defines.push((n.to_string(), true));
                }
            }
        }
        if let Some(list) = module.get("undef-macros").and_then(|d| d.as_array()) {
            defines.extend(
                list.iter()
                    .filter_map(|n| n.as_str())
                    .map(|n| (n.to_string(), false)),
            );
        }
        for f in &files {
            info.defines
                .entry(super::file_key(f))
                .or_insert_with(|| defines.clone());
        }
        info.targets.push(BuildTarget {
            name,
            sources: files,
            from: FilesFrom::PyprojectToml,
            build_file: path.to_path_buf(),
            defines,
            open_group: false,
            all_sources_c,
        });
    }
}
