//! One function: its head, and one walk over its body for references, write sites, calls,
//! returns and function-local statics.

use super::declarator::{declaration_type, shape_of};
use super::expr::{classify_written, root_name, summarize, unwrap, PureLocals};
use super::extract::{declared_variables, fold_ws, Cx};
use super::fields::{kind_table, KindName, FIELD};
use super::macros::{
    project_expansion, written_definition, ArgumentTemplate, ExpandedFacts, MAX_EXPANSION_DEPTH,
};
use super::*;
use crate::parse::macros::Role;
use crate::source::LineIndex;
use crate::version::VersionRange;
use std::sync::LazyLock;
// Hashed once per identifier of every function body: Fx, not SipHash.
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use tree_sitter::Node;

/// C library calls that write through their first argument: passing a global array (or
/// pointer) to them writes the global's storage.
const WRITES_FIRST_ARGUMENT: &[&str] = &[
    "memset",
    "memcpy",
    "memmove",
    "strcpy",
    "strncpy",
    "strcat",
    "strncat",
    "sprintf",
    "snprintf",
    "vsprintf",
    "vsnprintf",
    "PyOS_snprintf",
    "PyOS_vsnprintf",
    "fgets",
    "fread",
    "qsort",
    "bzero",
];

/// Whether a call's first argument is kept in the facts: for the C API (`Py*`, `_Py*`) only.
/// Those are the calls the model and the rules read an argument of, and always the first
/// (module creation's `PyModuleDef`, `Py_VISIT(x)`, `Py_CLEAR(x)`, `PyObject_New(T, ...)`,
/// `_Py_IDENTIFIER(x)`, `PyType_GetModule(Py_TYPE(self))`). Every argument of every call was
/// most of the facts' memory; what a call does with `&global` is recorded as a write while
/// walking, not read back from here.
pub(crate) fn keeps_arguments(callee: &str) -> bool {
    // Lock calls too: which lock is held decides whether it is a process-wide one.
    callee.starts_with("Py")
        || callee.starts_with("_Py")
        || matches!(
            callee,
            "pthread_mutex_lock"
                | "pthread_mutex_unlock"
                | "EnterCriticalSection"
                | "LeaveCriticalSection"
                | "mtx_lock"
                | "mtx_unlock"
                | "Tcl_MutexLock"
                | "Tcl_MutexUnlock"
        )
}

/// Calls that make a heap type from a `PyType_Spec`; every argument is kept.
pub const HEAP_TYPE_CREATORS: &[&str] = &[
    "PyType_FromSpecWithBases",
    "PyType_FromModuleAndSpec",
    "PyType_FromMetaclass",
];

/// Macros that assign their first argument.
const ASSIGNING_MACROS: &[&str] = &["Py_CLEAR", "Py_SETREF", "Py_XSETREF", "Py_CLEARREF"];

pub(crate) fn function_facts(
    node: Node,
    cx: &Cx,
    variables: &mut Vec<Variable>,
) -> Option<Function> {
    let info = declaration_type(node, cx);
    let declarator = node.child_by_field_id(FIELD.declarator.get())?;
    let body = node.child_by_field_id(FIELD.body.get())?;

    let mut name_node = None;
    let mut params_node = None;
    let mut pointers = 0;
    let mut nested_macro_head: Option<(Node, Vec<String>)> = None;
    let mut current = Some(declarator);
    while let Some(d) = current {
        current = match d.kind_name() {
            "pointer_declarator" => {
                pointers += 1;
                d.child_by_field_id(FIELD.declarator.get())
            }
            "function_declarator" => {
                params_node = d.child_by_field_id(FIELD.parameters.get());
                let inner = d.child_by_field_id(FIELD.declarator.get());
                match inner {
                    Some(i) if i.kind_name() == "identifier" => {
                        name_node = Some(i);
                        None
                    }
                    // `INIT_MODULE(_psycopg)(void)`: a macro call that pastes the name.
                    Some(i) if i.kind_name() == "function_declarator" => {
                        let macro_name = i
                            .child_by_field_id(FIELD.declarator.get())
                            .filter(|m| m.kind_name() == "identifier");
                        let args = i.child_by_field_id(FIELD.parameters.get()).map(|p| {
                            let mut c = p.walk();
                            p.named_children(&mut c)
                                .map(|a| fold_ws(cx.text(a)))
                                .collect::<Vec<_>>()
                        });
                        if let (Some(m), Some(args)) = (macro_name, args) {
                            nested_macro_head = Some((m, args));
                        }
                        None
                    }
                    other => other,
                }
            }
            "parenthesized_declarator" | "attributed_declarator" => d.named_child(0),
            _ => None,
        };
    }

    // `MOD_INIT(foo) { ... }`: the macro is the type, and the argument the declarator.
    let mut macro_head = None;
    let name_node = match (name_node, nested_macro_head) {
        (Some(n), _) => n,
        (None, Some((m, args))) => {
            macro_head = Some((cx.text(m).to_string(), args));
            m
        }
        (None, None) => {
            let ty = node.child_by_field_id(FIELD.ty.get())?;
            let args: Vec<String> = match declarator.kind_name() {
                "parenthesized_declarator" => shape_of(declarator, cx).name.into_iter().collect(),
                "function_declarator" => declarator
                    .child_by_field_id(FIELD.declarator.get())
                    .and_then(|d| shape_of(d, cx).name)
                    .into_iter()
                    .collect(),
                _ => Vec::new(),
            };
            macro_head = Some((cx.text(ty).to_string(), args));
            ty
        }
    };
    let name = match &macro_head {
        Some((m, args)) => format!("{m}({})", args.join(", ")),
        None => cx.text(name_node).to_string(),
    };

    let mut params = Vec::new();
    let mut locals: HashSet<String> = HashSet::default();
    if let Some(list) = params_node {
        let mut c = list.walk();
        for p in list
            .named_children(&mut c)
            .filter(|p| p.kind_name() == "parameter_declaration")
        {
            let ty = p
                .child_by_field_id(FIELD.ty.get())
                .map(|t| fold_ws(cx.text(t)))
                .unwrap_or_default();
            let shape = p
                .child_by_field_id(FIELD.declarator.get())
                .map(|d| shape_of(d, cx));
            let name = shape.as_ref().and_then(|s| s.name.clone());
            if let Some(n) = &name {
                locals.insert(n.clone());
            }
            params.push(Param {
                name,
                type_name: ty,
                pointers: shape.map_or(0, |s| s.pointers.len()),
            });
        }
    }
    let return_type = format!(
        "{}{}",
        node.child_by_field_id(FIELD.ty.get())
            .map(|t| fold_ws(cx.text(t)))
            .unwrap_or_default(),
        if pointers > 0 {
            " ".to_string() + &"*".repeat(pointers)
        } else {
            String::new()
        }
    );

    // A local with a fixed initializer is pure unless the body reassigns it anywhere, also
    // after a use (a loop's `i++`). Rather than a second walk over every body to find those
    // names first, the walk takes each such local as pure and notes which of them a value was
    // classified from; only when one of those is reassigned does the body get that second walk,
    // and the walk is done again knowing the reassigned names.
    let variables_before = variables.len();
    let mut walker = walk_body(
        cx,
        &name,
        locals.clone(),
        HashSet::default(),
        body,
        variables,
    );
    if !walker.pure_locals.read().is_empty() {
        let reassigned = reassigned_names(body, cx);
        let misread = walker
            .pure_locals
            .read()
            .iter()
            .any(|local| reassigned.contains(local));
        if misread {
            variables.truncate(variables_before);
            walker = walk_body(cx, &name, locals, reassigned, body, variables);
        }
    }

    // A `static` function is not exported whatever its head says. A head written through a
    // macro (`MOD_INIT(foo)`) is read whole, up to the body.
    let exported = !info.is_static && {
        let end = match (&macro_head, node.child_by_field_id(FIELD.body.get())) {
            (Some(_), Some(body)) => body.start_byte(),
            _ => name_node.start_byte(),
        };
        exported_head(node.start_byte(), end, cx)
    };
    Some(Function {
        name,
        span: cx.span(name_node),
        def_span: cx.span(node),
        is_static: info.is_static,
        return_type,
        params,
        macro_head,
        exported,
        references: shrunk(walker.references),
        fields_written_through_locals: shrunk(walker.fields_written_through_locals),
        writes: shrunk(walker.writes),
        definition_writes: walker.definition_writes,
        calls: shrunk(walker.calls),
        returns: shrunk(walker.returns),
        threading: walker.threading,
        versions: cx.versions(node),
        uncertain: cx.uncertain(node),
    })
}

/// Words of a declaration's head that export it from the shared object, or have the loader
/// call it: `__declspec(dllexport)`, CPython's `PyAPI_FUNC`, `PyMODINIT_FUNC` and
/// `Py_EXPORTED_SYMBOL`, Windows' `STDAPI` (COM entry points), and the attributes
/// `constructor`, `destructor` and `used`. `visibility("default")` is checked apart.
const EXPORT_WORDS: &[&str] = &[
    "dllexport",
    "PyAPI_FUNC",
    "PyMODINIT_FUNC",
    "Py_EXPORTED_SYMBOL",
    "STDAPI",
    "STDAPI_",
    "constructor",
    "destructor",
    "used",
];

/// How many macros deep an export word is looked for (`EXPORT(int)` → `Py_EXPORTED_SYMBOL`
/// → `__attribute__((visibility("default")))`).
const MAX_EXPORT_DEPTH: usize = 4;

/// Whether the head of a declaration, from `start` to the declared name at `end`, exports it
/// (see [`EXPORT_WORDS`]), spelled out or through the scan's macros. Read from the text as
/// written: the pre-pass blanks attribute macros out of `src`.
pub(crate) fn exported_head(start: usize, end: usize, cx: &Cx) -> bool {
    // A blanked macro before the head's first word is outside the node: white space in `src`.
    let start = cx.src[..start.min(cx.src.len())]
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |p| p + 1);
    let Some(head) = cx.original.get(start..end.max(start)) else {
        return false;
    };
    let mut texts: Vec<(String, usize)> = vec![(String::from_utf8_lossy(head).into_owned(), 0)];
    let mut seen: HashSet<String> = HashSet::default();
    let mut visibility = false;
    let mut default = false;
    while let Some((text, depth)) = texts.pop() {
        for word in text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_'))
        {
            if EXPORT_WORDS.contains(&word) {
                return true;
            }
            visibility |= word == "visibility";
            default |= word == "default";
            if visibility && default {
                return true;
            }
            if depth < MAX_EXPORT_DEPTH && seen.insert(word.to_string()) {
                if let Some(d) = cx.project.definition(word) {
                    texts.push((d.body.clone(), depth + 1));
                }
            }
        }
    }
    false
}

/// One walk over a function's body and the macro uses in it, with `reassigned` as the names
/// taken to be written somewhere in it.
fn walk_body<'a, 'c>(
    cx: &'c Cx<'a>,
    function: &str,
    locals: HashSet<String>,
    reassigned: HashSet<String>,
    body: Node,
    variables: &mut Vec<Variable>,
) -> BodyWalker<'a, 'c> {
    let mut walker = BodyWalker::new(cx, function.to_string(), locals);
    walker.reassigned = reassigned;
    walker.walk(body, variables);
    // Uses the pre-pass turned into `{` / `;}`: their bodies run here too.
    let (start, end) = (body.start_byte(), body.end_byte());
    let first = cx.macro_uses.partition_point(|u| u.start < start);
    for u in cx.macro_uses[first..].iter().take_while(|u| u.end <= end) {
        let at = cx.span_of(u.start, u.end);
        let versions = cx.cond.range_at(u.start);
        let uncertain = cx.errors.overlaps(u.start, u.end);
        walker.expand_at(&u.name, u.args.as_deref(), at, versions, uncertain);
    }
    walker.finish_compared_only();
    walker
}

/// These lists live until the end of the scan: without the slack growth left in them.
fn shrunk<T>(mut list: Vec<T>) -> Vec<T> {
    list.shrink_to_fit();
    list
}

/// Code inside an ERROR at file scope, often a function whose head was lost: its writes and
/// calls still count, attributed to a placeholder name and marked uncertain.
pub(crate) fn error_region_facts(node: Node, cx: &Cx) -> Option<Function> {
    let line = cx.lines.position(node.start_byte()).0;
    let name = format!("<unparsed code at line {line}>");
    let mut walker = BodyWalker::new(cx, name.clone(), HashSet::default());
    let mut ignored = Vec::new();
    walker.walk(node, &mut ignored);
    walker.finish_compared_only();
    if walker.writes.is_empty()
        && walker.definition_writes.is_empty()
        && walker.calls.is_empty()
        && walker.references.is_empty()
    {
        return None;
    }
    Some(Function {
        name,
        span: cx.span_of(node.start_byte(), node.start_byte()),
        def_span: cx.span(node),
        is_static: true,
        return_type: String::new(),
        params: Vec::new(),
        macro_head: None,
        exported: false,
        references: walker.references,
        fields_written_through_locals: walker.fields_written_through_locals,
        writes: walker.writes,
        definition_writes: walker.definition_writes,
        calls: walker.calls,
        returns: walker.returns,
        threading: walker.threading,
        versions: cx.versions(node),
        uncertain: true,
    })
}

/// What the walker does at a node kind, decided once per kind id rather than per node.
#[derive(Clone, Copy)]
enum Visit {
    /// Nothing to record: visit the children.
    Descend,
    /// Nothing to record below either.
    Leaf,
    /// A kind `BodyWalker::visit` reads.
    Inspect,
}

static VISIT: LazyLock<Vec<Visit>> = LazyLock::new(|| {
    kind_table(|name, named| match name {
        _ if !named => Visit::Leaf,
        "declaration"
        | "assignment_expression"
        | "update_expression"
        | "pointer_expression"
        | "call_expression"
        | "binary_expression"
        | "return_statement"
        | "if_statement"
        | "identifier" => Visit::Inspect,
        "field_identifier"
        | "type_identifier"
        | "primitive_type"
        | "string_literal"
        | "number_literal"
        | "comment"
        | "char_literal"
        | "statement_identifier"
        | "type_descriptor" => Visit::Leaf,
        _ => Visit::Descend,
    })
});

struct BodyWalker<'a, 'c> {
    cx: &'c Cx<'a>,
    function: String,
    /// Parameters and non-static locals: writes to them are not writes to globals.
    locals: HashSet<String>,
    references: Vec<Reference>,
    referenced: HashSet<String>,
    writes: Vec<WriteSite>,
    definition_writes: Vec<WriteSite>,
    calls: Vec<Call>,
    returns: Vec<Expr>,
    threading: ThreadingFacts,
    /// `&x` nodes already recorded as passed to a call.
    handled: HashSet<usize>,
    /// Call node id -> the variable its result is assigned to.
    assigned_to: HashMap<usize, String>,
    /// How many macro expansions deep this walker is.
    depth: u8,
    /// Locals that hold the address of a global (`Table *t = &table;`): writes through them are
    /// writes to the global, and taking the address is not an escape by itself.
    aliases: HashMap<String, String>,
    /// Locals that have only held fixed values (`int one = 1;`): a value computed from them is
    /// the same in every run (`Written::PureC`).
    pure_locals: PureLocals,
    /// Names assigned, updated or passed by address anywhere in the body: a local among them
    /// is never pure, wherever the write stands (a loop's `i++` after the use).
    reassigned: HashSet<String>,
    /// For each local named in the body: (uses, uses that only compare, test or assign it).
    local_uses: HashMap<String, (u32, u32)>,
    /// See `Function::fields_written_through_locals`.
    fields_written_through_locals: Vec<FieldStore>,
    /// The fields tested for NULL by an `if` seen so far (`if (st->cache == NULL)`), with the
    /// branch taken when they are: a store into the field there is a lazy fill.
    field_guards: Vec<(String, Span)>,
}

impl<'a, 'c> BodyWalker<'a, 'c> {
    fn new(cx: &'c Cx<'a>, function: String, locals: HashSet<String>) -> Self {
        Self {
            cx,
            function,
            locals,
            references: Vec::new(),
            referenced: HashSet::default(),
            writes: Vec::new(),
            definition_writes: Vec::new(),
            calls: Vec::new(),
            returns: Vec::new(),
            threading: ThreadingFacts::default(),
            handled: HashSet::default(),
            assigned_to: HashMap::default(),
            depth: 0,
            aliases: HashMap::default(),
            pure_locals: PureLocals::default(),
            reassigned: HashSet::default(),
            local_uses: HashMap::default(),
            fields_written_through_locals: Vec::new(),
            field_guards: Vec::new(),
        }
    }

    /// A use of a local that reads only its value as an address: an operand of `==`/`!=`,
    /// the condition of an `if` (`if (x)`, `if (!x)`), or the left side of `x = ...`.
    fn note_address_only_use(&mut self, node: Node) {
        let node = unwrap(node);
        if node.kind_name() != "identifier" {
            return;
        }
        let name = self.cx.text(node);
        if let Some(uses) = self.local_uses.get_mut(name) {
            uses.1 += 1;
        } else if self.locals.contains(name) {
            self.local_uses.insert(name.to_string(), (0, 1));
        }
    }

    /// The locals that got a C API call's result and were only compared, tested or assigned
    /// (`ThreadingFacts::compared_only`).
    fn finish_compared_only(&mut self) {
        let mut out: Vec<String> = Vec::new();
        for call in &self.calls {
            let Some(name) = call.assigned_to.as_deref() else {
                continue;
            };
            let only_compared = self
                .local_uses
                .get(name)
                .is_some_and(|(uses, benign)| uses == benign);
            if only_compared && call.callee.starts_with("Py") && !out.iter().any(|n| n == name) {
                out.push(name.to_string());
            }
        }
        self.threading.compared_only = out;
    }

    /// Walks the expansion of a macro used at `node` (a same-file macro that writes, or a
    /// project macro whose body is code); what it writes, calls and reads is recorded at the
    /// use site. `args` is `None` for an object-like use.
    fn expand_macro_call(&mut self, node: Node, callee: &str, args: Option<&[String]>) {
        let cx = self.cx;
        self.expand_at(
            callee,
            args,
            cx.span(node),
            cx.versions(node),
            cx.uncertain(node),
        );
    }

    fn expand_at(
        &mut self,
        name: &str,
        args: Option<&[String]>,
        at: Span,
        versions: VersionRange,
        uncertain: bool,
    ) {
        if self.depth >= MAX_EXPANSION_DEPTH {
            return;
        }
        // The body as written, walked once per file: enough for every use unless what it does
        // depends on the arguments.
        let Some((params, written)) = written_definition(self.cx.macros, self.cx.project, name)
        else {
            return;
        };
        let params = params.unwrap_or(&[]);
        let memo = self.cx.expansions.borrow().get(name).cloned();
        let summary = match memo {
            Some(done) => done,
            None => {
                let mut done = self.walk_expansion(name, written);
                done.depends_on_arguments = written.contains('#')
                    || done.writes.iter().any(|w| params.contains(&w.target))
                    || !done.definition_writes.is_empty()
                    // `#define CHAIN(x) BEGIN x; END`: the argument is code of its own.
                    || params.iter().any(|p| is_statement_parameter(written, p))
                    || done.calls.iter().any(|c| {
                        params.contains(&c.callee)
                            || c.args
                                .iter()
                                .any(|a| a.ident().is_some_and(|n| params.iter().any(|p| p == n)))
                    });
                let done = std::rc::Rc::new(done);
                self.cx
                    .expansions
                    .borrow_mut()
                    .insert(name.to_string(), done.clone());
                done
            }
        };
        if !summary.depends_on_arguments || args.is_none() {
            self.record_expansion(&summary, params, at, versions, uncertain);
            return;
        }
        // Uses that differ only in the names and strings they pass share one walk.
        let template = args.and_then(|args| {
            let passes_callee = summary.calls.iter().any(|c| params.contains(&c.callee));
            ArgumentTemplate::new(
                params,
                written,
                args,
                self.cx.macros,
                self.cx.project,
                self.depth,
                |p| passes_callee || is_statement_parameter(written, p),
            )
        });
        if let Some(template) = &template {
            if let Some(shared) = self.expansion_with(name, Some(&template.args)) {
                if let Some(own) = template.rename(&shared) {
                    self.record_expansion(&own, &[], at, versions, uncertain);
                    return;
                }
            }
        }
        if let Some(expanded) = self.expansion_with(name, args) {
            self.record_expansion(&expanded, &[], at, versions, uncertain);
        }
    }

    /// The facts of the macro's body expanded with `args`, walked once per file for each
    /// distinct argument list.
    fn expansion_with(
        &self,
        name: &str,
        args: Option<&[String]>,
    ) -> Option<std::rc::Rc<ExpandedFacts>> {
        let key = match args {
            Some(args) => format!("{name}({})", args.join("\u{1}")),
            None => name.to_string(),
        };
        if let Some(done) = self.cx.expansions.borrow().get(&key).cloned() {
            return Some(done);
        }
        let body = match args {
            Some(args) => self.cx.macros.expand(name, args),
            None => None,
        }
        .or_else(|| project_expansion(self.cx.project, name, args))?;
        let done = std::rc::Rc::new(self.walk_expansion(name, &body));
        self.cx.expansions.borrow_mut().insert(key, done.clone());
        Some(done)
    }

    /// Records an expansion's writes, calls and reads at the use site; names of the macro's
    /// parameters and the use site's locals are not globals.
    fn record_expansion(
        &mut self,
        expanded: &ExpandedFacts,
        params: &[String],
        at: Span,
        versions: VersionRange,
        uncertain: bool,
    ) {
        for w in &expanded.writes {
            if self.locals.contains(&w.target) || params.contains(&w.target) {
                continue;
            }
            let mut w = w.clone();
            (w.span, w.versions, w.uncertain) = (at, versions, uncertain);
            self.writes.push(w);
        }
        for w in &expanded.definition_writes {
            let mut w = w.clone();
            (w.span, w.versions, w.uncertain) = (at, versions, uncertain);
            self.definition_writes.push(w);
        }
        for c in &expanded.calls {
            let mut c = c.clone();
            (c.span, c.versions, c.uncertain) = (at, versions, uncertain);
            for a in &mut c.args {
                a.span = at;
            }
            self.calls.push(c);
        }
        for r in &expanded.references {
            if !self.locals.contains(&r.name)
                && !params.contains(&r.name)
                && self.referenced.insert(r.name.clone())
            {
                self.references.push(Reference {
                    name: r.name.clone(),
                    span: at,
                });
            }
        }
    }

    /// Parses a macro body as the body of a function and walks it. The use site's locals are
    /// applied by the caller, so the result serves every use of the same expansion.
    fn walk_expansion(&self, name: &str, body: &str) -> ExpandedFacts {
        // A macro that opens blocks (`#define PREAMBLE state = Ensure(); CHAIN_BEGIN`) is
        // closed after its body, one that closes them opened before: the snippet parses whole.
        let (before, after) = match self.cx.project.role(name) {
            Some(Role::Open(n)) => ("", &"}}}"[..usize::from(n).min(3)]),
            Some(Role::Close(n)) => (&"{{{"[..usize::from(n).min(3)], ""),
            _ => ("", ""),
        };
        let snippet =
            format!("void isolint_macro_expansion(void) {{\n{before}{body}\n;{after}}}\n");
        // With the scan's macros when the body uses one with a role (`#define CHAIN(x)
        // CHAIN_BEGIN x; CHAIN_END`, an attribute macro): the pre-pass with the scan's table
        // costs more than the parse of a short body, so only then.
        let parsed = if uses_project_macro(body, self.cx.project) {
            crate::parse::parse_with(snippet.as_bytes(), self.cx.project)
        } else {
            crate::parse::parse(snippet.as_bytes())
        };
        let Ok(parsed) = parsed else {
            return ExpandedFacts::default();
        };
        let lines = LineIndex::new(&snippet);
        let cx = Cx {
            src: &parsed.text,
            original: snippet.as_bytes(),
            utf8: std::str::from_utf8(&parsed.text).ok(),
            lines: &lines,
            cond: &parsed.conditionals,
            errors: &parsed.errors,
            function_bodies: &parsed.function_bodies,
            macros: self.cx.macros,
            project: self.cx.project,
            macro_uses: &parsed.macro_uses,
            expansions: self.cx.expansions,
        };
        let root = parsed.tree.root_node();
        let mut cursor = root.walk();
        let Some(body_node) = root
            .named_children(&mut cursor)
            .find(|n| n.kind_name() == "function_definition")
            .and_then(|f| f.child_by_field_id(FIELD.body.get()))
        else {
            return ExpandedFacts::default();
        };
        let mut inner = BodyWalker::new(&cx, self.function.clone(), HashSet::default());
        inner.depth = self.depth + 1;
        let mut ignored = Vec::new();
        inner.walk(body_node, &mut ignored);
        // The uses the pre-pass rewrote out of the snippet; their place is the outer use's,
        // given by `record_expansion`.
        for u in cx.macro_uses {
            let at = cx.span_of(u.start, u.end);
            inner.expand_at(
                &u.name,
                u.args.as_deref(),
                at,
                cx.cond.range_at(u.start),
                false,
            );
        }
        ExpandedFacts {
            writes: inner.writes,
            definition_writes: inner.definition_writes,
            calls: inner.calls,
            references: inner.references,
            depends_on_arguments: false,
        }
    }

    fn walk(&mut self, body: Node, variables: &mut Vec<Variable>) {
        // A tree cursor, not recursion: 100 000 nested blocks must not overflow the call
        // stack. The cursor keeps its path on the heap and allocates nothing per node. Visits
        // the named nodes in pre-order, left to right.
        let mut cursor = body.walk();
        loop {
            let node = cursor.node();
            let descend = node.is_named() && self.visit(node, variables);
            if descend && cursor.goto_first_child() {
                continue;
            }
            // The cursor was made at `body`: it cannot leave it.
            while !cursor.goto_next_sibling() {
                if !cursor.goto_parent() {
                    return;
                }
            }
        }
    }

    /// Records what `node` says; returns whether its children need a visit.
    fn visit(&mut self, node: Node, variables: &mut Vec<Variable>) -> bool {
        let cx = self.cx;
        match VISIT.get(node.kind_id() as usize) {
            Some(Visit::Descend) | None => return true,
            Some(Visit::Leaf) => return false,
            Some(Visit::Inspect) => {}
        }
        match node.kind_name() {
            "declaration" => {
                // `INIT_STRING(write)` with no `;` before the next statement parses as a
                // declaration whose type is a macro call: it is the call.
                if let Some(ty) = node
                    .child_by_field_id(FIELD.ty.get())
                    .filter(|t| t.kind_name() == "macro_type_specifier")
                {
                    if let Some(name) = ty.child_by_field_id(FIELD.name.get()) {
                        let name = cx.text(name).to_string();
                        let args: Vec<String> = ty
                            .child_by_field_id(FIELD.ty.get())
                            .map(|a| vec![cx.text(a).to_string()])
                            .unwrap_or_default();
                        self.expand_macro_call(node, &name, Some(&args));
                    }
                }
                let info = declaration_type(node, cx);
                if info.is_static || info.is_thread_local {
                    let mut prototypes = Vec::new();
                    declared_variables(
                        node,
                        &info,
                        cx,
                        Some(&self.function),
                        false,
                        variables,
                        &mut prototypes,
                    );
                } else {
                    let mut c = node.walk();
                    for d in node.children_by_field_id(FIELD.declarator, &mut c) {
                        let shape = shape_of(d, cx);
                        if let Some(name) = shape.name {
                            self.pure_locals.remove(&name);
                            if let (Some(init), true) = (shape.init, shape.pointers.is_empty()) {
                                if init.kind_name() == "initializer_list" {
                                    self.note_local_initializer(node, init);
                                }
                            }
                            if let (Some(init), false) = (shape.init, info.is_extern) {
                                let init = unwrap(init);
                                if init.kind_name() == "call_expression" {
                                    self.assigned_to.insert(init.id(), name.clone());
                                }
                                self.note_alias(&name, init);
                                let (w, reads) =
                                    classify_written(init, cx, &self.locals, &self.pure_locals);
                                // A local initialised from a macro or a function's address is
                                // fixed; one read from a global is not known to be.
                                if w.is_fixed()
                                    && reads.iter().all(|r| looks_constant(r))
                                    && !self.reassigned.contains(&name)
                                {
                                    self.pure_locals.insert(name.clone());
                                }
                            }
                            if !info.is_extern {
                                self.locals.insert(name);
                            }
                        }
                    }
                }
                // Initializers may call functions and read globals.
                let mut c = node.walk();
                let values: Vec<Node> = node
                    .children_by_field_id(FIELD.declarator, &mut c)
                    .filter_map(|d| d.child_by_field_id(FIELD.value.get()))
                    .collect();
                for v in values {
                    self.walk(v, variables);
                }
                false
            }
            "assignment_expression" => {
                if let Some(left) = node.child_by_field_id(FIELD.left.get()) {
                    let op = node
                        .child_by_field_id(FIELD.operator.get())
                        .map(|o| cx.text(o))
                        .unwrap_or("=");
                    let right = node.child_by_field_id(FIELD.right.get());
                    let kind = if op == "=" {
                        WriteKind::Assign
                    } else {
                        WriteKind::CompoundAssign
                    };
                    let written = match (right, op) {
                        (Some(r), "=" | "|=" | "&=") => {
                            classify_written(r, cx, &self.locals, &self.pure_locals)
                        }
                        _ => (Written::Unknown, Vec::new()),
                    };
                    if op == "=" {
                        self.note_lazy_field_fill(left, node);
                        self.note_address_only_use(left);
                        if let Some(r) = right {
                            self.note_address_stored_in_field(left, r);
                        }
                    }
                    if let (Some(r), "identifier") = (right.map(unwrap), unwrap(left).kind_name()) {
                        let local = cx.text(unwrap(left)).to_string();
                        if self.locals.contains(&local) {
                            self.note_alias(&local, r);
                            let fixed = op == "=" && written.0.is_fixed();
                            if !fixed {
                                self.pure_locals.remove(&local);
                            }
                        }
                    }
                    if let Some(r) = right.map(unwrap) {
                        if r.kind_name() == "call_expression" {
                            if let Some((name, _)) = root_name(left, cx) {
                                self.assigned_to.insert(r.id(), name);
                            }
                        }
                    }
                    self.record_write_value(left, kind, right.map(|r| summarize(r, cx)), written);
                }
                true
            }
            "update_expression" => {
                if let Some(arg) = node.child_by_field_id(FIELD.argument.get()) {
                    self.record_write(arg, WriteKind::IncDec, None, None);
                }
                true
            }
            "pointer_expression" => {
                let is_address = node
                    .child_by_field_id(FIELD.operator.get())
                    .is_some_and(|o| cx.text(o) == "&");
                if is_address && !self.handled.contains(&node.id()) {
                    if let Some(arg) = node.child_by_field_id(FIELD.argument.get()) {
                        self.record_write(arg, WriteKind::AddressTaken, None, None);
                    }
                }
                true
            }
            "call_expression" => {
                self.visit_call(node);
                true
            }
            "binary_expression" => {
                self.note_address_comparison(node);
                let identity = node
                    .child_by_field_id(FIELD.operator.get())
                    .is_some_and(|o| matches!(cx.text(o), "==" | "!="));
                if identity {
                    for side in [FIELD.left.get(), FIELD.right.get()] {
                        if let Some(operand) = node.child_by_field_id(side) {
                            self.note_address_only_use(operand);
                        }
                    }
                }
                true
            }
            "return_statement" => {
                if let Some(value) = node.named_child(0) {
                    self.returns.push(summarize(value, cx));
                }
                true
            }
            "if_statement" => {
                self.note_null_guard(node);
                if let Some(cond) = node.child_by_field_id(FIELD.condition.get()).map(unwrap) {
                    let negated = cond.kind_name() == "unary_expression"
                        && cond
                            .child_by_field_id(FIELD.operator.get())
                            .is_some_and(|o| cx.text(o) == "!");
                    match cond.child_by_field_id(FIELD.argument.get()) {
                        Some(tested) if negated => self.note_address_only_use(tested),
                        _ => self.note_address_only_use(cond),
                    }
                }
                true
            }
            "identifier" => {
                let name = cx.text(node);
                // An object-like project macro used as code (`PREAMBLE;`): its body counts here.
                if name
                    .as_bytes()
                    .first()
                    .is_some_and(|c| c.is_ascii_uppercase())
                    && self
                        .cx
                        .project
                        .definition(name)
                        .is_some_and(|d| d.params.is_none())
                {
                    self.expand_macro_call(node, name, None);
                }
                if let Some(uses) = self.local_uses.get_mut(name) {
                    uses.0 += 1;
                } else if self.locals.contains(name) {
                    self.local_uses.insert(name.to_string(), (1, 0));
                }
                if !self.locals.contains(name) && !self.referenced.contains(name) {
                    self.referenced.insert(name.to_string());
                    self.references.push(Reference {
                        name: name.to_string(),
                        span: cx.span(node),
                    });
                }
                false
            }
            "field_identifier"
            | "type_identifier"
            | "primitive_type"
            | "string_literal"
            | "number_literal"
            | "comment"
            | "char_literal"
            | "statement_identifier"
            | "type_descriptor" => false,
            _ => true,
        }
    }

    /// `encoding == &unicode_encoding`: comparing an address reads no memory behind it and
    /// lets no pointer out, so that `&x` is no escape (an ordering or a difference of two
    /// addresses neither).
    fn note_address_comparison(&mut self, node: Node) {
        let cx = self.cx;
        let compares = node
            .child_by_field_id(FIELD.operator.get())
            .is_some_and(|o| matches!(cx.text(o), "==" | "!=" | "<" | ">" | "<=" | ">="));
        if !compares {
            return;
        }
        for side in [FIELD.left.get(), FIELD.right.get()] {
            let Some(operand) = node.child_by_field_id(side).map(unwrap) else {
                continue;
            };
            let is_address = operand.kind_name() == "pointer_expression"
                && operand
                    .child_by_field_id(FIELD.operator.get())
                    .is_some_and(|o| cx.text(o) == "&");
            if is_address {
                self.handled.insert(operand.id());
            }
        }
    }

    fn visit_call(&mut self, node: Node) {
        let cx = self.cx;
        let Some(function) = node.child_by_field_id(FIELD.function.get()) else {
            return;
        };
        let callee = fold_ws(cx.text(function));
        if callee == crate::parse::CRITICAL_SECTION_MARKER {
            self.note_critical_section(node);
            return;
        }
        let arg_nodes: Vec<Node> = super::expr::call_arguments(node);
        for arg in &arg_nodes {
            let inner = unwrap(*arg);
            if inner.kind_name() == "pointer_expression"
                && inner
                    .child_by_field_id(FIELD.operator.get())
                    .is_some_and(|o| cx.text(o) == "&")
            {
                self.handled.insert(inner.id());
                if let Some(target) = inner.child_by_field_id(FIELD.argument.get()) {
                    // A call may write the local through its address.
                    if let Some((name, _)) = root_name(target, cx) {
                        self.pure_locals.remove(&name);
                    }
                    self.record_write(
                        target,
                        WriteKind::PassedByAddress,
                        None,
                        Some(callee.clone()),
                    );
                }
            }
        }
        if WRITES_FIRST_ARGUMENT.contains(&callee.as_str()) {
            if let Some(first) = arg_nodes
                .first()
                .map(|a| unwrap(*a))
                .filter(|a| a.kind_name() == "identifier")
            {
                self.record_write(
                    first,
                    WriteKind::PassedByAddress,
                    None,
                    Some(callee.clone()),
                );
            }
        }
        if ASSIGNING_MACROS.contains(&callee.as_str()) {
            if let Some(first) = arg_nodes.first() {
                let value = arg_nodes.get(1).map(|v| summarize(*v, cx));
                let written = arg_nodes
                    .get(1)
                    .map_or((Written::Unknown, Vec::new()), |v| {
                        classify_written(*v, cx, &self.locals, &self.pure_locals)
                    });
                self.record_write_value(*first, WriteKind::Assign, value, written);
            }
        }
        let project_code = || {
            self.cx
                .project
                .definition(&callee)
                .is_some_and(|d| d.params.is_some())
        };
        if self.cx.macros.defines(&callee) || project_code() {
            let texts: Vec<String> = arg_nodes.iter().map(|a| cx.text(*a).to_string()).collect();
            self.expand_macro_call(node, &callee, Some(&texts));
        }
        // Calls through a function name count as references too (the call graph needs them),
        // but the callee name itself is recorded here, not as a variable reference.
        if callee == "Py_REFCNT" {
            self.note_refcount_test(node, &arg_nodes);
        }
        let args = match arg_nodes.first() {
            // The GIL value is the second argument: the verdict reads it.
            // Both arguments: the capsule's pointer and its name (see
            // `model::classify::provided_capsule`).
            // Heap-type creation: the spec and the bases (a base's GC flag is inherited, see
            // `rules::heap_type_gc_protocol`).
            Some(_)
                if callee == "PyUnstable_Module_SetGIL"
                    || callee == "PyCapsule_New"
                    || HEAP_TYPE_CREATORS.contains(&callee.as_str()) =>
            {
                arg_nodes.iter().map(|a| summarize(*a, cx)).collect()
            }
            Some(first) if keeps_arguments(&callee) => vec![summarize(*first, cx)],
            _ => Vec::new(),
        };
        let field_arguments = if args.is_empty() && !keeps_arguments(&callee) {
            self.field_arguments(&arg_nodes)
        } else {
            Vec::new()
        };
        self.calls.push(Call {
            callee,
            args,
            field_arguments,
            span: cx.span(node),
            assigned_to: self.assigned_to.get(&node.id()).cloned(),
            versions: cx.versions(node),
            uncertain: cx.uncertain(node),
        });
    }

    /// The pre-pass turned `Py_BEGIN_CRITICAL_SECTION(obj)` into `{marker(obj);`: the
    /// enclosing block is the critical section.
    fn note_critical_section(&mut self, node: Node) {
        let cx = self.cx;
        let Some(block) = node
            .parent()
            .and_then(|stmt| stmt.parent())
            .filter(|b| b.kind_name() == "compound_statement")
        else {
            return;
        };
        let objects = node
            .child_by_field_id(FIELD.arguments.get())
            .map(|a| {
                let mut c = a.walk();
                a.named_children(&mut c)
                    .filter(|n| n.kind_name() != "comment")
                    .map(|n| fold_ws(cx.text(n)))
                    .collect()
            })
            .unwrap_or_default();
        self.threading.critical_sections.push(CriticalSection {
            objects,
            span: cx.span(block),
        });
    }

    /// `Py_REFCNT(x) == 1` (and `!= 1`, `> 1`, `<= 1`, `< 2`): a uniqueness test.
    fn note_refcount_test(&mut self, node: Node, args: &[Node]) {
        let cx = self.cx;
        let Some(first) = args.first() else { return };
        let Some(parent) = node
            .parent()
            .filter(|p| p.kind_name() == "binary_expression")
        else {
            return;
        };
        let op = parent
            .child_by_field_id(FIELD.operator.get())
            .map(|o| cx.text(o))
            .unwrap_or("");
        let other = if parent.child_by_field_id(FIELD.left.get()) == Some(node) {
            parent.child_by_field_id(FIELD.right.get())
        } else {
            parent.child_by_field_id(FIELD.left.get())
        };
        let number = other.map(|o| cx.text(unwrap(o)).trim()).unwrap_or("");
        let is_uniqueness = matches!(
            (op, number),
            ("==" | "!=" | ">" | "<=", "1") | ("<" | ">=", "2")
        );
        // `assert(Py_REFCNT(x) == 1)` checks an invariant; it decides nothing.
        let in_assert = parent
            .parent()
            .filter(|a| a.kind_name() == "argument_list")
            .and_then(|a| a.parent())
            .and_then(|c| c.child_by_field_id(FIELD.function.get()))
            .is_some_and(|callee| {
                matches!(cx.text(callee), "assert" | "Py_ASSERT" | "_PyObject_ASSERT")
            });
        if is_uniqueness && !in_assert {
            self.threading.refcount_tests.push(RefcountTest {
                object: fold_ws(cx.text(*first)),
                span: cx.span(parent),
                versions: cx.versions(parent),
                uncertain: cx.uncertain(parent),
            });
        }
    }

    /// `if (x == NULL)`, `if (!x)`, `if (NULL == x)`, `if (x == 0)` on a name that is not a
    /// local: the consequence is where a lazy initialisation would be.
    fn note_null_guard(&mut self, node: Node) {
        let cx = self.cx;
        let (Some(cond), Some(body)) = (
            node.child_by_field_id(FIELD.condition.get()),
            node.child_by_field_id(FIELD.consequence.get()),
        ) else {
            return;
        };
        let cond = unwrap(cond);
        let tested = match cond.kind_name() {
            "unary_expression"
                if cond
                    .child_by_field_id(FIELD.operator.get())
                    .is_some_and(|o| cx.text(o) == "!") =>
            {
                cond.child_by_field_id(FIELD.argument.get())
            }
            "binary_expression"
                if cond
                    .child_by_field_id(FIELD.operator.get())
                    .is_some_and(|o| cx.text(o) == "==") =>
            {
                let (l, r) = (
                    cond.child_by_field_id(FIELD.left.get()).map(unwrap),
                    cond.child_by_field_id(FIELD.right.get()).map(unwrap),
                );
                let is_nothing = |n: Option<Node>| {
                    n.is_some_and(|n| matches!(cx.text(n).trim(), "NULL" | "0" | "nullptr"))
                };
                if is_nothing(r) {
                    l
                } else if is_nothing(l) {
                    r
                } else {
                    None
                }
            }
            _ => None,
        };
        let Some(tested) = tested.map(unwrap) else {
            return;
        };
        // `if ((t = st->cache[i]) == NULL)` tests what it assigns.
        let assigned = (tested.kind_name() == "assignment_expression")
            .then(|| tested.child_by_field_id(FIELD.right.get()))
            .flatten();
        if let Some((field, _)) = field_access(assigned.unwrap_or(tested), cx) {
            self.field_guards.push((field, cx.span(body)));
            return;
        }
        if tested.kind_name() != "identifier" {
            return;
        }
        let name = cx.text(tested);
        if self.locals.contains(name) {
            return;
        }
        self.threading.null_guards.push(NullGuard {
            name: name.to_string(),
            body: cx.span(body),
        });
    }

    /// `st->f = ...` or `st->f[i] = ...` in the branch of an `if` that found the same field
    /// NULL (`ThreadingFacts::lazy_field_fills`), with what the function shows of the pointer.
    fn note_lazy_field_fill(&mut self, left: Node, assignment: Node) {
        if self.field_guards.is_empty() {
            return;
        }
        let cx = self.cx;
        let Some((field, object)) = field_access(left, cx) else {
            return;
        };
        let span = cx.span(assignment);
        let guarded = self
            .field_guards
            .iter()
            .any(|(f, body)| *f == field && body.start <= span.start && span.end <= body.end);
        if !guarded {
            return;
        }
        let mut object = object;
        while object.kind_name() == "parenthesized_expression" {
            match object.named_child(0) {
                Some(inner) => object = inner,
                None => break,
            }
        }
        let bare = |t: &str| {
            let t = fold_ws(t);
            let t = t.trim_end_matches(|c: char| c == '*' || c.is_whitespace());
            t.strip_prefix("struct ").unwrap_or(t).trim().to_string()
        };
        let (base_type, base_call) = match object.kind_name() {
            "cast_expression" => (
                object
                    .child_by_field_id(FIELD.ty.get())
                    .map(|t| bare(cx.text(t))),
                None,
            ),
            "call_expression" => (
                None,
                object
                    .child_by_field_id(FIELD.function.get())
                    .map(|f| cx.text(f).to_string()),
            ),
            "identifier" => (
                declared_type(object, cx.text(object), cx).map(|t| bare(&t)),
                None,
            ),
            _ => (None, None),
        };
        self.threading.lazy_field_fills.push(LazyFieldFill {
            field,
            base_type,
            base_call,
            span,
            versions: cx.versions(assignment),
            uncertain: cx.uncertain(assignment),
        });
    }

    /// `Info info = {.list = x, ...}`: the fields a local struct's initializer stores
    /// something other than `NULL`/`0` into are written through a local (as
    /// `FieldStore { value: None }`); a positional entry, whose field is not known here,
    /// marks the whole type (`{Info}`).
    fn note_local_initializer(&mut self, declaration: Node, list: Node) {
        let cx = self.cx;
        let is_nothing = |v: Node| matches!(cx.text(unwrap(v)).trim(), "NULL" | "0" | "nullptr");
        let mut stores = Vec::new();
        let mut c = list.walk();
        for entry in list.named_children(&mut c) {
            match entry.kind_name() {
                "comment" => {}
                "initializer_pair" => {
                    let field = entry
                        .child_by_field_id(FIELD.designator.get())
                        .filter(|d| d.kind_name() == "field_designator")
                        .and_then(|d| d.named_child(0))
                        .map(|f| cx.text(f).to_string());
                    let value = entry.child_by_field_id(FIELD.value.get());
                    if value.is_some_and(is_nothing) {
                        continue;
                    }
                    match field {
                        Some(field) => stores.push(field),
                        None => stores.push(String::new()),
                    }
                }
                _ if is_nothing(entry) => {}
                _ => stores.push(String::new()),
            }
        }
        let type_name = declaration
            .child_by_field_id(FIELD.ty.get())
            .map(|t| fold_ws(cx.text(t)))
            .unwrap_or_default();
        let type_name = type_name.strip_prefix("struct ").unwrap_or(&type_name);
        for field in stores {
            let field = if field.is_empty() {
                format!("{{{type_name}}}")
            } else {
                field
            };
            let store = FieldStore { field, value: None };
            if !self.fields_written_through_locals.contains(&store) {
                self.fields_written_through_locals.push(store);
            }
        }
    }

    /// The arguments `p->f` / `p.f` with `p` a local or parameter (`Call::field_arguments`).
    fn field_arguments(&self, arg_nodes: &[Node]) -> Vec<FieldArgument> {
        let cx = self.cx;
        let mut out = Vec::new();
        for (index, arg) in arg_nodes.iter().enumerate() {
            let arg = unwrap(*arg);
            if arg.kind_name() != "field_expression" {
                continue;
            }
            let (Some(object), Some(field)) = (
                arg.child_by_field_id(FIELD.argument.get()).map(unwrap),
                arg.child_by_field_id(FIELD.field.get()),
            ) else {
                continue;
            };
            if object.kind_name() == "identifier" && self.locals.contains(cx.text(object)) {
                out.push(FieldArgument {
                    index,
                    field: cx.text(field).to_string(),
                });
            }
        }
        out
    }

    /// `obj->field = &global`: the address goes into a field of an object, and nowhere else
    /// (`WriteSite::stored_in_field`). The model decides whether that lets a writer reach it.
    fn note_address_stored_in_field(&mut self, left: Node, right: Node) {
        let cx = self.cx;
        let (left, right) = (unwrap(left), unwrap(right));
        if left.kind_name() != "field_expression"
            || right.kind_name() != "pointer_expression"
            || self.handled.contains(&right.id())
            || right
                .child_by_field_id(FIELD.operator.get())
                .is_none_or(|o| cx.text(o) != "&")
        {
            return;
        }
        let (Some(field), Some(target)) = (
            left.child_by_field_id(FIELD.field.get()),
            right.child_by_field_id(FIELD.argument.get()),
        ) else {
            return;
        };
        let before = self.writes.len();
        self.record_write(target, WriteKind::AddressTaken, None, None);
        self.handled.insert(right.id());
        if let Some(site) = self.writes.get_mut(before) {
            site.stored_in_field = Some(cx.text(field).to_string());
        }
    }

    /// `local = &global...`: remember the alias, and do not count the `&` as an escape.
    fn note_alias(&mut self, local: &str, value: Node) {
        let cx = self.cx;
        let takes_address = value.kind_name() == "pointer_expression"
            && value
                .child_by_field_id(FIELD.operator.get())
                .is_some_and(|o| cx.text(o) == "&");
        if !takes_address {
            self.aliases.remove(local);
            return;
        }
        let Some((global, _)) = value
            .child_by_field_id(FIELD.argument.get())
            .and_then(|a| root_name(a, cx))
        else {
            return;
        };
        if !self.locals.contains(&global) {
            self.handled.insert(value.id());
            self.aliases.insert(local.to_string(), global);
        }
    }

    fn record_write(
        &mut self,
        target: Node,
        kind: WriteKind,
        value: Option<Expr>,
        via_call: Option<String>,
    ) {
        self.push_write(
            target,
            kind,
            value,
            via_call,
            (Written::Unknown, Vec::new()),
        );
    }

    /// A write whose value the walk classified (`x = value`).
    fn record_write_value(
        &mut self,
        target: Node,
        kind: WriteKind,
        value: Option<Expr>,
        written: (Written, Vec<String>),
    ) {
        self.push_write(target, kind, value, None, written);
    }

    fn push_write(
        &mut self,
        target: Node,
        kind: WriteKind,
        value: Option<Expr>,
        via_call: Option<String>,
        written: (Written, Vec<String>),
    ) {
        let cx = self.cx;
        let Some((mut name, root)) = root_name(target, cx) else {
            return;
        };
        let outer = unwrap(target);
        if !kind.escapes() {
            if let Some((object, field)) = method_def_through_object(outer, cx) {
                self.definition_writes.push(WriteSite {
                    target: object,
                    kind: WriteKind::FieldWrite,
                    field: Some(field),
                    value,
                    via_call,
                    stored_in_field: None,
                    index: None,
                    written: written.0,
                    reads: written.1,
                    span: cx.span(target),
                    versions: cx.versions(target),
                    uncertain: cx.uncertain(target),
                });
                return;
            }
        }
        if self.locals.contains(&name) {
            // Writing through a local that points at a global writes the global; assigning
            // the local itself does not.
            match self.aliases.get(&name) {
                Some(global) if root.id() != outer.id() && !kind.escapes() => name = global.clone(),
                _ => {
                    if let Some(field) = written_field(outer, cx) {
                        let stored = match value.as_ref().map(|v| &v.kind) {
                            _ if kind != WriteKind::Assign => None,
                            Some(ExprKind::Call { callee }) => Some(callee.clone()),
                            Some(ExprKind::Null) => Some("NULL".to_string()),
                            _ => None,
                        };
                        let store = FieldStore {
                            field: field.to_string(),
                            value: stored,
                        };
                        if !self.fields_written_through_locals.contains(&store) {
                            self.fields_written_through_locals.push(store);
                        }
                    }
                    return;
                }
            }
        }
        if outer.kind_name() == "pointer_expression"
            && outer
                .child_by_field_id(FIELD.argument.get())
                .map(unwrap)
                .is_some_and(|a| a.kind_name() != "identifier")
        {
            return;
        }
        let (kind, field) = if root.id() == outer.id() || kind.escapes() {
            (kind, None)
        } else {
            match outer.kind_name() {
                "field_expression" => (
                    WriteKind::FieldWrite,
                    outer
                        .child_by_field_id(FIELD.field.get())
                        .map(|f| cx.text(f).to_string()),
                ),
                _ => (WriteKind::ElementWrite, None),
            }
        };
        // `x.f++` or `x[i] = ...` through a pointer: the value is known, where it goes is.
        let (written, mut reads) = written;
        let index = match outer.kind_name() {
            "subscript_expression" if kind == WriteKind::ElementWrite => {
                outer.child_by_field_id(FIELD.index.get()).and_then(|i| {
                    let (class, index_reads) =
                        classify_written(i, cx, &self.locals, &self.pure_locals);
                    (class == Written::Constant).then(|| {
                        reads.extend(index_reads);
                        fold_ws(cx.text(i))
                    })
                })
            }
            _ => None,
        };
        self.writes.push(WriteSite {
            target: name,
            kind,
            field,
            value,
            via_call,
            stored_in_field: None,
            index,
            written,
            reads,
            span: cx.span(target),
            versions: cx.versions(target),
            uncertain: cx.uncertain(target),
        });
    }
}

/// The field a write through a pointer changes: `f` for `p->f = ...`, `p->f[i] = ...`,
/// `p->a.f++` and `*p->f = ...` (the last writes what `f` points at: counted as `f`, which
/// errs on the side of a write).
fn written_field<'t>(target: Node<'t>, cx: &Cx<'t>) -> Option<&'t str> {
    let mut node = unwrap(target);
    for _ in 0..64 {
        node = match node.kind_name() {
            "field_expression" => {
                return node
                    .child_by_field_id(FIELD.field.get())
                    .map(|f| cx.text(f));
            }
            "subscript_expression" | "pointer_expression" => {
                unwrap(node.child_by_field_id(FIELD.argument.get())?)
            }
            _ => return None,
        };
    }
    None
}

/// `obj->m_ml->ml_meth` (casts and parentheses allowed): a field of the `PyMethodDef` a
/// builtin function object points at. Returns the text that reaches the table (`obj->m_ml`,
/// whitespace folded) and the field written.
fn method_def_through_object(outer: Node, cx: &Cx) -> Option<(String, String)> {
    if outer.kind_name() != "field_expression" {
        return None;
    }
    let field = cx.text(outer.child_by_field_id(FIELD.field.get())?);
    let table = unwrap(outer.child_by_field_id(FIELD.argument.get())?);
    if table.kind_name() != "field_expression"
        || table
            .child_by_field_id(FIELD.field.get())
            .is_none_or(|f| cx.text(f) != "m_ml")
    {
        return None;
    }
    Some((fold_ws(cx.text(table)), field.to_string()))
}

/// A name that reads like a macro or an enum constant (`Py_TPFLAGS_DEFAULT`, `BIG_ENDIAN`): a
/// local initialised from it holds a fixed value. (A global's value may change.)
fn looks_constant(name: &str) -> bool {
    name.bytes().any(|b| b.is_ascii_uppercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// The kinds [`reassigned_names`] reads, by kind id: it sees every node of every function,
/// and `Node::kind` measures and validates the name on each call.
#[derive(Clone, Copy, PartialEq)]
enum Reassigns {
    Assignment,
    Update,
    Pointer,
    Other,
}

static REASSIGNS: LazyLock<Vec<Reassigns>> = LazyLock::new(|| {
    kind_table(|name, _| match name {
        "assignment_expression" => Reassigns::Assignment,
        "update_expression" => Reassigns::Update,
        "pointer_expression" => Reassigns::Pointer,
        _ => Reassigns::Other,
    })
});

/// The roots of every assignment's left side, update's argument and `&` operand in `body`.
fn reassigned_names(body: Node, cx: &Cx) -> HashSet<String> {
    let mut out = HashSet::default();
    let mut stack = vec![body];
    // A bounded walk: a huge function costs no more than its nodes.
    let mut budget = 200_000usize;
    let kinds: &[Reassigns] = &REASSIGNS;
    let mut c = body.walk();
    while let Some(node) = stack.pop() {
        budget = budget.saturating_sub(1);
        if budget == 0 {
            break;
        }
        let kind = match kinds.get(node.kind_id() as usize) {
            Some(kind) => *kind,
            None => Reassigns::Other,
        };
        let target = match kind {
            Reassigns::Assignment => node.child_by_field_id(FIELD.left.get()),
            Reassigns::Update => node.child_by_field_id(FIELD.argument.get()),
            Reassigns::Pointer
                if node
                    .child_by_field_id(FIELD.operator.get())
                    .is_some_and(|o| cx.text(o) == "&")
                    && !read_through(node, cx) =>
            {
                node.child_by_field_id(FIELD.argument.get())
            }
            _ => None,
        };
        if let Some((name, _)) = target.and_then(|t| root_name(t, cx)) {
            out.insert(name);
        }
        if node.child_count() > 0 {
            stack.extend(node.children(&mut c));
        }
    }
    out
}

/// `*(char *)&one`: the address is only read through, never kept or handed on.
fn read_through(address: Node, cx: &Cx) -> bool {
    let mut node = address;
    for _ in 0..16 {
        let Some(parent) = node.parent() else {
            return false;
        };
        match parent.kind() {
            "parenthesized_expression" | "cast_expression" => node = parent,
            "pointer_expression" => {
                return parent
                    .child_by_field_id(FIELD.operator.get())
                    .is_some_and(|o| cx.text(o) == "*")
            }
            _ => return false,
        }
    }
    false
}

/// Whether `param` stands as a statement of its own in a macro body (`BEGIN x; END`): followed
/// by `;` and preceded by nothing, `;`, a brace or a name other than `return` (a block macro).
/// Such an argument is code the expansion must see.
fn is_statement_parameter(body: &str, param: &str) -> bool {
    let bytes = body.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut from = 0;
    while let Some(at) = body[from..].find(param).map(|i| from + i) {
        from = at + param.len();
        let end = at + param.len();
        if (at > 0 && is_ident(bytes[at - 1])) || bytes.get(end).is_some_and(|b| is_ident(*b)) {
            continue;
        }
        if body[end..].trim_start().starts_with(';') {
            let before = body[..at].trim_end();
            let word_start = before
                .bytes()
                .rposition(|b| !is_ident(b))
                .map_or(0, |i| i + 1);
            let word = &before[word_start..];
            let ok = before.is_empty()
                || before.ends_with([';', '{', '}'])
                || (!word.is_empty() && word != "return");
            if ok {
                return true;
            }
        }
    }
    false
}

/// Whether a macro body names a project macro the pre-pass rewrites (not one only expanded).
fn uses_project_macro(body: &str, project: &crate::parse::macros::ProjectMacros) -> bool {
    body.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .any(|word| {
            // A code macro in the body is expanded by the walker where it is called.
            !word.is_empty() && !matches!(project.role(word), None | Some(Role::Code))
        })
}

/// `p->f` or `p->f[i]`: the field and the expression before the arrow.
fn field_access<'t>(node: Node<'t>, cx: &Cx) -> Option<(String, Node<'t>)> {
    let mut node = unwrap(node);
    if node.kind_name() == "subscript_expression" {
        node = unwrap(node.child_by_field_id(FIELD.argument.get())?);
    }
    if node.kind_name() != "field_expression"
        || node
            .child_by_field_id(FIELD.operator.get())
            .is_none_or(|o| cx.text(o) != "->")
    {
        return None;
    }
    let field = cx
        .text(node.child_by_field_id(FIELD.field.get())?)
        .to_string();
    Some((field, node.child_by_field_id(FIELD.argument.get())?))
}

/// The type `name` is declared with in a block around `at` or among the parameters of the
/// function around it (`mod_state *` for `mod_state *st = get_state(m);`). Only asked for the
/// rare lazy fill, so it reads the tree upwards instead of keeping every local's type.
fn declared_type(at: Node, name: &str, cx: &Cx) -> Option<String> {
    let mut up = at.parent();
    while let Some(n) = up {
        match n.kind_name() {
            "compound_statement" => {
                let mut c = n.walk();
                for decl in n
                    .named_children(&mut c)
                    .filter(|d| d.kind_name() == "declaration")
                {
                    let mut dc = decl.walk();
                    let declares = decl
                        .children_by_field_id(FIELD.declarator, &mut dc)
                        .any(|d| shape_of(d, cx).name.as_deref() == Some(name));
                    if declares {
                        return decl
                            .child_by_field_id(FIELD.ty.get())
                            .map(|t| cx.text(t).to_string());
                    }
                }
            }
            "function_definition" => {
                let mut d = n.child_by_field_id(FIELD.declarator.get());
                while let Some(node) = d {
                    if node.kind_name() == "function_declarator" {
                        break;
                    }
                    d = node.child_by_field_id(FIELD.declarator.get());
                }
                let params = d?.child_by_field_id(FIELD.parameters.get())?;
                let mut c = params.walk();
                return params
                    .named_children(&mut c)
                    .filter(|p| p.kind_name() == "parameter_declaration")
                    .find(|p| {
                        p.child_by_field_id(FIELD.declarator.get())
                            .is_some_and(|d| shape_of(d, cx).name.as_deref() == Some(name))
                    })
                    .and_then(|p| p.child_by_field_id(FIELD.ty.get()))
                    .map(|t| cx.text(t).to_string());
            }
            _ => {}
        }
        up = n.parent();
    }
    None
}
