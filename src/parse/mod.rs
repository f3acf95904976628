//! Parsing: the pre-pass, tree-sitter-c, and the accounting of parse errors.

pub mod condition;
pub mod lexer;
pub mod macros;
pub mod prepass;

use prepass::{ConditionalMap, FunctionBodies};
use std::cell::RefCell;
use tree_sitter::{Node, Parser, Tree};

pub use prepass::Region;

/// The call the pre-pass writes where a critical section begins; the facts read its
/// arguments as the locked objects and never record it as a call.
pub const CRITICAL_SECTION_MARKER: &str = "_isolint_critsec";

/// Where tree-sitter could not make sense of the code.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ParseErrors {
    pub error_nodes: usize,
    pub missing_nodes: usize,
    /// Byte ranges of the outermost ERROR nodes and of MISSING nodes.
    pub ranges: Vec<(usize, usize)>,
    /// Bytes inside the outermost ERROR nodes that no recovered item (a function, a
    /// declaration, a preprocessor line, a comment) accounts for: the code the parser could not
    /// read. An ERROR at the root that still holds the file's functions counts only its
    /// leftovers.
    #[serde(default)]
    pub unreadable_bytes: usize,
}

impl ParseErrors {
    pub fn count(&self) -> usize {
        self.error_nodes + self.missing_nodes
    }
    pub fn overlaps(&self, start: usize, end: usize) -> bool {
        self.ranges
            .iter()
            .any(|&(s, e)| s < end.max(start + 1) && start < e.max(s + 1))
    }
    pub fn first_offset(&self) -> Option<usize> {
        self.ranges.iter().map(|r| r.0).min()
    }
}

pub struct ParsedFile {
    /// The pre-passed text: same length as the file.
    pub text: Vec<u8>,
    pub tree: Tree,
    pub conditionals: ConditionalMap,
    pub function_bodies: FunctionBodies,
    /// Project macros rewritten out of sight, for the facts layer to expand.
    pub macro_uses: Vec<prepass::MacroUse>,
    pub errors: ParseErrors,
}

#[derive(Debug)]
pub enum ParseFailure {
    Language(String),
    NoTree,
}

impl std::fmt::Display for ParseFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseFailure::Language(why) => write!(f, "the C grammar could not be loaded: {why}"),
            ParseFailure::NoTree => write!(f, "tree-sitter gave up on this file"),
        }
    }
}

impl std::error::Error for ParseFailure {}

thread_local! {
    static PARSER: RefCell<Option<Parser>> = const { RefCell::new(None) };
}

pub fn new_parser() -> Result<Parser, ParseFailure> {
    let mut parser = Parser::new();
    parser
        .set_language(&tree_sitter_c::LANGUAGE.into())
        .map_err(|e| ParseFailure::Language(e.to_string()))?;
    Ok(parser)
}

/// Parses with one parser per thread (rayon workers reuse theirs).
pub fn parse(source: &[u8]) -> Result<ParsedFile, ParseFailure> {
    parse_with(source, &macros::ProjectMacros::default())
}

/// [`parse`], with the macros of the whole scan (see [`macros::definitions_in`]).
pub fn parse_with(
    source: &[u8],
    project_macros: &macros::ProjectMacros,
) -> Result<ParsedFile, ParseFailure> {
    parse_with_defines(source, project_macros, &[])
}

/// [`parse_with`], with the `-D`/`-U` macros of the file's compile command (see
/// [`prepass::prepare_with_defines`]).
pub fn parse_with_defines(
    source: &[u8],
    project_macros: &macros::ProjectMacros,
    build_defines: &[(String, bool)],
) -> Result<ParsedFile, ParseFailure> {
    let prepared = prepass::prepare_with_defines(source, project_macros, build_defines);
    let tree = PARSER.with(|cell| -> Result<Tree, ParseFailure> {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(new_parser()?);
        }
        let parser = slot.as_mut().expect("parser was just set");
        parser
            .parse(&prepared.text, None)
            .ok_or(ParseFailure::NoTree)
    })?;
    let errors = count_errors(tree.root_node());
    Ok(ParsedFile {
        text: prepared.text,
        tree,
        conditionals: prepared.conditionals,
        function_bodies: prepared.function_bodies,
        macro_uses: prepared.macro_uses,
        errors,
    })
}

/// What an outermost ERROR node holds beyond the items tree-sitter recovered inside it.
fn unreadable_bytes(error: Node) -> usize {
    let mut recovered = 0;
    let mut cursor = error.walk();
    for child in error.children(&mut cursor) {
        let kind = child.kind();
        let is_item = matches!(
            kind,
            "function_definition"
                | "declaration"
                | "type_definition"
                | "linkage_specification"
                | "comment"
        ) || kind.starts_with("preproc_");
        if is_item && !child.is_error() {
            recovered += child.end_byte() - child.start_byte();
        }
    }
    (error.end_byte() - error.start_byte()).saturating_sub(recovered)
}

/// `ARG_EPILOG(NULL, usage, )`: an empty argument is valid C for a function-like macro (C99
/// 6.10.3), and only a macro can take one. tree-sitter reads it as a call with a MISSING
/// identifier in the empty slot, the rest of the tree intact; the facts read the argument as
/// empty text. That is no parse error to report.
fn is_empty_macro_argument(missing: Node) -> bool {
    missing.kind() == "identifier"
        && missing
            .parent()
            .is_some_and(|p| p.kind() == "argument_list")
        && [missing.prev_sibling(), missing.next_sibling()]
            .iter()
            .all(|s| s.is_some_and(|s| matches!(s.kind(), "," | "(" | ")")))
}

fn count_errors(root: Node) -> ParseErrors {
    let mut errors = ParseErrors::default();
    if !root.has_error() {
        return errors;
    }
    // Iterative walk that only descends into subtrees containing errors.
    let mut cursor = root.walk();
    let mut inside_error_depth: Option<usize> = None;
    let mut depth = 0usize;
    loop {
        let node = cursor.node();
        let mut descend = node.has_error();
        if node.is_error() {
            errors.error_nodes += 1;
            if inside_error_depth.is_none() {
                errors.ranges.push((node.start_byte(), node.end_byte()));
                errors.unreadable_bytes += unreadable_bytes(node);
                inside_error_depth = Some(depth);
            }
        } else if node.is_missing() {
            if !is_empty_macro_argument(node) {
                errors.missing_nodes += 1;
                errors.ranges.push((node.start_byte(), node.end_byte()));
            }
            descend = false;
        }
        if descend && cursor.goto_first_child() {
            depth += 1;
            continue;
        }
        loop {
            if inside_error_depth == Some(depth) {
                inside_error_depth = None;
            }
            if cursor.goto_next_sibling() {
                break;
            }
            if !cursor.goto_parent() {
                return errors;
            }
            depth -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar_loads() {
        // tree-sitter-c and tree-sitter must agree on the grammar ABI; this fails at run time
        // only.
        new_parser().expect("tree-sitter-c loads into tree-sitter");
    }

    #[test]
    fn counts_errors() {
        let parsed = parse(b"int f( { ;\nstatic int x;\n").unwrap();
        assert!(parsed.errors.count() > 0);
        let clean = parse(b"static int x;\n").unwrap();
        assert_eq!(clean.errors.count(), 0);
    }

    #[test]
    fn allow_threads_is_a_block() {
        let src = b"void f(void) {\n    Py_BEGIN_ALLOW_THREADS\n    r = close(fd);\n    Py_END_ALLOW_THREADS\n}\n";
        let parsed = parse(src).unwrap();
        assert_eq!(parsed.errors.count(), 0);
        let sexp = parsed.tree.root_node().to_sexp();
        assert!(sexp.contains("assignment_expression"), "{sexp}");
    }
}
