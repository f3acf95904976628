use super::{declare_rule, Ctx, Site};

declare_rule! {
    /// ## What it does
    /// Flags `Py_REFCNT(x) == 1` (and `!= 1`, `> 1`, `<= 1`, `< 2`, `>= 2`): a test of
    /// whether the caller holds the only reference, usually to decide whether an object may
    /// be changed in place. Code only the default build compiles (the `#else` of
    /// `#ifdef Py_GIL_DISABLED`) or only Pythons before 3.13 compile is not flagged, nor a test
    /// inside `assert(...)`, which checks an invariant and decides nothing.
    ///
    /// ## Why is this bad?
    /// On a free-threaded build the reference count is split between the owning thread and
    /// the others, and other threads may hold borrowed references: `Py_REFCNT(x) == 1` no
    /// longer proves that nobody else can see `x`. Mutating it in place then races with a
    /// reader.
    ///
    /// ## Example
    /// ```c
    /// if (Py_REFCNT(result) == 1) {
    ///     /* reuse the tuple */
    ///     PyTuple_SET_ITEM(result, 0, item);
    /// }
    /// ```
    ///
    /// ## Use instead
    /// ```c
    /// if (PyUnstable_Object_IsUniquelyReferenced(result)) {
    ///     PyTuple_SET_ITEM(result, 0, item);
    /// }
    /// ```
    /// On Pythons before 3.14, keep the `Py_REFCNT` test in the `#else` of
    /// `#ifdef Py_GIL_DISABLED` (or of a `PY_VERSION_HEX >= 0x030E0000` test).
    ///
    /// ## Minimum Python
    /// 3.14 (`PyUnstable_Object_IsUniquelyReferenced`).
    ///
    /// ## References
    /// - CPython docs: `PyUnstable_Object_IsUniquelyReferenced`
    /// - CPython HOWTO: C API Extension Support for Free Threading
    pub static RULE = {
        id: "ISO105",
        name: "refcount-uniqueness-test",
        severity: Warning,
        min_python: "3.14",
        summary: "`Py_REFCNT(x) == 1` as a uniqueness test (free-threading)",
        blocks: Nothing,
        blocks_gil: true,
        check: check,
    };
}

fn check(ctx: &mut Ctx) {
    let project = ctx.project;
    for &fi in &ctx.module.files {
        for f in &project.files[fi].functions {
            for test in &f.threading.refcount_tests {
                if !super::free_threading::free_threaded_compiles(&test.versions) {
                    continue;
                }
                let message = format!("`Py_REFCNT({})` in `{}` is compared with 1 to prove the object is not shared: on a free-threaded build other threads may still reach it", test.object, f.name);
                let help = format!("use `PyUnstable_Object_IsUniquelyReferenced({})` (3.14), or keep this test under `#ifndef Py_GIL_DISABLED`", test.object);
                let site = Site {
                    file: fi,
                    span: test.span,
                    versions: test.versions,
                    uncertain: test.uncertain,
                };
                ctx.report(site, Some("Py_REFCNT"), Some(&f.name), message, help);
            }
        }
    }
}
