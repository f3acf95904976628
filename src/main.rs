use clap::{Args, Parser, Subcommand, ValueEnum};
use isolint::finding::Severity;
use isolint::report::{human, json};
use isolint::rules::{find_rule, RuleInfo, RULES};
use isolint::version::parse_version;
use isolint::{analyze, AnalyzeOptions};
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
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
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Format {
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
    /// Lowest severity that makes the exit status 1.
    #[arg(long, value_enum, default_value = "warning")]
    fail_on: FailOn,
    /// Exit 0 even when there are findings (usage errors still exit 2).
    #[arg(long)]
    exit_zero: bool,
    /// Target Python version(s), e.g. `--python 3.12`: findings in code no target compiles are
    /// dropped. Default: every Python 3.
    #[arg(long = "python", value_name = "X.Y")]
    python: Vec<String>,
    /// Only these rules (ids or names, comma-separated).
    #[arg(long, value_delimiter = ',')]
    select: Vec<String>,
    /// Not these rules (ids or names, comma-separated).
    #[arg(long, value_delimiter = ',')]
    ignore: Vec<String>,
    /// Files larger than this many bytes are skipped with a message.
    #[arg(long, default_value_t = isolint::source::DEFAULT_MAX_FILE_SIZE)]
    max_file_size: u64,
    /// With `-`: the file name that findings on standard input carry.
    #[arg(long)]
    stdin_filename: Option<PathBuf>,
    /// Extra folder names to skip (on top of build/, dist/, .tox, venvs...).
    #[arg(long = "exclude", value_name = "NAME")]
    exclude: Vec<String>,
    #[arg(long, value_enum, default_value = "auto")]
    color: Color,
}

#[derive(Args)]
struct RulesArgs {
    #[arg(long, value_enum, default_value = "human")]
    format: Format,
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("isolint: error: {message}");
    ExitCode::from(2)
}

fn resolve_rules(keys: &[String]) -> Result<Vec<&'static RuleInfo>, String> {
    keys.iter()
        .filter(|k| !k.is_empty())
        .map(|k| find_rule(k).ok_or_else(|| format!("unknown rule `{k}` (see `isolint rules`)")))
        .collect()
}

fn check(args: CheckArgs) -> ExitCode {
    let mut options = AnalyzeOptions {
        max_file_size: args.max_file_size,
        ..Default::default()
    };
    options.discover.extra_excludes = args.exclude.clone();
    for v in &args.python {
        match parse_version(v) {
            Some(v) => options.targets.push(v),
            None => return usage_error(&format!("`--python {v}`: expected a version like 3.12")),
        }
    }
    let selected = match resolve_rules(&args.select) {
        Ok(r) => r,
        Err(e) => return usage_error(&e),
    };
    let ignored = match resolve_rules(&args.ignore) {
        Ok(r) => r,
        Err(e) => return usage_error(&e),
    };
    let mut rules: Vec<&'static RuleInfo> = if selected.is_empty() {
        RULES.to_vec()
    } else {
        selected
    };
    rules.retain(|r| !ignored.iter().any(|i| i.id == r.id));
    options.rules = Some(rules);

    let mut stdin_text = None;
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
            stdin_text = Some((name.clone(), String::from_utf8_lossy(&bytes).into_owned()));
            options.stdin = Some((name, bytes));
        } else {
            paths.push(p.clone());
        }
    }
    if paths.is_empty() && options.stdin.is_none() {
        paths.push(PathBuf::from("."));
    }
    options.paths = paths;

    let analysis = analyze(&options);
    let text = match args.format {
        Format::Json => json::render(&analysis),
        Format::Human => {
            let color = match args.color {
                Color::Always => true,
                Color::Never => false,
                Color::Auto => {
                    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
                }
            };
            human::render(
                &analysis,
                &mut human::Sources::new(stdin_text.into_iter().collect()),
                color,
            )
        }
    };
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
        .is_err()
    {
        // A closed pipe (`| head`) is not an error of the scan.
        return ExitCode::SUCCESS;
    }
    if analysis.nothing_scanned() {
        eprintln!("isolint: error: nothing could be scanned");
        return ExitCode::from(2);
    }
    let threshold = match args.fail_on {
        FailOn::Error => Severity::Error,
        FailOn::Warning => Severity::Warning,
        FailOn::Info => Severity::Info,
    };
    let failing = analysis.findings.iter().any(|f| f.severity >= threshold);
    if failing && !args.exit_zero {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn list_rules(args: RulesArgs) -> ExitCode {
    match args.format {
        Format::Json => {
            let rules: Vec<_> = RULES
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
        Format::Human => {
            println!(
                "{:<8} {:<32} {:<8} {:<6} summary",
                "id", "name", "severity", "fix"
            );
            for r in RULES {
                println!(
                    "{:<8} {:<32} {:<8} {:<6} {}",
                    r.id,
                    r.name,
                    r.severity.as_str(),
                    r.min_python,
                    r.summary
                );
            }
        }
    }
    ExitCode::SUCCESS
}

fn explain(key: &str) -> ExitCode {
    match find_rule(key) {
        Some(rule) => {
            println!(
                "# {} ({})\n\nDefault severity: {}. Minimum Python for the fix: {}.\n",
                rule.name,
                rule.id,
                rule.severity.as_str(),
                rule.min_python
            );
            print!("{}", isolint::rules::docs_markdown_body(rule));
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
        Command::Verify(args) => ExitCode::from(isolint::verify::run(&args).clamp(0, 255) as u8),
    }
}
