//! What the free-threading rules share: which containers a function keeps to itself, which
//! writes a lock, a once-flag, a critical section or an atomic operation protects.

use crate::facts::{Function, Span};

/// Names of the `args` tuple and `kwargs` dict a function receives for one call: fresh per
/// call (or immutable), so no other thread holds them.
const CALL_ARGUMENT_NAMES: &[&str] = &[
    "args", "kwargs", "kwds", "kw", "keywds", "kwdict", "keywords", "kwnames",
];

/// Calls whose result is a new container nobody else holds yet.
const FRESH_CONTAINERS: &[&str] = &[
    "PyList_New",
    "PyDict_New",
    "_PyDict_NewPresized",
    "PyDict_Copy",
    "PyList_GetSlice",
    "PySequence_List",
    "PySequence_Tuple",
    "PyList_AsTuple",
    "PyTuple_New",
    "PyTuple_Pack",
    "Py_BuildValue",
    "PyDict_Keys",
    "PyDict_Values",
    "PyDict_Items",
    "PyMapping_Keys",
    "PyMapping_Values",
    "PyMapping_Items",
    "PyObject_Dir",
    "PyWeakref_NewRef",
];

/// Calls that take a process-wide lock: a write after one of them in the same function is
/// taken to be under it.
const LOCK_CALLS: &[&str] = &[
    "PyMutex_Lock",
    "PyThread_acquire_lock",
    "PyThread_acquire_lock_timed",
    "pthread_mutex_lock",
    "pthread_rwlock_wrlock",
    "pthread_spin_lock",
    "mtx_lock",
    "EnterCriticalSection",
    "AcquireSRWLockExclusive",
    "_PyMutex_Lock",
    "PyEval_AcquireLock",
    "Tcl_MutexLock",
];

/// Calls that run a callback exactly once per process.
const ONCE_CALLS: &[&str] = &[
    "pthread_once",
    "call_once",
    "InitOnceExecuteOnce",
    "_PyOnceFlag_CallOnce",
    "absl::call_once",
    "std::call_once",
];

/// Prefixes of atomic operations: a write through one of them is not a data race.
const ATOMIC_PREFIXES: &[&str] = &[
    "_Py_atomic_",
    "__atomic_",
    "__sync_",
    "atomic_",
    "Interlocked",
    "_Interlocked",
    "std::atomic",
];

/// Some free-threaded build compiles code in this range: 3.13 or later, and not only the
/// default build (`#ifndef Py_GIL_DISABLED`).
pub fn free_threaded_compiles(versions: &crate::version::VersionRange) -> bool {
    versions.hi > crate::version::py(3, 13) && versions.free_threaded != Some(false)
}

pub fn is_atomic_call(callee: &str) -> bool {
    ATOMIC_PREFIXES.iter().any(|p| callee.starts_with(p))
}

/// Lock and once-flag objects: writing them is what locking is.
pub fn is_lock_type(type_name: &str) -> bool {
    let t = type_name.trim_start_matches("struct ").trim();
    matches!(
        t,
        "PyMutex"
            | "PyThread_type_lock"
            | "pthread_mutex_t"
            | "pthread_rwlock_t"
            | "pthread_once_t"
            | "pthread_spinlock_t"
            | "once_flag"
            | "mtx_t"
            | "CRITICAL_SECTION"
            | "SRWLOCK"
            | "INIT_ONCE"
            | "_PyOnceFlag"
            | "PyOnceFlag"
            | "Py_tss_t"
            // `TCL_DECLARE_MUTEX(name)` declares `static Tcl_Mutex name;`.
            | "Tcl_Mutex"
            // Condition variables wait on a lock: synchronisation, not data.
            | "pthread_cond_t"
            | "cnd_t"
            | "CONDITION_VARIABLE"
    )
}

/// Calls that release what a `LOCK_CALLS` call takes.
const RELEASE_CALLS: &[&str] = &[
    "PyMutex_Unlock",
    "PyThread_release_lock",
    "pthread_mutex_unlock",
    "pthread_rwlock_unlock",
    "pthread_spin_unlock",
    "mtx_unlock",
    "LeaveCriticalSection",
    "ReleaseSRWLockExclusive",
    "_PyMutex_Unlock",
    "PyEval_ReleaseLock",
    "Tcl_MutexUnlock",
];

/// The last lock call before `at` in `f` when it takes a lock (no release after it).
/// Straight-line reading: a lock taken in one branch counts for what follows it.
fn taking_call<'f>(f: &'f Function, at: &Span) -> Option<&'f crate::facts::Call> {
    let last = f
        .calls
        .iter()
        .filter(|c| c.span.start < at.start)
        .filter(|c| {
            LOCK_CALLS.contains(&c.callee.as_str()) || RELEASE_CALLS.contains(&c.callee.as_str())
        })
        .max_by_key(|c| c.span.start)?;
    LOCK_CALLS.contains(&last.callee.as_str()).then_some(last)
}

/// The lock held at `at` in `f`, as its argument is written (`&registry_lock`).
pub fn lock_held_at<'f>(f: &'f Function, at: &Span) -> Option<&'f str> {
    taking_call(f, at)?.args.first().map(|a| a.text.as_str())
}

/// A lock taken by calling a Python callable the object holds, `self->lock_data()` ...
/// `self->unlock_data()` (coverage's tracer calls its collector's `threading.Lock` that way):
/// held at `at` when the last such call before it takes the lock and a call after it releases
/// it. Which callable takes and which releases is read from its name (`lock`/`acquire`,
/// `unlock`/`release`), the only sign the C code gives.
pub fn python_lock_held_at(f: &Function, at: &Span) -> bool {
    #[derive(PartialEq)]
    enum Role {
        Take,
        Release,
    }
    let role = |c: &crate::facts::Call| {
        if !c.callee.starts_with("PyObject_Call") {
            return None;
        }
        let callable = bare_object(&c.args.first()?.text);
        let name = callable
            .rsplit(['>', '.'])
            .next()
            .unwrap_or(callable)
            .to_ascii_lowercase();
        if name.contains("unlock") || name.contains("release") {
            Some(Role::Release)
        } else if name.contains("lock") || name.contains("acquire") {
            Some(Role::Take)
        } else {
            None
        }
    };
    let before = f
        .calls
        .iter()
        .filter(|c| c.span.start < at.start)
        .filter_map(|c| role(c).map(|r| (c.span.start, r)))
        .max_by_key(|(start, _)| *start);
    let released_after = f
        .calls
        .iter()
        .any(|c| c.span.start > at.end && role(c) == Some(Role::Release));
    matches!(before, Some((_, Role::Take))) && released_after
}

/// `(PyObject *)x`, `(x)`, `x` → `x`: the container as the rules compare it.
pub fn bare_object(text: &str) -> &str {
    let mut t = text.trim();
    loop {
        let before = t;
        if let Some(rest) = t.strip_prefix('(') {
            // A cast `(T *)x`: the closing parenthesis comes before the end.
            if let Some(close) = rest.find(')') {
                let inner = rest[..close].trim_end();
                if close + 1 < rest.len() && inner.ends_with('*') {
                    t = rest[close + 1..].trim();
                } else if encloses(t) {
                    t = t[1..t.len() - 1].trim();
                }
            }
        }
        if t == before {
            return t;
        }
    }
}

/// `t` is `( ... )` with the first parenthesis closed by the last.
fn encloses(t: &str) -> bool {
    let mut depth = 0usize;
    for (i, b) in t.bytes().enumerate() {
        match b {
            b'(' => depth += 1,
            b')' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i == t.len() - 1;
                }
            }
            _ => {}
        }
    }
    false
}

/// Why no other thread can reach `container` at `at` in `f`, if it cannot: the call's own
/// arguments, a container the function created and has not stored in a global, or a critical
/// section on it.
pub fn private_container(f: &Function, container: &str, at: &Span) -> Option<&'static str> {
    let container = bare_object(container);
    if f.params
        .iter()
        .skip(1)
        .any(|p| p.name.as_deref() == Some(container))
        && CALL_ARGUMENT_NAMES.contains(&container)
    {
        return Some("the call's own arguments");
    }
    if in_critical_section_on(f, container, at) {
        return Some("a critical section on it");
    }
    let source = last_assignment(f, container, at);
    // `PyThreadState_GetDict()` is the calling thread's own dict.
    if source.is_some_and(|c| c.callee == "PyThreadState_GetDict") {
        return Some("the thread's own dict");
    }
    let created = source.is_some_and(|c| FRESH_CONTAINERS.contains(&c.callee.as_str()));
    let escapes = f
        .writes
        .iter()
        .any(|w| w.value.as_ref().and_then(|v| v.ident()) == Some(container));
    (created && !escapes).then_some("created here and not shared")
}

/// The access keys (`.list`) of struct fields that only a function's own frame can reach and
/// that only ever hold a container made there: every struct of the module with that field is
/// no Python object and is held by no global, static or struct field (so its instances live
/// in locals, passed down by address), and every write into the field stores `NULL` or a
/// fresh container (`info->list = PyList_New(2)`). regex's `RE_JoinInfo join_info;` and
/// pyahocorasick's `PickleData data;` are such structs.
pub fn stack_private_fields(ctx: &super::Ctx) -> rustc_hash::FxHashSet<String> {
    let project = ctx.project;
    let files = || ctx.module.files.iter().map(|&fi| &project.files[fi]);
    let plain = |t: &str| t.strip_prefix("struct ").unwrap_or(t).trim().to_string();
    let mut held: rustc_hash::FxHashSet<String> = rustc_hash::FxHashSet::default();
    // The instance structs of the module's types are Python objects, whatever their first
    // field is spelled as (`CACHE_HEAD`, a project macro around `PyObject_HEAD`).
    for t in &ctx.module.types {
        if let Some(crate::facts::ExprKind::SizeOf(s)) =
            t.slots.get("tp_basicsize").map(|e| &e.kind)
        {
            held.insert(plain(s.trim_matches(|c| c == '(' || c == ')')));
        }
    }
    for file in files() {
        held.extend(file.variables.iter().map(|v| plain(&v.type_name)));
        held.extend(
            file.structs
                .iter()
                .flat_map(|s| &s.fields)
                .map(|f| plain(&f.type_name)),
        );
    }
    // Types a local's initializer fills by position (`{Info}`): which fields is not known.
    let initialized: rustc_hash::FxHashSet<&str> = files()
        .flat_map(|file| &file.functions)
        .flat_map(|f| &f.fields_written_through_locals)
        .filter_map(|s| s.field.strip_prefix('{')?.strip_suffix('}'))
        .collect();
    // field -> (every struct with it is private, a store of something else or through a
    // global was seen, a fresh container was stored)
    let mut fields: rustc_hash::FxHashMap<&str, (bool, bool, bool)> = Default::default();
    for file in files() {
        for s in &file.structs {
            // A first field spelled through a macro (`CACHE_HEAD`, `PyObject_HEAD` behind a
            // project macro) may be an object header.
            let macro_head = s
                .fields
                .first()
                .is_some_and(|f| f.type_name.contains("HEAD") || f.name.contains("HEAD"));
            let private = !s.is_object_layout()
                && !macro_head
                && !s
                    .names
                    .iter()
                    .any(|n| held.contains(n) || initialized.contains(n.as_str()));
            for field in &s.fields {
                let entry = fields
                    .entry(field.name.as_str())
                    .or_insert((true, false, false));
                entry.0 &= private && !s.names.is_empty();
            }
        }
    }
    for file in files() {
        for f in &file.functions {
            for store in &f.fields_written_through_locals {
                if let Some(entry) = fields.get_mut(store.field.as_str()) {
                    match store.value.as_deref() {
                        Some("NULL") => {}
                        Some(callee) if FRESH_CONTAINERS.contains(&callee) => entry.2 = true,
                        _ => entry.1 = true,
                    }
                }
            }
            for w in &f.writes {
                if let Some(entry) = w.field.as_deref().and_then(|n| fields.get_mut(n)) {
                    entry.1 = true;
                }
            }
        }
    }
    fields
        .into_iter()
        .filter(|(_, (private, other, fresh))| *private && !*other && *fresh)
        .map(|(name, _)| format!(".{name}"))
        .collect()
}

/// `container` is parameter `k` of the static function `f`, and every call of `f` in the
/// module passes a field of `private_fields` there (`join_bytestrings(join_info->list)`).
pub fn parameter_from_private_fields(
    ctx: &super::Ctx,
    f: &Function,
    container: &str,
    private_fields: &rustc_hash::FxHashSet<String>,
) -> bool {
    let container = bare_object(container);
    let Some(k) = f
        .params
        .iter()
        .position(|p| p.name.as_deref() == Some(container))
    else {
        return false;
    };
    // `Py_LOCAL_INLINE(type)` is CPython's `static inline type`.
    let is_static = f.is_static || f.return_type.starts_with("Py_LOCAL");
    if !is_static || private_fields.is_empty() {
        return false;
    }
    let mut calls = super::support::calls_to(ctx, &f.name)
        .map(|(_, _, call)| call)
        .peekable();
    calls.peek().is_some()
        && calls.all(|c| {
            c.field_arguments
                .iter()
                .any(|a| a.index == k && private_fields.contains(&format!(".{}", a.field)))
        })
}

/// The last call before `at` whose result `f` assigns to `name`.
fn last_assignment<'f>(f: &'f Function, name: &str, at: &Span) -> Option<&'f crate::facts::Call> {
    f.calls
        .iter()
        .rfind(|c| c.span.start < at.start && c.assigned_to.as_deref() == Some(name))
}

pub fn in_critical_section_on(f: &Function, object: &str, at: &Span) -> bool {
    f.threading
        .critical_sections
        .iter()
        .any(|cs| cs.covers(at) && cs.objects.iter().any(|o| bare_object(o) == object))
}

pub fn in_any_critical_section(f: &Function, at: &Span) -> bool {
    f.threading.critical_sections.iter().any(|cs| cs.covers(at))
}

/// A lock is taken in `f` before `at` (and, for a critical section, around it).
pub fn locked_at(f: &Function, at: &Span) -> bool {
    in_any_critical_section(f, at) || taking_call(f, at).is_some()
}

/// Names used by the module's functions that call `pthread_once`/`call_once`/...: the
/// callbacks such a call runs once per process are among them.
pub fn once_callbacks<'p>(ctx: &super::Ctx<'p>) -> Vec<&'p str> {
    let project = ctx.project;
    let mut out = Vec::new();
    for &fi in &ctx.module.files {
        for f in &project.files[fi].functions {
            if f.calls
                .iter()
                .any(|c| ONCE_CALLS.contains(&c.callee.as_str()))
            {
                out.extend(f.references.iter().map(|r| r.name.as_str()));
            }
        }
    }
    out
}

/// The callee's entry carries one of these hazards.
pub fn hazard_of(
    callee: &str,
) -> Option<(
    super::threadsafety::Hazard,
    &'static super::threadsafety::ApiEntry,
)> {
    let entry = super::threadsafety::lookup(callee)?;
    entry.hazard.map(|h| (h, entry))
}

/// A run-time write to a global or function-local static that nothing protects, with
/// whether it sits in the body of an `if (x == NULL)` test on the same name.
pub struct RacyWrite<'p> {
    pub function: &'p Function,
    pub file: usize,
    pub site: &'p crate::facts::WriteSite,
    pub lazy: bool,
}

impl RacyWrite<'_> {
    /// Where a finding about this write points.
    pub fn report_site(&self) -> super::Site {
        super::Site {
            file: self.file,
            span: self.site.span,
            versions: self.site.versions,
            uncertain: self.site.uncertain,
        }
    }
}

/// The module's functions that run after initialisation, with their file: module
/// initialisation runs under the import lock, before the module's objects are published to
/// other threads, so only these can race.
pub fn run_time_functions<'p>(
    ctx: &super::Ctx<'p>,
) -> impl Iterator<Item = (usize, &'p Function)> + 'p {
    let module = ctx.module;
    let project = ctx.project;
    module.files.iter().flat_map(move |&fi| {
        project.files[fi]
            .functions
            .iter()
            .enumerate()
            .filter(move |(index, _)| {
                !module.init_functions.contains(&crate::model::FnRef {
                    file: fi,
                    index: *index,
                })
            })
            .map(move |(_, f)| (fi, f))
    })
}

/// The unprotected run-time writes of `global`: direct writes (assignment, update, element
/// or field write) in code that runs after init, with no lock taken before them in the same
/// function, no critical section around them, not in a once-callback, not through an atomic.
/// Writes through `&x` passed to a call are left out: the callee is unknown.
pub fn racy_writes<'p>(
    ctx: &super::Ctx<'p>,
    global: &'p crate::model::Global,
    once_callbacks: &[&str],
) -> Vec<RacyWrite<'p>> {
    let project = ctx.project;
    let v = project.var(global.var);
    if global.class != crate::model::WriteClass::Runtime
        || v.is_thread_local
        || v.is_atomic
        || is_lock_type(&v.type_name)
        // Every thread stores the same value: `idempotent-global` says how to make it
        // airtight.
        || super::support::idempotent(ctx, global).is_some()
    {
        return Vec::new();
    }
    let mut out = Vec::new();
    for w in global.writes.iter().filter(|w| !w.at_init) {
        let site = project.write_site(w);
        if site.kind.escapes()
            || site.via_call.as_deref().is_some_and(is_atomic_call)
            || !free_threaded_compiles(&site.versions)
        {
            continue;
        }
        let function = project.function(w.function);
        if locked_at(function, &site.span) || once_callbacks.contains(&function.name.as_str()) {
            continue;
        }
        let lazy = function.threading.null_guards.iter().any(|g| {
            g.name == v.name && g.body.start <= site.span.start && site.span.end <= g.body.end
        });
        out.push(RacyWrite {
            function,
            file: w.function.file,
            site,
            lazy,
        });
    }
    out
}

/// C API calls that change a dict or a list in place (first argument).
const CONTAINER_MUTATORS: &[&str] = &[
    "PyDict_SetItem",
    "PyDict_SetItemString",
    "PyDict_DelItem",
    "PyDict_DelItemString",
    "PyDict_Clear",
    "PyDict_Update",
    "PyDict_Merge",
    "PyDict_MergeFromSeq2",
    "PyDict_SetDefault",
    "PyDict_SetDefaultRef",
    "PyDict_Pop",
    "PyDict_PopString",
    "_PyDict_SetItem_KnownHash",
    "PyList_Append",
    "PyList_SetItem",
    "PyList_SET_ITEM",
    "PyList_Insert",
    "PyList_SetSlice",
    "PyList_Sort",
    "PyList_Reverse",
    "PyList_Extend",
    "PyList_Clear",
    "PyObject_SetItem",
    "PyObject_DelItem",
];

/// Containers Python code can change whatever the module does: instance and type
/// dictionaries, module dictionaries, builtins, `sys`.
const PYTHON_VISIBLE: &[&str] = &[
    ".tp_dict",
    ".dict",
    ".md_dict",
    ".__dict__",
    ".ob_dict",
    ".dictobj",
    "PyModule_GetDict(",
    "PyEval_GetBuiltins(",
    "PyEval_GetGlobals(",
    "PyEval_GetLocals(",
    "PyImport_GetModuleDict(",
    "PyObject_GenericGetDict(",
    "PyType_GetDict(",
    "PySys_GetObject(",
];

/// How a container is reached, when not through a plain variable: `.fields` for
/// `descr->fields` or `self.fields`, `PyDataType_FIELDS(` for `PyDataType_FIELDS(d)`.
pub fn access_key(container: &str) -> Option<String> {
    let c = bare_object(container);
    let is_ident =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if let Some(at) = c
        .rfind("->")
        .map(|i| i + 2)
        .or_else(|| c.rfind('.').map(|i| i + 1))
    {
        let field = &c[at..];
        return is_ident(field).then(|| format!(".{field}"));
    }
    let open = c.find('(')?;
    let name = c[..open].trim();
    (c.ends_with(')') && is_ident(name)).then(|| format!("{name}("))
}

fn constructs(callee: &str) -> bool {
    ["New", "Copy", "Create", "_new", "Alloc", "alloc"]
        .iter()
        .any(|w| callee.contains(w))
}

/// The access keys of containers the module changes in place after they are published: a
/// mutating call on `x->f` where `x` is not an object the same function just constructed
/// (a local assigned from a `...New`/`...Copy`/`...Create`/`...alloc` call).
pub fn mutated_containers(ctx: &super::Ctx) -> rustc_hash::FxHashSet<String> {
    let project = ctx.project;
    let mut out = rustc_hash::FxHashSet::default();
    for &fi in &ctx.module.files {
        for f in &project.files[fi].functions {
            for call in &f.calls {
                if !CONTAINER_MUTATORS.contains(&call.callee.as_str()) {
                    continue;
                }
                let Some(arg) = call.args.first() else {
                    continue;
                };
                let Some(key) = access_key(&arg.text) else {
                    continue;
                };
                let object = bare_object(&arg.text);
                let root: String = object
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                // A parameter is an object the function received: already published. (The
                // call list cannot tell `x = New()` from `x->f = New()`, so a parameter is
                // never taken as constructed here.)
                let is_parameter = f
                    .params
                    .iter()
                    .any(|p| p.name.as_deref() == Some(root.as_str()));
                let constructed = !root.is_empty()
                    && !is_parameter
                    && f.calls.iter().any(|c| {
                        c.span.start < call.span.start
                            && c.assigned_to.as_deref() == Some(root.as_str())
                            && constructs(&c.callee)
                    });
                if !constructed {
                    out.insert(key);
                }
            }
        }
    }
    // What the scan's C++ files change: no rule reads C++, but C code must not be told a
    // container is never changed when C++ code changes it. Which module a C++ file belongs to
    // is not known, so they count for every module: fewer exemptions, never more.
    for call in &project.foreign_calls {
        if CONTAINER_MUTATORS.contains(&call.callee.as_str()) {
            if let Some(key) = access_key(&call.first_argument) {
                out.insert(key);
            }
        }
    }
    out
}

/// The container is reached through a field or accessor that the module never changes
/// after construction and that Python code cannot change either; directly, or through a local
/// that holds what an accessor macro returned (`fields = PyDataType_FIELDS(d);`).
pub fn read_only_container(
    f: &Function,
    container: &str,
    at: &Span,
    mutated: &rustc_hash::FxHashSet<String>,
) -> bool {
    let key = access_key(container).or_else(|| {
        let call = last_assignment(f, bare_object(container), at)?;
        is_accessor_macro(&call.callee).then(|| format!("{}(", call.callee))
    });
    match key {
        Some(key) => !PYTHON_VISIBLE.contains(&key.as_str()) && !mutated.contains(&key),
        None => false,
    }
}

/// `PyDataType_FIELDS`, `PyArray_DESCR`: a macro-style accessor (upper-case last word), not a
/// function that may build or look up something new.
fn is_accessor_macro(callee: &str) -> bool {
    callee
        .rsplit('_')
        .next()
        .is_some_and(|w| w.len() > 1 && w.bytes().all(|b| b.is_ascii_uppercase()))
        && callee.contains('_')
}

#[cfg(test)]
mod tests {
    use super::bare_object;

    #[test]
    fn casts_and_parentheses_are_stripped() {
        assert_eq!(bare_object("(PyObject *)self->dict"), "self->dict");
        assert_eq!(bare_object("((x))"), "x");
        assert_eq!(bare_object("x"), "x");
        assert_eq!(bare_object("(a)->b(c)"), "(a)->b(c)");
    }

    #[test]
    fn access_keys_name_the_field_or_accessor() {
        use super::access_key;
        assert_eq!(access_key("descr->fields").as_deref(), Some(".fields"));
        assert_eq!(
            access_key("(PyObject *)st.cache").as_deref(),
            Some(".cache")
        );
        assert_eq!(
            access_key("PyDataType_FIELDS(descr)").as_deref(),
            Some("PyDataType_FIELDS(")
        );
        assert_eq!(access_key("d"), None);
    }
}
