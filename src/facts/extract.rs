//! The file-level walk: one pass over the top of the tree, descending only where facts live.

use super::declarator::{declaration_type, shape_of, TypeInfo};
use super::expr::summarize;
use super::fields::{KindName, FIELD};
use super::function::function_facts;

use super::initializer::parse_init;
use super::structs::{struct_def, typedef_structs};
use super::*;
use crate::parse::macros::ProjectMacros;
use crate::parse::prepass::ConditionalMap;
use crate::parse::ParsedFile;
use crate::source::LineIndex;
use std::path::Path;
use std::sync::LazyLock;
use streaming_iterator::StreamingIterator;
use tree_sitter::{Node, Query, QueryCursor};

/// Shared, read-only context for one file's extraction.
pub(crate) struct Cx<'a> {
    pub src: &'a [u8],
    /// The text before the pre-pass, same offsets as `src`.
    pub original: &'a [u8],
    /// `src` as text when it is valid UTF-8 (always, for text from `read_source`): a node's text
    /// is then a slice with two boundary checks, not a validation of its bytes.
    pub utf8: Option<&'a str>,
    pub lines: &'a LineIndex,
    pub cond: &'a ConditionalMap,
    pub errors: &'a ParseErrors,
    /// Function bodies as the lexer sees them: beside a parse error, a declaration there is a
    /// local even when the tree puts it at file scope.
    pub function_bodies: &'a crate::parse::prepass::FunctionBodies,
    /// This file's function-like macros that may write, expanded at their call sites.
    pub macros: &'a super::macros::MacroTable,
    /// The scan's macros (or this file's, alone): bodies of code expanded at their uses.
    pub project: &'a crate::parse::macros::ProjectMacros,
    /// Uses the pre-pass rewrote out of sight (`BEGIN_SAVE` → `{`), by offset.
    pub macro_uses: &'a [crate::parse::prepass::MacroUse],
    /// Expansions already walked in this file.
    pub expansions: &'a super::macros::ExpansionMemo,
}

impl<'a> Cx<'a> {
    pub fn text(&self, node: Node) -> &'a str {
        let (start, end) = (node.start_byte(), node.end_byte());
        match self.utf8 {
            // A slice of valid UTF-8 is valid exactly when it starts and ends on character
            // boundaries, which is what `get` checks.
            Some(all) => all.get(start..end).unwrap_or(""),
            None => std::str::from_utf8(&self.src[start..end]).unwrap_or(""),
        }
    }
    pub fn span(&self, node: Node) -> Span {
        // The tree already knows rows and byte columns: no search of the line index.
        let (start, end) = (node.start_position(), node.end_position());
        Span {
            start: node.start_byte(),
            end: node.end_byte(),
            line: start.row + 1,
            column: start.column + 1,
            end_line: end.row + 1,
            end_column: end.column + 1,
        }
    }
    pub fn span_of(&self, start: usize, end: usize) -> Span {
        let (line, column) = self.lines.position(start);
        let (end_line, end_column) = self.lines.position(end);
        Span {
            start,
            end,
            line,
            column,
            end_line,
            end_column,
        }
    }
    pub fn versions(&self, node: Node) -> VersionRange {
        self.cond.range_at(node.start_byte())
    }
    pub fn uncertain(&self, node: Node) -> bool {
        self.errors.overlaps(node.start_byte(), node.end_byte())
    }
}

/// Folds runs of white space into one space.
pub(crate) fn fold_ws(text: &str) -> String {
    // Most texts folded are names and short expressions in ASCII: no `char` decoding for them.
    if text.is_ascii() {
        let is_space = |b: u8| matches!(b, b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r' | b' ');
        if !text.bytes().any(is_space) {
            return text.to_string();
        }
        let mut out = Vec::with_capacity(text.len());
        let mut space = false;
        for b in text.bytes() {
            if is_space(b) {
                space = true;
            } else {
                if space && !out.is_empty() {
                    out.push(b' ');
                }
                space = false;
                out.push(b);
            }
        }
        return String::from_utf8(out).unwrap_or_default();
    }
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            space = true;
        } else {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            out.push(c);
        }
    }
    out
}

static PREPROCESSOR_QUERY: LazyLock<PreprocessorQuery> = LazyLock::new(PreprocessorQuery::new);

pub(crate) struct PreprocessorQuery {
    pub query: Query,
    include_path: u32,
    macro_name: u32,
    macro_params: u32,
    macro_body: u32,
    macro_def: u32,
}

impl PreprocessorQuery {
    fn new() -> Self {
        let query = Query::new(
            &tree_sitter_c::LANGUAGE.into(),
            include_str!("../../queries/preprocessor.scm"),
        )
        .expect("queries/preprocessor.scm compiles against tree-sitter-c");
        let index = |name: &str| {
            query
                .capture_index_for_name(name)
                .unwrap_or_else(|| panic!("capture @{name} in preprocessor.scm"))
        };
        Self {
            include_path: index("include.path"),
            macro_name: index("macro.name"),
            macro_params: index("macro.params"),
            macro_body: index("macro.body"),
            macro_def: index("macro.definition"),
            query,
        }
    }
}

/// `#include` and `#define` lines, wherever they are (a `#define` may sit inside a function
/// body). They are found in the text, then mapped to their nodes: walking the tree to find them
/// would visit every number of a 50 MB table.
fn preprocessor_lines<'t>(root: Node<'t>, src: &[u8]) -> Vec<Node<'t>> {
    let mut out: Vec<Node> = Vec::new();
    let mut line_start = 0;
    for (i, &b) in src
        .iter()
        .enumerate()
        .chain(std::iter::once((src.len(), &b'\n')))
    {
        if b != b'\n' {
            continue;
        }
        let line = &src[line_start..i];
        let offset = line_start;
        line_start = i + 1;
        let trimmed = line
            .iter()
            .position(|c| !c.is_ascii_whitespace())
            .map(|p| (p, &line[p..]));
        let Some((indent, text)) = trimmed else {
            continue;
        };
        if text.first() != Some(&b'#') {
            continue;
        }
        let word = text[1..]
            .iter()
            .skip_while(|c| c.is_ascii_whitespace())
            .take(7)
            .copied()
            .collect::<Vec<u8>>();
        if !(word.starts_with(b"define") || word.starts_with(b"include")) {
            continue;
        }
        let at = offset + indent;
        let mut node = root.descendant_for_byte_range(at, at + 1);
        while let Some(n) = node {
            if matches!(
                n.kind_name(),
                "preproc_include" | "preproc_def" | "preproc_function_def"
            ) {
                if n.start_byte() == at && out.last().is_none_or(|l| l.id() != n.id()) {
                    out.push(n);
                }
                break;
            }
            node = n.parent();
        }
    }
    out
}

fn preprocessor_facts(root: Node, cx: &Cx, facts: &mut FileFacts) {
    let q = &*PREPROCESSOR_QUERY;
    let mut cursor = QueryCursor::new();
    for line in preprocessor_lines(root, cx.src) {
        preprocessor_line_facts(line, cx, q, &mut cursor, facts);
    }
}

fn preprocessor_line_facts(
    line: Node,
    cx: &Cx,
    q: &PreprocessorQuery,
    cursor: &mut QueryCursor,
    facts: &mut FileFacts,
) {
    let mut matches = cursor.matches(&q.query, line, cx.src);
    while let Some(m) = matches.next() {
        let mut name = None;
        let mut params = None;
        let mut body = String::new();
        let mut def = None;
        for cap in m.captures() {
            let i = cap.index;
            if i == q.include_path {
                let raw = cx.text(cap.node);
                let system = raw.starts_with('<');
                facts.includes.push(Include {
                    target: raw
                        .trim_matches(|c| c == '"' || c == '<' || c == '>')
                        .to_string(),
                    system,
                    line: cx.lines.position(cap.node.start_byte()).0,
                    compiled: !cx.versions(cap.node).is_empty(),
                });
            } else if i == q.macro_name {
                name = Some(cx.text(cap.node).to_string());
            } else if i == q.macro_params {
                let mut list = Vec::new();
                let mut c = cap.node.walk();
                for p in cap.node.named_children(&mut c) {
                    list.push(cx.text(p).to_string());
                }
                params = Some(list);
            } else if i == q.macro_body {
                body = fold_ws(&cx.text(cap.node).replace("\\\n", " "));
            } else if i == q.macro_def {
                def = Some(cap.node);
            }
        }
        if let (Some(name), Some(def)) = (name, def) {
            facts.macros.push(MacroDef {
                name,
                params,
                body,
                span: cx.span(def),
                versions: cx.versions(def),
            });
        }
    }
}

/// `original` is the text `parsed` was pre-passed from (same offsets): what the pre-pass
/// blanked, such as an export macro before a function's name, is still there.
pub fn extract(
    parsed: &ParsedFile,
    original: &[u8],
    path: &Path,
    kind: SourceKind,
    first_invalid_utf8: Option<usize>,
    project: &ProjectMacros,
) -> FileFacts {
    let utf8 = std::str::from_utf8(&parsed.text).ok();
    let lines = LineIndex::new(utf8.unwrap_or(""));
    let no_macros = super::macros::MacroTable::default();
    let expansions = super::macros::ExpansionMemo::default();
    let cx = Cx {
        src: &parsed.text,
        original,
        utf8,
        lines: &lines,
        cond: &parsed.conditionals,
        errors: &parsed.errors,
        function_bodies: &parsed.function_bodies,
        macros: &no_macros,
        project,
        macro_uses: &parsed.macro_uses,
        expansions: &expansions,
    };
    let mut facts = FileFacts {
        path: path.to_path_buf(),
        kind: kind.into(),
        bytes: parsed.text.len(),
        lines: lines.line_count(),
        parse_errors: parsed.errors.clone(),
        first_error_line: parsed.errors.first_offset().map(|o| lines.position(o).0),
        first_error: parsed.errors.first_offset().map(|o| cx.span_of(o, o)),
        init_mentions: init_mentions(&cx, parsed.tree.root_node()),
        python_c_code: python_c_code(&parsed.text),
        first_invalid_utf8,
        // What the walk below finds.
        ..FileFacts::placeholder(path.to_path_buf(), kind.into())
    };
    let root = parsed.tree.root_node();
    preprocessor_facts(root, &cx, &mut facts);
    let macros = super::macros::MacroTable::new(&facts.macros);
    // Alone (one file, an editor buffer), the file's own definitions are the project's.
    let local;
    let project = if project.is_empty() {
        local = ProjectMacros::new(
            facts
                .macros
                .iter()
                .filter(|m| !m.name.starts_with("Py") && !m.name.starts_with("_Py"))
                .map(|m| crate::parse::macros::MacroDefinition {
                    name: m.name.clone(),
                    params: m.params.clone(),
                    body: m.body.clone(),
                })
                .collect(),
        );
        &local
    } else {
        project
    };
    let cx = Cx {
        macros: &macros,
        project,
        ..cx
    };

    // Containers at file scope are transparent; an ERROR container makes what is inside it
    // uncertain, and its declarations are kept only when they cannot be a broken function's
    // locals.
    let mut stack: Vec<(Node, bool)> = vec![(root, false)];
    while let Some((node, in_error)) = stack.pop() {
        if node.kind_name() == "ERROR" && node.parent().is_none_or(|p| !p.is_error()) {
            facts
                .functions
                .extend(super::function::error_region_facts(node, &cx));
        }
        let mut cursor = node.walk();
        let children: Vec<Node> = node.children(&mut cursor).collect();
        for child in children.into_iter().rev() {
            match child.kind_name() {
                "preproc_if" | "preproc_ifdef" | "preproc_else" | "preproc_elif"
                | "preproc_elifdef" | "declaration_list" => stack.push((child, in_error)),
                "linkage_specification" => {
                    if let Some(body) = child.child_by_field_id(FIELD.body.get()) {
                        stack.push((body, in_error));
                    }
                }
                "ERROR" => stack.push((child, true)),
                _ => {}
            }
        }
        let mut cursor = node.walk();
        for child in node.children(&mut cursor) {
            match child.kind_name() {
                "declaration" => file_declaration(child, &cx, in_error, &mut facts),
                "function_definition" => {
                    if let Some(function) = function_facts(child, &cx, &mut facts.variables) {
                        facts.functions.push(function);
                    }
                }
                "type_definition" => facts.structs.extend(typedef_structs(child, &cx)),
                "struct_specifier" => facts.structs.extend(struct_def(child, &cx, Vec::new())),
                "expression_statement" => {
                    if let Some(call) = child
                        .named_child(0)
                        .filter(|c| c.kind_name() == "call_expression")
                    {
                        if let Some(call) = file_scope_call(call, &cx) {
                            facts.file_scope_calls.push(call);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    facts.variables.sort_by_key(|v| v.span.start);
    facts.functions.sort_by_key(|f| f.span.start);
    facts.structs.sort_by_key(|s| s.span.start);
    facts.file_scope_calls.sort_by_key(|c| c.span.start);
    facts
}

/// See [`FileFacts::python_c_code`]. Substring searches over the pre-passed text, where
/// `#ifdef __cplusplus` branches are already blank.
fn python_c_code(src: &[u8]) -> bool {
    use memchr::memmem::find_iter;
    let is_word = |b: u8| b == b'_' || b.is_ascii_alphanumeric();
    let python = find_iter(src, b"Py").any(|at| {
        let before_ok = at == 0 || !is_word(src[at - 1]) || src[at - 1] == b'_';
        let next = src.get(at + 2).copied().unwrap_or(b' ');
        before_ok && (next.is_ascii_uppercase() || next == b'_')
    });
    let cpp = [&b"template<"[..], b"template <", b"namespace ", b"std::"]
        .iter()
        .any(|needle| memchr::memmem::find(src, needle).is_some());
    python && !cpp
}

/// `PyInit_<name>` anywhere in the text: a substring search, no tree walk.
fn init_mentions(cx: &Cx, root: Node) -> Vec<InitMention> {
    const NEEDLE: &[u8] = b"PyInit_";
    let src = cx.src;
    let mut out = Vec::new();
    for found in memchr::memmem::find_iter(src, NEEDLE) {
        let from = found + NEEDLE.len();
        let is_word = |b: &u8| *b == b'_' || b.is_ascii_alphanumeric();
        if found > 0 && is_word(&src[found - 1]) {
            continue;
        }
        // `PyInit_{{ name }}` in a template still names a module: the bare prefix is kept.
        let end = found + NEEDLE.len() + src[from..].iter().take_while(|b| is_word(b)).count();
        // A comment or a string (`"PyInit_%s"` in a loader) names no module of this file.
        let in_text = root.descendant_for_byte_range(found, end).is_some_and(|n| {
            matches!(
                n.kind_name(),
                "comment" | "string_content" | "string_literal" | "char_literal"
            )
        });
        if in_text {
            continue;
        }
        // The parameter list, then `{` for a definition (`;` or `)` otherwise).
        let mut after = src[end..].iter().skip_while(|b| b.is_ascii_whitespace());
        let mut definition = after.next() == Some(&b'(');
        if definition {
            let mut depth = 1usize;
            for &b in after.by_ref() {
                match b {
                    b'(' => depth += 1,
                    b')' => depth -= 1,
                    b';' | b'{' | b'}' => break,
                    _ => {}
                }
                if depth == 0 {
                    break;
                }
            }
            definition = depth == 0 && after.find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
        }
        out.push(InitMention {
            name: String::from_utf8_lossy(&src[found..end]).into_owned(),
            span: cx.span_of(found, end),
            definition,
            in_error: cx
                .errors
                .ranges
                .iter()
                .any(|&(s, e)| s <= found && end <= e),
        });
    }
    out
}

fn file_scope_call(node: Node, cx: &Cx) -> Option<Call> {
    let callee = node.child_by_field_id(FIELD.function.get())?;
    let args = node.child_by_field_id(FIELD.arguments.get())?;
    let mut cursor = args.walk();
    let args = args
        .named_children(&mut cursor)
        .filter(|a| a.kind_name() != "comment")
        .map(|a| summarize(a, cx))
        .collect();
    Some(Call {
        callee: cx.text(callee).to_string(),
        args,
        span: cx.span(node),
        assigned_to: None,
        field_arguments: Vec::new(),
        versions: cx.versions(node),
        uncertain: cx.uncertain(node),
    })
}

/// Initializers read entry by entry: everything but plain numeric data (lookup tables are
/// a large share of real extension code and say nothing about state), and nothing huge.
pub(crate) fn wants_entries(type_name: &str, init_bytes: usize) -> bool {
    const PLAIN: &[&str] = &[
        "unsigned", "signed", "char", "short", "int", "long", "float", "double", "_Bool", "bool",
    ];
    let plain = type_name
        .split_whitespace()
        .all(|w| PLAIN.contains(&w) || w.ends_with("_t"));
    !plain && init_bytes < 256 * 1024
}

fn file_declaration(node: Node, cx: &Cx, in_error: bool, facts: &mut FileFacts) {
    // A clean tree is trusted; in a broken one, the lexer's braces say whether the declaration
    // sits in a function body whose head or braces the tree lost (`int x, y;` read as globals).
    let in_body = cx.errors.count() > 0 && cx.function_bodies.contains(node.start_byte());
    let in_error = in_error || in_body;
    let info = declaration_type(node, cx);
    if info.is_typedef {
        return;
    }
    if let Some(def) = &info.struct_def {
        facts.structs.push(def.clone());
    }
    let prototypes_before = facts.function_declarations.len();
    declared_variables(
        node,
        &info,
        cx,
        None,
        in_error,
        &mut facts.variables,
        &mut facts.function_declarations,
    );
    // The prototypes just read share the declaration's head: exported or not together.
    if facts.function_declarations.len() > prototypes_before && !info.is_static {
        let head_end = node
            .child_by_field_id(FIELD.declarator.get())
            .map_or(node.start_byte(), |d| d.start_byte());
        if super::function::exported_head(node.start_byte(), head_end, cx) {
            let names = facts.function_declarations[prototypes_before..].to_vec();
            facts.exported_declarations.extend(names);
        }
    }
}

/// Turns each declarator of a declaration into a `Variable` (or a function prototype).
pub(crate) fn declared_variables(
    node: Node,
    info: &TypeInfo,
    cx: &Cx,
    function: Option<&str>,
    in_error: bool,
    variables: &mut Vec<Variable>,
    prototypes: &mut Vec<String>,
) {
    let mut cursor = node.walk();
    for declarator in node.children_by_field_id(FIELD.declarator, &mut cursor) {
        let shape = shape_of(declarator, cx);
        let Some(name) = shape.name.clone() else {
            continue;
        };
        if shape.is_prototype {
            prototypes.push(name);
            continue;
        }
        // Inside an ERROR, a declaration may be a local of a function whose head was lost.
        if in_error && !(info.is_static || info.is_extern || info.is_thread_local) {
            continue;
        }
        let init = shape.init.map(|value| {
            parse_init(
                value,
                cx,
                wants_entries(&info.type_name, value.end_byte() - value.start_byte()),
                &info.type_name,
            )
        });
        variables.push(Variable {
            name,
            span: shape.name_span.unwrap_or_else(|| cx.span(declarator)),
            decl_span: cx.span(node),
            is_static: info.is_static,
            is_extern: info.is_extern,
            is_thread_local: info.is_thread_local,
            type_const: info.is_const,
            is_volatile: info.is_volatile,
            is_atomic: info.is_atomic
                || info.type_name.starts_with("atomic_")
                || info.type_name.starts_with("_Py_atomic_")
                || info.type_name.starts_with("std::atomic"),
            type_name: info.type_name.clone(),
            pointers: shape.pointers,
            array_dims: shape.array_dims,
            is_function_pointer: shape.is_function_pointer,
            inline_fields: info
                .struct_def
                .as_ref()
                .map(|s| s.fields.clone())
                .unwrap_or_default(),
            function: function.map(str::to_string),
            init,
            versions: cx.versions(node),
            uncertain: in_error || cx.uncertain(node),
        });
    }
}

#[cfg(test)]
mod fold_tests {
    use super::fold_ws;

    #[test]
    fn folds_ascii_and_unicode_alike() {
        assert_eq!(fold_ws("  a \t\n b\x0b\x0cc\r\n "), "a b c");
        assert_eq!(fold_ws("name"), "name");
        assert_eq!(fold_ws(""), "");
        // Non-ASCII text takes the `char` path: U+00A0 is white space there too.
        assert_eq!(fold_ws("é \u{a0} x  ü"), "é x ü");
    }
}
