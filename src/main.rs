use clap::{Args, Parser, Subcommand, ValueEnum};
use isolint::baseline;
use isolint::config::{self, Settings};
use isolint::finding::{sort_findings, Severity};
use isolint::report::{concise, github, human, json, sarif, statistics};
use isolint::rules::RuleInfo;
use isolint::suppress::Texts;
use isolint::version::parse_target;
use isolint::{analyze, Analysis};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Find process-global state in CPython C extension modules, and move it to per-interpreter
/// module state.
#[derive(Parser)]
#[command(name = "isolint", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Scan C sources and report process-global state and broken isolation rules.
    Check(CheckArgs),
    /// List every rule.
    Rules(RulesArgs),
    /// Show the documentation of one rule, by id or name.
    Explain {
        /// `ISO003` or `static-type-object`.
        rule: String,
    },
    /// Load a built module in child processes and sub-interpreters, and report what happens.
    Verify(isolint::verify::VerifyArgs),
    /// Run the Language Server (LSP over standard input and output) for editors.
    Server,
    /// Write a staged migration plan to module state, per extension module.
    Plan(isolint::plan::PlanArgs),
    /// Apply the mechanical stage of the plan (stage 0: multi-phase init); prints a diff.
    Fix(isolint::plan::FixArgs),
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Format {
    /// Diagnostics with the source line and a summary.
    Human,
    /// One versioned document (docs/json-format.md).
    Json,
    /// SARIF 2.1.0, for code-scanning uploads.
    Sarif,
    /// GitHub Actions annotations.
    Github,
    /// One line per finding: `path:line:col: severity[rule] message`.
    Concise,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum RulesFormat {
    Human,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum FailOn {
    Error,
    Warning,
    Info,
}

#[derive(Clone, Copy, ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Args)]
struct CheckArgs {
    /// Files and folders to scan (default: the current folder). `-` reads standard input.
    paths: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "human")]
    format: Format,
    /// Lowest severity that makes the exit status 1 (default: `fail-on` from the config, else
    /// `warning`).
    #[arg(long, value_enum)]
    fail_on: Option<FailOn>,
    /// Exit 0 even when there are findings (usage errors still exit 2).
    #[arg(long)]
    exit_zero: bool,
    /// Also report findings in vendored libraries (a folder with its own LICENSE, or
    /// vendor/, third_party/...) and generated files; by default they are only counted.
    #[arg(long)]
    include_vendored: bool,
    /// Target Python version(s), e.g. `--python 3.12`, `--python 3.13t` for the free-threaded
    /// build (`Py_GIL_DISABLED` branches): findings in code no target compiles are dropped.
    /// Default: `target-python` from the config, else every Python 3 and both builds.
    #[arg(long = "python", value_name = "X.Y[t]")]
    python: Vec<String>,
    /// Show only these rules' findings (ids or names, comma-separated); replaces the config's
    /// `select`. Verdicts still count every rule.
    #[arg(long, value_delimiter = ',')]
    select: Vec<String>,
    /// Do not show these rules' findings (ids or names, comma-separated); added to the config's
    /// `ignore`. Verdicts still count every rule.
    #[arg(long, value_delimiter = ',')]
    ignore: Vec<String>,
    /// Files larger than this many bytes are skipped with a message (default 10 MB).
    #[arg(long)]
    max_file_size: Option<u64>,
    /// With `-`: the file name that findings on standard input carry.
    #[arg(long)]
    stdin_filename: Option<PathBuf>,
    /// Extra folder names to skip (on top of build/, dist/, .tox, venvs...).
    #[arg(long = "exclude", value_name = "NAME")]
    exclude: Vec<String>,
    /// Colour in the human format: `auto` is on for a terminal unless `NO_COLOR` is set.
    #[arg(long, value_enum, default_value = "auto")]
    color: Color,
    /// Wrap the human format at this many columns (default: the terminal's width, or 100 when
    /// the output is not a terminal).
    #[arg(long, value_name = "COLUMNS")]
    width: Option<usize>,
    /// Print how many findings each rule has instead of the findings (a table, or a JSON list
    /// with `--format json`).
    #[arg(long)]
    statistics: bool,
    /// Say on standard error what the cache answered: files read from it or parsed, facts
    /// decoded, modules reused or checked.
    #[arg(long, short = 'v')]
    verbose: bool,
    /// Use this config file (`isolint.toml`, or a `pyproject.toml` with `[tool.isolint]`)
    /// instead of looking for one.
    #[arg(long, value_name = "FILE", conflicts_with = "isolated")]
    config: Option<PathBuf>,
    /// Ignore every config file.
    #[arg(long)]
    isolated: bool,
    /// Report only findings that this baseline file does not record.
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,
    /// Record the current findings in FILE and exit 0.
    #[arg(long, value_name = "FILE", conflicts_with = "baseline")]
    write_baseline: Option<PathBuf>,
    /// With `--baseline`: rewrite the baseline without the entries whose findings are gone.
    #[arg(long, requires = "baseline")]
    prune_baseline: bool,
    /// Parse every file again: neither read nor write the facts cache.
    #[arg(long, env = "ISOLINT_NO_CACHE", value_parser = clap::builder::BoolishValueParser::new())]
    no_cache: bool,
    /// Keep the facts cache here instead of `.isolint_cache` beside the config file (or in the
    /// current folder when there is none).
    #[arg(long, value_name = "DIR", env = "ISOLINT_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Take each module's files from this compile database (default: `compile_commands.json`
    /// at the scanned folder or in its `build/`, then setup.py, pyproject.toml, meson.build,
    /// CMakeLists.txt).
    #[arg(long, value_name = "FILE")]
    compile_commands: Option<PathBuf>,
}

#[derive(Args)]
struct RulesArgs {
    #[arg(long, value_enum, default_value = "human")]
    format: RulesFormat,
    /// Wrap the summaries at this many columns (default: the terminal's width, or 100).
    #[arg(long, value_name = "COLUMNS")]
    width: Option<usize>,
}

/// Columns when the output is not a terminal and no `--width` is given: wide enough for a
/// diagnostic's source line, narrow enough for a CI log or a review comment.
const PIPE_WIDTH: usize = 100;

/// `--width`, else the terminal's width (`COLUMNS` when the terminal does not say), else 100.
fn output_width(requested: Option<usize>) -> usize {
    if let Some(width) = requested {
        return width;
    }
    if !std::io::stdout().is_terminal() {
        return PIPE_WIDTH;
    }
    terminal_columns()
        .or_else(|| std::env::var("COLUMNS").ok()?.trim().parse().ok())
        .filter(|&w| w > 0)
        .unwrap_or(PIPE_WIDTH)
}

fn terminal_columns() -> Option<usize> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the struct we own; a failure leaves it 0.
    let status = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) };
    (status == 0 && size.ws_col > 0).then_some(usize::from(size.ws_col))
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("isolint: error: {message}");
    ExitCode::from(2)
}

fn resolve_rules(keys: &[String]) -> Result<Vec<&'static RuleInfo>, String> {
    keys.iter()
        .filter(|k| !k.is_empty())
        .map(|k| {
            config::find_any_rule(k)
                .ok_or_else(|| format!("unknown rule `{k}` (see `isolint rules`)"))
        })
        .collect()
}

fn severity_of(level: FailOn) -> Severity {
    match level {
        FailOn::Error => Severity::Error,
        FailOn::Warning => Severity::Warning,
        FailOn::Info => Severity::Info,
    }
}

/// The scanned paths that share one config file (or none), and whether the standard input
/// buffer is among them.
struct Group {
    config: Option<PathBuf>,
    paths: Vec<PathBuf>,
    stdin: bool,
}

/// Command-line settings layered over the config file's.
struct Overrides {
    select: Vec<&'static RuleInfo>,
    ignore: Vec<&'static RuleInfo>,
    targets: Vec<isolint::version::Target>,
    fail_on: Option<Severity>,
    exclude: Vec<String>,
    max_file_size: Option<u64>,
}

impl Overrides {
    fn apply(&self, s: &mut Settings) {
        if !self.select.is_empty() {
            s.select = Some(self.select.clone());
        }
        s.ignore.extend(self.ignore.iter().copied());
        if !self.targets.is_empty() {
            s.targets = self.targets.clone();
        }
        if let Some(level) = self.fail_on {
            s.fail_on = level;
        }
        s.extend_exclude.extend(self.exclude.iter().cloned());
        if let Some(size) = self.max_file_size {
            s.max_file_size = size;
        }
    }
}

fn merge(into: &mut Analysis, other: Analysis) {
    into.files_scanned += other.files_scanned;
    into.skipped.extend(other.skipped);
    into.errors.extend(other.errors);
    into.parse_errors.extend(other.parse_errors);
    into.modules.extend(other.modules);
    into.findings.extend(other.findings);
    into.hidden.extend(other.hidden);
    into.files.extend(other.files);
    into.build_notes.extend(other.build_notes);
}

/// Where a config group's facts cache lives: `--cache-dir`, else `.isolint_cache` in the
/// project, which is the config file's folder, or the current folder.
fn cache_dir(args: &CheckArgs, config: Option<&Path>) -> Option<PathBuf> {
    if args.no_cache {
        return None;
    }
    if let Some(dir) = &args.cache_dir {
        return Some(dir.clone());
    }
    isolint::cache::default_dir(config, || std::env::current_dir().ok())
}

/// Groups the paths by the config file that applies to each, like ruff: the nearest
/// `isolint.toml` or `pyproject.toml` with `[tool.isolint]` at or above the path.
fn group_paths(
    args: &CheckArgs,
    paths: &[PathBuf],
    stdin_name: Option<&PathBuf>,
) -> Result<Vec<Group>, String> {
    let fixed = if args.isolated {
        Some(None)
    } else {
        args.config.as_ref().map(|c| Some(c.clone()))
    };
    if let Some(config) = fixed {
        return Ok(vec![Group {
            config,
            paths: paths.to_vec(),
            stdin: stdin_name.is_some(),
        }]);
    }
    let mut groups: Vec<Group> = Vec::new();
    let mut add = |config: Option<PathBuf>, path: Option<&PathBuf>| {
        let i = match groups.iter().position(|g| g.config == config) {
            Some(i) => i,
            None => {
                groups.push(Group {
                    config,
                    paths: Vec::new(),
                    stdin: false,
                });
                groups.len() - 1
            }
        };
        match path {
            Some(p) => groups[i].paths.push(p.clone()),
            None => groups[i].stdin = true,
        }
    };
    for p in paths {
        add(config::find_config(p).map_err(|e| e.to_string())?, Some(p));
    }
    if let Some(name) = stdin_name {
        add(config::find_config(name).map_err(|e| e.to_string())?, None);
    }
    Ok(groups)
}

fn check(args: CheckArgs) -> ExitCode {
    let mut targets = Vec::new();
    for v in &args.python {
        match parse_target(v) {
            Some(v) => targets.push(v),
            None => return usage_error(&format!(
                "`--python {v}`: expected a version like 3.12 (3.13t or later for a free-threaded build)"
            )),
        }
    }
    let overrides = match (resolve_rules(&args.select), resolve_rules(&args.ignore)) {
        (Ok(select), Ok(ignore)) => Overrides {
            select,
            ignore,
            targets,
            fail_on: args.fail_on.map(severity_of),
            exclude: args.exclude.clone(),
            max_file_size: args.max_file_size,
        },
        (Err(e), _) | (_, Err(e)) => return usage_error(&e),
    };

    let mut stdin_buffer = None;
    let mut paths = Vec::new();
    for p in &args.paths {
        if p.as_os_str() == "-" {
            let mut bytes = Vec::new();
            if let Err(e) = std::io::stdin().read_to_end(&mut bytes) {
                return usage_error(&format!("cannot read standard input: {e}"));
            }
            let name = args
                .stdin_filename
                .clone()
                .unwrap_or_else(|| PathBuf::from("<stdin>.c"));
            stdin_buffer = Some((name, bytes));
        } else {
            paths.push(p.clone());
        }
    }
    if paths.is_empty() && stdin_buffer.is_none() {
        paths.push(PathBuf::from("."));
    }
    let stdin_text: Vec<(PathBuf, String)> = stdin_buffer
        .iter()
        .map(|(n, b)| (n.clone(), String::from_utf8_lossy(b).into_owned()))
        .collect();

    let groups = match group_paths(&args, &paths, stdin_buffer.as_ref().map(|(n, _)| n)) {
        Ok(g) => g,
        Err(e) => return usage_error(&e),
    };
    let baseline_entries = match &args.baseline {
        Some(file) => match baseline::load(file) {
            Ok(entries) => Some(entries),
            Err(e) => return usage_error(&e),
        },
        None => None,
    };
    let baseline_file = args.baseline.as_ref().or(args.write_baseline.as_ref());
    let baseline_base = baseline_file.map(|f| baseline::base_dir(f));
    let mut matcher = baseline_entries.clone().map(baseline::Matcher::new);

    let mut texts = Texts::new(stdin_text.clone());
    let mut merged: Option<Analysis> = None;
    let mut failing = false;
    let group_count = groups.len();
    for (group_index, group) in groups.into_iter().enumerate() {
        let mut settings = match &group.config {
            Some(file) => match config::load(file) {
                Ok(Some(s)) => s,
                Ok(None) => {
                    return usage_error(&format!("{}: no [tool.isolint] table", file.display()))
                }
                Err(e) => return usage_error(&e.to_string()),
            },
            None => Settings::default(),
        };
        overrides.apply(&mut settings);
        let mut options = settings.analyze_options();
        options.paths = group.paths;
        options.include_vendored = args.include_vendored;
        options.cache_dir = cache_dir(&args, group.config.as_deref());
        options.build.compile_commands = args.compile_commands.clone();
        options.suppress = settings.external_suppressions(
            baseline_entries
                .as_ref()
                .zip(baseline_base.as_ref())
                .filter(|_| args.write_baseline.is_none())
                .map(|(e, b)| (e.clone(), b.clone())),
            stdin_text.clone(),
        );
        if group.stdin {
            options.stdin = stdin_buffer.clone();
        }
        // The last scan of the run: the process ends soon after it. Only with a cache: there
        // a re-run checks a few units and freeing them is a tenth of its time, while a scan
        // without one frees one round of many, and what it leaves would be held while the
        // report is written, the scan's last and, on a large tree, highest step.
        options.exits_after = group_index + 1 == group_count && options.cache_dir.is_some();
        let mut analysis = analyze(&options);
        if let Some(e) = analysis.cache.as_ref().and_then(|c| c.write_error.as_ref()) {
            eprintln!("isolint: warning: the cache was not written: {e}");
        }
        if args.verbose {
            match &analysis.cache {
                Some(c) if c.whole_run => eprintln!(
                    "isolint: cache: {} files, the whole result from the run memo; {} not read (stamps unchanged)",
                    c.hits, c.unread
                ),
                Some(c) => eprintln!(
                    "isolint: cache: {} files from the cache, {} parsed, {} decoded; modules: {} reused, {} checked; {} files not read (stamps unchanged)",
                    c.hits, c.misses, c.decoded, c.units_reused, c.units_checked, c.unread
                ),
                None => eprintln!("isolint: cache: not used"),
            }
        }
        settings.postprocess(&mut analysis, &mut texts);
        if let (Some(m), Some(base)) = (matcher.as_mut(), baseline_base.as_ref()) {
            m.filter(&mut analysis.findings, base, &mut texts);
        }
        failing |= analysis
            .findings
            .iter()
            .any(|f| f.severity >= settings.fail_on);
        match merged.as_mut() {
            Some(m) => merge(m, analysis),
            None => merged = Some(analysis),
        }
    }
    let Some(mut analysis) = merged else {
        return usage_error("nothing to scan");
    };
    sort_findings(&mut analysis.findings);
    analysis
        .errors
        .sort_by(|a, b| a.path.cmp(&b.path).then(a.message.cmp(&b.message)));

    if let (Some(file), Some(base)) = (&args.write_baseline, &baseline_base) {
        if analysis.nothing_scanned() {
            for e in &analysis.errors {
                eprintln!("isolint: {}: {}", e.path.display(), e.message);
            }
            return usage_error("nothing could be scanned; the baseline was not written");
        }
        let entries: Vec<_> = analysis
            .findings
            .iter()
            .map(|f| baseline::entry(f, base, &mut texts))
            .collect();
        let n = entries.len();
        return match baseline::save(file, entries) {
            Ok(()) => {
                eprintln!("isolint: wrote {n} findings to {}", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => usage_error(&e),
        };
    }

    let color = match args.color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let layout = human::Layout {
        color,
        width: output_width(args.width),
    };
    let text = match args.format {
        Format::Json if args.statistics => statistics::render_json(&analysis),
        _ if args.statistics => {
            let mut text = statistics::render_table(&analysis);
            text.push_str(&human::tail(&analysis, layout.width));
            text
        }
        // Written a finding at a time below.
        Format::Json => String::new(),
        Format::Sarif => {
            let rules: Vec<&'static RuleInfo> = config::all_rules().collect();
            sarif::render(&analysis, &rules, &mut texts, &sarif::repository_root())
        }
        Format::Github => github::render(&analysis),
        Format::Concise => concise::render(&analysis),
        Format::Human => human::render(&analysis, &mut texts, layout),
    };
    if args.format == Format::Concise {
        for e in &analysis.errors {
            eprintln!("isolint: {}: {}", e.path.display(), e.message);
        }
    }
    let mut stdout = std::io::stdout().lock();
    let written = if args.format == Format::Json && !args.statistics {
        let mut out = std::io::BufWriter::new(&mut stdout);
        json::write(&analysis, &mut out).and_then(|_| out.flush())
    } else {
        stdout
            .write_all(text.as_bytes())
            .and_then(|_| stdout.flush())
    };
    if written.is_err() {
        // A closed pipe (`| head`) is not an error of the scan.
        return ExitCode::SUCCESS;
    }
    drop(stdout);
    if let (Some(m), Some(file)) = (&matcher, &args.baseline) {
        let fixed = m.fixed();
        if args.prune_baseline {
            if let Err(e) = baseline::save(file, m.kept()) {
                return usage_error(&e);
            }
            eprintln!(
                "isolint: baseline: {} known findings; removed {} fixed entries from {}",
                m.known,
                fixed.len(),
                file.display()
            );
        } else {
            eprintln!("isolint: baseline: {} known findings not reported", m.known);
            if !fixed.is_empty() {
                eprintln!(
                    "isolint: baseline: {} entries no longer match a finding (fixed); `--prune-baseline` removes them:",
                    fixed.len()
                );
                for e in &fixed {
                    eprintln!(
                        "  {} [{}] {} {}",
                        e.path,
                        e.name,
                        e.function.as_deref().unwrap_or("<file scope>"),
                        e.symbol.as_deref().unwrap_or("")
                    );
                }
            }
        }
    }
    if analysis.nothing_scanned() {
        eprintln!("isolint: error: nothing could be scanned");
        return ExitCode::from(2);
    }
    // The process ends here: freeing every fact of the tree one by one only costs time.
    std::mem::forget(analysis);
    if failing && !args.exit_zero {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn list_rules(args: RulesArgs) -> ExitCode {
    let mut rules: Vec<&'static RuleInfo> = config::all_rules().collect();
    rules.sort_by_key(|r| r.id);
    match args.format {
        RulesFormat::Json => {
            let rules: Vec<_> = rules
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "id": r.id, "name": r.name, "severity": r.severity,
                        "min_python": r.min_python, "summary": r.summary,
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&rules).unwrap_or_default()
            );
        }
        RulesFormat::Human => print!("{}", rules_table(&rules, output_width(args.width))),
    }
    ExitCode::SUCCESS
}

/// `id  name  severity  fix  summary`, columns as wide as their widest entry, the summary
/// wrapped under itself.
fn rules_table(rules: &[&'static RuleInfo], width: usize) -> String {
    let headers = ["id", "name", "severity", "fix"];
    let cells = |r: &RuleInfo| [r.id, r.name, r.severity.as_str(), r.min_python];
    let mut widths = headers.map(str::len);
    for r in rules {
        for (w, cell) in widths.iter_mut().zip(cells(r)) {
            *w = (*w).max(cell.len());
        }
    }
    let lead: usize = widths.iter().map(|w| w + 2).sum();
    let row = |cols: [&str; 4], summary: &str| {
        let mut head = String::new();
        for (cell, w) in cols.iter().zip(widths) {
            head.push_str(&format!("{cell:<w$}  "));
        }
        let indent = " ".repeat(lead);
        // Too narrow a terminal for a summary column: let it run on instead.
        let summary_width = width.saturating_sub(lead).max(30) + lead;
        let options = textwrap::Options::new(summary_width)
            .initial_indent(&head)
            .subsequent_indent(&indent)
            .break_words(false)
            // Only at spaces: a path or `m_size = -1` must not be split at a `/` or a `-`.
            .word_separator(textwrap::WordSeparator::AsciiSpace)
            .word_splitter(textwrap::WordSplitter::NoHyphenation);
        format!("{}\n", textwrap::fill(summary, options))
    };
    let mut out = row(headers, "summary");
    for r in rules {
        out.push_str(&row(cells(r), r.summary));
    }
    out
}

fn explain(key: &str) -> ExitCode {
    match config::find_any_rule(key) {
        Some(rule) => {
            print!("{}", isolint::server::explain_markdown(rule));
            ExitCode::SUCCESS
        }
        None => usage_error(&format!("unknown rule `{key}` (see `isolint rules`)")),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Command::Check(args) => check(args),
        Command::Rules(args) => list_rules(args),
        Command::Explain { rule } => explain(&rule),
        Command::Server => match isolint::server::run() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("isolint: server: {e}");
                ExitCode::from(2)
            }
        },
        Command::Verify(args) => ExitCode::from(isolint::verify::run(&args).clamp(0, 255) as u8),
        Command::Plan(args) => ExitCode::from(isolint::plan::run_plan(&args).clamp(0, 255) as u8),
        Command::Fix(args) => ExitCode::from(isolint::plan::run_fix(&args).clamp(0, 255) as u8),
    }
}
