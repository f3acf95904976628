//! The run memo: when a scan sees exactly the files, texts, vendored folders and options of the
//! scan before it, its result is that scan's result. The per-file facts cache saves the parse;
//! this saves the model and the rules too, which matters for the commonest re-run of all, on a
//! tree nothing touched.
//!
//! The memo is stored in plain records, not in the reporting types: those carry `&'static str`s
//! and skip fields in their JSON form. A record that names a rule this build does not know makes
//! the memo unusable, never a wrong finding.

use crate::analysis::{FileError, HiddenCode, ParseErrorSummary};
use crate::finding::{Finding, Location, Related, Severity};
use crate::model::ModuleSummary;
use crate::rules::{Blocker, GilLevel, GilSource, GilVerdict, Level, SuppressedBlocker, Verdict};
use crate::version::VersionRange;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Everything `analyze` returns after the scan, except the model itself.
pub struct Outcome {
    pub files_scanned: usize,
    pub files: Vec<PathBuf>,
    pub errors: Vec<FileError>,
    pub parse_errors: Vec<ParseErrorSummary>,
    pub modules: Vec<ModuleSummary>,
    pub findings: Vec<Finding>,
    pub hidden: Vec<HiddenCode>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct Record {
    files_scanned: usize,
    files: Vec<PathBuf>,
    errors: Vec<(PathBuf, String)>,
    parse_errors: Vec<(PathBuf, usize, usize)>,
    modules: Vec<ModuleRecord>,
    findings: Vec<FindingRecord>,
    hidden: Vec<(PathBuf, String, usize)>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct FindingRecord {
    rule: String,
    severity: u8,
    path: PathBuf,
    location: [usize; 6],
    symbol: Option<String>,
    function: Option<String>,
    module: Option<String>,
    message: String,
    help: String,
    python: (u16, u16, Option<bool>),
    uncertain: bool,
    /// (path, location as in `location`, message).
    related: Vec<(PathBuf, [usize; 6], String)>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct ModuleRecord {
    name: String,
    import_name: Option<String>,
    files_from: String,
    path: PathBuf,
    line: usize,
    init: String,
    m_size: Option<String>,
    slots: Vec<(String, Option<String>)>,
    files: Vec<PathBuf>,
    static_types: usize,
    heap_types: usize,
    verdict: Option<VerdictRecord>,
}

#[derive(Serialize, Deserialize)]
struct VerdictRecord {
    multiple_interpreters: String,
    multiple_interpreters_is_default: bool,
    declared: u8,
    gil: String,
    gil_is_default: bool,
    supported: u8,
    gil_not_used_possible: bool,
    blockers: Vec<(u8, Vec<BlockerRecord>)>,
    gil_declared_not_used: bool,
    gil_declared_by: u8,
    gil_supported_not_used: bool,
    gil_blockers: Vec<BlockerRecord>,
    /// (blocker, level it would block or 255 for none, index into `SUPPRESSED_BY`).
    suppressed: Vec<(BlockerRecord, u8, u8)>,
    gil_suppressed: Vec<(BlockerRecord, u8, u8)>,
}

#[derive(Serialize, Deserialize)]
struct BlockerRecord {
    rule: String,
    path: PathBuf,
    line: usize,
    symbol: Option<String>,
}

const SUPPRESSED_BY: [&str; 3] = ["comment", "config", "baseline"];

fn suppressed_record(s: &SuppressedBlocker) -> (BlockerRecord, u8, u8) {
    (
        blocker_record(&s.finding),
        s.level.map_or(u8::MAX, |l| index_of(&LEVELS, &l)),
        index_of(&SUPPRESSED_BY, &s.by),
    )
}

const SEVERITIES: [Severity; 3] = [Severity::Info, Severity::Warning, Severity::Error];
const LEVELS: [Level; 3] = [Level::None, Level::SharedGil, Level::PerInterpreterGil];
/// The few other `&'static str`s of the reporting types.
const WORDS: &[&str] = &[
    "single-phase",
    "multi-phase",
    "unknown",
    "multiple_interpreters",
    "gil",
    "vendored",
    "generated",
];

fn word(s: &str) -> Option<&'static str> {
    WORDS.iter().copied().find(|w| *w == s)
}

/// A rule's id and name, as this build knows them.
fn rule(id: &str) -> Option<(&'static str, &'static str)> {
    crate::rules::RULES
        .iter()
        .map(|r| (r.id, r.name))
        .chain(crate::suppress::META_RULES.iter().map(|r| (r.id, r.name)))
        .find(|(rule_id, _)| *rule_id == id)
}

fn index_of<T: PartialEq>(all: &[T], x: &T) -> u8 {
    all.iter().position(|a| a == x).unwrap_or(0) as u8
}

impl Record {
    pub(super) fn of(o: &Outcome) -> Self {
        Self {
            files_scanned: o.files_scanned,
            files: o.files.clone(),
            errors: o
                .errors
                .iter()
                .map(|e| (e.path.clone(), e.message.clone()))
                .collect(),
            parse_errors: o
                .parse_errors
                .iter()
                .map(|p| (p.path.clone(), p.count, p.first_line))
                .collect(),
            modules: o.modules.iter().map(module_record).collect(),
            findings: o.findings.iter().map(finding_record).collect(),
            hidden: o
                .hidden
                .iter()
                .map(|h| (h.path.clone(), h.reason.to_string(), h.findings))
                .collect(),
        }
    }

    /// The outcome back, or `None` when anything in the record is foreign to this build.
    pub(super) fn outcome(self) -> Option<Outcome> {
        Some(Outcome {
            files_scanned: self.files_scanned,
            files: self.files,
            errors: self
                .errors
                .into_iter()
                .map(|(path, message)| FileError { path, message })
                .collect(),
            parse_errors: self
                .parse_errors
                .into_iter()
                .map(|(path, count, first_line)| ParseErrorSummary {
                    path,
                    count,
                    first_line,
                })
                .collect(),
            modules: self
                .modules
                .into_iter()
                .map(module_summary)
                .collect::<Option<_>>()?,
            findings: self
                .findings
                .into_iter()
                .map(finding)
                .collect::<Option<_>>()?,
            hidden: self
                .hidden
                .into_iter()
                .map(|(path, reason, findings)| {
                    Some(HiddenCode {
                        path,
                        reason: word(&reason)?,
                        findings,
                    })
                })
                .collect::<Option<_>>()?,
        })
    }
}

pub(super) fn finding_record(f: &Finding) -> FindingRecord {
    let l = &f.location;
    FindingRecord {
        rule: f.rule.to_string(),
        severity: index_of(&SEVERITIES, &f.severity),
        path: f.path.clone(),
        location: [
            l.line,
            l.column,
            l.end_line,
            l.end_column,
            l.start_byte,
            l.end_byte,
        ],
        symbol: f.symbol.clone(),
        function: f.function.clone(),
        module: f.module.clone(),
        message: f.message.clone(),
        help: f.help.clone(),
        python: (f.python.lo, f.python.hi, f.python.free_threaded),
        uncertain: f.uncertain,
        related: f
            .related
            .iter()
            .map(|r| {
                (
                    r.path.clone(),
                    location_array(&r.location),
                    r.message.clone(),
                )
            })
            .collect(),
    }
}

fn location_array(l: &Location) -> [usize; 6] {
    [
        l.line,
        l.column,
        l.end_line,
        l.end_column,
        l.start_byte,
        l.end_byte,
    ]
}

fn location_of(a: [usize; 6]) -> Location {
    Location {
        line: a[0],
        column: a[1],
        end_line: a[2],
        end_column: a[3],
        start_byte: a[4],
        end_byte: a[5],
    }
}

pub(super) fn finding(r: FindingRecord) -> Option<Finding> {
    let (rule, name) = rule(&r.rule)?;
    let [line, column, end_line, end_column, start_byte, end_byte] = r.location;
    Some(Finding {
        rule,
        name,
        severity: *SEVERITIES.get(r.severity as usize)?,
        path: r.path,
        location: Location {
            line,
            column,
            end_line,
            end_column,
            start_byte,
            end_byte,
        },
        symbol: r.symbol,
        function: r.function,
        module: r.module,
        message: r.message,
        help: r.help,
        python: VersionRange {
            lo: r.python.0,
            hi: r.python.1,
            free_threaded: r.python.2,
        },
        uncertain: r.uncertain,
        related: r
            .related
            .into_iter()
            .map(|(path, location, message)| Related {
                path,
                location: location_of(location),
                message,
            })
            .collect(),
    })
}

pub(super) fn module_record(m: &ModuleSummary) -> ModuleRecord {
    ModuleRecord {
        name: m.name.clone(),
        import_name: m.import_name.clone(),
        files_from: m.files_from.to_string(),
        path: m.path.clone(),
        line: m.line,
        init: m.init.to_string(),
        m_size: m.m_size.clone(),
        slots: m
            .slots
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        files: m.files.clone(),
        static_types: m.static_types,
        heap_types: m.heap_types,
        verdict: m.verdict.as_ref().map(|v| VerdictRecord {
            multiple_interpreters: v.multiple_interpreters.clone(),
            multiple_interpreters_is_default: v.multiple_interpreters_is_default,
            declared: index_of(&LEVELS, &v.declared),
            gil: v.gil.clone(),
            gil_is_default: v.gil_is_default,
            supported: index_of(&LEVELS, &v.supported),
            gil_not_used_possible: v.gil_not_used_possible,
            blockers: v
                .blockers
                .iter()
                .map(|(level, list)| {
                    (
                        index_of(&LEVELS, level),
                        list.iter().map(blocker_record).collect(),
                    )
                })
                .collect(),
            gil_declared_not_used: v.gil_axis.declared == GilLevel::NotUsed,
            gil_declared_by: index_of(&GIL_SOURCES, &v.gil_axis.declared_by),
            gil_supported_not_used: v.gil_axis.supported == GilLevel::NotUsed,
            gil_blockers: v.gil_axis.blockers.iter().map(blocker_record).collect(),
            suppressed: v.suppressed.iter().map(suppressed_record).collect(),
            gil_suppressed: v
                .gil_axis
                .suppressed
                .iter()
                .map(suppressed_record)
                .collect(),
        }),
    }
}

fn blocker_record(b: &Blocker) -> BlockerRecord {
    BlockerRecord {
        rule: b.rule.to_string(),
        path: b.path.clone(),
        line: b.line,
        symbol: b.symbol.clone(),
    }
}

const GIL_SOURCES: [GilSource; 3] = [GilSource::Slot, GilSource::SetGil, GilSource::Default];

pub(super) fn module_summary(r: ModuleRecord) -> Option<ModuleSummary> {
    let level = |i: u8| LEVELS.get(i as usize).copied();
    let gil_level = |not_used: bool| {
        if not_used {
            GilLevel::NotUsed
        } else {
            GilLevel::Used
        }
    };
    let blocker = |b: BlockerRecord| {
        let (rule, name) = rule(&b.rule)?;
        Some(Blocker {
            rule,
            name,
            path: b.path,
            line: b.line,
            symbol: b.symbol,
        })
    };
    let suppressed = |(b, l, by): (BlockerRecord, u8, u8)| {
        Some(SuppressedBlocker {
            finding: blocker(b)?,
            level: if l == u8::MAX { None } else { Some(level(l)?) },
            by: SUPPRESSED_BY.get(by as usize).copied()?,
        })
    };
    let verdict = match r.verdict {
        None => None,
        Some(v) => Some(Verdict {
            multiple_interpreters: v.multiple_interpreters,
            multiple_interpreters_is_default: v.multiple_interpreters_is_default,
            declared: level(v.declared)?,
            gil: v.gil,
            gil_is_default: v.gil_is_default,
            supported: level(v.supported)?,
            gil_not_used_possible: v.gil_not_used_possible,
            blockers: v
                .blockers
                .into_iter()
                .map(|(l, list)| {
                    let list = list
                        .into_iter()
                        .map(|b| {
                            let (rule, name) = rule(&b.rule)?;
                            Some(Blocker {
                                rule,
                                name,
                                path: b.path,
                                line: b.line,
                                symbol: b.symbol,
                            })
                        })
                        .collect::<Option<Vec<_>>>()?;
                    Some((level(l)?, list))
                })
                .collect::<Option<_>>()?,
            gil_axis: GilVerdict {
                declared: gil_level(v.gil_declared_not_used),
                declared_by: GIL_SOURCES.get(v.gil_declared_by as usize).copied()?,
                supported: gil_level(v.gil_supported_not_used),
                blockers: v
                    .gil_blockers
                    .into_iter()
                    .map(blocker)
                    .collect::<Option<_>>()?,
                suppressed: v
                    .gil_suppressed
                    .into_iter()
                    .map(suppressed)
                    .collect::<Option<_>>()?,
            },
            suppressed: v
                .suppressed
                .into_iter()
                .map(suppressed)
                .collect::<Option<_>>()?,
        }),
    };
    Some(ModuleSummary {
        name: r.name,
        import_name: r.import_name,
        files_from: crate::buildfiles::FilesFrom::from_name(&r.files_from)?.as_str(),
        path: r.path,
        line: r.line,
        init: word(&r.init)?,
        m_size: r.m_size,
        slots: r
            .slots
            .into_iter()
            .map(|(k, v)| Some((word(&k)?, v)))
            .collect::<Option<_>>()?,
        files: r.files,
        static_types: r.static_types,
        heap_types: r.heap_types,
        verdict,
    })
}
