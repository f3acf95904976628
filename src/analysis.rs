//! `analyze`: the whole pipeline from paths to sorted findings.

use crate::discover::{discover, DiscoverOptions, SourceKind};
use crate::facts::{extract, FileFacts};
use crate::finding::{sort_findings, Finding};
use crate::model::{ModuleSummary, Project};
use crate::rules::{run_rules, RuleInfo, RULES};
use crate::source::{decode_source, read_source, DEFAULT_MAX_FILE_SIZE};
use crate::version::PyVersion;
use rayon::prelude::*;
use serde::Serialize;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct AnalyzeOptions {
    pub paths: Vec<PathBuf>,
    pub discover: DiscoverOptions,
    pub max_file_size: u64,
    /// Python versions the code is built for; findings in code no target compiles are dropped.
    /// Empty: every Python 3.
    pub targets: Vec<PyVersion>,
    /// Rules to run; `None`: all.
    pub rules: Option<Vec<&'static RuleInfo>>,
    /// Source given directly (an editor's unsaved buffer), with the path findings carry.
    pub stdin: Option<(PathBuf, Vec<u8>)>,
    /// Report findings in vendored libraries and generated files too.
    pub include_vendored: bool,
}

impl Default for AnalyzeOptions {
    fn default() -> Self {
        Self {
            paths: Vec::new(),
            discover: DiscoverOptions::default(),
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            targets: Vec::new(),
            rules: None,
            stdin: None,
            include_vendored: false,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FileError {
    pub path: PathBuf,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ParseErrorSummary {
    pub path: PathBuf,
    pub count: usize,
    pub first_line: usize,
}

#[derive(Debug)]
pub struct Analysis {
    pub files_scanned: usize,
    pub skipped: Vec<FileError>,
    pub errors: Vec<FileError>,
    pub parse_errors: Vec<ParseErrorSummary>,
    pub modules: Vec<ModuleSummary>,
    pub findings: Vec<Finding>,
    /// Vendored folders and generated files whose findings are not reported (see
    /// `AnalyzeOptions::include_vendored`).
    pub hidden: Vec<HiddenCode>,
    pub project: Project,
}

impl Analysis {
    /// Nothing could be scanned at all (every path was missing or unreadable).
    pub fn nothing_scanned(&self) -> bool {
        self.files_scanned == 0 && !self.errors.is_empty()
    }
}

enum FileOutcome {
    Facts(Box<FileFacts>),
    Error(FileError),
}

fn scan_one(
    path: PathBuf,
    kind: SourceKind,
    bytes: Option<Vec<u8>>,
    max: u64,
    shared_macros: &[String],
) -> FileOutcome {
    let source = match bytes {
        Some(bytes) => decode_source(bytes, max),
        None => read_source(&path, max),
    };
    let source = match source {
        Ok(s) => s,
        Err(err) => {
            return FileOutcome::Error(FileError {
                path,
                message: err.to_string(),
            });
        }
    };
    match crate::parse::parse_with(source.text.as_bytes(), shared_macros) {
        // The tree is dropped at the end of this arm: only the facts outlive the file.
        Ok(parsed) => {
            let mut facts = extract(&parsed, &path, kind, source.first_invalid_utf8);
            facts.generated = crate::origin::is_generated(&source.text);
            FileOutcome::Facts(Box::new(facts))
        }
        Err(err) => FileOutcome::Error(FileError {
            path,
            message: err.to_string(),
        }),
    }
}

pub fn analyze(options: &AnalyzeOptions) -> Analysis {
    let mut found = discover(&options.paths, &options.discover);
    let mut jobs: Vec<(PathBuf, SourceKind, Option<Vec<u8>>)> =
        found.sources.drain(..).map(|(p, k)| (p, k, None)).collect();
    if let Some((path, bytes)) = &options.stdin {
        let kind = crate::discover::classify(path).unwrap_or(SourceKind::C);
        jobs.retain(|(p, _, _)| p != path);
        jobs.push((path.clone(), kind, Some(bytes.clone())));
    }
    let shared_macros = shared_attribute_macros(&jobs, options.max_file_size);
    let outcomes: Vec<FileOutcome> = jobs
        .into_par_iter()
        .map(|(path, kind, bytes)| {
            scan_one(path, kind, bytes, options.max_file_size, &shared_macros)
        })
        .collect();

    let mut errors: Vec<FileError> = found
        .errors
        .into_iter()
        .map(|(path, message)| FileError { path, message })
        .collect();
    let mut files = Vec::new();
    for outcome in outcomes {
        match outcome {
            FileOutcome::Facts(f) => files.push(*f),
            FileOutcome::Error(e) => errors.push(e),
        }
    }
    for f in &files {
        if let Some(offset) = f.first_invalid_utf8 {
            errors.push(FileError {
                path: f.path.clone(),
                message: format!("not valid UTF-8 (first bad byte at offset {offset}); scanned with those bytes replaced"),
            });
        }
    }
    errors.sort_by(|a, b| a.path.cmp(&b.path).then(a.message.cmp(&b.message)));
    let skipped = found
        .skipped_cpp
        .into_iter()
        .map(|path| FileError {
            path,
            message: "C++ source: not scanned".to_string(),
        })
        .collect();

    let files_scanned = files.len();
    let parse_errors = files
        .iter()
        .filter(|f| f.parse_errors.count() > 0)
        .map(|f| ParseErrorSummary {
            path: f.path.clone(),
            count: f.parse_errors.count(),
            first_line: f.first_error_line.unwrap_or(1),
        })
        .collect();

    let project = Project::build(files);
    let rules: Vec<&'static RuleInfo> = options.rules.clone().unwrap_or_else(|| RULES.to_vec());
    let mut findings = run_rules(&project, &rules);
    findings.retain(|f| applies_to_targets(f, &options.targets));
    sort_findings(&mut findings);
    // Each module's own findings, grouped once: the verdict reads them.
    let mut by_module: std::collections::HashMap<&str, Vec<&Finding>> =
        std::collections::HashMap::new();
    for f in &findings {
        if let Some(m) = f.module.as_deref() {
            by_module.entry(m).or_default().push(f);
        }
    }
    let modules = project
        .modules
        .iter()
        .filter_map(|m| {
            let mut summary = ModuleSummary::of(&project, m)?;
            let files: std::collections::HashSet<&PathBuf> =
                m.files.iter().map(|&f| &project.files[f].path).collect();
            let own: Vec<Finding> = by_module
                .get(m.name.as_str())
                .map(|list| {
                    list.iter()
                        .filter(|f| files.contains(&f.path))
                        .map(|f| (*f).clone())
                        .collect()
                })
                .unwrap_or_default();
            summary.verdict = Some(crate::rules::module_verdict(m, &own));
            Some(summary)
        })
        .collect();
    let hidden = hide_vendored(
        &mut findings,
        &project,
        &options.paths,
        options.include_vendored,
    );
    // A global in a header included by two modules is one definition: report it once.
    findings.dedup_by(|b, a| {
        a.rule == b.rule
            && a.path == b.path
            && a.location.start_byte == b.location.start_byte
            && a.symbol == b.symbol
    });
    Analysis {
        files_scanned,
        skipped,
        errors,
        parse_errors,
        modules,
        findings,
        hidden,
        project,
    }
}

/// Attribute-like macros (`#define HIDDEN __attribute__(...)`) defined anywhere in the scan.
/// A first, cheap pass over the text: the definitions usually sit in a header, the uses in
/// every `.c` file, and the parse of each file needs them.
fn shared_attribute_macros(
    jobs: &[(PathBuf, SourceKind, Option<Vec<u8>>)],
    max: u64,
) -> Vec<String> {
    if jobs.len() < 2 {
        return Vec::new();
    }
    let mut names: Vec<String> = jobs
        .par_iter()
        .flat_map_iter(|(path, _, bytes)| {
            let text = match bytes {
                Some(b) => String::from_utf8_lossy(b).into_owned(),
                None => read_source(path, max).map(|s| s.text).unwrap_or_default(),
            };
            crate::parse::prepass::attribute_macros_in(&text)
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

#[derive(Debug, Clone, Serialize)]
pub struct HiddenCode {
    /// The vendored folder, or the generated file.
    pub path: PathBuf,
    /// `vendored` or `generated`.
    pub reason: &'static str,
    pub findings: usize,
}

/// Moves findings in vendored folders and generated files out of the report, counting them.
/// They still count in module verdicts: vendored state is the module's state.
fn hide_vendored(
    findings: &mut Vec<Finding>,
    project: &Project,
    roots: &[PathBuf],
    include: bool,
) -> Vec<HiddenCode> {
    let mut index = crate::origin::OriginIndex::default();
    let mut origin_of: std::collections::HashMap<PathBuf, Option<(PathBuf, &'static str)>> =
        Default::default();
    for f in &project.files {
        let origin = match index.vendored_dir(&f.path, roots) {
            Some(dir) => Some((dir, "vendored")),
            None if f.generated => Some((f.path.clone(), "generated")),
            None => None,
        };
        origin_of.insert(f.path.clone(), origin);
    }
    let mut hidden: std::collections::BTreeMap<(PathBuf, &'static str), usize> = Default::default();
    findings.retain(|f| match origin_of.get(&f.path).cloned().flatten() {
        Some(key) => {
            *hidden.entry(key).or_default() += 1;
            include
        }
        None => true,
    });
    hidden
        .into_iter()
        .map(|((path, reason), findings)| HiddenCode {
            path,
            reason,
            findings,
        })
        .collect()
}

fn applies_to_targets(finding: &Finding, targets: &[PyVersion]) -> bool {
    if targets.is_empty() {
        // Isolation is a Python 3 matter: code only Python 2 compiles is never reported.
        !finding.python.python2_only() && !finding.python.is_empty()
    } else {
        targets.iter().any(|&t| finding.python.contains(t))
    }
}
