//! `verify --environment`: every extension module a Python environment can
//! import, verified at once, and a readiness table with one row per module.
//!
//! The modules are found by a probe child (`discover`): the extension files
//! under the environment's site-packages (and standard library with
//! `--include-stdlib`) mapped to import names, and the distribution that
//! installed each, from `importlib.metadata`. isolint's own process imports
//! nothing from the environment.

use super::matrix::{Cell, Check, Status};
use super::plan::ModuleResult;
use super::python::PythonInfo;
use super::runner::{self, Job, Outcome};
use serde::Serialize;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// One extension module the environment can import.
#[derive(Debug, Clone, Serialize)]
pub struct Found {
    pub name: String,
    pub path: String,
    pub package: Option<String>,
    pub version: Option<String>,
    pub stdlib: bool,
}

/// What `discover` reported.
#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    pub python: String,
    /// The folders searched.
    pub roots: Vec<String>,
    /// With `--requirements`/`--package`: what was installed into the throwaway venv.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub installed: Vec<String>,
    /// Distributions whose metadata could not be read, with the reason.
    pub broken: Vec<Value>,
    pub modules: Vec<Found>,
    /// One row per module, in `modules` order.
    pub rows: Vec<Row>,
    pub summary: Summary,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub module: String,
    pub package: Option<String>,
    pub version: Option<String>,
    /// `single-phase`, or `multi-phase` with the declared slot values.
    pub slots: String,
    /// Check id → cell label (`pass`, `crashed (SIGSEGV)`, ...), for the checks that ran.
    pub cells: Vec<(String, String)>,
    /// Whether the module can live in an own-GIL sub-interpreter, as observed.
    pub per_interpreter_gil: bool,
    /// Why not, in a few words.
    pub blocker: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub modules: usize,
    pub per_interpreter_gil: usize,
    /// Packages with at least one module that blocks a per-interpreter GIL, with the count.
    pub blocking_packages: Vec<(String, usize)>,
}

impl Summary {
    pub fn line(&self) -> String {
        let blockers = if self.blocking_packages.is_empty() {
            "nothing blocks it".to_string()
        } else {
            let names: Vec<String> = self
                .blocking_packages
                .iter()
                .map(|(name, n)| match n {
                    1 => name.clone(),
                    n => format!("{name} ({n} modules)"),
                })
                .collect();
            format!("blocked by {}", names.join(", "))
        };
        format!(
            "{} of {} extension module(s) allow a per-interpreter GIL; {blockers}",
            self.per_interpreter_gil, self.modules
        )
    }
}

/// A throwaway venv with the requested packages installed; removed on drop.
pub struct ThrowawayVenv {
    dir: PathBuf,
    pub python: PathBuf,
    pub installed: Vec<String>,
}

impl Drop for ThrowawayVenv {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `python -m venv`, then `pip install -r FILE... SPEC...` into it.
pub fn throwaway_venv(
    base: &Path,
    requirements: &[PathBuf],
    packages: &[String],
) -> Result<ThrowawayVenv, String> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("isolint-venv-{}-{nanos}", std::process::id()));
    let mut venv = ThrowawayVenv {
        python: dir.join("bin/python"),
        dir,
        installed: Vec::new(),
    };
    let out = Command::new(base)
        .args(["-m", "venv"])
        .arg(&venv.dir)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", base.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} -m venv failed: {}",
            base.display(),
            last_line(&out.stderr)
        ));
    }
    let mut pip = Command::new(&venv.python);
    pip.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ]);
    for file in requirements {
        pip.arg("-r").arg(file);
    }
    pip.args(packages);
    let out = pip
        .output()
        .map_err(|e| format!("cannot run pip in the throwaway venv: {e}"))?;
    if !out.status.success() {
        return Err(format!("pip install failed: {}", last_line(&out.stderr)));
    }
    let freeze = Command::new(&venv.python)
        .args(["-m", "pip", "freeze", "--disable-pip-version-check"])
        .output()
        .map_err(|e| format!("pip freeze: {e}"))?;
    venv.installed = String::from_utf8_lossy(&freeze.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    Ok(venv)
}

fn last_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no output")
        .trim()
        .to_string()
}

/// What the probe's `discover` child reported.
pub struct Discovered {
    pub modules: Vec<Found>,
    /// The folders searched.
    pub roots: Vec<String>,
    /// Distributions whose metadata could not be read.
    pub broken: Vec<Value>,
}

/// Runs the probe's `discover` in `python`.
pub fn discover(
    python: &PythonInfo,
    probe: &Path,
    include_stdlib: bool,
    timeout: u64,
) -> Result<Discovered, String> {
    let opts = json!({ "include_stdlib": include_stdlib });
    let job = Job::probe(
        &python.path,
        probe,
        vec!["discover".into(), String::new(), opts.to_string()],
        Duration::from_secs(timeout.max(60)),
    );
    let run = runner::run_job(&job);
    let result = match (&run.outcome, run.result) {
        (Outcome::Exited(0), Some(result))
            if result.get("status").and_then(Value::as_str) == Some("pass") =>
        {
            result
        }
        (outcome, result) => {
            let said = result
                .as_ref()
                .and_then(|r| r.get("detail"))
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| last_line(run.stderr.as_bytes()));
            return Err(format!(
                "could not list the extension modules of {} ({outcome:?}): {said}",
                python.path.display()
            ));
        }
    };
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
    let modules = result
        .get("modules")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .map(|m| Found {
                    name: text(m, "name").unwrap_or_default(),
                    path: text(m, "path").unwrap_or_default(),
                    package: text(m, "package"),
                    version: text(m, "version"),
                    stdlib: m.get("stdlib").and_then(Value::as_bool).unwrap_or(false),
                })
                .filter(|m| !m.name.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let roots = result
        .get("roots")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let broken = result
        .get("broken")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    Ok(Discovered {
        modules,
        roots,
        broken,
    })
}

/// `multi-phase (per-interpreter-gil, gil not-used)`, from the main-import child.
fn slots(module: Option<&Value>) -> String {
    let Some(info) = module else {
        return "?".into();
    };
    let field = |key: &str| info.get(key).and_then(Value::as_str);
    match field("init") {
        Some("multi-phase") => {
            let mut parts = vec![field("multiple_interpreters")
                .unwrap_or("no multiple_interpreters slot")
                .to_string()];
            if let Some(gil) = field("gil") {
                parts.push(format!("gil {gil}"));
            }
            format!("multi-phase ({})", parts.join(", "))
        }
        Some(kind) => kind.to_string(),
        None => "?".into(),
    }
}

/// The checks that decide whether a module can live in own-GIL sub-interpreters.
const PER_INTERPRETER_GIL: [Check; 3] =
    [Check::IsolatedImport, Check::SharedObjects, Check::Cycles];

fn blocker(cells: &[Cell]) -> Option<String> {
    let main = cells.iter().find(|c| c.check == Check::MainImport)?;
    if main.status != Status::Pass {
        return Some(format!("main-import {}", main.label()));
    }
    for cell in cells {
        let decides = PER_INTERPRETER_GIL.contains(&cell.check);
        let embed = matches!(cell.check, Check::EmbedFinalize | Check::EmbedSubinterp);
        if decides && cell.status != Status::Pass {
            return Some(format!("{} {}", cell.check.id(), cell.label()));
        }
        if embed && cell.status.is_failure() {
            return Some(format!("{} {}", cell.check.id(), cell.label()));
        }
    }
    None
}

/// One row per module (first Python's column), and the summary line's numbers.
pub fn rows(found: &[Found], modules: &[ModuleResult]) -> (Vec<Row>, Summary) {
    let mut rows = Vec::new();
    let mut blocking: Vec<(String, usize)> = Vec::new();
    for result in modules {
        let info = found.iter().find(|f| f.name == result.name);
        let Some(column) = result.results.first() else {
            continue;
        };
        let blocker = blocker(&column.cells);
        if blocker.is_some() {
            let package = info
                .and_then(|f| f.package.clone())
                .unwrap_or_else(|| result.name.clone());
            match blocking.iter_mut().find(|(p, _)| *p == package) {
                Some((_, n)) => *n += 1,
                None => blocking.push((package, 1)),
            }
        }
        rows.push(Row {
            module: result.name.clone(),
            package: info.and_then(|f| f.package.clone()),
            version: info.and_then(|f| f.version.clone()),
            slots: slots(column.module.as_ref()),
            cells: column
                .cells
                .iter()
                .map(|c| (c.check.id().to_string(), c.label()))
                .collect(),
            per_interpreter_gil: blocker.is_none(),
            blocker,
        });
    }
    let summary = Summary {
        modules: rows.len(),
        per_interpreter_gil: rows.iter().filter(|r| r.per_interpreter_gil).count(),
        blocking_packages: blocking,
    };
    (rows, summary)
}
