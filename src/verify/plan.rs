//! Which children run, in two waves: first the checks that need nothing but
//! the module, then the sub-interpreter checks, whose set-up depends on how
//! the first wave went (a module refused by isolated interpreters is cycled
//! in legacy ones only: on 3.12.1 loading a refused single-phase module in a
//! legacy interpreter of the same process aborts with a double free).

use super::embed::{self, Mode};
use super::matrix::{Cell, Check, Status, Variant};
use super::python::PythonInfo;
use super::runner::{self, ChildRun, Job};
use super::{Target, Unit};
use serde::Serialize;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

pub struct Settings {
    pub probe: PathBuf,
    pub timeout: u64,
    pub exercise: Option<PathBuf>,
    pub cycles: u32,
    pub workers: usize,
    /// `--embed`: host cycles per mode.
    pub embed_cycles: Option<u32>,
    /// With `--embed`, per Python (same order): its compiled host, or why there is none.
    pub hosts: Vec<Result<PathBuf, String>>,
    /// Some selected Python is free-threaded: the gil-reenabled (and threads) columns exist.
    pub free_threading: bool,
    /// `--environment`: a module that cannot be imported is a row, not a usage error.
    pub keep_unimportable: bool,
}

impl Settings {
    /// The columns of every module, in order.
    pub fn checks(&self) -> Vec<Check> {
        let mut checks = vec![
            Check::MainImport,
            Check::TwoInstances,
            Check::IsolatedImport,
            Check::SharedObjects,
            Check::Cycles,
        ];
        if self.exercise.is_some() {
            checks.push(Check::Concurrent);
        }
        if self.free_threading {
            checks.push(Check::GilReenabled);
            if self.exercise.is_some() {
                checks.push(Check::Threads);
            }
        }
        if self.embed_cycles.is_some() {
            checks.extend(Mode::ALL.map(Mode::check));
        }
        checks
    }
}

/// One module on one Python.
#[derive(Debug, Clone, Serialize)]
pub struct Column {
    pub python: String,
    /// The import name or file this column loaded; `null` when none fits this Python.
    pub target: Option<String>,
    /// What the main-import child learned about the module: init kind and slots.
    pub module: Option<Value>,
    pub cells: Vec<Cell>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModuleResult {
    /// Import name.
    pub name: String,
    /// As given: an import name, or one built file per Python ABI.
    pub targets: Vec<String>,
    pub results: Vec<Column>,
}

/// A cell that is either known already or waits for child `jobs[i]`.
enum Pending {
    Job(usize),
    Ready(Box<Cell>),
}

const CYCLE_VARIANTS: [(&str, bool); 4] = [
    ("isolated", true),
    ("isolated", false),
    ("legacy", true),
    ("legacy", false),
];

fn variant_name(mode: &str, main_first: bool) -> String {
    let first = if main_first {
        "main import first"
    } else {
        "no main import"
    };
    format!("{mode}, {first}")
}

struct Batch<'a> {
    settings: &'a Settings,
    jobs: Vec<Job>,
}

impl Batch<'_> {
    fn add(&mut self, python: &PythonInfo, target: &Target, check: &str, extra: Value) -> Pending {
        let mut opts = json!({
            "name": target.name,
            "cycles": self.settings.cycles,
            "exercise": self.settings.exercise,
            "tmp": self.settings.probe.parent(),
        });
        if let (Some(map), Value::Object(more)) = (opts.as_object_mut(), extra) {
            map.extend(more);
        }
        self.jobs.push(Job::probe(
            &python.path,
            &self.settings.probe,
            vec![check.to_string(), target.probe_arg(), opts.to_string()],
            Duration::from_secs(self.settings.timeout),
        ));
        Pending::Job(self.jobs.len() - 1)
    }

    fn push(&mut self, job: Job) -> Pending {
        self.jobs.push(job);
        Pending::Job(self.jobs.len() - 1)
    }

    fn run(self) -> Vec<ChildRun> {
        runner::run_all(&self.jobs, self.settings.workers)
    }
}

fn resolve(pending: Pending, check: Check, runs: &[ChildRun], timeout: u64) -> Cell {
    match pending {
        Pending::Ready(cell) => *cell,
        Pending::Job(i) => Cell::from_run(check, &runs[i], timeout),
    }
}

struct Wave1 {
    main: Pending,
    two: Pending,
    isolated: Pending,
}

/// Runs every check for every module on every Python.
pub fn execute(
    units: &[Unit],
    pythons: &[PythonInfo],
    settings: &Settings,
) -> Result<Vec<ModuleResult>, String> {
    let mut batch = Batch {
        settings,
        jobs: Vec::new(),
    };
    let mut wave1: Vec<Vec<Option<Wave1>>> = Vec::new();
    for unit in units {
        let mut row = Vec::new();
        for python in pythons {
            let Ok(target) = unit.pick(python) else {
                row.push(None);
                continue;
            };
            let isolated = if python.own_gil {
                batch.add(python, target, "isolated-import", json!({}))
            } else {
                Pending::Ready(Box::new(Cell::new(
                    Check::IsolatedImport,
                    Status::NotApplicable,
                    no_own_gil(python),
                )))
            };
            row.push(Some(Wave1 {
                main: batch.add(python, target, "main-import", json!({})),
                two: batch.add(python, target, "two-instances", json!({})),
                isolated,
            }));
        }
        wave1.push(row);
    }
    let runs = batch.run();

    let mut columns: Vec<Vec<Option<Vec<Cell>>>> = Vec::new();
    for (unit, row) in units.iter().zip(wave1) {
        let mut out = Vec::new();
        for w in row {
            out.push(w.map(|w| {
                vec![
                    resolve(w.main, Check::MainImport, &runs, settings.timeout),
                    resolve(w.two, Check::TwoInstances, &runs, settings.timeout),
                    resolve(w.isolated, Check::IsolatedImport, &runs, settings.timeout),
                ]
            }));
        }
        if !settings.keep_unimportable {
            reject_missing(unit, &out, pythons)?;
        }
        columns.push(out);
    }

    let mut batch = Batch {
        settings,
        jobs: Vec::new(),
    };
    // CPython's own RSS growth per embed cycle, once per Python and mode, to read the
    // module's numbers against.
    let mut baselines: Vec<Vec<Option<usize>>> = Vec::new();
    for (i, python) in pythons.iter().enumerate() {
        let mut row = Vec::new();
        for mode in Mode::ALL {
            let host = settings.hosts.get(i).and_then(|h| h.as_ref().ok());
            row.push(match (settings.embed_cycles, host) {
                (Some(cycles), Some(host)) => {
                    let host = embed::Host {
                        host,
                        python,
                        probe: &settings.probe,
                        cycles,
                        timeout: settings.timeout,
                    };
                    let job = host.job(mode, "", &json!({}));
                    match batch.push(job) {
                        Pending::Job(index) => Some(index),
                        Pending::Ready(_) => None,
                    }
                }
                _ => None,
            });
        }
        baselines.push(row);
    }
    let mut wave2 = Vec::new();
    for (unit, row) in units.iter().zip(&columns) {
        let mut plans = Vec::new();
        for (i, (python, cells)) in pythons.iter().zip(row).enumerate() {
            let target = unit.pick(python).ok();
            let host = settings.hosts.get(i);
            plans.push(
                cells
                    .as_ref()
                    .zip(target)
                    .map(|(cells, target)| plan_wave2(&mut batch, python, target, cells, host)),
            );
        }
        wave2.push(plans);
    }
    let runs = batch.run();
    let baselines: Vec<Vec<Option<f64>>> = baselines
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|job| job.and_then(|i| embed::baseline_growth(&runs[i])))
                .collect()
        })
        .collect();

    let mut results = Vec::new();
    for ((unit, row), plans) in units.iter().zip(columns).zip(wave2) {
        let mut out = Vec::new();
        for (i, ((python, cells), plan)) in pythons.iter().zip(row).zip(plans).enumerate() {
            let baseline = baselines.get(i).map(Vec::as_slice).unwrap_or_default();
            out.push(finish_column(
                python, unit, cells, plan, &runs, settings, baseline,
            ));
        }
        results.push(ModuleResult {
            name: unit.name.clone(),
            targets: unit.targets.iter().map(|t| t.raw.clone()).collect(),
            results: out,
        });
    }
    Ok(results)
}

/// A module no selected Python can import is a usage error, not a finding.
fn reject_missing(
    unit: &Unit,
    row: &[Option<Vec<Cell>>],
    pythons: &[PythonInfo],
) -> Result<(), String> {
    let mut tried = Vec::new();
    for (cells, python) in row.iter().zip(pythons) {
        let Some(cells) = cells else { continue };
        if !is_not_found(&cells[0]) {
            return Ok(());
        }
        tried.push(format!("{} ({})", python.label, cells[0].detail));
    }
    if tried.is_empty() {
        let why: Vec<String> = pythons
            .iter()
            .filter_map(|p| unit.pick(p).err().map(|w| format!("{}: {w}", p.label)))
            .collect();
        return Err(format!(
            "`{}` cannot be loaded by any selected Python: {}",
            unit.name,
            why.join("; ")
        ));
    }
    Err(format!(
        "module `{}` is not importable: {}",
        unit.name,
        tried.join("; ")
    ))
}

fn is_not_found(cell: &Cell) -> bool {
    cell.status == Status::Fail && cell.detail.starts_with("ModuleNotFoundError")
}

struct Wave2 {
    shared: Pending,
    cycles: Vec<(String, &'static str, bool, Pending)>,
    concurrent: Option<Pending>,
    gil: Option<Pending>,
    threads: Option<Pending>,
    embed: Vec<(Mode, Pending)>,
}

fn plan_wave2(
    batch: &mut Batch,
    python: &PythonInfo,
    target: &Target,
    cells: &[Cell],
    host: Option<&Result<PathBuf, String>>,
) -> Wave2 {
    let main_ok = cells[0].status == Status::Pass;
    let isolated = &cells[2];
    let isolated_ok = isolated.status == Status::Pass;
    let has_subs = python.backend.is_some();
    let blocked = |check: Check| -> Option<Cell> {
        if !main_ok {
            return Some(Cell::new(
                check,
                Status::Inconclusive,
                "main-import did not pass",
            ));
        }
        if !has_subs {
            return Some(Cell::new(
                check,
                Status::NotApplicable,
                "this Python has no sub-interpreter API",
            ));
        }
        None
    };

    let shared = match blocked(Check::SharedObjects) {
        Some(cell) => Pending::Ready(Box::new(cell)),
        None => {
            let mode = if isolated_ok { "isolated" } else { "legacy" };
            batch.add(python, target, "shared-objects", json!({ "mode": mode }))
        }
    };

    let mut cycles = Vec::new();
    for (mode, main_first) in CYCLE_VARIANTS {
        let name = variant_name(mode, main_first);
        let pending = if let Some(cell) = blocked(Check::Cycles) {
            Pending::Ready(Box::new(cell))
        } else if mode == "isolated" && !isolated_ok {
            Pending::Ready(Box::new(isolated_unavailable(
                Check::Cycles,
                isolated,
                python,
            )))
        } else {
            batch.add(
                python,
                target,
                "cycles",
                json!({ "mode": mode, "main_first": main_first }),
            )
        };
        cycles.push((name, mode, main_first, pending));
    }

    let concurrent = batch.settings.exercise.as_ref().map(|_| {
        if let Some(cell) = blocked(Check::Concurrent) {
            Pending::Ready(Box::new(cell))
        } else if !isolated_ok {
            Pending::Ready(Box::new(isolated_unavailable(
                Check::Concurrent,
                isolated,
                python,
            )))
        } else {
            batch.add(python, target, "concurrent", json!({}))
        }
    });

    let free_threading = batch.settings.free_threading;
    let gil = free_threading.then(|| {
        if !main_ok {
            Pending::Ready(Box::new(Cell::new(
                Check::GilReenabled,
                Status::Inconclusive,
                "main-import did not pass",
            )))
        } else if !python.free_threaded {
            Pending::Ready(Box::new(not_free_threaded(Check::GilReenabled, python)))
        } else {
            let pending = batch.add(python, target, "gil-reenabled", json!({}));
            if let Pending::Job(i) = pending {
                // The question is what the import does by itself.
                batch.jobs[i].env_remove.push("PYTHON_GIL".into());
            }
            pending
        }
    });
    let threads = (free_threading && batch.settings.exercise.is_some()).then(|| {
        if !main_ok {
            Pending::Ready(Box::new(Cell::new(
                Check::Threads,
                Status::Inconclusive,
                "main-import did not pass",
            )))
        } else if !python.free_threaded {
            Pending::Ready(Box::new(not_free_threaded(Check::Threads, python)))
        } else {
            let pending = batch.add(python, target, "threads", json!({}));
            if let Pending::Job(i) = pending {
                batch.jobs[i].env.push(("PYTHON_GIL".into(), "0".into()));
            }
            pending
        }
    });

    let mut embed_cells = Vec::new();
    if let Some(cycles) = batch.settings.embed_cycles {
        for mode in Mode::ALL {
            let pending = match host {
                _ if !main_ok => Pending::Ready(Box::new(Cell::new(
                    mode.check(),
                    Status::Inconclusive,
                    "main-import did not pass",
                ))),
                Some(Ok(host)) => {
                    let opts = json!({
                        "name": target.name,
                        "exercise": batch.settings.exercise,
                    });
                    let host = embed::Host {
                        host,
                        python,
                        probe: &batch.settings.probe,
                        cycles,
                        timeout: batch.settings.timeout,
                    };
                    let job = host.job(mode, &target.probe_arg(), &opts);
                    batch.push(job)
                }
                Some(Err(why)) => Pending::Ready(Box::new(embed::unavailable(mode, why))),
                None => Pending::Ready(Box::new(embed::unavailable(
                    mode,
                    "no embed host for this Python",
                ))),
            };
            embed_cells.push((mode, pending));
        }
    }

    Wave2 {
        shared,
        cycles,
        concurrent,
        gil,
        threads,
        embed: embed_cells,
    }
}

fn not_free_threaded(check: Check, python: &PythonInfo) -> Cell {
    Cell::new(
        check,
        Status::NotApplicable,
        format!("Python {} is not a free-threaded build", python.version),
    )
}

/// What an isolated-only check says when isolated-import did not pass.
fn isolated_unavailable(check: Check, isolated: &Cell, python: &PythonInfo) -> Cell {
    match isolated.status {
        Status::NotApplicable => Cell::new(check, Status::NotApplicable, no_own_gil(python)),
        Status::Refused => {
            let mut cell = Cell::new(check, Status::Refused, "refused, see isolated-import");
            cell.refused_by = isolated.refused_by.clone();
            cell
        }
        _ => Cell::new(
            check,
            Status::Inconclusive,
            format!(
                "isolated-import was {}, so this was not run",
                isolated.label()
            ),
        ),
    }
}

fn no_own_gil(python: &PythonInfo) -> String {
    format!(
        "Python {} has no own-GIL sub-interpreters ({})",
        python.version,
        python
            .backend
            .as_deref()
            .unwrap_or("no sub-interpreter API")
    )
}

fn finish_column(
    python: &PythonInfo,
    unit: &Unit,
    cells: Option<Vec<Cell>>,
    plan: Option<Wave2>,
    runs: &[ChildRun],
    settings: &Settings,
    baselines: &[Option<f64>],
) -> Column {
    let (Some(mut cells), Some(plan)) = (cells, plan) else {
        let why = unit.pick(python).err().unwrap_or_default();
        let checks = settings.checks();
        return Column {
            python: python.label.clone(),
            target: None,
            module: None,
            cells: checks
                .into_iter()
                .map(|c| Cell::new(c, Status::NotApplicable, &why))
                .collect(),
        };
    };
    let module = module_info(&cells[0]);
    let t = settings.timeout;
    let missing = is_not_found(&cells[0]);
    explain_refusal(&mut cells[2], module.as_ref());
    let declined = module
        .as_ref()
        .and_then(|m| m.get("multiple_interpreters"))
        .and_then(Value::as_str)
        == Some("not-supported");
    let mut shared = resolve(plan.shared, Check::SharedObjects, runs, t);
    if declined {
        excuse(
            &mut shared.status,
            &mut shared.detail,
            shared.signal.as_deref(),
        );
    }
    cells.push(shared);
    let variants = plan
        .cycles
        .into_iter()
        .map(|(name, mode, main_first, pending)| {
            let mut cell = resolve(pending, Check::Cycles, runs, t);
            if declined {
                excuse(&mut cell.status, &mut cell.detail, cell.signal.as_deref());
            }
            Variant {
                name,
                mode: mode.to_string(),
                main_import_first: main_first,
                status: cell.status,
                signal: cell.signal,
                detail: cell.detail,
                stage: cell.stage,
                run: cell.run,
            }
        })
        .collect();
    cells.push(Cell::fold(Check::Cycles, variants));
    if let Some(pending) = plan.concurrent {
        cells.push(resolve(pending, Check::Concurrent, runs, t));
    }
    if let Some(pending) = plan.gil {
        cells.push(resolve(pending, Check::GilReenabled, runs, t));
    }
    if let Some(pending) = plan.threads {
        cells.push(resolve(pending, Check::Threads, runs, t));
    }
    for (i, (mode, pending)) in plan.embed.into_iter().enumerate() {
        let mut cell = match pending {
            Pending::Ready(cell) => *cell,
            Pending::Job(j) => embed::cell(
                mode,
                &unit.name,
                &runs[j],
                settings.embed_cycles.unwrap_or(0),
                t,
                baselines.get(i).copied().flatten(),
            ),
        };
        // Py_NewInterpreter makes legacy sub-interpreters: what the declaration excludes.
        if declined && mode == Mode::Subinterp {
            excuse(&mut cell.status, &mut cell.detail, cell.signal.as_deref());
        }
        cells.push(cell);
    }
    if missing {
        let why = format!("not installed for this Python: {}", cells[0].detail);
        for cell in &mut cells {
            *cell = Cell::new(cell.check, Status::NotApplicable, &why);
        }
    } else if cells[0].status != Status::Pass {
        for cell in &mut cells[1..] {
            *cell = Cell::new(cell.check, Status::Inconclusive, "main-import did not pass");
        }
    }
    Column {
        python: python.label.clone(),
        target: unit.pick(python).ok().map(|t| t.raw.clone()),
        module,
        cells,
    }
}

/// The module facts the main-import child read from the module's definition.
fn module_info(main: &Cell) -> Option<Value> {
    let result = main.result.as_ref()?;
    let mut info = result.get("module")?.clone();
    if let (Some(map), Some(origin)) = (info.as_object_mut(), result.get("origin")) {
        map.insert("origin".into(), origin.clone());
    }
    Some(info)
}

/// A module that declares Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED has put
/// sub-interpreters off limits. CPython still loads it in legacy ones; what
/// happens there is reported, as the refusal it is rather than a failure.
fn excuse(status: &mut Status, detail: &mut String, signal: Option<&str>) {
    if status.is_failure() {
        *detail = format!(
            "the module declares Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED; in legacy \
             sub-interpreters, which still load it: {}: {detail}",
            super::matrix::label(*status, signal)
        );
        *status = Status::Refused;
    }
}

/// Says why CPython refused: the module's own declaration, or its silence.
fn explain_refusal(cell: &mut Cell, module: Option<&Value>) {
    if cell.status != Status::Refused {
        return;
    }
    let field = |key: &str| module.and_then(|m| m.get(key)).and_then(Value::as_str);
    let why = match (field("init"), field("multiple_interpreters")) {
        (Some("single-phase"), _) => {
            "single-phase init; CPython loads it only where the GIL is shared"
        }
        (_, Some("not-supported")) => {
            "the module declares Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED"
        }
        (_, Some("supported")) => {
            "the module declares Py_MOD_MULTIPLE_INTERPRETERS_SUPPORTED (shared GIL only)"
        }
        (Some("multi-phase"), None) => {
            "no Py_mod_multiple_interpreters slot; CPython then assumes it needs the shared GIL"
        }
        _ => return,
    };
    cell.detail = format!("{why} ({})", cell.detail);
}
