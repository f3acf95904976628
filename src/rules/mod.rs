//! The rule registry. One rule per file: its id, name, severity, docs and check live together.
//! Adding a rule touches its file, one line in `RULES`, and a fixture.

mod borrowed_reference;
mod capi_table_global;
mod could_be_const;
mod datetime_capi_isolation;
mod free_threading;
mod gilstate_api;
mod global_exception_object;
mod global_pyobject;
mod heap_type_gc_protocol;
mod idempotent_global;
mod lock_protected_global;
mod missing_gil_slot;
mod missing_module_gc;
mod missing_multiple_interpreters_slot;
mod module_state_via_global;
mod mutable_global_state;
mod mutated_static_definition;
mod negative_m_size;
mod overclaimed_gil;
mod overclaimed_isolation;
mod py_identifier;
mod pystate_module_lookup;
mod refcount_uniqueness_test;
mod set_gil_unguarded;
mod single_phase_free_threaded;
mod single_phase_init;
mod static_local_pyobject;
mod static_object_singleton;
mod static_type_object;
mod support;
mod teardown_frees_global;
mod thread_local_state;
pub mod threadsafety;
mod type_module_lookup;
mod underclaimed_isolation;
mod unlocked_container_iteration;
mod unlocked_lazy_init;
mod unlocked_static_write;
mod unparsable_file;
pub mod verdict;

use crate::facts::Span;
use crate::finding::{Finding, Location, Severity};
use crate::model::pytypes::Layouts;
use crate::model::{ExtensionModule, Project};
use crate::version::VersionRange;

pub use support::{describe_writes, write_summary};
pub use verdict::{
    module_verdict, nothing_suppressed, verdict_of, Blocker, Blocks, GilLevel, GilSource,
    GilVerdict, Level, SuppressedBlocker, SuppressedBy, Verdict, VerdictInputs,
};

#[derive(Debug)]
pub struct RuleInfo {
    /// Stable id, e.g. `ISO003`.
    pub id: &'static str,
    /// Kebab-case name of the bad pattern, e.g. `static-type-object`.
    pub name: &'static str,
    pub severity: Severity,
    /// The oldest Python the fix works on.
    pub min_python: &'static str,
    /// One line for `isolint rules`.
    pub summary: &'static str,
    /// The doc comment: What it does / Why is this bad / Example / Use instead / Minimum
    /// Python / References.
    pub docs: &'static str,
    /// The highest isolation level a finding of this rule rules out.
    pub blocks: Blocks,
    /// A finding of this rule keeps the module from declaring `Py_MOD_GIL_NOT_USED`.
    pub blocks_gil: bool,
    /// The rule reads the findings of the rules before it (`Ctx::verdict`, `Ctx::relate`,
    /// `Ctx::module_findings`): it runs after them, on their findings. The other rules of a
    /// module run side by side.
    pub reads_findings: bool,
    pub check: fn(&mut Ctx),
}

/// Declares a rule; its `///` doc comment becomes `docs`.
macro_rules! declare_rule {
    (
        $(#[doc = $doc:literal])*
        pub static $ident:ident = {
            id: $id:literal,
            name: $name:literal,
            severity: $severity:ident,
            min_python: $min:literal,
            summary: $summary:literal,
            blocks: $blocks:ident,
            $(blocks_gil: $blocks_gil:literal,)?
            $(reads_findings: $reads_findings:literal,)?
            check: $check:path $(,)?
        };
    ) => {
        $(#[doc = $doc])*
        pub static $ident: $crate::rules::RuleInfo = $crate::rules::RuleInfo {
            id: $id,
            name: $name,
            severity: $crate::finding::Severity::$severity,
            min_python: $min,
            summary: $summary,
            docs: concat!($($doc, "\n"),*),
            blocks: $crate::rules::Blocks::$blocks,
            blocks_gil: false $(|| $blocks_gil)?,
            reads_findings: false $(|| $reads_findings)?,
            check: $check,
        };
    };
}
pub(crate) use declare_rule;

pub static RULES: &[&RuleInfo] = &[
    &single_phase_init::RULE,
    &negative_m_size::RULE,
    &static_type_object::RULE,
    &global_pyobject::RULE,
    &static_local_pyobject::RULE,
    &mutable_global_state::RULE,
    &pystate_module_lookup::RULE,
    &could_be_const::RULE,
    &py_identifier::RULE,
    &gilstate_api::RULE,
    &global_exception_object::RULE,
    &static_object_singleton::RULE,
    &capi_table_global::RULE,
    &mutated_static_definition::RULE,
    &thread_local_state::RULE,
    &module_state_via_global::RULE,
    &missing_module_gc::RULE,
    &heap_type_gc_protocol::RULE,
    &type_module_lookup::RULE,
    &unparsable_file::RULE,
    &idempotent_global::RULE,
    &datetime_capi_isolation::RULE,
    &lock_protected_global::RULE,
    &teardown_frees_global::RULE,
    // Free-threading (PEP 703).
    &borrowed_reference::RULE,
    &unlocked_container_iteration::RULE,
    &unlocked_lazy_init::RULE,
    &unlocked_static_write::RULE,
    &refcount_uniqueness_test::RULE,
    &set_gil_unguarded::RULE,
    &single_phase_free_threaded::RULE,
    // The verdict rules read the findings of every rule above: they stay last.
    &missing_multiple_interpreters_slot::RULE,
    &missing_gil_slot::RULE,
    &overclaimed_isolation::RULE,
    &underclaimed_isolation::RULE,
    &overclaimed_gil::RULE,
];

pub fn find_rule(key: &str) -> Option<&'static RuleInfo> {
    // A finding names its rule by its exact id: the verdicts look every finding up, so that
    // case is answered before any case folding (ids are unique, and no name is an id).
    RULES.iter().copied().find(|r| r.id == key).or_else(|| {
        RULES
            .iter()
            .copied()
            .find(|r| r.id.eq_ignore_ascii_case(key) || r.name == key)
    })
}

/// Where a finding points.
#[derive(Debug, Clone, Copy)]
pub struct Site {
    pub file: usize,
    pub span: Span,
    pub versions: VersionRange,
    pub uncertain: bool,
}

pub struct Ctx<'a> {
    pub project: &'a Project,
    pub module: &'a ExtensionModule,
    pub layouts: &'a Layouts<'a>,
    rule: &'static RuleInfo,
    /// This module's findings so far.
    out: &'a mut Vec<Finding>,
    /// The scan names a Python before 3.12 (`--python 3.11`): code only those compile is
    /// reported at full strength.
    targets_before_312: bool,
    /// Which findings the project suppresses: they do not count in the verdict.
    suppressed: SuppressedBy<'a>,
    /// The module's functions by name, built on first use and shared by its rules
    /// ([`support::module_function`]).
    functions: &'a std::sync::OnceLock<support::FunctionsByName>,
    /// The module's calls by callee, built on first use and shared by its rules
    /// ([`support::calls_where`], [`support::calls_to`]).
    calls: &'a std::sync::OnceLock<support::CallsByCallee>,
}

impl Ctx<'_> {
    /// Findings of the rules that ran before this one on this module: the verdict rules run
    /// last and read them.
    pub fn module_findings(&self) -> &[Finding] {
        debug_assert!(
            self.rule.reads_findings,
            "{} reads findings",
            self.rule.name
        );
        self.out
    }

    /// The module's verdict from the findings so far, suppressed ones not counting.
    pub fn verdict(&self) -> Verdict {
        debug_assert!(
            self.rule.reads_findings,
            "{} reads findings",
            self.rule.name
        );
        module_verdict(self.module, self.out, self.suppressed)
    }

    pub fn report(
        &mut self,
        site: Site,
        symbol: Option<&str>,
        function: Option<&str>,
        message: String,
        help: String,
    ) {
        let span = site.span;
        let mut severity = self.rule.severity;
        let mut message = message;
        // `Py_mod_multiple_interpreters` exists from 3.12: state only older Pythons compile
        // (the `#else` of `#if PY_VERSION_HEX >= 0x030C0000`, static types kept for 3.8) cannot
        // block a level the module declares. Said as information unless the scan asks for
        // those Pythons.
        let isolation_rule = matches!(
            self.rule.blocks,
            Blocks::SharedGil | Blocks::PerInterpreterGil
        );
        if isolation_rule
            && severity != Severity::Info
            && !self.targets_before_312
            && !site.versions.is_empty()
            && site.versions.hi <= crate::version::py(3, 12)
        {
            severity = Severity::Info;
            message.push_str(
                "; only Pythons before 3.12 compile it, and `Py_mod_multiple_interpreters` exists \
                 from 3.12, so it blocks no level (`--python 3.11` reports it in full)",
            );
        }
        self.out.push(Finding {
            rule: self.rule.id,
            name: self.rule.name,
            severity,
            path: self.project.files[site.file].path.clone(),
            location: location_of(&span),
            symbol: symbol.map(str::to_string),
            function: function.map(str::to_string),
            module: self.module.is_real().then(|| self.module.name.clone()),
            message,
            help,
            python: site.versions,
            uncertain: site.uncertain,
            related: Vec::new(),
        });
    }

    /// Adds a related place to this module's finding of `rule` at `site` (a finding of an
    /// earlier rule). Returns whether there was one.
    pub fn relate(&mut self, rule: &str, at: Site, place: Site, message: String) -> bool {
        debug_assert!(
            self.rule.reads_findings,
            "{} reads findings",
            self.rule.name
        );
        let path = &self.project.files[at.file].path;
        let Some(f) = self
            .out
            .iter_mut()
            .find(|f| f.rule == rule && &f.path == path && f.location.start_byte == at.span.start)
        else {
            return false;
        };
        f.related.push(related(self.project, place, message));
        true
    }

    pub fn var_site(&self, var: crate::model::VarRef) -> Site {
        let v = self.project.var(var);
        Site {
            file: var.file,
            span: v.span,
            versions: v.versions,
            uncertain: v.uncertain,
        }
    }
}

/// A finding's location from a span of the facts.
fn location_of(span: &crate::facts::Span) -> Location {
    Location {
        line: span.line,
        column: span.column,
        end_line: span.end_line,
        end_column: span.end_column,
        start_byte: span.start,
        end_byte: span.end,
    }
}

fn related(project: &Project, place: Site, message: String) -> crate::finding::Related {
    crate::finding::Related {
        path: project.files[place.file].path.clone(),
        location: location_of(&place.span),
        message,
    }
}

/// A finding about a variable, at its definition, gets the variable's other declarations as
/// related places: one variable, one finding.
fn relate_declarations(project: &Project, module: &ExtensionModule, out: &mut [Finding]) {
    let mut by_site: std::collections::HashMap<(usize, usize), &crate::model::Global> =
        std::collections::HashMap::new();
    for g in module.globals.iter().filter(|g| !g.declarations.is_empty()) {
        by_site.insert((g.var.file, project.var(g.var).span.start), g);
    }
    if by_site.is_empty() {
        return;
    }
    let file_of: std::collections::HashMap<&std::path::Path, usize> = module
        .files
        .iter()
        .map(|&f| (project.files[f].path.as_path(), f))
        .collect();
    for f in out.iter_mut() {
        let Some(&file) = file_of.get(f.path.as_path()) else {
            continue;
        };
        let Some(g) = by_site.get(&(file, f.location.start_byte)) else {
            continue;
        };
        let v = project.var(g.var);
        if f.symbol.as_deref() != Some(v.name.as_str()) {
            continue;
        }
        for &d in &g.declarations {
            let decl = project.var(d);
            let what = if decl.is_extern {
                format!("`{}` declared `extern` here", decl.name)
            } else {
                format!("tentative definition of `{}`", decl.name)
            };
            let place = Site {
                file: d.file,
                span: decl.span,
                versions: decl.versions,
                uncertain: decl.uncertain,
            };
            let r = related(project, place, what);
            if !f.related.contains(&r) {
                f.related.push(r);
            }
        }
    }
}

/// Runs every rule over every module (and the unattached code). `suppressed` says which
/// findings the project suppresses, for the verdict rules.
pub fn run_rules(
    project: &Project,
    rules: &[&'static RuleInfo],
    targets: &[crate::version::Target],
    suppressed: SuppressedBy,
) -> Vec<Finding> {
    let layouts = Layouts::new(project.files.iter());
    let units: Vec<_> = project.units().collect();
    run_rules_on(project, units, &layouts, rules, targets, suppressed)
}

/// The rules over some of the project's units (those whose files are loaded), with the layouts
/// of every struct of the scan.
pub fn run_rules_on(
    project: &Project,
    units: Vec<&ExtensionModule>,
    layouts: &Layouts,
    rules: &[&'static RuleInfo],
    targets: &[crate::version::Target],
    suppressed: SuppressedBy,
) -> Vec<Finding> {
    let targets_before_312 = targets
        .iter()
        .any(|t| t.version < crate::version::py(3, 12));
    use rayon::prelude::*;
    // Each module's rules read only that module's findings: modules run on every worker.
    let per_module: Vec<Vec<Finding>> = units
        .into_par_iter()
        .map(|module| {
            let functions = std::sync::OnceLock::new();
            let calls = std::sync::OnceLock::new();
            let run = |rule: &&'static RuleInfo, out: &mut Vec<Finding>| {
                let mut ctx = Ctx {
                    project,
                    module,
                    layouts,
                    rule,
                    out,
                    targets_before_312,
                    suppressed,
                    functions: &functions,
                    calls: &calls,
                };
                (rule.check)(&mut ctx);
            };
            // The rules that read no other rule's findings run side by side, each into its own
            // list; then, in rule order, their lists are joined and each rule that reads
            // findings runs on the findings of the rules before it. The same findings in the
            // same order, and a large unit (CPython's core, edited in an editor) is not
            // checked on one worker alone.
            let mut alone: Vec<Option<Vec<Finding>>> = rules
                .par_iter()
                .map(|rule| {
                    (!rule.reads_findings).then(|| {
                        let mut own = Vec::new();
                        run(rule, &mut own);
                        own
                    })
                })
                .collect();
            let mut out: Vec<Finding> = Vec::new();
            for (rule, list) in rules.iter().zip(&mut alone) {
                match list.take() {
                    Some(list) => out.extend(list),
                    None => run(rule, &mut out),
                }
            }
            relate_declarations(project, module, &mut out);
            out
        })
        .collect();
    per_module.into_iter().flatten().collect()
}

/// The rule's doc comment as Markdown: the doc comment lines carry one leading space.
pub fn docs_markdown_body(rule: &RuleInfo) -> String {
    rule.docs
        .lines()
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// The rule's documentation page: `isolint explain` prints it and `docs/rules/<name>.md` is it.
pub fn doc_page(rule: &RuleInfo) -> String {
    format!(
        "# {} ({})\n\nDefault severity: {}. Minimum Python for the fix: {}.\n\n{}",
        rule.name,
        rule.id,
        rule.severity.as_str(),
        rule.min_python,
        docs_markdown_body(rule)
    )
}

/// `docs/rules/README.md`: the table of every rule.
pub fn doc_index() -> String {
    let mut out = String::from(
        "# Rules\n\nGenerated from the rules' doc comments (`ISOLINT_BLESS=1 cargo test --test it registry::` rewrites these pages).\n\n| id | name | severity | fix needs | summary |\n|---|---|---|---|---|\n",
    );
    for r in RULES {
        out.push_str(&format!(
            "| {} | [{}]({}.md) | {} | {} | {} |\n",
            r.id,
            r.name,
            r.name,
            r.severity.as_str(),
            r.min_python,
            r.summary
        ));
    }
    out
}

#[cfg(test)]
mod order_tests {
    use super::*;

    /// A rule that reads findings runs after the rules whose findings it reads: the verdict
    /// rules end the registry, and `mutated-static-definition` relates to `static-type-object`.
    /// (`Ctx` asserts the flag in debug builds whenever a rule reads findings.)
    #[test]
    fn the_rules_that_read_findings_come_after_what_they_read() {
        let position = |name: &str| RULES.iter().position(|r| r.name == name).unwrap();
        let first_verdict = position("missing-multiple-interpreters-slot");
        assert!(RULES[..first_verdict]
            .iter()
            .all(|r| !r.reads_findings || r.name == "mutated-static-definition"));
        assert!(position("static-type-object") < position("mutated-static-definition"));
        let readers: Vec<&str> = RULES
            .iter()
            .filter(|r| r.reads_findings)
            .map(|r| r.name)
            .collect();
        assert_eq!(
            readers,
            [
                "mutated-static-definition",
                "missing-gil-slot",
                "overclaimed-isolation",
                "underclaimed-isolation",
                "overclaimed-gil"
            ]
        );
    }
}
