//! `setup.py`: the `Extension(...)` calls, read from the Python text with tree-sitter-python.
//! Nothing is executed; a value is known only when it is written out (see [`Value`]).

use super::{c_source, expand_glob, read_text, BuildInfo, BuildNote, BuildTarget, FilesFrom};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tree_sitter::{Node, Parser};

/// What an expression evaluates to without running anything.
#[derive(Debug, Clone)]
enum Value {
    Str(String),
    List(Vec<Value>),
    /// Not known statically, with the reason.
    Unknown(String),
}

impl Value {
    fn strings(&self) -> Result<Vec<String>, String> {
        match self {
            Value::Str(s) => Ok(vec![s.clone()]),
            Value::List(items) => {
                let mut out = Vec::new();
                for item in items {
                    out.extend(item.strings()?);
                }
                Ok(out)
            }
            Value::Unknown(why) => Err(why.clone()),
        }
    }
}

/// Recursion limit for names that refer to names.
const MAX_DEPTH: usize = 16;

struct Evaluator<'a> {
    text: &'a str,
    base: &'a Path,
    /// Every binding of a name in the file: `=` (true) or `+=` / `.append` / `.extend` (false).
    assignments: HashMap<&'a str, Vec<(bool, Node<'a>)>>,
    /// Evaluation steps left: names that refer to lists of names can multiply the work.
    budget: std::cell::Cell<usize>,
}

pub(super) fn read(path: &Path, info: &mut BuildInfo) {
    let Some(text) = read_text(path, info) else {
        return;
    };
    read_text_of(path, &text, info);
}

pub(super) fn read_text_of(path: &Path, text: &str, info: &mut BuildInfo) {
    let mut parser = Parser::new();
    if let Err(e) = parser.set_language(&tree_sitter_python::LANGUAGE.into()) {
        info.notes.push(BuildNote {
            path: path.to_path_buf(),
            message: format!("cannot load the Python grammar: {e}"),
        });
        return;
    }
    let Some(tree) = parser.parse(text, None) else {
        return;
    };
    let root = tree.root_node();
    if root.has_error() {
        let line = first_error(root).map_or(1, |n| n.start_position().row + 1);
        info.notes.push(BuildNote {
            path: path.to_path_buf(),
            message: format!("does not parse as Python (first error at line {line}): its extensions are not read"),
        });
        return;
    }
    let base = path.parent().unwrap_or(Path::new(""));
    let mut evaluator = Evaluator {
        text,
        base,
        assignments: HashMap::new(),
        budget: std::cell::Cell::new(200_000),
    };
    let mut calls = Vec::new();
    collect(root, &mut evaluator, &mut calls, 0);
    for call in calls {
        evaluator.extension(call, path, info);
    }
}

/// The first ERROR or MISSING node, walking down (no recursion: the tree may be deep).
fn first_error(root: Node) -> Option<Node> {
    let mut node = root;
    loop {
        if node.is_error() || node.is_missing() {
            return Some(node);
        }
        let mut cursor = node.walk();
        let next = node
            .children(&mut cursor)
            .find(|c| c.has_error() || c.is_missing());
        node = next?;
    }
}

/// Records bindings and `...Extension(...)` calls anywhere in the file.
fn collect<'a>(node: Node<'a>, ev: &mut Evaluator<'a>, calls: &mut Vec<Node<'a>>, depth: usize) {
    if depth > 200 {
        return;
    }
    match node.kind() {
        "assignment" => {
            if let Some(left) = node.child_by_field_name("left") {
                if left.kind() == "identifier" {
                    let name = &ev.text[left.byte_range()];
                    if let Some(right) = node.child_by_field_name("right") {
                        ev.assignments.entry(name).or_default().push((true, right));
                    }
                }
            }
        }
        "augmented_assignment" => {
            let left = node.child_by_field_name("left");
            let op = node.child_by_field_name("operator");
            if let (Some(left), Some(op), Some(right)) =
                (left, op, node.child_by_field_name("right"))
            {
                if left.kind() == "identifier" {
                    let name = &ev.text[left.byte_range()];
                    let entry = ev.assignments.entry(name).or_default();
                    if &ev.text[op.byte_range()] == "+=" {
                        entry.push((false, right));
                    } else {
                        // Any other operator makes the value unknowable.
                        entry.push((true, node));
                    }
                }
            }
        }
        "call" => {
            if let Some(function) = node.child_by_field_name("function") {
                let callee = &ev.text[function.byte_range()];
                if callee.ends_with("Extension") {
                    calls.push(node);
                }
                // `sources.append('x.c')` / `sources.extend([...])`.
                if function.kind() == "attribute" {
                    let object = function.child_by_field_name("object");
                    let attr = function.child_by_field_name("attribute");
                    if let (Some(object), Some(attr)) = (object, attr) {
                        let method = &ev.text[attr.byte_range()];
                        if object.kind() == "identifier" && matches!(method, "append" | "extend") {
                            let name = &ev.text[object.byte_range()];
                            ev.assignments.entry(name).or_default().push((false, node));
                        }
                    }
                }
            }
        }
        _ => {}
    }
    let mut cursor = node.walk();
    for child in node.named_children(&mut cursor) {
        collect(child, ev, calls, depth + 1);
    }
}

impl<'a> Evaluator<'a> {
    fn text_of(&self, node: Node) -> &'a str {
        &self.text[node.byte_range()]
    }

    fn extension(&self, call: Node<'a>, path: &Path, info: &mut BuildInfo) {
        let Some(args) = call.child_by_field_name("arguments") else {
            return;
        };
        let mut positional = Vec::new();
        let mut keywords: HashMap<&str, Node> = HashMap::new();
        let mut cursor = args.walk();
        for arg in args.named_children(&mut cursor) {
            match arg.kind() {
                "keyword_argument" => {
                    if let (Some(k), Some(v)) = (
                        arg.child_by_field_name("name"),
                        arg.child_by_field_name("value"),
                    ) {
                        keywords.insert(self.text_of(k), v);
                    }
                }
                "comment" => {}
                "list_splat" | "dictionary_splat" => {
                    positional.push(arg);
                }
                _ => positional.push(arg),
            }
        }
        let line = call.start_position().row + 1;
        let name_node = keywords
            .get("name")
            .copied()
            .or(positional.first().copied());
        let name = match name_node.map(|n| self.eval(n, &HashMap::new(), 0)) {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        };
        let label = name
            .as_deref()
            .map_or_else(|| format!("at line {line}"), |n| format!("`{n}`"));
        // A definition of an Extension subclass or a factory (`def Extension(...)`) is no
        // extension; an `Extension(**kw)` call spreads a dict built in code.
        let Some(sources_node) = keywords
            .get("sources")
            .copied()
            .or(positional.get(1).copied())
        else {
            info.unread_names.extend(name.clone());
            info.notes.push(BuildNote {
                path: path.to_path_buf(),
                message: format!(
                    "extension {label}: no `sources` argument written out; its files are found by includes"
                ),
            });
            return;
        };
        let sources = match self.eval(sources_node, &HashMap::new(), 0).strings() {
            Ok(list) => list,
            Err(why) => {
                info.unread_names.extend(name.clone());
                info.notes.push(BuildNote {
                    path: path.to_path_buf(),
                    message: format!(
                        "extension {label}: sources computed in code ({why}, line {}); its files are found by includes",
                        sources_node.start_position().row + 1
                    ),
                });
                return;
            }
        };
        let files: Vec<PathBuf> = sources
            .iter()
            .filter_map(|s| c_source(self.base, s))
            .collect();
        let all_sources_c = files.len() == sources.len();
        if files.is_empty() {
            return;
        }
        let mut defines = Vec::new();
        if let Some(list) = keywords.get("define_macros") {
            if let Value::List(items) = self.eval(*list, &HashMap::new(), 0) {
                for item in items {
                    if let Value::List(pair) = item {
                        if let Some(Value::Str(n)) = pair.first() {
                            defines.push((n.clone(), true));
                        }
                    }
                }
            }
        }
        if let Some(list) = keywords.get("undef_macros") {
            if let Ok(names) = self.eval(*list, &HashMap::new(), 0).strings() {
                defines.extend(names.into_iter().map(|n| (n, false)));
            }
        }
        for f in &files {
            info.defines
                .entry(super::file_key(f))
                .or_insert_with(|| defines.clone());
        }
        info.targets.push(BuildTarget {
            name,
            sources: files,
            from: FilesFrom::SetupPy,
            build_file: path.to_path_buf(),
            defines,
            open_group: false,
            all_sources_c,
        });
    }

    fn eval(&self, node: Node<'a>, env: &HashMap<&'a str, Value>, depth: usize) -> Value {
        if depth > MAX_DEPTH {
            return Value::Unknown("names nested too deep".into());
        }
        let left = self.budget.get();
        if left == 0 {
            return Value::Unknown("too much to evaluate".into());
        }
        self.budget.set(left - 1);
        let line = node.start_position().row + 1;
        match node.kind() {
            "string" => string_value(node, self.text),
            "concatenated_string" => {
                let mut out = String::new();
                let mut cursor = node.walk();
                for part in node.named_children(&mut cursor) {
                    match string_value(part, self.text) {
                        Value::Str(s) => out.push_str(&s),
                        other => return other,
                    }
                }
                Value::Str(out)
            }
            "list" | "tuple" | "expression_list" => {
                let mut items = Vec::new();
                let mut cursor = node.walk();
                for child in node.named_children(&mut cursor) {
                    if child.kind() == "comment" {
                        continue;
                    }
                    if child.kind() == "list_splat" {
                        match child.named_child(0).map(|c| self.eval(c, env, depth + 1)) {
                            Some(Value::List(inner)) => items.extend(inner),
                            Some(other @ Value::Unknown(_)) => return other,
                            _ => return Value::Unknown(format!("a `*` splat at line {line}")),
                        }
                        continue;
                    }
                    let v = self.eval(child, env, depth + 1);
                    if let Value::Unknown(_) = v {
                        return v;
                    }
                    items.push(v);
                }
                Value::List(items)
            }
            "parenthesized_expression" => match node.named_child(0) {
                Some(inner) => self.eval(inner, env, depth + 1),
                None => Value::Unknown(format!("empty parentheses at line {line}")),
            },
            "identifier" => {
                let name = self.text_of(node);
                if let Some(v) = env.get(name) {
                    return v.clone();
                }
                self.lookup(name, line, node.start_byte(), depth)
            }
            "binary_operator" => {
                let op = node
                    .child_by_field_name("operator")
                    .map(|o| self.text_of(o))
                    .unwrap_or("");
                let (Some(l), Some(r)) = (
                    node.child_by_field_name("left"),
                    node.child_by_field_name("right"),
                ) else {
                    return Value::Unknown(format!("an expression at line {line}"));
                };
                if op != "+" {
                    return Value::Unknown(format!("`{op}` at line {line}"));
                }
                match (self.eval(l, env, depth + 1), self.eval(r, env, depth + 1)) {
                    (Value::Str(a), Value::Str(b)) => Value::Str(a + &b),
                    (Value::List(mut a), Value::List(b)) => {
                        a.extend(b);
                        Value::List(a)
                    }
                    (u @ Value::Unknown(_), _) | (_, u @ Value::Unknown(_)) => u,
                    _ => Value::Unknown(format!("`+` of a list and a string at line {line}")),
                }
            }
            "call" => self.eval_call(node, env, depth),
            "list_comprehension" => self.eval_comprehension(node, env, depth),
            _ => Value::Unknown(format!("`{}` at line {line}", node.kind())),
        }
    }

    /// A name's value where it is used (byte `at`): the last `=` before it, then the `+=`,
    /// `.append` and `.extend` after that one. Several `=` of which one is inside an `if`,
    /// `for`, `while` or `try` could each be the one that ran: unknown.
    fn lookup(&self, name: &str, line: usize, at: usize, depth: usize) -> Value {
        let Some(all) = self.assignments.get(name) else {
            return Value::Unknown(format!("`{name}` is not assigned in the file"));
        };
        let before: Vec<&(bool, Node)> = all.iter().filter(|(_, n)| n.end_byte() <= at).collect();
        let plain: Vec<usize> = (0..before.len()).filter(|&i| before[i].0).collect();
        let Some(&last) = plain.last() else {
            return Value::Unknown(format!("`{name}` is not assigned before line {line}"));
        };
        if plain.len() > 1 && plain.iter().any(|&i| in_branch(before[i].1)) {
            return Value::Unknown(format!(
                "`{name}` (line {line}) is assigned in more than one branch"
            ));
        }
        let bindings = &before[last..];
        let empty = HashMap::new();
        let mut value = self.eval(bindings[0].1, &empty, depth + 1);
        for (_, node) in &bindings[1..] {
            let more = if node.kind() == "call" {
                let method = node
                    .child_by_field_name("function")
                    .and_then(|f| f.child_by_field_name("attribute"))
                    .map(|a| self.text_of(a));
                let arg = node
                    .child_by_field_name("arguments")
                    .and_then(|a| a.named_child(0));
                match (method, arg) {
                    (Some("append"), Some(a)) => match self.eval(a, &empty, depth + 1) {
                        Value::Str(s) => Value::List(vec![Value::Str(s)]),
                        other => other,
                    },
                    (Some(_), Some(a)) => self.eval(a, &empty, depth + 1),
                    _ => Value::Unknown(format!("a call on `{name}`")),
                }
            } else {
                self.eval(*node, &empty, depth + 1)
            };
            value = match (value, more) {
                (Value::List(mut a), Value::List(b)) => {
                    a.extend(b);
                    Value::List(a)
                }
                (Value::Str(a), Value::Str(b)) => Value::Str(a + &b),
                (u @ Value::Unknown(_), _) | (_, u @ Value::Unknown(_)) => u,
                _ => Value::Unknown(format!("`{name}` mixes lists and strings")),
            };
        }
        value
    }

    fn eval_call(&self, node: Node<'a>, env: &HashMap<&'a str, Value>, depth: usize) -> Value {
        let line = node.start_position().row + 1;
        let callee = node
            .child_by_field_name("function")
            .map(|f| self.text_of(f))
            .unwrap_or("");
        let mut args = Vec::new();
        if let Some(list) = node.child_by_field_name("arguments") {
            let mut cursor = list.walk();
            for a in list.named_children(&mut cursor) {
                if a.kind() == "keyword_argument" {
                    let key = a
                        .child_by_field_name("name")
                        .map(|k| self.text_of(k))
                        .unwrap_or("");
                    if callee.ends_with("glob") && key == "recursive" {
                        continue;
                    }
                    return Value::Unknown(format!("`{callee}(... {key}=...)` at line {line}"));
                }
                if a.kind() != "comment" {
                    args.push(a);
                }
            }
        }
        let eval_args = |args: &[Node<'a>]| -> Result<Vec<Value>, Value> {
            args.iter()
                .map(|a| match self.eval(*a, env, depth + 1) {
                    u @ Value::Unknown(_) => Err(u),
                    v => Ok(v),
                })
                .collect()
        };
        match callee {
            "os.path.join" | "path.join" | "join" | "pjoin" | "opj" => {
                let values = match eval_args(&args) {
                    Ok(v) => v,
                    Err(u) => return u,
                };
                let mut out = PathBuf::new();
                for v in values {
                    match v {
                        Value::Str(s) => out.push(s),
                        _ => return Value::Unknown(format!("`{callee}` of a list at line {line}")),
                    }
                }
                Value::Str(out.to_string_lossy().into_owned())
            }
            "glob.glob" | "glob" | "glob.iglob" | "iglob" => {
                let pattern = match eval_args(&args).map(|v| v.into_iter().next()) {
                    Ok(Some(Value::Str(p))) => p,
                    Ok(_) => return Value::Unknown(format!("`{callee}` at line {line}")),
                    Err(u) => return u,
                };
                match expand_glob(self.base, &pattern) {
                    Some(paths) => Value::List(
                        paths
                            .into_iter()
                            .map(|p| Value::Str(p.to_string_lossy().into_owned()))
                            .collect(),
                    ),
                    None => Value::Unknown(format!("glob pattern `{pattern}` at line {line}")),
                }
            }
            "sorted" | "list" | "tuple" | "str" => match args.first() {
                Some(a) if args.len() == 1 => self.eval(*a, env, depth + 1),
                _ => Value::Unknown(format!("`{callee}` at line {line}")),
            },
            _ => Value::Unknown(format!("a call to `{callee}` at line {line}")),
        }
    }

    /// `[os.path.join('src', f) for f in ['a.c', 'b.c']]`, no `if` clause.
    fn eval_comprehension(
        &self,
        node: Node<'a>,
        env: &HashMap<&'a str, Value>,
        depth: usize,
    ) -> Value {
        let line = node.start_position().row + 1;
        let body = node.child_by_field_name("body");
        let mut cursor = node.walk();
        let clauses: Vec<Node> = node
            .named_children(&mut cursor)
            .filter(|c| c.kind() != "comment" && Some(*c) != body)
            .collect();
        let (Some(body), [clause]) = (body, clauses.as_slice()) else {
            return Value::Unknown(format!("a comprehension at line {line}"));
        };
        if clause.kind() != "for_in_clause" {
            return Value::Unknown(format!("a comprehension at line {line}"));
        }
        let (Some(var), Some(iter)) = (
            clause.child_by_field_name("left"),
            clause.child_by_field_name("right"),
        ) else {
            return Value::Unknown(format!("a comprehension at line {line}"));
        };
        if var.kind() != "identifier" {
            return Value::Unknown(format!("a comprehension at line {line}"));
        }
        let items = match self.eval(iter, env, depth + 1) {
            Value::List(items) => items,
            Value::Str(_) => {
                return Value::Unknown(format!("a comprehension over a string at line {line}"))
            }
            u => return u,
        };
        let mut out = Vec::new();
        for item in items {
            let mut inner = env.clone();
            inner.insert(self.text_of(var), item);
            match self.eval(body, &inner, depth + 1) {
                u @ Value::Unknown(_) => return u,
                v => out.push(v),
            }
        }
        Value::List(out)
    }
}

/// Inside a statement that may or may not run.
fn in_branch(node: Node) -> bool {
    let mut current = node.parent();
    while let Some(n) = current {
        match n.kind() {
            "if_statement" | "for_statement" | "while_statement" | "try_statement"
            | "match_statement" => return true,
            "function_definition" | "module" => return false,
            _ => {}
        }
        current = n.parent();
    }
    false
}

/// A string literal's value; f-strings with fields are unknown.
fn string_value(node: Node, text: &str) -> Value {
    let line = node.start_position().row + 1;
    if node.kind() != "string" {
        return Value::Unknown(format!("`{}` at line {line}", node.kind()));
    }
    let raw = &text[node.byte_range()];
    let prefix_len = raw.find(['\'', '"']).unwrap_or(0);
    let prefix = raw[..prefix_len].to_ascii_lowercase();
    let mut cursor = node.walk();
    if node
        .named_children(&mut cursor)
        .any(|c| c.kind() == "interpolation")
    {
        return Value::Unknown(format!("an f-string at line {line}"));
    }
    let body = &raw[prefix_len..];
    let quote = if body.starts_with("\"\"\"") || body.starts_with("'''") {
        3
    } else {
        1
    };
    let closing = &body[..quote.min(body.len())];
    if body.len() < 2 * quote || !body.ends_with(closing) {
        return Value::Unknown(format!("a string at line {line}"));
    }
    let inner = &body[quote..body.len() - quote];
    if prefix.contains('r') || !inner.contains('\\') {
        return Value::Str(inner.to_string());
    }
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('\'') => out.push('\''),
            Some('"') => out.push('"'),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    Value::Str(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_str(text: &str) -> BuildInfo {
        let mut info = BuildInfo::default();
        read_text_of(Path::new("proj/setup.py"), text, &mut info);
        info
    }

    #[test]
    fn literal_sources_and_names() {
        let info = read_str(
            r#"
from setuptools import setup, Extension
common = ['lib/a.c', 'lib/b.c']
common += ['lib/c.c']
srcs = [os.path.join('src', f) for f in ('x.c', 'y.c')]
setup(ext_modules=[
    Extension('pkg._one', ['src/one.c'] + common, define_macros=[('FAST', '1')]),
    Extension(name="pkg.sub._two", sources=srcs + common),
])
"#,
        );
        assert!(info.notes.is_empty(), "{:?}", info.notes);
        assert_eq!(info.targets.len(), 2);
        assert_eq!(info.targets[0].name.as_deref(), Some("pkg._one"));
        assert_eq!(
            info.targets[0].sources,
            ["src/one.c", "lib/a.c", "lib/b.c", "lib/c.c"]
                .iter()
                .map(|s| Path::new("proj").join(s))
                .collect::<Vec<_>>()
        );
        assert_eq!(info.targets[0].defines, vec![("FAST".to_string(), true)]);
        assert_eq!(info.targets[1].name.as_deref(), Some("pkg.sub._two"));
        assert_eq!(info.targets[1].sources.len(), 5);
    }

    #[test]
    fn computed_sources_are_a_note() {
        let info = read_str(
            "import setuptools\nsrcs = find_sources()\nsetuptools.Extension('m', sources=srcs)\n",
        );
        assert!(info.targets.is_empty());
        assert_eq!(info.notes.len(), 1);
        assert!(info.notes[0].message.contains("computed in code"));
    }

    #[test]
    fn broken_python_is_a_note() {
        let info = read_str("Extension('m', ['a.c'\n");
        assert!(info.targets.is_empty());
        assert!(info.notes[0].message.contains("does not parse"));
    }

    #[test]
    fn names_assigned_in_branches_are_unknown() {
        let info = read_str("s = ['a.c']\nif x:\n    s = ['b.c']\nExtension('m', s)\n");
        assert!(info.targets.is_empty());
        assert!(info.notes[0].message.contains("more than one branch"));
    }

    #[test]
    fn a_name_rebound_from_itself() {
        let info = read_str(
            "s = ['a.c', 'b.c']\ns = [os.path.join('src', x) for x in s]\nExtension('m', s)\ns = []\n",
        );
        assert!(info.notes.is_empty(), "{:?}", info.notes);
        assert_eq!(
            info.targets[0].sources,
            [Path::new("proj/src/a.c"), Path::new("proj/src/b.c")]
        );
    }
}
