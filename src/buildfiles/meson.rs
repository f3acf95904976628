//! `meson.build`: `py.extension_module('name', sources..., subdir: 'pkg')` calls, with the
//! variables, `files()`, `subdir()` and the libraries they `link_with`, evaluated in order the
//! way meson reads the file (both arms of an `if` are taken: a superset of the sources).

use super::{c_source, read_text, BuildInfo, BuildNote, BuildTarget, FilesFrom};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Str(String),
    /// An f-string or a string with an escape meson would format: not a literal.
    Opaque,
    Ident(String),
    Punct(&'static str),
    Newline,
}

#[derive(Debug, Clone)]
enum Value {
    Str(String),
    /// A `files()` entry: a path already resolved against its folder.
    File(PathBuf),
    List(Vec<Value>),
    /// A library (or extension) target: its source files.
    Target(Vec<PathBuf>),
    Unknown(String),
}

fn tokenize(text: &str) -> Vec<Tok> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'\n' => {
                out.push(Tok::Newline);
                i += 1;
            }
            b'\'' | b'f' if c == b'\'' || b.get(i + 1) == Some(&b'\'') => {
                let formatted = c == b'f';
                if formatted {
                    i += 1;
                }
                let triple = b[i..].starts_with(b"'''");
                let (open, close): (usize, &[u8]) = if triple { (3, b"'''") } else { (1, b"'") };
                let start = i + open;
                let mut j = start;
                let mut value: Vec<u8> = Vec::new();
                while j < b.len() && !b[j..].starts_with(close) {
                    if b[j] == b'\\' && !triple && j + 1 < b.len() {
                        value.push(b[j + 1]);
                        j += 2;
                        continue;
                    }
                    if b[j] == b'\n' && !triple {
                        break;
                    }
                    value.push(b[j]);
                    j += 1;
                }
                let value = String::from_utf8_lossy(&value).into_owned();
                out.push(if formatted {
                    Tok::Opaque
                } else {
                    Tok::Str(value)
                });
                i = (j + close.len()).min(b.len());
            }
            _ if c == b'_' || c.is_ascii_alphanumeric() => {
                let start = i;
                while i < b.len() && (b[i] == b'_' || b[i].is_ascii_alphanumeric()) {
                    i += 1;
                }
                out.push(Tok::Ident(text[start..i].to_string()));
            }
            _ if c.is_ascii_whitespace() => i += 1,
            _ => {
                const PUNCT: &[&str] = &[
                    "+=", "==", "!=", "<=", ">=", "(", ")", "[", "]", "{", "}", ",", ":", "=", ".",
                    "+", "-", "*", "/", "%", "<", ">", "?",
                ];
                match PUNCT.iter().find(|p| b[i..].starts_with(p.as_bytes())) {
                    Some(p) => {
                        out.push(Tok::Punct(p));
                        i += p.len();
                    }
                    None => i += 1,
                }
            }
        }
    }
    out
}

/// Reads one `meson.build` and the `subdir()`s it enters.
struct Reader<'i> {
    info: &'i mut BuildInfo,
    env: HashMap<String, Value>,
    /// Files already read (a `subdir()` loop is read once).
    visited: Vec<PathBuf>,
    /// The top-level build file: each target names it.
    top: PathBuf,
}

pub(super) fn read(path: &Path, info: &mut BuildInfo) {
    let mut reader = Reader {
        info,
        env: HashMap::new(),
        visited: Vec::new(),
        top: path.to_path_buf(),
    };
    reader.read_file(path, 0);
}

pub(super) fn read_text_of(path: &Path, text: &str, info: &mut BuildInfo) {
    let mut reader = Reader {
        info,
        env: HashMap::new(),
        visited: vec![path.to_path_buf()],
        top: path.to_path_buf(),
    };
    reader.read_tokens(path, text, 0);
}

struct Cursor<'t> {
    toks: &'t [Tok],
    pos: usize,
    /// Bracket depth: newlines inside brackets do not end a statement.
    depth: usize,
    /// Expressions being read, one inside the other: past a limit, the rest is not read.
    nesting: usize,
}

impl Cursor<'_> {
    fn peek(&mut self) -> Option<&Tok> {
        if self.depth > 0 {
            while self.toks.get(self.pos) == Some(&Tok::Newline) {
                self.pos += 1;
            }
        }
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.peek().cloned();
        self.pos += 1;
        t
    }
    fn eat(&mut self, p: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Punct(q)) if *q == p) {
            self.pos += 1;
            true
        } else {
            false
        }
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
        self.read_tokens(path, &text, depth);
    }

    fn read_tokens(&mut self, path: &Path, text: &str, depth: usize) {
        let toks = tokenize(text);
        let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
        let mut cur = Cursor {
            toks: &toks,
            pos: 0,
            depth: 0,
            nesting: 0,
        };
        while cur.pos < toks.len() {
            self.statement(&mut cur, &dir, depth);
            // Whatever is left of the statement (an expression not understood) is skipped.
            cur.depth = 0;
            while cur.pos < toks.len() && toks[cur.pos] != Tok::Newline {
                cur.pos += 1;
            }
            cur.pos += 1;
        }
    }

    fn statement(&mut self, cur: &mut Cursor, dir: &Path, depth: usize) {
        let Some(Tok::Ident(first)) = cur.peek().cloned() else {
            return;
        };
        match first.as_str() {
            "if" | "elif" | "else" | "endif" | "endforeach" | "break" | "continue" => return,
            "foreach" => {
                cur.pos += 1;
                while let Some(Tok::Ident(var)) = cur.peek().cloned() {
                    self.env.insert(
                        var.clone(),
                        Value::Unknown(format!("loop variable `{var}`")),
                    );
                    cur.pos += 1;
                    if !cur.eat(",") {
                        break;
                    }
                }
                return;
            }
            _ => {}
        }
        let assign = match cur.toks.get(cur.pos + 1) {
            Some(Tok::Punct("=")) => Some(false),
            Some(Tok::Punct("+=")) => Some(true),
            _ => None,
        };
        if let Some(append) = assign {
            cur.pos += 2;
            let value = self.expr(cur, dir, depth);
            let value = if append {
                match self.env.remove(&first) {
                    Some(old) => concat(old, value),
                    None => Value::Unknown(format!("`{first}` extended before it is set")),
                }
            } else {
                value
            };
            self.env.insert(first, value);
        } else {
            self.expr(cur, dir, depth);
        }
    }

    fn expr(&mut self, cur: &mut Cursor, dir: &Path, depth: usize) -> Value {
        if cur.nesting > 200 {
            return Value::Unknown("expressions nested too deep".into());
        }
        cur.nesting += 1;
        let value = self.expr_inner(cur, dir, depth);
        cur.nesting -= 1;
        value
    }

    fn expr_inner(&mut self, cur: &mut Cursor, dir: &Path, depth: usize) -> Value {
        let mut value = self.postfix(cur, dir, depth);
        loop {
            if cur.eat("+") {
                let right = self.postfix(cur, dir, depth);
                value = concat(value, right);
            } else if matches!(cur.peek(), Some(Tok::Punct(p)) if !matches!(*p, ")" | "]" | "}" | "," | ":"))
            {
                // A comparison, a ternary, arithmetic: not a list of sources.
                cur.pos += 1;
                let _ = self.postfix(cur, dir, depth);
                value = Value::Unknown("an expression".into());
            } else {
                return value;
            }
        }
    }

    fn postfix(&mut self, cur: &mut Cursor, dir: &Path, depth: usize) -> Value {
        let mut value = match cur.next() {
            Some(Tok::Str(s)) => Value::Str(s),
            Some(Tok::Opaque) => Value::Unknown("a format string".into()),
            Some(Tok::Punct("[")) => {
                cur.depth += 1;
                let mut items = Vec::new();
                while !cur.eat("]") {
                    if cur.peek().is_none() {
                        break;
                    }
                    items.push(self.expr(cur, dir, depth));
                    if !cur.eat(",") {
                        cur.eat("]");
                        break;
                    }
                }
                cur.depth -= 1;
                Value::List(items)
            }
            Some(Tok::Punct("(")) => {
                cur.depth += 1;
                let v = self.expr(cur, dir, depth);
                cur.eat(")");
                cur.depth -= 1;
                v
            }
            Some(Tok::Punct("{")) => {
                cur.depth += 1;
                let mut level = 1;
                while level > 0 {
                    match cur.next() {
                        Some(Tok::Punct("{")) => level += 1,
                        Some(Tok::Punct("}")) => level -= 1,
                        None => break,
                        _ => {}
                    }
                }
                cur.depth -= 1;
                Value::Unknown("a dictionary".into())
            }
            Some(Tok::Ident(name)) if matches!(cur.peek(), Some(Tok::Punct("("))) => {
                let (args, kwargs) = self.arguments(cur, dir, depth);
                self.call(&name, None, args, kwargs, dir, depth)
            }
            Some(Tok::Ident(name)) => match name.as_str() {
                "true" | "false" => Value::Unknown("a boolean".into()),
                "not" => {
                    let _ = self.expr(cur, dir, depth);
                    Value::Unknown("`not`".into())
                }
                _ => self
                    .env
                    .get(&name)
                    .cloned()
                    .unwrap_or_else(|| Value::Unknown(format!("`{name}`"))),
            },
            _ => Value::Unknown("an expression".into()),
        };
        // Method calls and indexing.
        loop {
            if cur.eat(".") {
                let Some(Tok::Ident(method)) = cur.next() else {
                    return Value::Unknown("an expression".into());
                };
                if matches!(cur.peek(), Some(Tok::Punct("("))) {
                    let (args, kwargs) = self.arguments(cur, dir, depth);
                    value = self.call(&method, Some(value), args, kwargs, dir, depth);
                } else {
                    value = Value::Unknown(format!("`.{method}`"));
                }
            } else if cur.eat("[") {
                cur.depth += 1;
                let _ = self.expr(cur, dir, depth);
                cur.eat("]");
                cur.depth -= 1;
                value = Value::Unknown("an index".into());
            } else {
                return value;
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn arguments(
        &mut self,
        cur: &mut Cursor,
        dir: &Path,
        depth: usize,
    ) -> (Vec<Value>, Vec<(String, Value)>) {
        let mut args = Vec::new();
        let mut kwargs = Vec::new();
        if !cur.eat("(") {
            return (args, kwargs);
        }
        cur.depth += 1;
        loop {
            if cur.eat(")") || cur.peek().is_none() {
                break;
            }
            let keyword = match (cur.peek().cloned(), cur.toks.get(cur.pos + 1)) {
                (Some(Tok::Ident(k)), Some(Tok::Punct(":"))) => Some(k),
                _ => None,
            };
            if let Some(k) = keyword {
                cur.pos += 2;
                let v = self.expr(cur, dir, depth);
                kwargs.push((k, v));
            } else {
                args.push(self.expr(cur, dir, depth));
            }
            if !cur.eat(",") {
                cur.eat(")");
                break;
            }
        }
        cur.depth -= 1;
        (args, kwargs)
    }

    fn call(
        &mut self,
        name: &str,
        object: Option<Value>,
        args: Vec<Value>,
        kwargs: Vec<(String, Value)>,
        dir: &Path,
        depth: usize,
    ) -> Value {
        let kw = |k: &str| kwargs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        match (name, object.is_some()) {
            ("files", false) => Value::List(
                flatten(&args)
                    .into_iter()
                    .map(|v| match v {
                        Value::Str(s) => Value::File(dir.join(s)),
                        other => other,
                    })
                    .collect(),
            ),
            ("join_paths", false) => {
                let mut out = PathBuf::new();
                for a in &args {
                    match a {
                        Value::Str(s) => out.push(s),
                        _ => return Value::Unknown("`join_paths` of a computed part".into()),
                    }
                }
                Value::Str(out.to_string_lossy().into_owned())
            }
            ("subdir", false) => {
                if let Some(Value::Str(sub)) = args.first() {
                    let path = dir.join(sub).join("meson.build");
                    if path.is_file() {
                        self.read_file(&path, depth + 1);
                    }
                }
                Value::Unknown("`subdir()`".into())
            }
            ("static_library" | "library" | "shared_library" | "both_libraries", false) => {
                let mut sources = args.get(1..).map(|a| a.to_vec()).unwrap_or_default();
                sources.extend(kw("sources"));
                match source_files(&sources, dir) {
                    Ok((files, _)) => Value::Target(files),
                    Err(why) => Value::Unknown(why),
                }
            }
            ("extension_module", true) => {
                let mut sources = args.get(1..).map(|a| a.to_vec()).unwrap_or_default();
                sources.extend(kw("sources"));
                sources.extend(kw("link_with"));
                let base_name = match args.first() {
                    Some(Value::Str(s)) => Some(s.clone()),
                    _ => None,
                };
                let name = match (&base_name, kw("subdir")) {
                    (Some(n), Some(Value::Str(sub))) if !sub.is_empty() => {
                        Some(format!("{}.{n}", sub.trim_matches('/').replace('/', ".")))
                    }
                    (Some(n), _) => Some(n.clone()),
                    _ => None,
                };
                let label = name.clone().unwrap_or_else(|| "(unnamed)".into());
                match source_files(&sources, dir) {
                    Ok((files, all_sources_c)) if !files.is_empty() => {
                        let mut defines = Vec::new();
                        if let Some(c_args) = kw("c_args") {
                            let args: Vec<String> = flatten(&[c_args])
                                .into_iter()
                                .filter_map(|v| match v {
                                    Value::Str(s) => Some(s),
                                    _ => None,
                                })
                                .collect();
                            defines = super::defines_in_arguments(&args);
                        }
                        for f in &files {
                            self.info
                                .defines
                                .entry(super::file_key(f))
                                .or_insert_with(|| defines.clone());
                        }
                        self.info.targets.push(BuildTarget {
                            name,
                            sources: files.clone(),
                            from: FilesFrom::MesonBuild,
                            build_file: self.top.clone(),
                            defines,
                            open_group: false,
                            all_sources_c,
                        });
                        Value::Target(files)
                    }
                    Ok(_) => Value::Target(Vec::new()),
                    Err(why) => {
                        self.info.unread_names.extend(name);
                        self.info.notes.push(BuildNote {
                            path: dir.join("meson.build"),
                            message: format!("extension `{label}`: sources computed ({why}); its files are found by includes"),
                        });
                        Value::Unknown(why)
                    }
                }
            }
            _ => Value::Unknown(format!("`{name}()`")),
        }
    }
}

fn concat(a: Value, b: Value) -> Value {
    match (a, b) {
        (u @ Value::Unknown(_), _) | (_, u @ Value::Unknown(_)) => u,
        (Value::Str(a), Value::Str(b)) => Value::Str(a + &b),
        (Value::List(mut a), Value::List(b)) => {
            a.extend(b);
            Value::List(a)
        }
        (Value::List(mut a), other) => {
            a.push(other);
            Value::List(a)
        }
        (other, Value::List(mut b)) => {
            b.insert(0, other);
            Value::List(b)
        }
        (a, b) => Value::List(vec![a, b]),
    }
}

fn flatten(values: &[Value]) -> Vec<Value> {
    let mut out = Vec::new();
    for v in values {
        match v {
            Value::List(items) => out.extend(flatten(items)),
            other => out.push(other.clone()),
        }
    }
    out
}

/// The C files of a source list, relative to `dir`, and whether every entry was one; an
/// unknown entry makes the list unknown.
fn source_files(values: &[Value], dir: &Path) -> Result<(Vec<PathBuf>, bool), String> {
    let mut out = Vec::new();
    let mut all_c = true;
    for v in flatten(values) {
        let c = match v {
            Value::Str(s) => c_source(dir, &s),
            Value::File(p) => c_source(Path::new(""), &p.to_string_lossy()),
            // A library's list says only which of its sources were C.
            Value::Target(files) => {
                out.extend(files);
                all_c = false;
                continue;
            }
            Value::Unknown(why) => return Err(why),
            Value::List(_) => continue,
        };
        all_c &= c.is_some();
        out.extend(c);
    }
    out.dedup();
    Ok((out, all_c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_module_with_variables_and_libraries() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src")).unwrap();
        std::fs::write(
            dir.path().join("meson.build"),
            "project('x', 'c')\npy = import('python').find_installation()\n\
             lib_src = files('lib/a.c', 'lib/b.c')\nlib = static_library('core', lib_src)\n\
             srcs = ['src/mod.c']\nsrcs += 'src/extra.c'  # more\nsubdir('src')\n\
             py.extension_module('_mod', srcs, link_with: lib,\n  subdir: 'pkg/sub', c_args: ['-DFAST'],\n  install: true)\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("src/meson.build"),
            "py.extension_module('_two', 'two.c', f'@x@.c')\n",
        )
        .unwrap();
        let mut info = BuildInfo::default();
        read(&dir.path().join("meson.build"), &mut info);
        assert_eq!(info.targets.len(), 1, "{:?}", info.notes);
        let t = &info.targets[0];
        assert_eq!(t.name.as_deref(), Some("pkg.sub._mod"));
        let names: Vec<String> = t
            .sources
            .iter()
            .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["src/mod.c", "src/extra.c", "lib/a.c", "lib/b.c"]);
        assert_eq!(t.defines, vec![("FAST".to_string(), true)]);
        assert_eq!(info.notes.len(), 1);
        assert!(info.notes[0].message.contains("_two"));
    }
}
