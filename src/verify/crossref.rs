//! `--with-scan`: joins the static findings with what the children saw.
//!
//! A shared object is explained by the finding about the C variable behind it,
//! matched by name (`Foo` ↔ `Foo`, `FooType`, `Foo_Type`, `foo_type`...). A
//! crash is explained by the module's static `PyObject *` variables. Every
//! finding comes out `confirmed` or `not observed`, and a module the scanner
//! calls isolated that fails at run time is a miss of the scanner.

use super::matrix::{Cell, Check, Status};
use super::plan::ModuleResult;
use crate::finding::{Finding, Severity};
use serde::Serialize;
use serde_json::Value;
use std::fmt::Write;
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize)]
pub struct ScanJoin {
    pub paths: Vec<PathBuf>,
    /// Findings of the verified modules only.
    pub findings: Vec<JoinedFinding>,
    /// Runtime problems no finding explains.
    pub unexplained: Vec<Evidence>,
    /// Modules the scanner calls isolated whose runtime checks failed.
    pub missed: Vec<Missed>,
}

#[derive(Debug, Clone, Serialize)]
pub struct JoinedFinding {
    pub rule: String,
    pub name: String,
    pub path: PathBuf,
    pub line: usize,
    pub symbol: Option<String>,
    pub module: Option<String>,
    pub message: String,
    /// `confirmed`, `not observed`, or `not checkable` for a finding no run-time check can
    /// observe (an info hint, a missing slot).
    pub status: &'static str,
    pub evidence: Vec<Evidence>,
}

/// One runtime observation, e.g. `shared Registry.entries` in shared-objects on 3.12.
#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    pub module: String,
    pub python: String,
    pub check: &'static str,
    pub observed: String,
    /// How the observation was tied to the finding; see `Link`.
    pub link: Link,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Link {
    /// The finding's symbol names the shared object.
    Name,
    /// The module's init kind is what the runtime refused or copied.
    Kind,
    /// The only static of the module that could be behind the problem.
    SoleCandidate,
    /// One of several statics that could be behind the problem.
    Candidate,
    /// Nothing explains the observation.
    None,
}

impl Link {
    fn confirms(self) -> bool {
        matches!(self, Link::Name | Link::Kind | Link::SoleCandidate)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Missed {
    pub module: String,
    pub static_verdict: String,
    pub failures: Vec<String>,
}

/// What the scanner concluded about one module.
#[derive(Debug, Clone)]
pub struct StaticModule {
    pub name: String,
    pub isolated: bool,
    pub verdict: String,
    /// The free-threading verdict: no finding blocks `Py_MOD_GIL_NOT_USED`.
    pub gil_not_used: bool,
}

pub fn join(paths: &[PathBuf], modules: &mut [ModuleResult]) -> Result<ScanJoin, String> {
    let (findings, statics) = scan(paths)?;
    Ok(join_findings(paths, &findings, &statics, modules))
}

fn scan(paths: &[PathBuf]) -> Result<(Vec<Finding>, Vec<StaticModule>), String> {
    let analysis = crate::analyze(&crate::AnalyzeOptions {
        paths: paths.to_vec(),
        ..Default::default()
    });
    if analysis.nothing_scanned() {
        let why: Vec<String> = analysis
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.path.display(), e.message))
            .collect();
        return Err(format!(
            "--with-scan found nothing to scan: {}",
            why.join("; ")
        ));
    }
    let statics = analysis
        .modules
        .iter()
        .map(|summary| {
            let name = summary.name.clone();
            // Prefer the scanner's own verdict when its summary carries one.
            let summary_json = serde_json::to_value(summary).ok();
            let declared = summary_json.as_ref().and_then(verdict_text);
            let gil_not_used = summary_json
                .as_ref()
                .and_then(|v| v.pointer("/verdict/gil/supported"))
                .and_then(Value::as_str)
                == Some("not-used");
            let problems = analysis
                .findings
                .iter()
                .filter(|f| f.severity >= Severity::Warning && same_module(f, &name))
                .count();
            match declared {
                Some(verdict) => StaticModule {
                    isolated: verdict.starts_with("isolated"),
                    verdict,
                    name,
                    gil_not_used,
                },
                None => StaticModule {
                    isolated: problems == 0,
                    gil_not_used,
                    verdict: if problems == 0 {
                        "isolated (no warning or error findings)".into()
                    } else {
                        format!("not isolated ({problems} warning or error findings)")
                    },
                    name,
                },
            }
        })
        .collect();
    Ok((analysis.findings, statics))
}

fn verdict_text(summary: &Value) -> Option<String> {
    match summary.get("verdict")? {
        Value::String(text) => Some(text.clone()),
        Value::Object(map) => map
            .get("status")
            .or_else(|| map.get("verdict"))
            .and_then(Value::as_str)
            .map(str::to_string),
        _ => None,
    }
}

/// Lower case, no underscores, no `type`/`object` suffix: `Foo_Type` → `foo`.
fn norm(name: &str) -> String {
    let mut n: String = name
        .chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect();
    for suffix in ["typeobject", "type", "object", "obj"] {
        if n.len() > suffix.len() && n.ends_with(suffix) {
            n.truncate(n.len() - suffix.len());
            break;
        }
    }
    n
}

/// Does the finding name the shared object: its symbol names a component of
/// the object's path (`Registry.entries` ↔ `entries`; `Error` ↔ `LegacyError`;
/// `Counter` ↔ `CounterType`), or its message quotes the Python name
/// (`mmh3.mmh3_32`, the `tp_name` of `MMH3Hasher32Type`)?
fn names_object(finding: &Finding, object: &str, module: &str) -> bool {
    let head = object.split(['.', '[']).next().unwrap_or(object);
    let dotted = format!("{}.{head}`", last(module));
    let message = &finding.message;
    if message.contains(&format!("`{dotted}")) || message.contains(&format!(".{dotted}")) {
        return true;
    }
    let Some(symbol) = finding.symbol.as_deref() else {
        return false;
    };
    let symbol = norm(symbol);
    object
        .split(['.', '[', ']', '\'', '"'])
        .filter(|part| !part.is_empty() && !part.starts_with("__"))
        .map(norm)
        .any(|part| part == symbol || (part.len() >= 4 && symbol.ends_with(&part)))
}

fn last(module: &str) -> &str {
    module.rsplit('.').next().unwrap_or(module)
}

fn same_module(finding: &Finding, module: &str) -> bool {
    finding
        .module
        .as_deref()
        .is_none_or(|m| last(m) == last(module))
}

/// Rules about statics that can hold a Python object, i.e. can be shared or dangle.
const OBJECT_STATICS: [&str; 3] = [
    "global-pyobject",
    "static-local-pyobject",
    "static-type-object",
];

/// Rules about the module's init kind.
const KIND_RULES: [&str; 2] = ["single-phase-init", "negative-m-size"];

/// Rules whose findings a run-time check can observe: the init kind (refused or copied),
/// objects shared between interpreters (types, exceptions, singletons, cached objects), and
/// the flags that make a second instance skip its setup. Anything else (a `const` hint, a
/// missing slot, a C table) no child process can see, so "not observed" would say nothing.
const OBSERVABLE_RULES: [&str; 8] = [
    "single-phase-init",
    "negative-m-size",
    "global-pyobject",
    "static-local-pyobject",
    "static-type-object",
    "global-exception-object",
    "static-object-singleton",
    "mutable-global-state",
];

/// Free-threading hazards the `threads` check can observe: a race shows up as a crash, an
/// exception or a wrong result when the exercise runs in eight threads with the GIL off.
const RACE_RULES: [&str; 5] = [
    "unlocked-static-write",
    "unlocked-lazy-init",
    "borrowed-reference",
    "unlocked-container-iteration",
    "refcount-uniqueness-test",
];

/// Findings that say the GIL will be turned back on at import: what `gil-reenabled` sees.
const GIL_DECLARATION_RULES: [&str; 2] = ["missing-gil-slot", "single-phase-free-threaded"];

/// Checks that answer the free-threading verdict rather than the isolation one.
fn free_threading_check(check: Check) -> bool {
    matches!(check, Check::GilReenabled | Check::Threads)
}

/// Can a check that ran for this finding's module have observed it? The isolation rules are
/// observable by the default checks; the free-threading ones only where a free-threaded Python
/// ran `threads` (races) or `gil-reenabled` (the declaration), so on a default build they stay
/// `not checkable` rather than `not observed`.
fn observable(finding: &Finding, ran: &[Check]) -> bool {
    if RACE_RULES.contains(&finding.name) {
        return ran.contains(&Check::Threads);
    }
    if GIL_DECLARATION_RULES.contains(&finding.name) {
        return ran.contains(&Check::GilReenabled);
    }
    finding.severity >= Severity::Warning && OBSERVABLE_RULES.contains(&finding.name)
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

struct Joiner<'a> {
    findings: &'a [Finding],
    evidence: Vec<Vec<Evidence>>,
    unexplained: Vec<Evidence>,
}

impl Joiner<'_> {
    fn of_module<'b>(&'b self, module: &'b str) -> impl Iterator<Item = usize> + 'b {
        (0..self.findings.len()).filter(move |&i| same_module(&self.findings[i], module))
    }

    /// Findings that name `object`, plus the other findings about the same
    /// symbol (a forward declaration and the definition of one static type).
    fn naming(&self, module: &str, object: &str) -> Vec<usize> {
        let direct: Vec<usize> = self
            .of_module(module)
            .filter(|&i| names_object(&self.findings[i], object, module))
            .collect();
        let symbols: Vec<&Option<String>> =
            direct.iter().map(|&i| &self.findings[i].symbol).collect();
        self.of_module(module)
            .filter(|&i| {
                direct.contains(&i)
                    || (self.findings[i].symbol.is_some()
                        && symbols.contains(&&self.findings[i].symbol)
                        && OBJECT_STATICS.contains(&self.findings[i].name))
            })
            .collect()
    }

    /// Records the observation against `hits` and returns the citations.
    /// `attach` for findings that may explain what was seen: the only one, or one of several.
    fn attach_candidates(&mut self, seen: &Evidence, hits: &[usize]) -> Vec<String> {
        let link = if hits.len() == 1 {
            Link::SoleCandidate
        } else {
            Link::Candidate
        };
        self.attach(seen, hits, link)
    }

    fn attach(&mut self, seen: &Evidence, hits: &[usize], link: Link) -> Vec<String> {
        if hits.is_empty() {
            self.unexplained.push(Evidence {
                link: Link::None,
                ..seen.clone()
            });
        }
        hits.iter()
            .map(|&i| {
                self.evidence[i].push(Evidence {
                    link,
                    ..seen.clone()
                });
                cite(&self.findings[i])
            })
            .collect()
    }

    fn cell(&mut self, module: &str, python: &str, single_phase: bool, cell: &mut Cell) {
        let seen = |observed: String| Evidence {
            module: module.to_string(),
            python: python.to_string(),
            check: cell.check.id(),
            observed,
            link: Link::None,
        };
        let named: Vec<usize> = cell
            .shared
            .iter()
            .flat_map(|s| self.naming(module, &s.name))
            .collect();
        // Statics no shared name points at are the candidates for what is left.
        let spare: Vec<usize> = self
            .of_module(module)
            .filter(|&i| OBJECT_STATICS.contains(&self.findings[i].name) && !named.contains(&i))
            .collect();
        let mut shared = std::mem::take(&mut cell.shared);
        // CPython itself hands a single-phase module's functions to every legacy interpreter:
        // the init kind explains those, all of them at once, so they make one observation
        // (eleven functions are one fact, not eleven).
        let copied: Vec<usize> = (0..shared.len())
            .filter(|&k| {
                single_phase
                    && shared[k].type_name == "builtin_function_or_method"
                    && self.naming(module, &shared[k].name).is_empty()
            })
            .collect();
        if !copied.is_empty() {
            let names: Vec<&str> = copied.iter().map(|&k| shared[k].name.as_str()).collect();
            let observed = seen(format!(
                "{} copied with the module dict: {}",
                plural(names.len(), "shared function"),
                names.join(", ")
            ));
            let kinds: Vec<usize> = self
                .of_module(module)
                .filter(|&i| KIND_RULES.contains(&self.findings[i].name))
                .collect();
            let cited = self.attach(&observed, &kinds, Link::Kind);
            for &k in &copied {
                shared[k].explained_by = cited.clone();
            }
        }
        for (k, object) in shared.iter_mut().enumerate() {
            if copied.contains(&k) {
                continue;
            }
            let observed = seen(format!("shared {} ({})", object.name, object.type_name));
            let hits = self.naming(module, &object.name);
            object.explained_by = if hits.is_empty() {
                self.attach_candidates(&observed, &spare)
            } else {
                self.attach(&observed, &hits, Link::Name)
            };
        }
        cell.shared = shared;

        if free_threading_check(cell.check) {
            let cited = self.free_threading_cell(module, python, single_phase, cell);
            cell.explained_by.extend(cited);
            return;
        }
        let mut cited = Vec::new();
        if !cell.missing.is_empty() {
            // An attribute only the first instance gets: exec skipped its work,
            // guarded by a static flag, so the statics it sets up are behind it.
            let names: Vec<String> = cell.missing.iter().map(|m| m.name.clone()).collect();
            let observed = seen(format!("a later instance lacks {}", names.join(", ")));
            let named: Vec<usize> = names.iter().flat_map(|n| self.naming(module, n)).collect();
            if !named.is_empty() {
                cited.extend(self.attach(&observed, &named, Link::Name));
            }
            let mut guards: Vec<usize> = self
                .of_module(module)
                .filter(|&i| self.findings[i].name == "mutable-global-state")
                .collect();
            // A flag named for initialisation is the usual guard; prefer it.
            let init_flags: Vec<usize> = guards
                .iter()
                .copied()
                .filter(|&i| {
                    let symbol = self.findings[i].symbol.as_deref().unwrap_or("");
                    symbol.to_lowercase().contains("init")
                })
                .collect();
            if init_flags.len() == 1 {
                guards = init_flags;
            }
            if !guards.is_empty() || named.is_empty() {
                cited.extend(self.attach_candidates(&observed, &guards));
            }
        }
        if matches!(cell.status, Status::Crashed | Status::Timeout) {
            let observed = seen(format!(
                "{} at \"{}\"",
                cell.label(),
                cell.stage.as_deref().unwrap_or("?")
            ));
            let statics: Vec<usize> = self
                .of_module(module)
                .filter(|&i| OBJECT_STATICS.contains(&self.findings[i].name))
                .collect();
            cited.extend(self.attach_candidates(&observed, &statics));
        }
        let refused = cell.check == Check::IsolatedImport && cell.status == Status::Refused;
        let copied = cell.check == Check::SharedObjects
            && cell.status == Status::Fail
            && single_phase
            && cell.mode.as_deref() == Some("legacy");
        if refused || copied {
            let observed = seen(if refused {
                "refused in an isolated interpreter".into()
            } else {
                "the module dict is copied into legacy sub-interpreters".into()
            });
            let kinds: Vec<usize> = self
                .of_module(module)
                .filter(|&i| {
                    let rule = self.findings[i].name;
                    rule == "single-phase-init" || (copied && KIND_RULES.contains(&rule))
                })
                .collect();
            if !kinds.is_empty() || single_phase {
                cited.extend(self.attach(&observed, &kinds, Link::Kind));
            }
        }
        cell.explained_by.extend(cited);
    }
}

impl Joiner<'_> {
    /// `threads` and `gil-reenabled` on a free-threaded Python: a race is explained by the
    /// module's free-threading hazards, a GIL turned back on by its missing declaration.
    fn free_threading_cell(
        &mut self,
        module: &str,
        python: &str,
        single_phase: bool,
        cell: &Cell,
    ) -> Vec<String> {
        let seen = |observed: String| Evidence {
            module: module.to_string(),
            python: python.to_string(),
            check: cell.check.id(),
            observed,
            link: Link::None,
        };
        match (cell.check, cell.status) {
            (Check::Threads, status) if status.is_failure() => {
                let observed = seen(match cell.stage.as_deref() {
                    Some(stage) if status != Status::Fail => {
                        format!("{} with the GIL off at \"{stage}\"", cell.label())
                    }
                    _ => format!("{} with the GIL off", cell.label()),
                });
                let races: Vec<usize> = self
                    .of_module(module)
                    .filter(|&i| RACE_RULES.contains(&self.findings[i].name))
                    .collect();
                self.attach_candidates(&observed, &races)
            }
            (Check::GilReenabled, Status::Refused) => {
                let observed = seen("the GIL was turned back on at import".into());
                let declarations: Vec<usize> = self
                    .of_module(module)
                    .filter(|&i| {
                        let rule = self.findings[i].name;
                        GIL_DECLARATION_RULES.contains(&rule)
                            || (single_phase && rule == "single-phase-init")
                    })
                    .collect();
                self.attach(&observed, &declarations, Link::Kind)
            }
            // The module declares `Py_MOD_GIL_NOT_USED` and the GIL came on anyway: no static
            // finding explains that.
            (Check::GilReenabled, Status::Fail) => {
                let observed = seen(format!("the GIL came back on: {}", cell.detail));
                self.attach(&observed, &[], Link::None)
            }
            _ => Vec::new(),
        }
    }
}

/// The status of a finding that no run-time check could have observed.
pub const NOT_CHECKABLE: &str = "not checkable";

pub fn join_findings(
    paths: &[PathBuf],
    findings: &[Finding],
    statics: &[StaticModule],
    modules: &mut [ModuleResult],
) -> ScanJoin {
    let mut joiner = Joiner {
        findings,
        evidence: vec![Vec::new(); findings.len()],
        unexplained: Vec::new(),
    };
    let mut missed = Vec::new();
    // Per verified module, the checks that ran (not `n/a`) on some Python.
    let mut ran: Vec<(String, Vec<Check>)> = Vec::new();
    for module in modules.iter_mut() {
        let name = module.name.clone();
        let mut failures = Vec::new();
        let mut gil_failures = Vec::new();
        let mut checks = Vec::new();
        for column in &mut module.results {
            let single_phase = column
                .module
                .as_ref()
                .and_then(|m| m.get("init"))
                .and_then(Value::as_str)
                .is_some_and(|init| init == "single-phase");
            for cell in &mut column.cells {
                if cell.status != Status::NotApplicable && !checks.contains(&cell.check) {
                    checks.push(cell.check);
                }
                // `fail` in gil-reenabled: the module declares NOT_USED and the GIL came on.
                if cell.status.is_failure() {
                    let failure =
                        format!("{} on {}: {}", cell.check.id(), column.python, cell.label());
                    if free_threading_check(cell.check) {
                        gil_failures.push(failure);
                    } else {
                        failures.push(failure);
                    }
                }
                joiner.cell(&name, &column.python, single_phase, cell);
            }
        }
        let verdict = statics.iter().find(|s| last(&s.name) == last(&name));
        // Each verdict answers for its own checks: a race with the GIL off says nothing about
        // sub-interpreters, and a shared object says nothing about `Py_MOD_GIL_NOT_USED`.
        if let Some(verdict) = verdict.filter(|v| v.isolated && !failures.is_empty()) {
            missed.push(Missed {
                module: name.clone(),
                static_verdict: verdict.verdict.clone(),
                failures,
            });
        }
        if let Some(verdict) = verdict.filter(|v| v.gil_not_used && !gil_failures.is_empty()) {
            missed.push(Missed {
                module: name.clone(),
                static_verdict: format!(
                    "{}; free-threading: Py_MOD_GIL_NOT_USED supported",
                    verdict.verdict
                ),
                failures: gil_failures,
            });
        }
        ran.push((name, checks));
    }
    let verified: Vec<&str> = modules.iter().map(|m| m.name.as_str()).collect();
    let Joiner {
        evidence,
        unexplained,
        ..
    } = joiner;
    let findings = findings
        .iter()
        .zip(evidence)
        .filter(|(f, _)| verified.iter().any(|m| same_module(f, m)))
        .map(|(f, evidence)| JoinedFinding {
            rule: f.rule.to_string(),
            name: f.name.to_string(),
            path: f.path.clone(),
            line: f.location.line,
            symbol: f.symbol.clone(),
            module: f.module.clone(),
            message: f.message.clone(),
            status: if evidence.iter().any(|e| e.link.confirms()) {
                "confirmed"
            } else if !evidence.is_empty()
                || ran
                    .iter()
                    .any(|(m, checks)| same_module(f, m) && observable(f, checks))
            {
                "not observed"
            } else {
                NOT_CHECKABLE
            },
            evidence,
        })
        .collect();
    ScanJoin {
        paths: paths.to_vec(),
        findings,
        unexplained,
        missed,
    }
}

fn cite(finding: &Finding) -> String {
    format!(
        "{} {} at {}:{}",
        finding.name,
        finding.symbol.as_deref().unwrap_or("?"),
        finding.path.display(),
        finding.location.line
    )
}

impl ScanJoin {
    /// A module the scanner called isolated failed at run time: the scanner missed something.
    pub fn missed_by_scan(&self) -> bool {
        !self.missed.is_empty()
    }

    pub fn miss_banner(&self) -> String {
        let mut out = String::new();
        for miss in &self.missed {
            let _ = writeln!(
                out,
                "!! SCANNER MISS: `{}` is \"{}\" statically, but at run time: {}",
                miss.module,
                miss.static_verdict,
                miss.failures.join("; ")
            );
        }
        out
    }

    pub fn write_human(&self, out: &mut String) {
        out.push_str(&self.miss_banner());
        let count = |status: &str| self.findings.iter().filter(|f| f.status == status).count();
        let unchecked = count(NOT_CHECKABLE);
        let _ = write!(
            out,
            "static findings: {} confirmed, {} not observed",
            count("confirmed"),
            count("not observed")
        );
        if unchecked > 0 {
            let _ = write!(
                out,
                ", {unchecked} no run-time check can observe (hints, slots, C tables, races without a free-threaded run; not listed)"
            );
        }
        out.push('\n');
        for f in self.findings.iter().filter(|f| f.status != NOT_CHECKABLE) {
            let _ = writeln!(
                out,
                "  {:<12} {}:{} {} {} `{}`",
                f.status,
                f.path.display(),
                f.line,
                f.rule,
                f.name,
                f.symbol.as_deref().unwrap_or("-")
            );
            for line in evidence_lines(&f.evidence) {
                let _ = writeln!(out, "      {line}");
            }
        }
        for e in &self.unexplained {
            let _ = writeln!(
                out,
                "  unexplained  {} [{}] {}: {} - no static finding accounts for it",
                e.module, e.python, e.check, e.observed
            );
        }
    }
}

/// One line per observation, with every Python that made it: `[3.12, 3.13] shared-objects:
/// ...` instead of the same line once per Python.
fn evidence_lines(evidence: &[Evidence]) -> Vec<String> {
    let mut grouped: Vec<(&Evidence, Vec<&str>)> = Vec::new();
    for e in evidence {
        let same = grouped
            .iter_mut()
            .find(|(g, _)| g.check == e.check && g.observed == e.observed && g.link == e.link);
        match same {
            Some((_, pythons)) => {
                if !pythons.contains(&e.python.as_str()) {
                    pythons.push(&e.python);
                }
            }
            None => grouped.push((e, vec![e.python.as_str()])),
        }
    }
    grouped
        .into_iter()
        .map(|(e, pythons)| {
            format!(
                "[{}] {}: {} ({})",
                pythons.join(", "),
                e.check,
                e.observed,
                link_text(e.link)
            )
        })
        .collect()
}

fn link_text(link: Link) -> &'static str {
    match link {
        Link::Name => "by name",
        Link::Kind => "by init kind",
        Link::SoleCandidate => "the only candidate static",
        Link::Candidate => "one of several candidate statics",
        Link::None => "unexplained",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::Location;
    use crate::verify::matrix::SharedObject;
    use crate::verify::plan::Column;

    fn finding(name: &'static str, symbol: &str, module: &str) -> Finding {
        Finding {
            rule: "ISO000",
            name,
            severity: Severity::Warning,
            path: PathBuf::from("m.c"),
            location: Location {
                line: 7,
                ..Location::default()
            },
            symbol: Some(symbol.to_string()),
            function: None,
            module: Some(module.to_string()),
            message: String::new(),
            help: String::new(),
            python: crate::version::VersionRange::ALL,
            uncertain: false,
            related: Vec::new(),
        }
    }

    /// What the scanner said of module `m`.
    fn static_module(isolated: bool, verdict: &str, gil_not_used: bool) -> StaticModule {
        StaticModule {
            name: "m".into(),
            isolated,
            verdict: verdict.into(),
            gil_not_used,
        }
    }

    fn module(name: &str, cells: Vec<Cell>) -> ModuleResult {
        ModuleResult {
            name: name.into(),
            targets: vec![name.into()],
            results: vec![Column {
                python: "3.13.0".into(),
                target: Some(name.into()),
                module: None,
                cells,
            }],
        }
    }

    fn shared(names: &[&str]) -> Cell {
        let mut cell = Cell::new(Check::SharedObjects, Status::Fail, "shared");
        cell.shared = names
            .iter()
            .map(|n| SharedObject {
                name: n.to_string(),
                type_name: "type".into(),
                interpreters: vec!["main".into(), "sub1".into()],
                nested: 0,
                explained_by: Vec::new(),
            })
            .collect();
        cell
    }

    #[test]
    fn names_match_type_and_exception_spellings() {
        let f = |s: &str| finding("static-type-object", s, "m");
        assert!(names_object(&f("FooType"), "Foo", "m"));
        assert!(names_object(&f("Foo_Type"), "Foo", "m"));
        assert!(names_object(&f("foo_type"), "Foo", "m"));
        assert!(names_object(&f("Foo"), "Foo", "m"));
        assert!(names_object(&f("entries"), "Registry.entries", "m"));
        assert!(names_object(&f("LegacyError"), "Error", "m"));
        assert!(!names_object(&f("cache"), "registry", "m"));
        assert!(!names_object(&f("Bar"), "Foo", "m"));
        let mut quoted = f("MMH3Hasher32Type");
        quoted.message = "`MMH3Hasher32Type` (`pkg.mmh3.mmh3_32`) is a static type object".into();
        assert!(names_object(&quoted, "mmh3_32.update", "mmh3"));
        assert!(!names_object(&quoted, "mmh3_x64_128", "mmh3"));
    }

    #[test]
    fn shared_objects_confirm_findings_and_leftovers_are_reported() {
        let findings = vec![
            finding("static-type-object", "FooType", "m"),
            finding("global-pyobject", "unused_cache", "m"),
            finding("global-pyobject", "other", "elsewhere"),
        ];
        let mut modules = vec![module(
            "pkg.m",
            vec![shared(&["Foo", "Foo.__dict__", "mystery"])],
        )];
        let join = join_findings(&[], &findings, &[], &mut modules);
        assert_eq!(
            join.findings.len(),
            2,
            "findings of unverified modules are left out"
        );
        assert_eq!(join.findings[0].status, "confirmed");
        let shared = &modules[0].results[0].cells[0].shared;
        assert_eq!(
            shared[0].explained_by,
            ["static-type-object FooType at m.c:7"]
        );
        // `mystery` is pinned on the one static no name claimed.
        assert_eq!(
            shared[2].explained_by,
            ["global-pyobject unused_cache at m.c:7"]
        );
        assert_eq!(join.findings[1].status, "confirmed");
        assert!(join.missed.is_empty());
    }

    #[test]
    fn a_runtime_failure_of_a_statically_isolated_module_is_a_miss() {
        let mut crash = Cell::new(Check::Cycles, Status::Crashed, "boom");
        crash.signal = Some("SIGSEGV".into());
        crash.stage = Some("cycles: cycle 2/20 import".into());
        let mut modules = vec![module("m", vec![crash])];
        let statics = vec![static_module(true, "isolated", false)];
        let join = join_findings(&[], &[], &statics, &mut modules);
        assert!(join.missed_by_scan());
        assert_eq!(
            join.missed[0].failures,
            ["cycles on 3.13.0: crashed (SIGSEGV)"]
        );
        assert_eq!(join.unexplained.len(), 1);
        assert!(join.miss_banner().contains("SCANNER MISS"));
    }

    #[test]
    fn copied_functions_are_one_observation_and_hints_are_not_listed() {
        let mut hint = finding("could-be-const", "table", "m");
        hint.severity = Severity::Info;
        let findings = vec![finding("single-phase-init", "PyInit_m", "m"), hint];
        let copied = |python: &str| {
            let mut cell = shared(&["f1", "f2", "f3"]);
            for object in &mut cell.shared {
                object.type_name = "builtin_function_or_method".into();
            }
            cell.mode = Some("legacy".into());
            Column {
                python: python.into(),
                target: Some("m".into()),
                module: Some(serde_json::json!({"init": "single-phase"})),
                cells: vec![cell],
            }
        };
        let mut modules = vec![ModuleResult {
            name: "m".into(),
            targets: vec!["m".into()],
            results: vec![copied("3.12.1"), copied("3.13.0")],
        }];
        let join = join_findings(&[], &findings, &[], &mut modules);
        let init = &join.findings[0];
        assert_eq!(init.status, "confirmed");
        let mut text = String::new();
        join.write_human(&mut text);
        let copied_lines: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("copied with the module dict: f1, f2, f3"))
            .collect();
        assert_eq!(copied_lines.len(), 1, "{text}");
        assert!(copied_lines[0].contains("[3.12.1, 3.13.0]"), "{text}");
        assert_eq!(join.findings[1].status, NOT_CHECKABLE);
        assert!(!text.contains("could-be-const"), "{text}");
        assert!(text.contains("1 no run-time check can observe"), "{text}");
    }

    #[test]
    fn a_crash_with_several_candidates_confirms_none() {
        let findings = vec![
            finding("global-pyobject", "a", "m"),
            finding("global-pyobject", "b", "m"),
        ];
        let crash = Cell::new(Check::TwoInstances, Status::Crashed, "boom");
        let mut modules = vec![module("m", vec![crash])];
        let join = join_findings(&[], &findings, &[], &mut modules);
        assert!(join.findings.iter().all(|f| f.status == "not observed"));
        assert_eq!(modules[0].results[0].cells[0].explained_by.len(), 2);
    }

    fn free_threaded_column(name: &str, cells: Vec<Cell>) -> ModuleResult {
        let mut m = module(name, cells);
        m.results[0].python = "3.13.5t".into();
        m
    }

    #[test]
    fn a_race_with_the_gil_off_confirms_the_only_free_threading_hazard() {
        let findings = vec![
            finding("unlocked-lazy-init", "scratch", "m"),
            finding("global-pyobject", "cache", "m"),
        ];
        let mut modules = vec![free_threaded_column(
            "m",
            vec![
                Cell::new(Check::GilReenabled, Status::Pass, "GIL stays off"),
                Cell::new(Check::Threads, Status::Fail, "wrong result"),
            ],
        )];
        let statics = vec![static_module(false, "not isolated", false)];
        let join = join_findings(&[], &findings, &statics, &mut modules);
        let race = &join.findings[0];
        assert_eq!(race.status, "confirmed");
        assert_eq!(race.evidence[0].check, "threads");
        assert_eq!(race.evidence[0].link, Link::SoleCandidate);
        // The isolation finding is not tied to a race it cannot cause.
        assert!(join.findings[1].evidence.is_empty());
        assert_eq!(
            modules[0].results[0].cells[1].explained_by,
            ["unlocked-lazy-init scratch at m.c:7"]
        );
        assert!(join.missed.is_empty(), "the scanner said `used`");
    }

    #[test]
    fn a_race_in_a_module_the_scanner_calls_gil_free_is_a_miss() {
        let mut crash = Cell::new(Check::Threads, Status::Crashed, "boom");
        crash.signal = Some("SIGSEGV".into());
        let mut modules = vec![free_threaded_column("m", vec![crash])];
        let statics = vec![static_module(true, "isolated", true)];
        let join = join_findings(&[], &[], &statics, &mut modules);
        assert_eq!(join.missed.len(), 1, "{:?}", join.missed);
        assert!(join.missed[0]
            .static_verdict
            .contains("GIL_NOT_USED supported"));
        assert_eq!(
            join.missed[0].failures,
            ["threads on 3.13.5t: crashed (SIGSEGV)"]
        );
        assert_eq!(join.unexplained.len(), 1);
    }

    #[test]
    fn a_gil_turned_back_on_confirms_the_missing_declaration() {
        let mut slot = finding("missing-gil-slot", "PyInit_m", "m");
        slot.severity = Severity::Info;
        let race = finding("unlocked-static-write", "counter", "m");
        let findings = vec![slot.clone(), race.clone()];
        let mut modules = vec![free_threaded_column(
            "m",
            vec![Cell::new(
                Check::GilReenabled,
                Status::Refused,
                "turned the GIL back on",
            )],
        )];
        let join = join_findings(&[], &findings, &[], &mut modules);
        assert_eq!(join.findings[0].status, "confirmed");
        assert_eq!(join.findings[0].evidence[0].link, Link::Kind);
        // No `threads` ran (no --exercise): the race cannot have been observed.
        assert_eq!(join.findings[1].status, NOT_CHECKABLE);

        // On a default build neither free-threading finding is checkable.
        let mut default_build = vec![module(
            "m",
            vec![Cell::new(Check::GilReenabled, Status::NotApplicable, "n/a")],
        )];
        let join = join_findings(&[], &findings, &[], &mut default_build);
        assert!(join.findings.iter().all(|f| f.status == NOT_CHECKABLE));
    }
}
