//! `--with-scan`: joins the static findings with what the children saw.
//!
//! A shared object is explained by the finding about the C variable behind it,
//! matched by name (`Foo` ↔ `Foo`, `FooType`, `Foo_Type`, `foo_type`...). A
//! crash is explained by the module's static `PyObject *` variables. Every
//! finding comes out `confirmed` or `not observed`, and a module the scanner
//! calls isolated that fails at run time is a miss of the scanner.

use super::matrix::{Check, Status};
use super::plan::ModuleResult;
use crate::finding::Finding;
use serde::Serialize;
use std::fmt::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize)]
pub struct ScanJoin {
    pub paths: Vec<PathBuf>,
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
    /// `confirmed` or `not observed`.
    pub status: &'static str,
    pub evidence: Vec<Evidence>,
}

/// One runtime observation, e.g. `shared Registry.entries` in shared-objects on 3.12.1.
#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    pub module: String,
    pub python: String,
    pub check: &'static str,
    pub observed: String,
    /// `name` (the finding names the object), `kind` (the module's init kind
    /// is what the runtime refused) or `candidate` (one of several statics that
    /// could have caused a crash).
    pub link: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Missed {
    pub module: String,
    pub static_verdict: String,
    pub failures: Vec<String>,
}

/// What the scanner said about one module.
pub struct StaticModule {
    pub name: String,
    /// True when the scanner's verdict is that the module is isolated.
    pub isolated: bool,
    pub verdict: String,
}

pub fn join(paths: &[PathBuf], modules: &mut [ModuleResult]) -> Result<ScanJoin, String> {
    let (findings, statics) = scan(paths)?;
    Ok(join_findings(paths, &findings, &statics, modules))
}

fn scan(paths: &[PathBuf]) -> Result<(Vec<Finding>, Vec<StaticModule>), String> {
    let _ = paths;
    Err("the static scanner is not available in this build".into())
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

/// Does the finding's symbol name a component of the shared object's path?
fn names_object(finding: &Finding, object: &str) -> bool {
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

fn same_module(finding: &Finding, module: &str) -> bool {
    let last = |m: &str| m.rsplit('.').next().unwrap_or(m).to_string();
    finding
        .module
        .as_deref()
        .map_or(true, |m| last(m) == last(module))
}

const POINTER_STATICS: [&str; 3] = [
    "global-pyobject",
    "static-local-pyobject",
    "static-type-object",
];

pub fn join_findings(
    paths: &[PathBuf],
    findings: &[Finding],
    statics: &[StaticModule],
    modules: &mut [ModuleResult],
) -> ScanJoin {
    let mut evidence: Vec<Vec<Evidence>> = vec![Vec::new(); findings.len()];
    let mut unexplained = Vec::new();
    let mut missed = Vec::new();
    for module in modules.iter_mut() {
        let name = module.name.clone();
        let mut failures = Vec::new();
        for column in &mut module.results {
            for cell in &mut column.cells {
                let seen = |observed: String, link| Evidence {
                    module: name.clone(),
                    python: column.python.clone(),
                    check: cell.check.id(),
                    observed,
                    link,
                };
                if cell.status.is_failure() {
                    failures.push(format!(
                        "{} on {}: {}",
                        cell.check.id(),
                        column.python,
                        cell.label()
                    ));
                }
                let mut explained_cell = Vec::new();
                for shared in &mut cell.shared {
                    let observed = format!("shared {} ({})", shared.name, shared.type_name);
                    let hits: Vec<usize> = (0..findings.len())
                        .filter(|&i| same_module(&findings[i], &name))
                        .filter(|&i| names_object(&findings[i], &shared.name))
                        .collect();
                    if hits.is_empty() {
                        unexplained.push(seen(observed.clone(), "name"));
                    }
                    for i in hits {
                        shared.explained_by.push(cite(&findings[i]));
                        evidence[i].push(seen(observed.clone(), "name"));
                    }
                }
                if matches!(cell.status, Status::Crashed | Status::Timeout) {
                    let observed = format!(
                        "{} at {}",
                        cell.label(),
                        cell.stage.as_deref().unwrap_or("?")
                    );
                    let hits: Vec<usize> = (0..findings.len())
                        .filter(|&i| same_module(&findings[i], &name))
                        .filter(|&i| POINTER_STATICS.contains(&findings[i].name))
                        .collect();
                    if hits.is_empty() {
                        unexplained.push(seen(observed.clone(), "candidate"));
                    }
                    let link = if hits.len() == 1 { "name" } else { "candidate" };
                    for &i in &hits {
                        explained_cell.push(cite(&findings[i]));
                        evidence[i].push(seen(observed.clone(), link));
                    }
                }
                if cell.check == Check::IsolatedImport && cell.status == Status::Refused {
                    for (i, finding) in findings.iter().enumerate() {
                        if finding.name == "single-phase-init" && same_module(finding, &name) {
                            explained_cell.push(cite(finding));
                            evidence[i]
                                .push(seen("refused in an isolated interpreter".into(), "kind"));
                        }
                    }
                }
                cell.explained_by.extend(explained_cell);
            }
        }
        let verdict = statics.iter().find(|s| {
            let last = |m: &str| m.rsplit('.').next().unwrap_or(m).to_string();
            last(&s.name) == last(&name)
        });
        if let Some(verdict) = verdict.filter(|v| v.isolated) {
            if !failures.is_empty() {
                missed.push(Missed {
                    module: name.clone(),
                    static_verdict: verdict.verdict.clone(),
                    failures,
                });
            }
        }
    }
    let findings = findings
        .iter()
        .zip(evidence)
        .map(|(f, evidence)| JoinedFinding {
            rule: f.rule.to_string(),
            name: f.name.to_string(),
            path: f.path.clone(),
            line: f.location.line,
            symbol: f.symbol.clone(),
            module: f.module.clone(),
            message: f.message.clone(),
            status: if evidence.iter().any(|e| e.link != "candidate") {
                "confirmed"
            } else {
                "not observed"
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
        display(&finding.path),
        finding.location.line
    )
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

impl ScanJoin {
    /// A module the scanner called isolated failed at run time: the scanner missed something.
    pub fn missed_by_scan(&self) -> bool {
        !self.missed.is_empty()
    }

    pub fn write_human(&self, out: &mut String) {
        for miss in &self.missed {
            let _ = writeln!(
                out,
                "!! SCANNER MISS: {} is `{}` statically, but at run time: {}",
                miss.module,
                miss.static_verdict,
                miss.failures.join("; ")
            );
        }
        let confirmed = self
            .findings
            .iter()
            .filter(|f| f.status == "confirmed")
            .count();
        let _ = writeln!(
            out,
            "static findings: {} confirmed, {} not observed",
            confirmed,
            self.findings.len() - confirmed
        );
        for f in &self.findings {
            let _ = writeln!(
                out,
                "  {:<13} {}:{} {} {} ({})",
                f.status,
                display(&f.path),
                f.line,
                f.rule,
                f.name,
                f.symbol.as_deref().unwrap_or("-")
            );
            for e in &f.evidence {
                let _ = writeln!(
                    out,
                    "      {} [{}] {}: {}",
                    e.module, e.python, e.check, e.observed
                );
            }
        }
        for e in &self.unexplained {
            let _ = writeln!(
                out,
                "  unexplained: {} [{}] {}: {} (no static finding names it)",
                e.module, e.python, e.check, e.observed
            );
        }
    }
}
