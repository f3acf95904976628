//! `isolint verify`: loads compiled extension modules in fresh child processes,
//! creates sub-interpreters there, and reports what really happens.
//!
//! A static verdict is a claim; this is the test of it. Every check runs in its
//! own `python -X faulthandler <probe>` child, so a segfault in the module is
//! contained and reported instead of taking isolint down.

mod crossref;
mod embed;
mod environment;
mod matrix;
mod plan;
mod python;
mod report;
mod runner;

pub use embed::cache_dir;
pub use matrix::{Cell, Check, SharedObject, Status};
pub use plan::{Column, ModuleResult};
pub use python::PythonInfo;

use std::path::{Path, PathBuf};

/// The probe script, standard library only; written to a temporary file per run.
const PROBE: &str = include_str!("probe.py");

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VerifyFormat {
    Human,
    Json,
    /// A readiness table, one row per module (for a README or an issue).
    Markdown,
}

/// Load built extension modules in child processes and sub-interpreters and report what happens.
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    /// Module import names (`pkg._ext`) or paths to built extension files (`.so`).
    #[arg(
        required_unless_present_any = ["environment", "requirements", "package"],
        value_name = "MODULE|PATH"
    )]
    pub targets: Vec<String>,
    /// Python to test with; repeat for several. Default: `python3` from PATH.
    #[arg(long = "python", value_name = "PYTHON")]
    pub python: Vec<String>,
    /// Seconds each child may run before its process group is killed.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub timeout: u64,
    /// Python file to run in every interpreter after the import (the module is `MODULE` there).
    #[arg(long, value_name = "FILE")]
    pub exercise: Option<PathBuf>,
    /// Also scan these sources and join the static findings with what happened.
    #[arg(long = "with-scan", value_name = "PATH")]
    pub with_scan: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = VerifyFormat::Human)]
    pub format: VerifyFormat,
    /// Children to run at once. Default: the number of cores.
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Create/import/destroy cycles per variant. Fewer miss dangling statics.
    #[arg(long, default_value_t = 20, hide = true)]
    pub cycles: u32,
    /// Also start and stop CPython around the module inside one C host process:
    /// Py_InitializeEx/Py_FinalizeEx cycles and Py_NewInterpreter/Py_EndInterpreter cycles.
    #[arg(long)]
    pub embed: bool,
    /// Cycles of each `--embed` mode.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub embed_cycles: u32,
    /// Verify every extension module importable by the (single) `--python`, e.g. a venv's.
    #[arg(long, conflicts_with = "targets")]
    pub environment: bool,
    /// With `--environment`: the standard library's extension modules too.
    #[arg(long)]
    pub include_stdlib: bool,
    /// Install this requirements file into a throwaway venv and verify that environment.
    #[arg(long, value_name = "FILE", conflicts_with = "targets")]
    pub requirements: Vec<PathBuf>,
    /// Install this package (pip requirement spec) into a throwaway venv and verify it.
    #[arg(long, value_name = "SPEC", conflicts_with = "targets")]
    pub package: Vec<String>,
}

/// What the user asked to verify.
#[derive(Debug, Clone)]
pub struct Target {
    /// As given.
    pub raw: String,
    /// Import name; for a file, the part of its name before the first dot.
    pub name: String,
    /// Absolute path for a file target.
    pub path: Option<PathBuf>,
}

impl Target {
    pub fn parse(raw: &str) -> Result<Target, String> {
        let looks_like_path = raw.contains('/')
            || [".so", ".pyd"].iter().any(|ext| raw.ends_with(ext))
            || Path::new(raw).is_file();
        if looks_like_path {
            let path = Path::new(raw);
            if !path.is_file() {
                return Err(format!("`{raw}`: no such file"));
            }
            if ![".so", ".pyd"].iter().any(|ext| raw.ends_with(ext)) {
                return Err(format!(
                    "`{raw}` is not an extension module file (.so or .pyd)"
                ));
            }
            let file = path
                .file_name()
                .and_then(|f| f.to_str())
                .unwrap_or_default();
            let name = file.split('.').next().unwrap_or_default().to_string();
            if !is_identifier(&name) {
                return Err(format!(
                    "`{raw}`: cannot derive a module name from the file name"
                ));
            }
            let path = std::fs::canonicalize(path).map_err(|e| format!("`{raw}`: {e}"))?;
            return Ok(Target {
                raw: raw.to_string(),
                name,
                path: Some(path),
            });
        }
        if raw.split('.').all(is_identifier) {
            return Ok(Target {
                raw: raw.to_string(),
                name: raw.to_string(),
                path: None,
            });
        }
        Err(format!(
            "`{raw}` is neither a module name nor an existing file"
        ))
    }

    /// What the probe receives: the path for files, so it loads exactly that file.
    fn probe_arg(&self) -> String {
        match &self.path {
            Some(path) => path.to_string_lossy().into_owned(),
            None => self.name.clone(),
        }
    }

    /// Why this file cannot load in `python`: built for another CPython ABI.
    pub fn abi_mismatch(&self, python: &PythonInfo) -> Option<String> {
        let file = self.path.as_ref()?.file_name()?.to_str()?;
        let built = file.split('.').find(|part| part.starts_with("cpython-"))?;
        let built = built
            .match_indices('-')
            .nth(1)
            .map_or(built, |(i, _)| &built[..i]);
        let here = python.abi_tag()?;
        (built != here).then(|| format!("built for {built}; this Python is {here}"))
    }
}

/// One module to verify: an import name, or the files built from one source
/// for several Python ABIs (each Python gets the file built for it).
#[derive(Debug, Clone)]
pub struct Unit {
    pub name: String,
    pub targets: Vec<Target>,
}

impl Unit {
    fn group(targets: Vec<Target>) -> Vec<Unit> {
        let mut units: Vec<Unit> = Vec::new();
        for target in targets {
            match units.iter_mut().find(|u| u.name == target.name) {
                Some(unit) if !unit.targets.iter().any(|t| t.raw == target.raw) => {
                    unit.targets.push(target)
                }
                Some(_) => {}
                None => units.push(Unit {
                    name: target.name.clone(),
                    targets: vec![target],
                }),
            }
        }
        units
    }

    /// The target this Python can load, or why there is none.
    pub fn pick(&self, python: &PythonInfo) -> Result<&Target, String> {
        let mut why = Vec::new();
        for target in &self.targets {
            match target.abi_mismatch(python) {
                None => return Ok(target),
                Some(reason) => why.push(reason),
            }
        }
        Err(why.join("; "))
    }
}

fn is_identifier(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric())
}

/// The probe on disk for the duration of one run.
struct ProbeFile {
    dir: PathBuf,
    path: PathBuf,
}

impl ProbeFile {
    fn write() -> Result<ProbeFile, String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("isolint-verify-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join("isolint_probe.py");
        std::fs::write(&path, PROBE).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(ProbeFile { dir, path })
    }
}

impl Drop for ProbeFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Everything `verify` found, ready for a reporter.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifyReport {
    pub format_version: u32,
    pub pythons: Vec<PythonInfo>,
    pub checks: Vec<&'static str>,
    pub modules: Vec<ModuleResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scan: Option<crossref::ScanJoin>,
    /// `--environment`: what was found and the readiness table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<environment::Environment>,
    pub exit_code: i32,
}

/// Runs `isolint verify`; returns the process exit code (0 ok, 1 a check
/// failed, crashed or timed out, 2 usage error).
pub fn run(args: &VerifyArgs) -> i32 {
    match verify(args) {
        Ok(report) => {
            let text = match args.format {
                VerifyFormat::Human => report::human(&report),
                VerifyFormat::Json => report::json(&report),
                VerifyFormat::Markdown => report::markdown(&report),
            };
            print!("{text}");
            // A scanner miss must not scroll by unnoticed, whatever the format.
            if let Some(scan) = &report.scan {
                eprint!("{}", scan.miss_banner());
            }
            report.exit_code
        }
        Err(message) => {
            eprintln!("isolint verify: error: {message}");
            2
        }
    }
}

/// Runs the whole matrix. `Err` is a usage error: nothing was verified.
pub fn verify(args: &VerifyArgs) -> Result<VerifyReport, String> {
    let started = std::time::Instant::now();
    let whole_environment =
        args.environment || !args.requirements.is_empty() || !args.package.is_empty();
    let targets = args
        .targets
        .iter()
        .map(|t| Target::parse(t))
        .collect::<Result<Vec<_>, _>>()?;
    if args.timeout == 0 {
        return Err("--timeout must be at least 1 second".into());
    }
    if args.jobs == Some(0) {
        return Err("--jobs must be at least 1".into());
    }
    if args.embed && args.embed_cycles == 0 {
        return Err("--embed-cycles must be at least 1".into());
    }
    if whole_environment && args.python.len() > 1 {
        return Err("--environment verifies one environment: give one --python".into());
    }
    for file in &args.requirements {
        if !file.is_file() {
            return Err(format!("--requirements {}: no such file", file.display()));
        }
    }
    let exercise = match &args.exercise {
        Some(path) if path.is_file() => {
            Some(std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?)
        }
        Some(path) => return Err(format!("--exercise {}: no such file", path.display())),
        None => None,
    };
    for path in &args.with_scan {
        if !path.exists() {
            return Err(format!(
                "--with-scan {}: no such file or directory",
                path.display()
            ));
        }
    }
    let workers = args.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    let mut requested = if args.python.is_empty() {
        vec!["python3".to_string()]
    } else {
        args.python.clone()
    };
    // Kept alive until the report is made: its drop removes the venv.
    let venv = if !args.requirements.is_empty() || !args.package.is_empty() {
        let base = python::resolve(&requested[0])?;
        let venv = environment::throwaway_venv(&base, &args.requirements, &args.package)?;
        requested = vec![venv.python.to_string_lossy().into_owned()];
        Some(venv)
    } else {
        None
    };
    let probe = ProbeFile::write()?;
    let pythons = python::describe(&requested, &probe.path, workers)?;
    let (units, found) = if whole_environment {
        let discovered =
            environment::discover(&pythons[0], &probe.path, args.include_stdlib, args.timeout)?;
        let units = discovered
            .modules
            .iter()
            .map(|f| Unit {
                name: f.name.clone(),
                targets: vec![Target {
                    raw: f.name.clone(),
                    name: f.name.clone(),
                    path: None,
                }],
            })
            .collect();
        (units, Some(discovered))
    } else {
        (Unit::group(targets), None)
    };
    let hosts = if args.embed {
        build_hosts(&pythons)
    } else {
        Vec::new()
    };
    let settings = plan::Settings {
        probe: probe.path.clone(),
        timeout: args.timeout,
        exercise: exercise.clone(),
        cycles: args.cycles.max(1),
        workers,
        embed_cycles: args.embed.then_some(args.embed_cycles),
        hosts,
        free_threading: pythons.iter().any(|p| p.free_threaded),
        keep_unimportable: whole_environment,
    };
    let modules = plan::execute(&units, &pythons, &settings)?;
    let checks = settings.checks().into_iter().map(Check::id).collect();
    let failed = modules
        .iter()
        .flat_map(|m| &m.results)
        .flat_map(|c| &c.cells)
        .any(|cell| cell.status.is_failure());
    let environment = found.map(|discovered| {
        let (rows, summary) = environment::rows(&discovered.modules, &modules);
        environment::Environment {
            python: pythons[0].label.clone(),
            roots: discovered.roots,
            installed: venv
                .as_ref()
                .map(|v| v.installed.clone())
                .unwrap_or_default(),
            broken: discovered.broken,
            modules: discovered.modules,
            rows,
            summary,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        }
    });
    let mut report = VerifyReport {
        format_version: 1,
        pythons,
        checks,
        modules,
        scan: None,
        environment,
        exit_code: i32::from(failed),
    };
    if !args.with_scan.is_empty() {
        let join = crossref::join(&args.with_scan, &mut report.modules)?;
        if join.missed_by_scan() {
            report.exit_code = 1;
        }
        report.scan = Some(join);
    }
    drop(venv);
    Ok(report)
}

/// The embed host of every Python, built in parallel (a cached one is reused).
fn build_hosts(pythons: &[PythonInfo]) -> Vec<Result<PathBuf, String>> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = pythons
            .iter()
            .map(|python| scope.spawn(move || embed::host_for(python)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("building the embed host panicked".into()))
            })
            .collect()
    })
}
