//! `verify --embed`: a tiny C host, built against each Python's embedding
//! library, starts and stops CPython inside one process the way an embedding
//! application does, and loads the module in every cycle.
//!
//! The host is compiled once per Python (and per host source) into the cache
//! folder (`$ISOLINT_CACHE_DIR`, else `$XDG_CACHE_HOME/isolint`, else
//! `~/.cache/isolint`), under `embed-host/<key>/`. Each host run is a child
//! like every probe run, so a crash is contained.

use super::matrix::{Cell, Check, SharedObject, Status};
use super::python::PythonInfo;
use super::runner::{signal_name, ChildRun, Job, Outcome};
use serde::Serialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const HOST_SOURCE: &str = include_str!("embed_host.c");

const CYCLE_PREFIX: &str = "##isolint-cycle ";
const RSS_PREFIX: &str = "##isolint-rss ";
const UNCAUGHT_PREFIX: &str = "##isolint-embed-uncaught ";
const FINALIZE_ERROR_PREFIX: &str = "##isolint-embed-finalize-error ";
const HOST_ERROR_PREFIX: &str = "##isolint-embed-error ";

/// The two ways an application embeds CPython.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `Py_InitializeEx` → import → `Py_FinalizeEx`, N times.
    Finalize,
    /// One main interpreter; `Py_NewInterpreter` → import → `Py_EndInterpreter`, N times.
    Subinterp,
}

impl Mode {
    pub const ALL: [Mode; 2] = [Mode::Finalize, Mode::Subinterp];

    pub fn arg(self) -> &'static str {
        match self {
            Mode::Finalize => "finalize",
            Mode::Subinterp => "subinterp",
        }
    }

    pub fn check(self) -> Check {
        match self {
            Mode::Finalize => Check::EmbedFinalize,
            Mode::Subinterp => Check::EmbedSubinterp,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Mode::Finalize => "Py_InitializeEx/Py_FinalizeEx",
            Mode::Subinterp => "Py_NewInterpreter/Py_EndInterpreter",
        }
    }
}

/// What one embed cell saw, cycle by cycle.
#[derive(Debug, Clone, Serialize, Default)]
pub struct EmbedRun {
    pub mode: &'static str,
    /// Cycles asked for.
    pub cycles: u32,
    /// Cycles whose import finished and reported.
    pub completed: u32,
    /// Resident set size after each cycle, KiB.
    pub rss_kib: Vec<u64>,
    /// Mean growth per cycle from cycle 2 on (cycle 1 loads the module's code), KiB.
    pub rss_growth_kib: Option<f64>,
    /// The same for the host without the module: CPython's own share.
    pub baseline_growth_kib: Option<f64>,
    /// Per cycle: `ok`, an exception, or objects of an earlier cycle.
    pub per_cycle: Vec<CycleOutcome>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CycleOutcome {
    pub cycle: u32,
    pub status: Status,
    pub detail: String,
    /// Objects reachable from the module that belong to a runtime or interpreter that is gone.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stale: Vec<String>,
}

/// Where compiled hosts are kept.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ISOLINT_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("isolint");
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => PathBuf::from(home).join(".cache/isolint"),
        None => std::env::temp_dir().join("isolint-cache"),
    }
}

/// FNV-1a: a stable key for the cache folder (no need for a cryptographic hash).
fn fnv(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain(std::iter::once(0)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// The compiler and linker flags for embedding this Python: its
/// `python3.X-config --embed`, else the same facts read from sysconfig.
fn flags(python: &PythonInfo) -> Result<(Vec<String>, Vec<String>, &'static str), String> {
    let embed = python
        .embed
        .as_ref()
        .ok_or("the probe did not report how to embed this Python")?;
    let text = |key: &str| embed.get(key).and_then(Value::as_str).unwrap_or_default();
    let libdir = text("libdir");
    let mut rpath = Vec::new();
    if embed.get("shared").and_then(Value::as_bool) == Some(true) && !libdir.is_empty() {
        rpath.push(format!("-Wl,-rpath,{libdir}"));
    }
    // Extension modules resolve the C API from the host executable when libpython is static.
    rpath.push("-Wl,-export-dynamic".into());
    let script = Path::new(text("config_script"));
    if script.is_file() {
        let ask = |what: &str| -> Option<Vec<String>> {
            let out = Command::new(script).args(["--embed", what]).output().ok()?;
            out.status.success().then(|| {
                String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .map(str::to_string)
                    .collect()
            })
        };
        if let (Some(cflags), Some(mut ldflags)) = (ask("--cflags"), ask("--ldflags")) {
            ldflags.extend(rpath);
            return Ok((cflags, ldflags, "python-config --embed"));
        }
    }
    let include: Vec<String> = embed
        .get("include")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|p| format!("-I{p}"))
                .collect()
        })
        .unwrap_or_default();
    if include.is_empty() || text("library").is_empty() {
        return Err("no python3.X-config and no include directory in sysconfig".into());
    }
    let mut ldflags = Vec::new();
    if !libdir.is_empty() {
        ldflags.push(format!("-L{libdir}"));
    }
    ldflags.push(format!("-l{}", text("library")));
    ldflags.extend(text("libs").split_whitespace().map(str::to_string));
    ldflags.extend(rpath);
    Ok((include, ldflags, "sysconfig"))
}

/// Builds (or finds in the cache) the host for `python`. `Err` is why the embed
/// cells of this Python are `n/a`.
pub fn host_for(python: &PythonInfo) -> Result<PathBuf, String> {
    let (cflags, ldflags, source) = flags(python)?;
    let include_ok = cflags
        .iter()
        .filter_map(|f| f.strip_prefix("-I"))
        .any(|dir| Path::new(dir).join("Python.h").is_file());
    if !include_ok {
        return Err(format!(
            "no Python.h in the include directories {source} names ({})",
            cflags.join(" ")
        ));
    }
    let executable = python.executable.to_string_lossy();
    let key = fnv(&[
        HOST_SOURCE,
        &executable,
        &python.version,
        &cflags.join(" "),
        &ldflags.join(" "),
    ]);
    let dir = cache_dir().join("embed-host").join(format!("{key:016x}"));
    let host = dir.join("host");
    if host.is_file() {
        return Ok(host);
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let source_path = dir.join("embed_host.c");
    std::fs::write(&source_path, HOST_SOURCE)
        .map_err(|e| format!("{}: {e}", source_path.display()))?;
    // Built under a private name and renamed, so parallel runs never see half a file.
    let partial = dir.join(format!("host.{}.partial", std::process::id()));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(&cc)
        .arg("-O1")
        .arg("-o")
        .arg(&partial)
        .arg(&source_path)
        .args(&cflags)
        .args(&ldflags)
        .output()
        .map_err(|e| format!("no C compiler (`{cc}`: {e})"))?;
    if !out.status.success() {
        let _ = std::fs::remove_file(&partial);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no output");
        return Err(format!(
            "the embed host did not build with {source} flags: {}",
            last.trim()
        ));
    }
    std::fs::rename(&partial, &host).map_err(|e| format!("{}: {e}", host.display()))?;
    Ok(host)
}

/// What every host child of one Python shares.
pub struct Host<'a> {
    pub host: &'a Path,
    pub python: &'a PythonInfo,
    pub probe: &'a Path,
    pub cycles: u32,
    pub timeout: u64,
}

impl Host<'_> {
    /// One host child: `host MODE CYCLES PYTHON`, the module in the environment.
    /// An empty `target` runs the cycles without any module: CPython's own baseline.
    pub fn job(&self, mode: Mode, target: &str, opts: &Value) -> Job {
        Job {
            program: self.host.to_path_buf(),
            args: vec![
                mode.arg().to_string(),
                self.cycles.to_string(),
                self.python.path.to_string_lossy().into_owned(),
            ],
            env: vec![
                (
                    "ISOLINT_PROBE".to_string(),
                    self.probe.to_string_lossy().into_owned(),
                ),
                ("ISOLINT_TARGET".to_string(), target.to_string()),
                ("ISOLINT_OPTS".to_string(), opts.to_string()),
            ],
            env_remove: Vec::new(),
            timeout: Duration::from_secs(self.timeout),
        }
    }
}

/// Mean RSS growth per cycle from cycle 2 on, KiB.
fn growth(rss: &[u64]) -> Option<f64> {
    if rss.len() < 3 {
        return None;
    }
    let first = rss[1] as f64;
    let last = rss[rss.len() - 1] as f64;
    Some((last - first) / (rss.len() - 2) as f64)
}

/// The baseline host run's RSS growth per cycle.
pub fn baseline_growth(run: &ChildRun) -> Option<f64> {
    (run.outcome == Outcome::Exited(0))
        .then(|| growth(&rss_lines(&run.stdout)))
        .flatten()
}

fn rss_lines(stdout: &str) -> Vec<u64> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix(RSS_PREFIX))
        .filter_map(|rest| rest.split_whitespace().nth(1)?.parse().ok())
        .collect()
}

/// Turns a host run into the cell of its mode.
pub fn cell(
    mode: Mode,
    name: &str,
    run: &ChildRun,
    cycles: u32,
    timeout: u64,
    baseline: Option<f64>,
) -> Cell {
    let check = mode.check();
    let mut embed = EmbedRun {
        mode: mode.arg(),
        cycles,
        ..EmbedRun::default()
    };
    let mut cell = Cell::new(check, Status::Pass, "");
    let mut stale_objects: Vec<SharedObject> = Vec::new();
    let mut clean_stdout = String::new();
    let mut first_problem: Option<(Status, String)> = None;
    // The module's attributes in the first cycle that imported it: a later cycle that
    // lacks some ran an exec function that skipped its work (a static "done" flag).
    let mut first_names: Option<Vec<String>> = None;
    for line in run.stdout.lines() {
        if let Some(json) = line.strip_prefix(CYCLE_PREFIX) {
            let Ok(value) = serde_json::from_str::<Value>(json) else {
                continue;
            };
            let n = value.get("cycle").and_then(Value::as_u64).unwrap_or(0) as u32;
            embed.completed = embed.completed.max(n);
            let mut outcome = cycle_outcome(mode, name, n, &value);
            let names: Option<Vec<String>> =
                value.get("names").and_then(Value::as_array).map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                });
            match (&first_names, names) {
                (None, Some(names)) => first_names = Some(names),
                (Some(first), Some(names)) => {
                    let lost: Vec<&str> = first
                        .iter()
                        .filter(|name| !names.contains(name))
                        .map(String::as_str)
                        .collect();
                    if !lost.is_empty() && outcome.status == Status::Pass {
                        outcome.status = Status::Fail;
                        outcome.detail = format!(
                            "the module lacks {} (present in the first cycle)",
                            lost.join(", ")
                        );
                    }
                }
                _ => {}
            }
            if outcome.status != Status::Pass && first_problem.is_none() {
                first_problem = Some((
                    outcome.status,
                    format!("cycle {n}/{cycles}: {}", outcome.detail),
                ));
                if let Some(text) = value
                    .get("error")
                    .and_then(|e| e.get(2))
                    .and_then(Value::as_str)
                {
                    cell.result = Some(serde_json::json!({ "traceback": text }));
                }
            }
            for name in &outcome.stale {
                if !stale_objects.iter().any(|s| &s.name == name) {
                    let type_name = stale_type(&value, name);
                    stale_objects.push(SharedObject {
                        name: name.clone(),
                        type_name,
                        interpreters: vec![format!("before cycle {n}"), format!("cycle {n}")],
                        nested: 0,
                        explained_by: Vec::new(),
                    });
                }
            }
            embed.per_cycle.push(outcome);
        } else if let Some(rest) = line.strip_prefix(UNCAUGHT_PREFIX) {
            if first_problem.is_none() {
                first_problem = Some((
                    Status::Fail,
                    format!("cycle {}: the cycle raised outside the probe", rest.trim()),
                ));
            }
        } else if let Some(rest) = line.strip_prefix(FINALIZE_ERROR_PREFIX) {
            if first_problem.is_none() {
                first_problem = Some((
                    Status::Fail,
                    format!(
                        "cycle {}: Py_FinalizeEx reported an error (flushing buffered data failed)",
                        rest.trim()
                    ),
                ));
            }
        } else if !line.starts_with(RSS_PREFIX) {
            clean_stdout.push_str(line);
            clean_stdout.push('\n');
        }
    }
    embed.rss_kib = rss_lines(&run.stdout);
    embed.rss_growth_kib = growth(&embed.rss_kib);
    embed.baseline_growth_kib = baseline;
    let host_error = run
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix(HOST_ERROR_PREFIX))
        .map(str::to_string);
    let at = run
        .last_stage
        .as_deref()
        .filter(|s| *s != "exit")
        .map(|s| format!(" at \"{s}\""))
        .unwrap_or_default();
    cell.stage = run
        .last_stage
        .clone()
        .filter(|s| s != "exit" || !matches!(run.outcome, Outcome::Exited(_)));
    match &run.outcome {
        Outcome::Signaled(sig) if dependency_stage(run).is_some() => {
            let dependency = dependency_stage(run).unwrap_or_default();
            cell.status = Status::Inconclusive;
            cell.signal = Some(signal_name(*sig));
            cell.detail = format!(
                "the host died of {} importing the dependency {dependency}, before the module \
                 itself, after {} complete cycle(s){at}",
                signal_name(*sig),
                embed.completed
            );
        }
        Outcome::Signaled(sig) => {
            cell.status = Status::Crashed;
            cell.signal = Some(signal_name(*sig));
            let before = first_problem
                .as_ref()
                .map(|(_, d)| format!("; before that, {d}"))
                .unwrap_or_default();
            cell.detail = format!(
                "the host died of {} after {} complete cycle(s){at}{before}",
                signal_name(*sig),
                embed.completed
            );
        }
        Outcome::TimedOut => {
            cell.status = Status::Timeout;
            cell.detail = format!(
                "no end within {timeout} s{at} after {} complete cycle(s); process group killed",
                embed.completed
            );
        }
        Outcome::SpawnFailed(err) => {
            cell.status = Status::NotApplicable;
            cell.detail = format!("could not start the embed host: {err}");
        }
        Outcome::Exited(code) => {
            if let Some(error) = host_error {
                cell.status = Status::Fail;
                cell.detail = format!("the host could not start Python: {error}");
            } else if let Some((status, detail)) = first_problem {
                cell.status = status;
                cell.detail = detail;
            } else if *code != 0 || embed.completed < cycles {
                cell.status = Status::Fail;
                cell.detail = format!(
                    "the host exited with {code} after {} of {cycles} cycles{at}",
                    embed.completed
                );
            } else {
                cell.detail = format!("{cycles} {} cycles", mode.describe());
            }
        }
    }
    if let Some(rss) = rss_summary(&embed) {
        cell.detail.push_str(&format!("; {rss}"));
    }
    cell.shared = stale_objects;
    cell.run = Some(super::matrix::RunInfo {
        exit_code: match run.outcome {
            Outcome::Exited(code) => Some(code),
            _ => None,
        },
        duration_ms: u64::try_from(run.duration.as_millis()).unwrap_or(u64::MAX),
        traceback: run.fault_traceback(),
        exception: cell
            .result
            .as_ref()
            .and_then(|r| r.get("traceback"))
            .and_then(Value::as_str)
            .map(str::to_string),
        stdout: tail(&clean_stdout, 4000),
        stderr: tail(&run.stderr, 4000),
    });
    cell.embed = Some(embed);
    cell
}

/// The extension module being imported when the host died, when it was a dependency
/// the module pulled in (imported first from cycle 2 on), not the module.
fn dependency_stage(run: &ChildRun) -> Option<String> {
    let stage = run.last_stage.as_deref()?;
    let (_, dependency) = stage.split_once(" import dependency ")?;
    Some(dependency.trim().to_string())
}

/// `12 under CLibrary, 30 under CType`: stale objects grouped by the attribute they hang off.
fn group_by_owner(stale: &[String]) -> String {
    let mut groups: Vec<(&str, usize)> = Vec::new();
    for path in stale {
        let owner = path.split(['.', '[']).next().unwrap_or(path);
        match groups.iter_mut().find(|(o, _)| *o == owner) {
            Some((_, n)) => *n += 1,
            None => groups.push((owner, 1)),
        }
    }
    groups
        .iter()
        .map(|(owner, n)| match n {
            1 if stale.iter().any(|p| p == owner) => owner.to_string(),
            n => format!("{n} under {owner}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn stale_type(value: &Value, name: &str) -> String {
    value
        .get("stale")
        .and_then(Value::as_array)
        .and_then(|items| items.iter().find(|i| i["name"] == name))
        .and_then(|i| i.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string()
}

/// `X` from CPython's "module X does not support loading in subinterpreters".
fn refused_by(message: &str) -> Option<&str> {
    let end = message.find(" does not support loading in subinterpreters")?;
    message[..end].rsplit("module ").next()
}

fn cycle_outcome(mode: Mode, name: &str, n: u32, value: &Value) -> CycleOutcome {
    if let Some(error) = value.get("error").and_then(Value::as_array) {
        let kind = error.first().and_then(Value::as_str).unwrap_or("?");
        let message = error.get(1).and_then(Value::as_str).unwrap_or("");
        // CPython refusing the module in a sub-interpreter (single-phase init on a
        // free-threaded build, a NOT_SUPPORTED declaration) is a refusal, as in `cycles`.
        let status = match refused_by(message) {
            Some(who) if who == name || name.rsplit('.').next() == Some(who) => Status::Refused,
            Some(_) => Status::Inconclusive,
            None => Status::Fail,
        };
        return CycleOutcome {
            cycle: n,
            status,
            detail: format!("{kind}: {message}"),
            stale: Vec::new(),
        };
    }
    let stale: Vec<String> = value
        .get("stale")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.get("name").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if stale.is_empty() {
        return CycleOutcome {
            cycle: n,
            status: Status::Pass,
            detail: "ok".into(),
            stale,
        };
    }
    CycleOutcome {
        cycle: n,
        status: Status::Fail,
        detail: format!(
            "{} object(s) {} still reachable: {}",
            stale.len(),
            match (mode, n) {
                (Mode::Finalize, _) => "of an earlier cycle",
                // 3.13 runs a single-phase init in the main interpreter and copies the dict.
                (Mode::Subinterp, 1) => "of another interpreter (the main one)",
                (Mode::Subinterp, _) => "of an earlier cycle or the main interpreter",
            },
            group_by_owner(&stale)
        ),
        stale,
    }
}

fn rss_summary(embed: &EmbedRun) -> Option<String> {
    let growth = embed.rss_growth_kib?;
    let first = embed.rss_kib.get(1)?;
    let last = embed.rss_kib.last()?;
    let baseline = embed
        .baseline_growth_kib
        .map(|b| format!(", CPython alone {b:+.0}"))
        .unwrap_or_default();
    Some(format!(
        "RSS {growth:+.0} KiB/cycle{baseline} (cycle 2: {first} KiB, cycle {}: {last} KiB)",
        embed.rss_kib.len()
    ))
}

/// The cell of a Python the host cannot be built for.
pub fn unavailable(mode: Mode, why: &str) -> Cell {
    Cell::new(mode.check(), Status::NotApplicable, why)
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
