//! Facts: what one C file declares, defines and does, as plain data. This layer is the only one
//! that touches tree-sitter nodes; everything after it (model, rules, reporters) reads these
//! types.

pub mod cpp;
mod declarator;
mod expr;
mod extract;
mod fields;
mod function;
mod initializer;
mod macros;
mod structs;

pub use extract::extract;
pub use function::HEAP_TYPE_CREATORS;
pub(crate) use initializer::NUMERIC_TABLE_MIN;

use crate::discover::SourceKind;
use crate::parse::ParseErrors;
use crate::version::VersionRange;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A source range. Lines and columns are 1-based; columns count bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Span {
    pub start: usize,
    pub end: usize,
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileFacts {
    pub path: PathBuf,
    pub kind: SourceKindFact,
    pub bytes: usize,
    pub lines: usize,
    pub parse_errors: ParseErrors,
    /// 1-based line of the first parse error.
    pub first_error_line: Option<usize>,
    /// Where the first parse error starts.
    #[serde(default)]
    pub first_error: Option<Span>,
    /// Every `PyInit_<name>` in the text, read or not: a module the parser lost still shows
    /// here.
    #[serde(default)]
    pub init_mentions: Vec<InitMention>,
    /// The text names the Python C API (`PyObject`, `Py_INCREF`, `_Py...`) and does not read
    /// as C++ (`template <`, `namespace x {` outside `#ifdef __cplusplus`): a file whose loss
    /// can hide extension state. A Fortran include or a C++ helper header is not one.
    #[serde(default)]
    pub python_c_code: bool,
    pub first_invalid_utf8: Option<usize>,
    /// A marker near the top says a tool wrote the file.
    #[serde(default)]
    pub generated: bool,
    pub includes: Vec<Include>,
    pub macros: Vec<MacroDef>,
    pub variables: Vec<Variable>,
    pub functions: Vec<Function>,
    /// Prototypes and `extern` function declarations: name only.
    pub function_declarations: Vec<String>,
    /// The prototypes among them whose head exports the function (see
    /// [`Function::exported`]): `PyAPI_FUNC(int) f(void);` in a header, the definition plain.
    #[serde(default)]
    pub exported_declarations: Vec<String>,
    pub structs: Vec<StructDef>,
    /// Macro calls that stand alone at file scope, e.g. `_Py_IDENTIFIER(name);`.
    pub file_scope_calls: Vec<Call>,
    /// The names of the capsules this file makes from a static table of fixed values
    /// (`model::fixed_capsules`): derived by the model when the file is read, kept when its
    /// other facts are not loaded, so that every module can judge a capsule import by them.
    #[serde(skip)]
    pub fixed_capsules: Vec<String>,
}

impl FileFacts {
    /// A file whose facts are not loaded: its path and kind, nothing found in it.
    pub fn placeholder(path: PathBuf, kind: SourceKindFact) -> Self {
        Self {
            path,
            kind,
            bytes: 0,
            lines: 0,
            parse_errors: ParseErrors::default(),
            first_error_line: None,
            first_error: None,
            init_mentions: Vec::new(),
            python_c_code: false,
            first_invalid_utf8: None,
            generated: false,
            includes: Vec::new(),
            macros: Vec::new(),
            variables: Vec::new(),
            functions: Vec::new(),
            function_declarations: Vec::new(),
            exported_declarations: Vec::new(),
            structs: Vec::new(),
            file_scope_calls: Vec::new(),
            fixed_capsules: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitMention {
    /// `PyInit_foo`.
    pub name: String,
    pub span: Span,
    /// The parameter list is followed by `{`: a definition, not a prototype or a call.
    pub definition: bool,
    /// Inside an ERROR node.
    pub in_error: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SourceKindFact {
    C,
    Header,
    Clinic,
    Inc,
}

impl From<SourceKind> for SourceKindFact {
    fn from(kind: SourceKind) -> Self {
        match kind {
            SourceKind::C => SourceKindFact::C,
            SourceKind::Header => SourceKindFact::Header,
            SourceKind::Clinic => SourceKindFact::Clinic,
            SourceKind::Inc => SourceKindFact::Inc,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Include {
    pub target: String,
    /// `<...>` rather than `"..."`.
    pub system: bool,
    pub line: usize,
    /// `false` in code no build compiles (`#if 0`, a switch the project turns off): the
    /// target is then no file of the module.
    #[serde(default = "compiled_by_default")]
    pub compiled: bool,
}

fn compiled_by_default() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MacroDef {
    pub name: String,
    pub params: Option<Vec<String>>,
    pub body: String,
    pub span: Span,
    pub versions: VersionRange,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Variable {
    pub name: String,
    /// The declarator's name.
    pub span: Span,
    /// The whole declaration.
    pub decl_span: Span,
    pub is_static: bool,
    pub is_extern: bool,
    pub is_thread_local: bool,
    /// `const` on the base type (`const char *s`: true).
    pub type_const: bool,
    pub is_volatile: bool,
    /// `_Atomic` qualifier or an atomic type (`atomic_int`, `_Py_atomic_int`).
    #[serde(default)]
    pub is_atomic: bool,
    /// The base type as written, typedef names and macros kept: `PyObject`, `struct foo`.
    pub type_name: String,
    /// Pointer levels from the outermost `*` written to the one nearest the name, with the
    /// const-ness of each.
    pub pointers: Vec<bool>,
    pub array_dims: usize,
    pub is_function_pointer: bool,
    /// Fields of a struct type written inline (`static struct { PyObject *a; } s;`).
    pub inline_fields: Vec<Field>,
    /// `Some` for a function-local `static`.
    pub function: Option<String>,
    pub init: Option<Init>,
    pub versions: VersionRange,
    /// Overlaps a parse error.
    pub uncertain: bool,
}

impl Variable {
    /// The storage the name denotes can never change.
    pub fn is_immutable(&self) -> bool {
        match self.pointers.last() {
            Some(&own_const) => own_const,
            None => self.type_const,
        }
    }
    pub fn is_definition(&self) -> bool {
        !self.is_extern || self.init.is_some()
    }
    /// `PyObject *`, `PyTypeObject *x[]`...: the declared type, with pointers and arrays.
    pub fn type_display(&self) -> String {
        let mut out = String::new();
        if self.type_const {
            out.push_str("const ");
        }
        out.push_str(&self.type_name);
        if !self.pointers.is_empty() {
            out.push(' ');
        }
        for &c in &self.pointers {
            out.push('*');
            if c {
                out.push_str("const ");
            }
        }
        out
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Field {
    pub name: String,
    pub type_name: String,
    pub pointers: usize,
    pub array_dims: usize,
    pub line: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StructDef {
    /// The struct tag, and the typedef names it goes by.
    pub names: Vec<String>,
    pub fields: Vec<Field>,
    pub span: Span,
}

impl StructDef {
    /// Starts with `PyObject_HEAD` (or an `ob_base` field): instances are Python objects.
    pub fn is_object_layout(&self) -> bool {
        self.fields.first().is_some_and(|f| {
            f.pointers == 0
                && (f.name == "ob_base"
                    || matches!(
                        f.type_name.as_str(),
                        "PyObject" | "PyVarObject" | "PyObject_HEAD"
                    ))
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Init {
    Expr(Expr),
    List(InitList),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitList {
    pub entries: Vec<InitEntry>,
    /// Entries were not extracted (a large data table of a type isolint does not read).
    pub opaque: bool,
    pub span: Span,
    /// An opaque table of numbers and a few names (a codec's mapping, where `N` stands for
    /// "no character"): the names it holds, each once, so that what the table names is still
    /// known. `None` for any other list.
    pub names: Option<Vec<String>>,
}

impl InitList {
    /// Every name the list holds is known: its entries were read, or it is a data table whose
    /// names were kept.
    pub fn names_known(&self) -> bool {
        !self.opaque || self.names.is_some()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitEntry {
    /// `m_name` for `.m_name = ...`, `[3]` for `[3] = ...`, `None` when positional.
    pub designator: Option<String>,
    pub value: Init,
    pub versions: VersionRange,
    /// In a non-first branch of a non-version `#if` (a second spelling of the same entry).
    pub alternative: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Expr {
    /// Source text, whitespace folded, cut at 160 characters.
    pub text: String,
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ExprKind {
    Ident(String),
    /// `&name` (or `&name[...]`, `&name.field`).
    AddressOf(String),
    Call {
        callee: String,
    },
    Number(Option<i64>),
    Str,
    Null,
    SizeOf(String),
    Other,
}

impl Expr {
    pub fn ident(&self) -> Option<&str> {
        match &self.kind {
            ExprKind::Ident(name) | ExprKind::AddressOf(name) => Some(name),
            _ => None,
        }
    }
    pub fn callee(&self) -> Option<&str> {
        match &self.kind {
            ExprKind::Call { callee } => Some(callee),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Param {
    pub name: Option<String>,
    pub type_name: String,
    pub pointers: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Function {
    pub name: String,
    /// The name in the function's head.
    pub span: Span,
    /// The whole definition.
    pub def_span: Span,
    pub is_static: bool,
    pub return_type: String,
    pub params: Vec<Param>,
    /// The head is a macro call, e.g. `MOD_INIT(foo) { ... }`: (macro, arguments).
    pub macro_head: Option<(String, Vec<String>)>,
    /// Its head exports it from the shared object or has the loader call it
    /// (`__declspec(dllexport)`, `visibility("default")`, `PyMODINIT_FUNC`, a project macro
    /// that expands to one, `__attribute__((constructor))`): code outside the scan may call it.
    /// Never for a `static` function.
    #[serde(default)]
    pub exported: bool,
    /// Names used in the body that are not parameters or locals (globals, functions, macros),
    /// with the first place each is used.
    pub references: Vec<Reference>,
    pub writes: Vec<WriteSite>,
    /// Writes into a definition reached through an object rather than a variable:
    /// `((PyCFunctionObject *)func)->m_ml->ml_meth = f;` patches the `PyMethodDef` a builtin
    /// function was made from. `target` is the expression that reaches it (`func->m_ml`).
    #[serde(default)]
    pub definition_writes: Vec<WriteSite>,
    pub calls: Vec<Call>,
    pub returns: Vec<Expr>,
    /// The fields written through a local or a parameter (`p->f = ...`, `p->f[i]++`,
    /// `&p->f` passed to a call), each field and value once: the struct behind the pointer is
    /// not known here, so a table whose fields none of these name is not written through any
    /// pointer.
    #[serde(default)]
    pub fields_written_through_locals: Vec<FieldStore>,
    /// What free-threading rules read: critical sections, uniqueness tests, null-guarded
    /// blocks. Empty for most functions.
    #[serde(default)]
    pub threading: ThreadingFacts,
    pub versions: VersionRange,
    pub uncertain: bool,
}

/// The few statement shapes free-threading rules need, kept apart from `calls` and `writes`
/// so that no fact every function carries grows.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ThreadingFacts {
    /// `Py_BEGIN_CRITICAL_SECTION(obj) ... Py_END_CRITICAL_SECTION()` blocks.
    pub critical_sections: Vec<CriticalSection>,
    /// `Py_REFCNT(x) == 1` and its spellings (`!= 1`, `> 1`, `<= 1`, `< 2`).
    pub refcount_tests: Vec<RefcountTest>,
    /// `if (x == NULL) { ... }`, `if (!x) ...`, `if (x == 0) ...` on a name that is not a
    /// local: the body is where lazy initialisation happens.
    pub null_guards: Vec<NullGuard>,
    /// Locals that receive the result of a C API call (`item = PyDict_GetItem(d, k);`) and
    /// are otherwise only compared (`item == NULL`, `item != Py_None`), tested (`if (item)`,
    /// `if (!item)`) or assigned: the object behind them is never used, only its address.
    #[serde(default)]
    pub compared_only: Vec<String>,
    /// Stores into a field reached through a pointer (`st->cache = ...`,
    /// `st->cache[i] = ...`) in the body of an `if` that tests the same field for NULL
    /// (`if (st->cache == NULL)`, `if ((t = st->cache[i]) == NULL)`): a struct field filled
    /// lazily. Which struct it is (module state or not) is for the rules to say.
    #[serde(default)]
    pub lazy_field_fills: Vec<LazyFieldFill>,
}

impl ThreadingFacts {
    pub fn is_empty(&self) -> bool {
        self.critical_sections.is_empty()
            && self.refcount_tests.is_empty()
            && self.null_guards.is_empty()
            && self.compared_only.is_empty()
            && self.lazy_field_fills.is_empty()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CriticalSection {
    /// The argument texts, whitespace folded: one object, or two for
    /// `Py_BEGIN_CRITICAL_SECTION2(a, b)`.
    pub objects: Vec<String>,
    /// The block the section covers.
    pub span: Span,
}

impl CriticalSection {
    pub fn covers(&self, at: &Span) -> bool {
        self.span.start <= at.start && at.end <= self.span.end
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefcountTest {
    /// The argument of `Py_REFCNT`, as written.
    pub object: String,
    /// The whole comparison.
    pub span: Span,
    pub versions: VersionRange,
    pub uncertain: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NullGuard {
    /// The name tested (a global or a function-local static).
    pub name: String,
    /// The branch taken when it is NULL (or zero).
    pub body: Span,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LazyFieldFill {
    /// The field stored into (`cache` for `st->cache[i] = t`).
    pub field: String,
    /// What the pointer is, as far as the function shows: a local's or parameter's declared
    /// type, or a cast's (`mod_state` for `mod_state *st` or `((mod_state *)p)->cache`),
    /// `struct ` and `*` taken off.
    pub base_type: Option<String>,
    /// The call that returns the pointer (`get_state` for `get_state(m)->cache = t`).
    pub base_call: Option<String>,
    /// The whole assignment.
    pub span: Span,
    pub versions: VersionRange,
    pub uncertain: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reference {
    pub name: String,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteKind {
    Assign,
    CompoundAssign,
    IncDec,
    /// `&x` taken outside a call.
    AddressTaken,
    /// `&x` passed to a call, which may write through it.
    PassedByAddress,
    ElementWrite,
    FieldWrite,
}

impl WriteKind {
    /// What happens to the variable, as a predicate: "`x` is assigned", "`x` has a field
    /// written".
    pub fn describe(self) -> &'static str {
        match self {
            WriteKind::Assign => "is assigned",
            WriteKind::CompoundAssign => "is updated",
            WriteKind::IncDec => "is incremented or decremented",
            WriteKind::AddressTaken => "has its address taken",
            WriteKind::PassedByAddress => "is passed by address",
            WriteKind::ElementWrite => "has an element written",
            WriteKind::FieldWrite => "has a field written",
        }
    }
    pub fn escapes(self) -> bool {
        matches!(self, WriteKind::AddressTaken | WriteKind::PassedByAddress)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WriteSite {
    /// The variable written (the root of `x`, `x[i]`, `x->f`).
    pub target: String,
    pub kind: WriteKind,
    /// For `x.f = ...` / `x->f = ...`: the field.
    pub field: Option<String>,
    /// The assigned value, when there is one.
    pub value: Option<Expr>,
    /// The call that receives `&x`, for `PassedByAddress`.
    pub via_call: Option<String>,
    /// For `AddressTaken`: the field of an object the address is stored into, when that is
    /// what happens to it (`self->encoding = &unicode_encoding;`).
    #[serde(default)]
    pub stored_in_field: Option<String>,
    /// For `x[i] = ...`: the index as written, when it is a C constant (a literal, a macro,
    /// an enum constant; the names it reads are in `reads`). A table filled slot by slot with
    /// fixed values (`api[WRITE_INDEX] = (void *)write;`) holds the same in every run.
    #[serde(default)]
    pub index: Option<String>,
    /// What kind of value is written: the same in every interpreter and run, or not.
    #[serde(default)]
    pub written: Written,
    /// The names the value reads that are no local or parameter (macros, enum constants,
    /// functions, globals; for `CapsuleImport`, the capsule name argument as written). The
    /// model turns a `Constant` or `PureC` value that reads a variable into `Unknown`: the
    /// facts of one file cannot tell a macro from another file's global.
    #[serde(default)]
    pub reads: Vec<String>,
    pub span: Span,
    pub versions: VersionRange,
    pub uncertain: bool,
}

/// What a write stores, as far as the expression shows. Only the first four are the same
/// value in every interpreter and every run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Written {
    /// No value (`x++`, `&x` passed to a call), or one that may differ: a call, a parameter,
    /// a field, a dereference of a pointer, a Python object.
    #[default]
    Unknown,
    /// A literal, `NULL`, `sizeof`, a name that is no local or parameter (a macro, an enum
    /// constant, a function's address), and C operators over them. `x |= FLAG` counts: doing
    /// it twice stores the same.
    Constant,
    /// `&name` of a file-scope or function-static variable (`p_Foo_Type = &Foo_Type;`).
    AddressOfStatic,
    /// C arithmetic, comparisons, casts and dereferences over constants and locals that only
    /// hold such values (`int one = 1; is_big_endian = (*(char *)&one == 0);`): no call, no
    /// parameter, no Python state.
    PureC,
    /// The result of `PyCapsule_Import(name, ...)`: a C-API table another module exports.
    CapsuleImport,
    /// What a C API call returns (`PyUnicode_FromString(...)`, `Py_NewRef(x)`): a Python
    /// object, which belongs to the interpreter that made it. Never fixed.
    PythonObject,
    /// One of CPython's process-wide immortal objects (3.12+, PEP 683): `Py_None`, `Py_True`,
    /// `Py_False`, `Py_Ellipsis`, `Py_NotImplemented`, and what the C API returns for a small
    /// int (-5..=256), an empty str, bytes or tuple, a bool, or `Py_GetConstant`. The same
    /// object in every interpreter, never freed (see `facts::expr::immortal_object`).
    ImmortalObject,
}

impl Written {
    /// The same in every interpreter and every run (for a capsule, only when the capsule is
    /// a process-wide one; the model decides).
    pub fn is_fixed(self) -> bool {
        matches!(
            self,
            Written::Constant | Written::AddressOfStatic | Written::PureC
        )
    }
}

/// A write into a field through a local or a parameter (`data->list = PyList_New(0);`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldStore {
    pub field: String,
    /// What is stored: the callee for a call's result, `NULL` for a null pointer, `None` for
    /// anything else (another value, an update, the address passed to a call).
    pub value: Option<String>,
}

/// An argument `p->f` or `p.f` of a call to a function that is not the C API, with `p` a
/// local or a parameter: which field of a caller's struct the callee receives.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FieldArgument {
    pub index: usize,
    pub field: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Call {
    pub callee: String,
    /// The first argument, for C API calls only (see `function::keeps_arguments`; every one
    /// for `PyUnstable_Module_SetGIL`, `PyCapsule_New` and the heap-type creators); empty otherwise. The walk records what the other arguments do (`&x` passed, writes).
    pub args: Vec<Expr>,
    pub span: Span,
    /// `x = call(...)`: the variable that receives the result.
    pub assigned_to: Option<String>,
    /// For a call outside the C API: its arguments that are a field of a local's struct.
    #[serde(default)]
    pub field_arguments: Vec<FieldArgument>,
    pub versions: VersionRange,
    pub uncertain: bool,
}
