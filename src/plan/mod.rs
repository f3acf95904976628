//! `isolint plan` and `isolint fix`: a staged migration plan per module, written from the model
//! `check` builds, with generated C; and stage 0 of it as an applicable edit.
//!
//! model → `build` (plan data, with `state`, `types`, `access` and `stage0` generating the C)
//! → `markdown` / JSON.

mod access;
mod build;
mod context;
pub mod data;
mod elsewhere;
mod markdown;
mod runtime_fields;
mod stage0;
mod stage1;
mod stage2;
pub(crate) mod stage3;
mod state;
mod types;
mod write;

use crate::model::pytypes::Layouts;
use crate::{analyze, Analysis, AnalyzeOptions};
use context::PlanCtx;
use data::PlanReport;
use stage0::{Edit, Stage0};
use stage3::Stage3;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PlanFormat {
    Markdown,
    Json,
}

/// `isolint plan`: a staged migration plan per module.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// Files and folders to scan (default: the current folder).
    pub paths: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "markdown")]
    pub format: PlanFormat,
    /// Write the plan here instead of standard output.
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub cache: CacheArgs,
}

/// The facts cache `plan` and `fix` read and write: the one `check` keeps, so a plan after a
/// check (and each stage of `fix --all` after the one before) parses only what changed.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CacheArgs {
    /// Parse every file again: neither read nor write the facts cache.
    #[arg(long, env = "ISOLINT_NO_CACHE", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_cache: bool,
    /// Keep the facts cache here instead of `.isolint_cache` beside the config file (or in the
    /// current folder when there is none), as `check` does.
    #[arg(long, value_name = "DIR", env = "ISOLINT_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
}

impl CacheArgs {
    /// Where `check` keeps the cache for a scan of `paths`: beside the config file of the
    /// first path, else in the current folder.
    fn dir(&self, paths: &[PathBuf]) -> Option<PathBuf> {
        if self.no_cache {
            return None;
        }
        if let Some(dir) = &self.cache_dir {
            return Some(dir.clone());
        }
        let first = paths.first().map_or(std::path::Path::new("."), |p| p);
        let config = crate::config::find_config(first).ok().flatten();
        crate::cache::default_dir(config.as_deref(), || std::env::current_dir().ok())
    }
}

/// `isolint fix`: the mechanical stages as edits.
#[derive(Debug, clap::Args)]
pub struct FixArgs {
    /// Files and folders to scan (default: the current folder).
    pub paths: Vec<PathBuf>,
    /// The stage to apply: 0 (multi-phase init), 1 (module state for the object globals), 2
    /// (static types to heap types) or 3 (declare what the verdict allows).
    #[arg(long, default_value_t = 0, conflicts_with = "all")]
    pub stage: u8,
    /// Every stage `fix` can write, in order (0, 1, 2, then 3), each on the result of the one
    /// before. With `--apply` each stage is written before the next is computed; without it, a
    /// module's diff stops at the first stage that changes it.
    #[arg(long)]
    pub all: bool,
    /// Write the files instead of printing a unified diff.
    #[arg(long)]
    pub apply: bool,
    #[command(flatten)]
    pub cache: CacheArgs,
}

fn analyze_paths(paths: &[PathBuf], cache: &CacheArgs) -> Result<Analysis, String> {
    let paths = if paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        paths.to_vec()
    };
    let analysis = analyze(&AnalyzeOptions {
        cache_dir: cache.dir(&paths),
        paths,
        model: true,
        ..Default::default()
    });
    if analysis.nothing_scanned() {
        let why: Vec<String> = analysis
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.path.display(), e.message))
            .collect();
        return Err(format!("nothing could be scanned ({})", why.join("; ")));
    }
    Ok(analysis)
}

/// The source texts of every file a module uses, as analysed. A file with bytes that are not
/// UTF-8 is left out: its offsets would not match what is on disk.
fn texts(analysis: &Analysis) -> BTreeMap<usize, String> {
    let mut out = BTreeMap::new();
    for m in &analysis.project.modules {
        for &f in &m.files {
            let facts = &analysis.project.files[f];
            if facts.first_invalid_utf8.is_some() || out.contains_key(&f) {
                continue;
            }
            if let Ok(t) = std::fs::read_to_string(&facts.path) {
                if t.len() == facts.bytes {
                    out.insert(f, t);
                }
            }
        }
    }
    out
}

/// The module's verdict as `check` gave it (suppressions counted); computed again from its
/// findings when the summary has none.
fn module_verdict_of(
    analysis: &Analysis,
    module: &crate::model::ExtensionModule,
) -> crate::rules::Verdict {
    let summary = analysis
        .modules
        .iter()
        .filter(|s| s.name == module.name)
        .find_map(|s| s.verdict.clone());
    summary.unwrap_or_else(|| {
        let own: Vec<crate::finding::Finding> = analysis
            .findings
            .iter()
            .filter(|f| f.module.as_deref() == Some(module.name.as_str()))
            .cloned()
            .collect();
        crate::rules::module_verdict(module, &own, &crate::rules::nothing_suppressed)
    })
}

/// The plan for every module of an analysis.
pub fn plan_report(analysis: &Analysis) -> PlanReport {
    let texts = texts(analysis);
    let layouts = Layouts::new(analysis.project.files.iter());
    let modules = analysis
        .project
        .modules
        .iter()
        .filter_map(|m| {
            let ctx = PlanCtx::new(&analysis.project, m, &layouts, &texts);
            build::module_plan(&ctx, &analysis.findings, &module_verdict_of(analysis, m))
        })
        .collect();
    PlanReport { modules }
}

pub fn render_markdown(report: &PlanReport) -> String {
    markdown::render(report)
}

pub fn render_json(report: &PlanReport) -> String {
    serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
        + "\n"
}

pub fn run_plan(args: &PlanArgs) -> i32 {
    let analysis = match analyze_paths(&args.paths, &args.cache) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("isolint: error: {e}");
            return 2;
        }
    };
    let report = plan_report(&analysis);
    let text = match args.format {
        PlanFormat::Markdown => render_markdown(&report),
        PlanFormat::Json => render_json(&report),
    };
    match &args.output {
        Some(path) => {
            if let Err(e) = std::fs::write(path, text) {
                eprintln!("isolint: error: cannot write {}: {e}", path.display());
                return 2;
            }
        }
        None => print!("{text}"),
    }
    0
}

/// What `fix --stage 0` does to one module.
#[derive(Debug, Clone)]
pub struct ModuleFix {
    pub module: String,
    pub path: PathBuf,
    pub line: usize,
    pub outcome: FixOutcome,
}

/// How a stage's note on a latent bug it fixed starts (see `FixOutcome::ChangedWithNotes`).
pub const FIXED_ON_THE_WAY: &str = "fixed on the way: ";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FixOutcome {
    AlreadyDone,
    Changed,
    /// Changed in full, and latent bugs of the code fixed on the way: one a line. Not a
    /// refusal: the run succeeds.
    ChangedWithNotes(String),
    /// Changed, but some of what the stage covers stays as it was: why, one reason a line.
    Partial(String),
    Refused(String),
}

/// The stage-0 result for every module, and the new text of every file it changes.
pub struct FixResult {
    pub modules: Vec<ModuleFix>,
    /// (path, old text, new text), in path order.
    pub files: Vec<(PathBuf, String, String)>,
}

pub fn fix_stage0(analysis: &Analysis) -> FixResult {
    fix_stage(analysis, 0)
}

/// One stage's edits as a `Stage0`-shaped answer, so every stage shares the driver below,
/// with what the stage left as it was (one reason a line) when it changed the rest.
fn stage_edits(
    ctx: &PlanCtx,
    stage: u8,
    analysis: &Analysis,
    races_moved: &BTreeSet<String>,
) -> (Stage0, Option<String>) {
    match stage {
        1 => match stage1::stage1(ctx) {
            Err(why) => (Stage0::Refused(why), None),
            Ok(s) if s.edits.is_empty() && s.refused.is_empty() => (Stage0::Done, None),
            Ok(s) if s.edits.is_empty() => (Stage0::Refused(s.refused.join("\n")), None),
            Ok(s) => (
                Stage0::Edits(s.edits),
                (!s.refused.is_empty()).then(|| s.refused.join("\n")),
            ),
        },
        2 => match stage2::stage2(ctx) {
            Err(why) => (Stage0::Refused(why), None),
            Ok(s) if s.edits.is_empty() && s.refused.is_empty() => (Stage0::Done, None),
            Ok(s) if s.edits.is_empty() => (Stage0::Refused(s.refused.join("\n")), None),
            Ok(s) => {
                // What the stage fixed on the way is said with what it left.
                let said: Vec<String> = s
                    .refused
                    .iter()
                    .cloned()
                    .chain(s.notes.iter().map(|n| format!("{FIXED_ON_THE_WAY}{n}")))
                    .collect();
                (
                    Stage0::Edits(s.edits),
                    (!said.is_empty()).then(|| said.join("\n")),
                )
            }
        },
        3 => {
            let mut verdict = module_verdict_of(analysis, ctx.module);
            // Moving a lazily filled global into module state leaves its race between threads
            // of one interpreter, which the rules read only on globals: the verdict after
            // stage 1 cannot see it, so it cannot lift the GIL.
            let hold_gil = races_moved.contains(&ctx.module.name)
                && verdict.gil_axis.supported == crate::rules::GilLevel::NotUsed;
            if hold_gil {
                verdict.gil_axis.supported = crate::rules::GilLevel::Used;
            }
            match stage3::stage3(ctx, &verdict) {
                Stage3::Done => (Stage0::Done, None),
                Stage3::Refused(why) => (Stage0::Refused(why), None),
                Stage3::Edits(edits) => (
                    Stage0::Edits(edits),
                    hold_gil.then(|| {
                        "`Py_mod_gil` is left out: stage 1 moved globals that free-threading \
                         rules reported as racy (`unlocked-lazy-init`, `unlocked-static-write`) \
                         into module state, where threads of one interpreter still race on \
                         them; guard them (`PyMutex`, atomics) and declare it by hand"
                            .to_string()
                    }),
                ),
            }
        }
        _ => (stage0::stage0(ctx), None),
    }
}

/// The edits of `stage` (0, 1 or 3) for every module, and the new text of every file they change.
pub fn fix_stage(analysis: &Analysis, stage: u8) -> FixResult {
    fix_stage_after(analysis, stage, &BTreeSet::new())
}

/// The modules whose globals free-threading rules report as racy: moving them into module
/// state (stage 1) keeps the race, so a later stage 3 of the same run must not lift the GIL.
pub fn modules_with_racy_globals(analysis: &Analysis) -> BTreeSet<String> {
    analysis
        .findings
        .iter()
        .filter(|f| matches!(f.name, "unlocked-lazy-init" | "unlocked-static-write"))
        .filter_map(|f| f.module.clone())
        .collect()
}

/// `fix_stage`, for a stage after others of the same run: `races_moved` are the modules
/// `modules_with_racy_globals` named before the first stage.
pub fn fix_stage_after(
    analysis: &Analysis,
    stage: u8,
    races_moved: &BTreeSet<String>,
) -> FixResult {
    let texts = texts(analysis);
    let layouts = Layouts::new(analysis.project.files.iter());
    let mut modules = Vec::new();
    let mut edits: BTreeMap<usize, Vec<Edit>> = BTreeMap::new();
    let mut owners: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for m in analysis.project.modules.iter() {
        let Some(init) = m.init_function else {
            continue;
        };
        let ctx = PlanCtx::new(&analysis.project, m, &layouts, &texts);
        let (fix, left) = stage_edits(&ctx, stage, analysis, races_moved);
        let outcome = match fix {
            Stage0::Done => FixOutcome::AlreadyDone,
            Stage0::Edits(es) if es.iter().any(|e| hidden_code(analysis, e.file).is_some()) => {
                let (file, why) = es
                    .iter()
                    .find_map(|e| Some((e.file, hidden_code(analysis, e.file)?)))
                    .expect("checked by the guard");
                FixOutcome::Refused(format!(
                    "`{}` is {why}: change it where it comes from, not here",
                    analysis.project.files[file].path.display()
                ))
            }
            Stage0::Refused(r) => FixOutcome::Refused(r),
            Stage0::Edits(es) => {
                for e in es {
                    owners.entry(e.file).or_default().push(modules.len());
                    edits.entry(e.file).or_default().push(e);
                }
                match left {
                    Some(notes) if notes.lines().all(|l| l.starts_with(FIXED_ON_THE_WAY)) => {
                        FixOutcome::ChangedWithNotes(notes)
                    }
                    Some(why) => FixOutcome::Partial(why),
                    None => FixOutcome::Changed,
                }
            }
        };
        modules.push(ModuleFix {
            module: m.name.clone(),
            path: analysis.project.files[init.file].path.clone(),
            line: analysis.project.function(init).span.line,
            outcome,
        });
    }
    let mut files = Vec::new();
    for (file, es) in edits {
        let Some(old) = texts.get(&file) else {
            continue;
        };
        let refs: Vec<&Edit> = es.iter().collect();
        match stage0::apply(old, &refs) {
            Some(new) => files.push((analysis.project.files[file].path.clone(), old.clone(), new)),
            None => {
                // Two modules' edits overlap in one file: neither is mechanical any more.
                for &mi in owners.get(&file).into_iter().flatten() {
                    modules[mi].outcome = FixOutcome::Refused(format!(
                        "another module's stage-{stage} edits overlap in the same file"
                    ));
                }
            }
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    FixResult { modules, files }
}

/// Why a file is not the project's own to edit: it sits in a vendored folder, or it is
/// generated (Cython, Argument Clinic...).
fn hidden_code(analysis: &Analysis, file: usize) -> Option<String> {
    let path = &analysis.project.files[file].path;
    analysis
        .hidden
        .iter()
        .find(|h| path.starts_with(&h.path))
        .map(|h| match h.reason {
            "generated" => "generated".to_string(),
            reason => format!("{reason} (under {})", h.path.display()),
        })
}

/// Writes every file of a fix, or none: a file changed since the scan, a read-only file or
/// one that cannot be written stops the run before anything is replaced.
pub fn write_fix(result: &FixResult) -> Result<Vec<PathBuf>, String> {
    write::write_all(&result.files).map_err(|e| format!("nothing was written: {e}"))
}

/// A unified diff of one file.
pub fn unified_diff(path: &std::path::Path, old: &str, new: &str) -> String {
    let shown = diff_path(path);
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{shown}"), &format!("b/{shown}"))
        .to_string()
}

/// The path a diff names: relative to the root of the git repository that holds the file, so
/// `git apply` takes it from there whatever path the scan was given (`.`, `./src`, an
/// absolute path); relative to the current folder, without `./`, outside a repository.
fn diff_path(path: &std::path::Path) -> String {
    let absolute = crate::config::absolute(path);
    let root = absolute
        .ancestors()
        .skip(1)
        .find(|d| d.join(".git").exists())
        .map(std::path::Path::to_path_buf)
        .or_else(|| std::env::current_dir().ok());
    let relative = root
        .as_deref()
        .and_then(|r| absolute.strip_prefix(r).ok())
        .unwrap_or(path);
    if relative.is_absolute() {
        return relative.display().to_string();
    }
    let parts: Vec<String> = relative
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts.join("/")
}

/// The diff a stage makes for one module, for the plan.
fn diff_of(ctx: &PlanCtx, fix: &Stage0) -> Option<String> {
    let Stage0::Edits(edits) = fix else {
        return None;
    };
    let mut by_file: BTreeMap<usize, Vec<&Edit>> = BTreeMap::new();
    for e in edits {
        by_file.entry(e.file).or_default().push(e);
    }
    let mut out = String::new();
    for (file, es) in by_file {
        let old = ctx.texts.get(&file)?;
        let new = stage0::apply(old, &es)?;
        out.push_str(&unified_diff(&ctx.project.files[file].path, old, &new));
    }
    Some(out)
}

pub fn run_fix(args: &FixArgs) -> i32 {
    let stages: Vec<u8> = if args.all {
        vec![0, 1, 2, 3]
    } else {
        vec![args.stage]
    };
    if let Some(stage) = stages.iter().find(|s| **s > 3) {
        eprintln!(
            "isolint: error: `fix` writes stages 0 (multi-phase init), 1 (module state), 2 (heap types) and 3 (declare); there is no stage {stage}"
        );
        return 2;
    }
    let mut refused = false;
    let mut changed_by_earlier: std::collections::BTreeSet<String> = Default::default();
    let mut racy: Option<BTreeSet<String>> = None;
    for &stage in &stages {
        let analysis = match analyze_paths(&args.paths, &args.cache) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("isolint: error: {e}");
                return 2;
            }
        };
        let racy = racy.get_or_insert_with(|| modules_with_racy_globals(&analysis));
        let mut result = fix_stage_after(&analysis, stage, racy);
        if result.modules.is_empty() {
            eprintln!("isolint: no extension module (`PyInit_*`) was found");
        }
        if !args.apply && !changed_by_earlier.is_empty() {
            // Without --apply the earlier stage's edits are not on disk: a later stage computed
            // from the old text would not apply on top of them.
            let skipped: Vec<String> = result
                .modules
                .iter()
                .filter(|m| changed_by_earlier.contains(&m.module))
                .map(|m| format!("`{}`", m.module))
                .collect();
            result
                .modules
                .retain(|m| !changed_by_earlier.contains(&m.module));
            let keep: Vec<PathBuf> = result.modules.iter().map(|m| m.path.clone()).collect();
            result.files.retain(|(path, _, _)| keep.contains(path));
            if !skipped.is_empty() {
                eprintln!(
                    "isolint: stage {stage} for {} follows once the diff above is applied (`--apply`)",
                    skipped.join(", ")
                );
            }
        }
        refused |= report_outcomes(&result, stage);
        for m in &result.modules {
            if matches!(
                m.outcome,
                FixOutcome::Changed | FixOutcome::ChangedWithNotes(_) | FixOutcome::Partial(_)
            ) {
                changed_by_earlier.insert(m.module.clone());
            }
        }
        if args.apply {
            match write_fix(&result) {
                Ok(written) => {
                    for path in written {
                        eprintln!("isolint: stage {stage}: wrote {}", path.display());
                    }
                }
                Err(e) => {
                    eprintln!("isolint: error: stage {stage}: {e}");
                    return 2;
                }
            }
        } else {
            for (path, old, new) in &result.files {
                print!("{}", unified_diff(path, old, new));
            }
        }
    }
    i32::from(refused)
}

/// Prints what a stage did to each module; true when it refused one.
fn report_outcomes(result: &FixResult, stage: u8) -> bool {
    let mut refused = false;
    for m in &result.modules {
        let place = format!("{}:{}", m.path.display(), m.line);
        match &m.outcome {
            FixOutcome::AlreadyDone => {
                let done = if stage == 0 {
                    "already multi-phase"
                } else if stage == 1 {
                    "no object global left to move into module state"
                } else if stage == 2 {
                    "no static type left"
                } else {
                    "its slots already declare what the verdict allows"
                };
                eprintln!(
                    "isolint: stage {stage}: `{}` ({place}): {done}, nothing to do",
                    m.module
                )
            }
            FixOutcome::Changed => {}
            FixOutcome::ChangedWithNotes(notes) => {
                eprintln!(
                    "isolint: stage {stage}: `{}` ({place}): changed; latent bugs fixed on the way:",
                    m.module
                );
                for note in notes.lines() {
                    let note = note.strip_prefix(FIXED_ON_THE_WAY).unwrap_or(note);
                    eprintln!("  {}: {note}", m.path.display());
                }
            }
            FixOutcome::Partial(r) => {
                refused = true;
                eprintln!(
                    "isolint: stage {stage}: `{}` ({place}): changed, but not all of it:",
                    m.module
                );
                for reason in r.lines() {
                    eprintln!("  {}: {reason}", m.path.display());
                }
            }
            FixOutcome::Refused(r) => {
                refused = true;
                // Every reason at once, each with its place, so one run says all there is to do.
                eprintln!(
                    "isolint: stage {stage}: `{}` ({place}): not changed:",
                    m.module
                );
                for reason in r.lines() {
                    eprintln!("  {}: {reason}", m.path.display());
                }
            }
        }
    }
    refused
}
