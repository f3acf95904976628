//! `CMakeLists.txt`: `Python_add_library`, `pybind11_add_module`, `nanobind_add_module` and
//! `add_library` targets with their sources (literal, from `set()` / `list(APPEND)` variables,
//! or `file(GLOB)`), `target_sources`, the libraries they link, and `add_subdirectory`.

use super::{c_source, expand_glob, read_text, BuildInfo, BuildNote, BuildTarget, FilesFrom};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One command: its name (lower case) and its arguments, `${VAR}` not yet expanded.
#[derive(Debug)]
struct Command {
    name: String,
    args: Vec<String>,
    line: usize,
}

fn commands(text: &str) -> Vec<Command> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line = 1;
    while i < b.len() {
        let c = b[i];
        if c == b'\n' {
            line += 1;
            i += 1;
        } else if c == b'#' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'_' || c.is_ascii_alphabetic() {
            let start = i;
            while i < b.len() && (b[i] == b'_' || b[i].is_ascii_alphanumeric()) {
                i += 1;
            }
            let name = text[start..i].to_ascii_lowercase();
            while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
                i += 1;
            }
            if b.get(i) != Some(&b'(') {
                continue;
            }
            let at = line;
            i += 1;
            let mut args = Vec::new();
            let mut depth = 1;
            let mut current = String::new();
            let mut quoted = false;
            while i < b.len() && depth > 0 {
                let c = b[i];
                if c == b'\n' {
                    line += 1;
                }
                if quoted {
                    if c == b'\\' && i + 1 < b.len() {
                        current.push(b[i + 1] as char);
                        i += 2;
                        continue;
                    }
                    if c == b'"' {
                        quoted = false;
                    } else {
                        current.push(c as char);
                    }
                    i += 1;
                    continue;
                }
                match c {
                    b'"' => quoted = true,
                    b'#' => {
                        while i < b.len() && b[i] != b'\n' {
                            i += 1;
                        }
                        continue;
                    }
                    b'(' => {
                        depth += 1;
                        current.push('(');
                    }
                    b')' => {
                        depth -= 1;
                        if depth > 0 {
                            current.push(')');
                        }
                    }
                    _ if c.is_ascii_whitespace() => {
                        if !current.is_empty() {
                            args.push(std::mem::take(&mut current));
                        }
                    }
                    _ => current.push(c as char),
                }
                i += 1;
            }
            if !current.is_empty() {
                args.push(current);
            }
            out.push(Command {
                name,
                args,
                line: at,
            });
        } else {
            i += 1;
        }
    }
    out
}

const TARGET_KEYWORDS: &[&str] = &[
    "MODULE",
    "SHARED",
    "STATIC",
    "OBJECT",
    "WITH_SOABI",
    "EXCLUDE_FROM_ALL",
    "NO_EXTRAS",
    "THIN_LTO",
    "OPT_SIZE",
    "NB_STATIC",
    "NB_SHARED",
    "STABLE_ABI",
    "NOMINSIZE",
    "FREE_THREADED",
    "LTO",
    "NB_DOMAIN",
    "USE_SABI",
    "PRIVATE",
    "PUBLIC",
    "INTERFACE",
];

#[derive(Default)]
struct Target {
    sources: Vec<PathBuf>,
    links: Vec<String>,
    defines: Vec<(String, bool)>,
    /// An entry could not be read: the target is not used.
    unknown: Option<String>,
    /// A source is not C the scan reads (a `.cpp` file, an object).
    non_c_source: bool,
    python: bool,
    line: usize,
    file: PathBuf,
}

struct Reader<'i> {
    info: &'i mut BuildInfo,
    vars: HashMap<String, Vec<String>>,
    targets: Vec<(String, Target)>,
    visited: Vec<PathBuf>,
    top_dir: PathBuf,
}

pub(super) fn read(path: &Path, info: &mut BuildInfo) {
    read_with(path, None, info);
}

pub(super) fn read_text_of(path: &Path, text: &str, info: &mut BuildInfo) {
    read_with(path, Some(text), info);
}

fn read_with(path: &Path, text: Option<&str>, info: &mut BuildInfo) {
    let top_dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
    let mut reader = Reader {
        info,
        vars: HashMap::new(),
        targets: Vec::new(),
        visited: Vec::new(),
        top_dir,
    };
    match text {
        Some(text) => {
            reader.visited.push(path.to_path_buf());
            reader.read_commands(path, text, 0);
        }
        None => reader.read_file(path, 0),
    }
    let Reader { info, targets, .. } = reader;
    let by_name: HashMap<&str, &Target> = targets.iter().map(|(n, t)| (n.as_str(), t)).collect();
    for (name, target) in &targets {
        if let Some(why) = &target.unknown {
            if target.python {
                info.unread_names.push(name.clone());
                info.notes.push(BuildNote {
                    path: target.file.clone(),
                    message: format!(
                        "target `{name}` (line {}): sources computed ({why}); its files are found by includes",
                        target.line
                    ),
                });
            }
            continue;
        }
        // The sources of the libraries it links, and theirs.
        let mut sources = target.sources.clone();
        let mut all_sources_c = !target.non_c_source;
        let mut queue: Vec<&str> = target.links.iter().map(String::as_str).collect();
        let mut seen: Vec<&str> = vec![name.as_str()];
        while let Some(lib) = queue.pop() {
            if seen.contains(&lib) {
                continue;
            }
            seen.push(lib);
            if let Some(t) = by_name.get(lib).filter(|t| t.unknown.is_none()) {
                all_sources_c &= !t.non_c_source;
                sources.extend(t.sources.iter().cloned());
                queue.extend(t.links.iter().map(String::as_str));
            }
        }
        let mut unique = Vec::new();
        for s in sources {
            if !unique.contains(&s) {
                unique.push(s);
            }
        }
        if unique.is_empty() {
            continue;
        }
        for f in &unique {
            info.defines
                .entry(super::file_key(f))
                .or_insert_with(|| target.defines.clone());
        }
        info.targets.push(BuildTarget {
            name: Some(name.clone()),
            sources: unique,
            from: FilesFrom::CMakeLists,
            build_file: target.file.clone(),
            defines: target.defines.clone(),
            open_group: false,
            all_sources_c,
        });
    }
}

impl Reader<'_> {
    fn read_file(&mut self, path: &Path, depth: usize) {
        if depth > 32 || self.visited.iter().any(|v| v == path) {
            return;
        }
        self.visited.push(path.to_path_buf());
        let Some(text) = read_text(path, self.info) else {
            return;
        };
        self.read_commands(path, &text, depth);
    }

    fn read_commands(&mut self, path: &Path, text: &str, depth: usize) {
        let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
        for command in commands(text) {
            self.command(command, path, &dir, depth);
        }
    }

    /// `${VAR}` expanded; `Err` names a variable that is not known.
    fn expand(&self, arg: &str, dir: &Path) -> Result<Vec<String>, String> {
        if !arg.contains("${") {
            return Ok(vec![arg.to_string()]);
        }
        let mut text = arg.to_string();
        for _ in 0..16 {
            let Some(start) = text.find("${") else { break };
            let Some(len) = text[start..].find('}') else {
                return Err(format!("`{arg}`"));
            };
            let var = &text[start + 2..start + len];
            let value = match var {
                "CMAKE_CURRENT_SOURCE_DIR" | "CMAKE_CURRENT_LIST_DIR" => {
                    dir.to_string_lossy().into_owned()
                }
                "CMAKE_SOURCE_DIR" | "PROJECT_SOURCE_DIR" => {
                    self.top_dir.to_string_lossy().into_owned()
                }
                _ => match self.vars.get(var) {
                    Some(list) => list.join(";"),
                    None => return Err(format!("`${{{var}}}`")),
                },
            };
            text.replace_range(start..start + len + 1, &value);
            // `set(A ${A}${A})` repeated doubles a value each time.
            if text.len() > 1 << 20 {
                return Err(format!("`{arg}` expands past 1 MB"));
            }
        }
        Ok(text
            .split(';')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect())
    }

    fn expand_all(&self, args: &[String], dir: &Path) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        for a in args {
            out.extend(self.expand(a, dir)?);
        }
        Ok(out)
    }

    fn target(&mut self, name: &str) -> &mut Target {
        if let Some(i) = self.targets.iter().position(|(n, _)| n == name) {
            return &mut self.targets[i].1;
        }
        self.targets.push((name.to_string(), Target::default()));
        &mut self.targets.last_mut().expect("just pushed").1
    }

    fn add_sources(&mut self, name: &str, args: &[String], dir: &Path) {
        let expanded = self.expand_all(args, dir);
        let target = self.target(name);
        match expanded {
            Ok(list) => {
                for s in list {
                    if TARGET_KEYWORDS.contains(&s.as_str()) || s.starts_with("$<") {
                        continue;
                    }
                    let c = c_source(dir, &s);
                    target.non_c_source |= c.is_none();
                    target.sources.extend(c);
                }
            }
            Err(why) => {
                target.unknown.get_or_insert(why);
            }
        }
    }

    fn command(&mut self, command: Command, path: &Path, dir: &Path, depth: usize) {
        let args = &command.args;
        match command.name.as_str() {
            "set" if !args.is_empty() => {
                let values: Vec<String> = args[1..]
                    .iter()
                    .take_while(|a| !matches!(a.as_str(), "CACHE" | "PARENT_SCOPE"))
                    .cloned()
                    .collect();
                match self.expand_all(&values, dir) {
                    Ok(list) => {
                        self.vars.insert(args[0].clone(), list);
                    }
                    Err(_) => {
                        self.vars.remove(&args[0]);
                    }
                }
            }
            "list" if args.len() >= 2 && args[0] == "APPEND" => {
                let more = self.expand_all(&args[2..], dir);
                match (more, self.vars.get_mut(&args[1])) {
                    (Ok(more), Some(list)) => list.extend(more),
                    (Ok(more), None) => {
                        self.vars.insert(args[1].clone(), more);
                    }
                    (Err(_), _) => {
                        self.vars.remove(&args[1]);
                    }
                }
            }
            "file" if args.len() >= 3 && matches!(args[0].as_str(), "GLOB" | "GLOB_RECURSE") => {
                let mut found = Vec::new();
                let mut known = true;
                for pattern in args[2..].iter().filter(|a| {
                    !matches!(
                        a.as_str(),
                        "CONFIGURE_DEPENDS" | "LIST_DIRECTORIES" | "true" | "false"
                    )
                }) {
                    let Ok(expanded) = self.expand(pattern, dir) else {
                        known = false;
                        break;
                    };
                    for p in expanded {
                        // Absolute patterns are made relative to the current folder.
                        let relative = Path::new(&p)
                            .strip_prefix(dir)
                            .map(|r| r.to_string_lossy().into_owned())
                            .unwrap_or(p);
                        let relative = if args[0] == "GLOB_RECURSE" && !relative.contains("**") {
                            match relative.rsplit_once('/') {
                                Some((d, f)) => format!("{d}/**/{f}"),
                                None => format!("**/{relative}"),
                            }
                        } else {
                            relative
                        };
                        match expand_glob(dir, &relative) {
                            Some(files) => found.extend(
                                files.into_iter().map(|f| f.to_string_lossy().into_owned()),
                            ),
                            None => known = false,
                        }
                    }
                }
                if known {
                    self.vars.insert(args[1].clone(), found);
                } else {
                    self.vars.remove(&args[1]);
                }
            }
            "add_subdirectory" if !args.is_empty() => {
                if let Ok(sub) = self.expand(&args[0], dir) {
                    if let Some(sub) = sub.first() {
                        let file = dir.join(sub).join("CMakeLists.txt");
                        if file.is_file() {
                            self.read_file(&file, depth + 1);
                        }
                    }
                }
            }
            "python_add_library"
            | "python3_add_library"
            | "pybind11_add_module"
            | "nanobind_add_module"
            | "add_library"
                if !args.is_empty() =>
            {
                let python = command.name != "add_library";
                let name = args[0].clone();
                if args.get(1).is_some_and(|a| a == "ALIAS" || a == "IMPORTED") {
                    return;
                }
                {
                    let target = self.target(&name);
                    target.python |= python;
                    target.line = command.line;
                    target.file = path.to_path_buf();
                }
                self.add_sources(&name, &args[1..], dir);
            }
            "target_sources" if !args.is_empty() => {
                let name = args[0].clone();
                self.add_sources(&name, &args[1..], dir);
            }
            "target_link_libraries" if !args.is_empty() => {
                let libs: Vec<String> = args[1..]
                    .iter()
                    .filter(|a| !TARGET_KEYWORDS.contains(&a.as_str()))
                    .cloned()
                    .collect();
                self.target(&args[0]).links.extend(libs);
            }
            "target_compile_definitions" if !args.is_empty() => {
                let defines: Vec<(String, bool)> = args[1..]
                    .iter()
                    .filter(|a| !TARGET_KEYWORDS.contains(&a.as_str()))
                    .filter_map(|a| {
                        let name = a.trim_start_matches("-D").split('=').next()?;
                        (!name.is_empty()
                            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
                        .then(|| (name.to_string(), true))
                    })
                    .collect();
                self.target(&args[0]).defines.extend(defines);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_with_variables_and_links() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("CMakeLists.txt"),
            "cmake_minimum_required(VERSION 3.15)\nset(CORE lib/a.c\n  lib/b.c) # core\n\
             add_library(core STATIC ${CORE})\n\
             Python_add_library(_ext MODULE WITH_SOABI src/ext.c)\n\
             target_link_libraries(_ext PRIVATE core)\n\
             target_compile_definitions(_ext PRIVATE FAST=1)\n\
             pybind11_add_module(_other ${UNKNOWN_SOURCES})\n",
        )
        .unwrap();
        let mut info = BuildInfo::default();
        read(&dir.path().join("CMakeLists.txt"), &mut info);
        let ext = info
            .targets
            .iter()
            .find(|t| t.name.as_deref() == Some("_ext"))
            .unwrap();
        let names: Vec<String> = ext
            .sources
            .iter()
            .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["src/ext.c", "lib/a.c", "lib/b.c"]);
        assert_eq!(ext.defines, vec![("FAST".to_string(), true)]);
        assert_eq!(info.notes.len(), 1, "{:?}", info.notes);
        assert!(info.notes[0].message.contains("_other"));
    }
}
