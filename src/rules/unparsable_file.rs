use super::{declare_rule, Ctx, Site};
use crate::facts::{FileFacts, Span};
use crate::version::VersionRange;

/// A file counts as unreadable when more than this share of its bytes lies in ERROR nodes
/// that hold no recovered function, declaration or preprocessor line.
const UNREADABLE_SHARE: f64 = 0.5;

declare_rule! {
    /// ## What it does
    /// Flags a C file that the parser could not read: most of its bytes lie in code
    /// tree-sitter gave up on, or the `PyInit_*` function it defines is inside such code and
    /// no module could be built from it. It also flags a scan that finds `PyInit_*`
    /// definitions in its files but no module at all (once for each package of the scan). A file that never names the Python C API
    /// (a Fortran include, assembler) or reads as C++ (`template <`, `namespace`) is not
    /// flagged for its unreadable share: it cannot hide a module's state.
    ///
    /// A scan that misses a module must not pass as clean: without this finding, a file
    /// tree-sitter cannot read gives "0 modules" and exit status 0, and a CI gate passes on a
    /// module full of process-global state. The "no module at all" case is a finding of this
    /// rule rather than a separate CLI error, so that it carries a place (the first `PyInit_`
    /// definition), shows in every output format, and can be suppressed or baselined like any
    /// other finding; its severity, error, makes the exit status 1.
    ///
    /// ## Why is this bad?
    /// Nothing in an unreadable region is analysed: the module's globals, types and init are
    /// not checked, so its verdict cannot be trusted. The usual causes are macros the
    /// pre-pass does not know (a project macro that opens a block, or expands to a function
    /// head), `#if` branches that each open a brace, and text that is not C.
    ///
    /// ## Example
    /// ```c
    /// #define MODINIT(name) PyMODINIT_FUNC PyInit_##name(void) BEGIN_GUARD
    /// PyMODINIT_FUNC PyInit_fast(void) ) {      /* broken head: the module is lost */
    ///     return PyModule_Create(&fast_module);
    /// }
    /// ```
    ///
    /// ## Use instead
    /// Make the file parse: define the project's structural macros in a header the scan
    /// includes (isolint learns block, attribute and statement macros from `#define` lines),
    /// keep `#if` branches balanced, or scan the preprocessed source. The finding names the
    /// first place tree-sitter stopped reading.
    ///
    /// ## Minimum Python
    /// Any.
    ///
    /// ## References
    /// - tree-sitter error recovery: ERROR and MISSING nodes
    pub static RULE = {
        id: "ISO024",
        name: "unparsable-file",
        severity: Error,
        min_python: "any",
        summary: "file (or its `PyInit_*`) the parser could not read: its module is not checked",
        blocks: SharedGil,
        check: check,
    };
}

fn site(file: usize, span: Span) -> Site {
    Site {
        file,
        span,
        versions: VersionRange::ALL,
        uncertain: false,
    }
}

fn check(ctx: &mut Ctx) {
    let project = ctx.project;
    for &fi in &ctx.module.files {
        // A file several modules share is reported once, by the first unit holding it.
        if project.owners[fi] != ctx.module.unit {
            continue;
        }
        let file = &project.files[fi];
        if let Some((span, message)) = unreadable(file) {
            let help = "make the file parse: define its structural macros where the scan sees them, balance the braces of `#if` branches, or scan the preprocessed source".to_string();
            ctx.report(site(fi, span), None, None, message, help);
        }
    }
    if ctx.module.is_real() || project.module_count > 0 {
        return;
    }
    // No module at all, over files that name `PyInit_*`: a definition first, else any
    // mention (a head written through a macro, `EXPORT(PyMODINIT_FUNC, PyInit_x, (void))`).
    let already_reported =
        |f: &FileFacts, m: &crate::facts::InitMention| m.in_error && unreadable(f).is_some();
    // A prototype in a header (`PyMODINIT_FUNC PyInit_x(void);`) is not a module of the scan:
    // its definition may be C++ or outside the scanned folders.
    // Each package's loose code is a unit of its own: each names its own first mention.
    let mentions = || {
        ctx.module.files.iter().flat_map(|&fi| {
            let f = &project.files[fi];
            let header = f.kind == crate::facts::SourceKindFact::Header;
            f.init_mentions
                .iter()
                .filter(move |m| !already_reported(f, m) && (m.definition || !header))
                .map(move |m| (fi, m))
        })
    };
    let lost = mentions()
        .find(|(_, m)| m.definition)
        .or_else(|| mentions().next());
    if let Some((fi, mention)) = lost {
        let message = format!(
            "`{}` is named here, but the scan found no module: nothing was checked",
            mention.name
        );
        let help = "check that the file parses (a macro in the function head, `#if` branches around it) and that the scan includes the files that make the module".to_string();
        ctx.report(
            site(fi, mention.span),
            Some(&mention.name),
            None,
            message,
            help,
        );
    }
}

/// Why the file is unreadable, at its first parse error (or at the lost `PyInit_*`).
fn unreadable(file: &FileFacts) -> Option<(Span, String)> {
    let errors = &file.parse_errors;
    let first = file.first_error?;
    let share = errors.unreadable_bytes as f64 / file.bytes.max(1) as f64;
    if share > UNREADABLE_SHARE && file.python_c_code {
        let message = format!(
            "{:.0}% of this file is code the parser could not read, from line {} on: its functions and globals are not analysed",
            share * 100.0,
            first.line
        );
        return Some((first, message));
    }
    let lost = file.init_mentions.iter().find(|m| {
        m.definition
            && m.in_error
            && !file
                .functions
                .iter()
                .any(|f| f.name == m.name || f.span.start == m.span.start)
    })?;
    let message = format!(
        "`{}` lies in code the parser could not read (first error at line {}): its module is not built or checked",
        lost.name, first.line
    );
    Some((lost.span, message))
}
