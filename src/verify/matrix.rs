//! The result matrix: one cell per module × Python × check, and how a child's
//! exit turns into a cell.

use super::runner::{signal_name, ChildRun, Outcome};
use serde::Serialize;
use serde_json::Value;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    MainImport,
    TwoInstances,
    IsolatedImport,
    SharedObjects,
    Cycles,
    Concurrent,
    GilReenabled,
    Threads,
    EmbedFinalize,
    EmbedSubinterp,
}

impl Check {
    pub fn id(self) -> &'static str {
        match self {
            Check::MainImport => "main-import",
            Check::TwoInstances => "two-instances",
            Check::IsolatedImport => "isolated-import",
            Check::SharedObjects => "shared-objects",
            Check::Cycles => "cycles",
            Check::Concurrent => "concurrent",
            Check::GilReenabled => "gil-reenabled",
            Check::Threads => "threads",
            Check::EmbedFinalize => "embed-finalize",
            Check::EmbedSubinterp => "embed-subinterp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Status {
    #[serde(rename = "pass")]
    Pass,
    #[serde(rename = "fail")]
    Fail,
    #[serde(rename = "refused")]
    Refused,
    #[serde(rename = "crashed")]
    Crashed,
    #[serde(rename = "timeout")]
    Timeout,
    #[serde(rename = "n/a")]
    NotApplicable,
    #[serde(rename = "inconclusive")]
    Inconclusive,
}

impl Status {
    pub fn parse(text: &str) -> Option<Status> {
        Some(match text {
            "pass" => Status::Pass,
            "fail" => Status::Fail,
            "refused" => Status::Refused,
            "crashed" => Status::Crashed,
            "timeout" => Status::Timeout,
            "n/a" => Status::NotApplicable,
            "inconclusive" => Status::Inconclusive,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Refused => "refused",
            Status::Crashed => "crashed",
            Status::Timeout => "timeout",
            Status::NotApplicable => "n/a",
            Status::Inconclusive => "inconclusive",
        }
    }

    /// The statuses that make `verify` exit 1.
    pub fn is_failure(self) -> bool {
        matches!(self, Status::Fail | Status::Crashed | Status::Timeout)
    }

    /// Order for folding several runs into one cell: failures first, then the
    /// most informative of the rest.
    fn rank(self) -> u8 {
        match self {
            Status::Crashed => 0,
            Status::Timeout => 1,
            Status::Fail => 2,
            Status::Pass => 3,
            Status::Refused => 4,
            Status::Inconclusive => 5,
            Status::NotApplicable => 6,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An object that two interpreters (or two module instances) hold by the same id.
#[derive(Debug, Clone, Serialize)]
pub struct SharedObject {
    /// Path from the module, e.g. `Registry.entries`.
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
    /// The interpreters that see the same object, e.g. `["main", "sub1", "sub2"]`.
    pub interpreters: Vec<String>,
    /// Shared objects found inside this one and not listed separately.
    pub nested: u64,
    /// With `--with-scan`: the static findings that name this object.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub explained_by: Vec<String>,
}

/// A module attribute one interpreter (or instance) has and another lacks.
#[derive(Debug, Clone, Serialize)]
pub struct MissingAttribute {
    pub name: String,
    pub missing_in: Vec<String>,
}

/// How the child ran, for the reader who wants to look closer.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    /// `null` when a signal ended the child or it never ran.
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
    /// The faulthandler dump, when there was one.
    pub traceback: Option<String>,
    /// The Python traceback of the exception behind a `fail` or `refused`.
    pub exception: Option<String>,
    pub stdout: String,
    pub stderr: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub check: Check,
    pub status: Status,
    /// `SIGSEGV`, `SIGABRT`, ... for `crashed`.
    pub signal: Option<String>,
    pub detail: String,
    /// The last stage marker the probe printed: where a crash or hang happened.
    pub stage: Option<String>,
    /// The module named in a refusal, when it is not the module under test.
    pub refused_by: Option<String>,
    /// `isolated` or `legacy`: the kind of sub-interpreter used.
    pub mode: Option<String>,
    pub shared: Vec<SharedObject>,
    /// Attributes of the first module instance that a later one lacks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<MissingAttribute>,
    /// The separate runs folded into this cell (cycles).
    pub variants: Vec<Variant>,
    pub run: Option<RunInfo>,
    /// With `--with-scan`: the static findings that explain a crash or refusal.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub explained_by: Vec<String>,
    /// `embed-*` checks: cycle by cycle, with the resident set size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embed: Option<super::embed::EmbedRun>,
    /// The probe's own answer, kept for the module facts it carries.
    #[serde(skip)]
    pub result: Option<Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Variant {
    pub name: String,
    pub mode: String,
    pub main_import_first: bool,
    pub status: Status,
    pub signal: Option<String>,
    pub detail: String,
    pub stage: Option<String>,
    pub run: Option<RunInfo>,
}

impl Cell {
    pub fn new(check: Check, status: Status, detail: impl Into<String>) -> Cell {
        Cell {
            check,
            status,
            signal: None,
            detail: detail.into(),
            stage: None,
            refused_by: None,
            mode: None,
            shared: Vec::new(),
            missing: Vec::new(),
            variants: Vec::new(),
            run: None,
            explained_by: Vec::new(),
            embed: None,
            result: None,
        }
    }

    /// `crashed (SIGSEGV)`, `pass`, ...
    pub fn label(&self) -> String {
        label(self.status, self.signal.as_deref())
    }

    /// Turns a finished child into a cell. A signal or a timeout outranks
    /// whatever the probe managed to say before it.
    pub fn from_run(check: Check, run: &ChildRun, timeout_secs: u64) -> Cell {
        let result = run.result.as_ref();
        let text = |key: &str| result.and_then(|r| r.get(key)).and_then(Value::as_str);
        let mut cell = Cell::new(check, Status::Inconclusive, "");
        // The probe's last marker is "exit"; past it only interpreter shutdown runs.
        let died = !matches!(run.outcome, Outcome::Exited(_));
        cell.stage = match run.last_stage.as_deref() {
            Some("exit") if died => Some("interpreter shutdown".into()),
            Some("exit") => None,
            other => other.map(str::to_string),
        };
        cell.refused_by = text("refused_by").map(str::to_string);
        cell.mode = text("mode").map(str::to_string);
        cell.shared = result.map(shared_objects).unwrap_or_default();
        cell.missing = result.map(missing_attributes).unwrap_or_default();
        cell.result = result.cloned();
        let at = match &run.last_stage {
            Some(stage) => format!(" at \"{stage}\""),
            None => String::new(),
        };
        match &run.outcome {
            Outcome::Signaled(sig) => {
                cell.status = Status::Crashed;
                cell.signal = Some(signal_name(*sig));
                cell.detail = format!("the child died of {}{at}", signal_name(*sig));
            }
            Outcome::TimedOut => {
                cell.status = Status::Timeout;
                cell.detail =
                    format!("no result within {timeout_secs} s{at}; process group killed");
            }
            Outcome::SpawnFailed(err) => {
                cell.status = Status::Inconclusive;
                cell.detail = format!("could not start the child: {err}");
            }
            Outcome::Exited(code) => match text("status").and_then(Status::parse) {
                Some(status) => {
                    cell.status = status;
                    cell.detail = text("detail").unwrap_or_default().to_string();
                    if *code != 0 {
                        cell.detail
                            .push_str(&format!(" (then the child exited with {code})"));
                    }
                }
                None => {
                    cell.status = Status::Fail;
                    let last = run.stderr.lines().rev().find(|l| !l.trim().is_empty());
                    cell.detail = format!(
                        "the child exited with {code} without a result{at}: {}",
                        last.unwrap_or("no output").trim()
                    );
                }
            },
        }
        cell.run = Some(RunInfo {
            exit_code: match run.outcome {
                Outcome::Exited(code) => Some(code),
                _ => None,
            },
            duration_ms: u64::try_from(run.duration.as_millis()).unwrap_or(u64::MAX),
            traceback: run.fault_traceback(),
            exception: text("traceback").map(str::to_string),
            stdout: tail(&run.stdout, 4000),
            stderr: tail(&run.stderr, 4000),
        });
        cell
    }

    /// Folds the cycle variants into one cell: the worst failure if any, else
    /// the most informative status.
    pub fn fold(check: Check, variants: Vec<Variant>) -> Cell {
        let worst = variants.iter().min_by_key(|v| v.status.rank());
        let Some(worst) = worst else {
            return Cell::new(check, Status::NotApplicable, "nothing to run");
        };
        let mut cell = Cell::new(check, worst.status, "");
        cell.signal = worst.signal.clone();
        cell.stage = worst.stage.clone();
        cell.detail = if worst.status.is_failure() {
            format!("{}: {}", worst.name, worst.detail)
        } else {
            variants
                .iter()
                .map(|v| format!("{}: {}", v.name, label(v.status, v.signal.as_deref())))
                .collect::<Vec<_>>()
                .join("; ")
        };
        cell.variants = variants;
        cell
    }
}

pub fn label(status: Status, signal: Option<&str>) -> String {
    match (status, signal) {
        (Status::Crashed, Some(sig)) => format!("crashed ({sig})"),
        _ => status.as_str().to_string(),
    }
}

fn shared_objects(result: &Value) -> Vec<SharedObject> {
    let Some(items) = result.get("shared").and_then(Value::as_array) else {
        return Vec::new();
    };
    items
        .iter()
        .map(|item| SharedObject {
            name: item
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string(),
            type_name: item
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string(),
            interpreters: item
                .get("interpreters")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            nested: item.get("nested").and_then(Value::as_u64).unwrap_or(0),
            explained_by: Vec::new(),
        })
        .collect()
}

fn missing_attributes(result: &Value) -> Vec<MissingAttribute> {
    let Some(items) = result.get("missing").and_then(Value::as_array) else {
        return Vec::new();
    };
    items
        .iter()
        .map(|item| MissingAttribute {
            name: item
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string(),
            missing_in: item
                .get("missing_in")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect()
}

fn tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &text[start..])
}
