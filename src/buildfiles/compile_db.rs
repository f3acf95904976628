//! `compile_commands.json`: the exact translation units, their `-D`/`-U` macros, and, when the
//! build system puts each target's objects in a folder of its own (CMake's
//! `CMakeFiles/<target>.dir/`, meson's `<target>.p/`), which files make which target.

use super::{
    c_source, defines_in_arguments, read_text, BuildInfo, BuildNote, BuildTarget, FilesFrom,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
struct Entry {
    directory: Option<String>,
    file: String,
    #[serde(default)]
    arguments: Option<Vec<String>>,
    #[serde(default)]
    command: Option<String>,
    #[serde(default)]
    output: Option<String>,
}

pub(super) fn read(path: &Path, info: &mut BuildInfo) {
    if let Some(text) = read_text(path, info) {
        read_text_of(path, &text, info);
    }
}

pub(super) fn read_text_of(path: &Path, text: &str, info: &mut BuildInfo) {
    let note = |info: &mut BuildInfo, message: String| {
        info.notes.push(BuildNote {
            path: path.to_path_buf(),
            message,
        })
    };
    let entries: Vec<Entry> = match serde_json::from_str(text) {
        Ok(e) => e,
        Err(e) => {
            note(
                info,
                format!("not a compile database ({e}): the build's file lists are not used"),
            );
            return;
        }
    };
    let db_dir = path.parent().unwrap_or(Path::new(""));
    // Files are named by absolute paths in a compile database; the scan names them relative
    // to where it runs. Both are compared canonicalised (`super::file_key`).
    let mut groups: BTreeMap<Option<String>, Vec<PathBuf>> = BTreeMap::new();
    let mut missing = Vec::new();
    // Groups with an entry that is not C the scan reads (C++, a file that does not exist).
    let mut not_all_c: std::collections::BTreeSet<Option<String>> = Default::default();
    for entry in &entries {
        let group = entry.output.as_deref().and_then(target_of_output);
        // A relative `directory` is taken from the database's own folder.
        let dir = entry
            .directory
            .as_deref()
            .map(|d| db_dir.join(d))
            .unwrap_or_else(|| db_dir.to_path_buf());
        let Some(file) = c_source(&dir, &entry.file) else {
            not_all_c.insert(group);
            continue;
        };
        let Ok(real) = std::fs::canonicalize(&file) else {
            missing.push(file);
            not_all_c.insert(group);
            continue;
        };
        let file = real;
        let args: Vec<String> = match (&entry.arguments, &entry.command) {
            (Some(a), _) => a.clone(),
            (None, Some(c)) => c.split_whitespace().map(str::to_string).collect(),
            (None, None) => Vec::new(),
        };
        info.defines
            .insert(file.clone(), defines_in_arguments(&args));
        groups.entry(group).or_default().push(file);
    }
    if !missing.is_empty() {
        note(
            info,
            format!(
                "{} file(s) it names do not exist, e.g. {}",
                missing.len(),
                missing[0].display()
            ),
        );
    }
    for (target, mut sources) in groups {
        sources.sort();
        sources.dedup();
        info.targets.push(BuildTarget {
            name: None,
            all_sources_c: !not_all_c.contains(&target),
            open_group: target.is_none(),
            sources,
            from: FilesFrom::CompileCommands,
            build_file: path.to_path_buf(),
            defines: Vec::new(),
        });
    }
}

/// `CMakeFiles/_ext.dir/src/a.c.o` → `_ext`; `_ext.cpython-312-x86_64-linux-gnu.so.p/a.c.o`
/// → `_ext.cpython-312-x86_64-linux-gnu.so`.
fn target_of_output(output: &str) -> Option<String> {
    Path::new(output).components().find_map(|c| {
        let s = c.as_os_str().to_str()?;
        s.strip_suffix(".dir")
            .or_else(|| s.strip_suffix(".p"))
            .filter(|t| !t.is_empty())
            .map(str::to_string)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_folders_name_targets() {
        assert_eq!(
            target_of_output("CMakeFiles/_ext.dir/src/a.c.o").as_deref(),
            Some("_ext")
        );
        assert_eq!(
            target_of_output("_ext.cpython-312.so.p/src_a.c.o").as_deref(),
            Some("_ext.cpython-312.so")
        );
        assert_eq!(target_of_output("build/temp.linux/src/a.o"), None);
    }
}
