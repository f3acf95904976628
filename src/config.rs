//! Configuration: `[tool.isolint]` in `pyproject.toml`, or a standalone `isolint.toml`, found by
//! walking upward from a scanned path. It decides which rules run, on which files, at which
//! severity, for which Pythons, and what fails the run. Every key is documented in
//! docs/configuration.md.
//!
//! Errors name the file, the line and the key, because a CI job that dies on "invalid config"
//! with no place to look is worse than no config at all.

use crate::analysis::{Analysis, AnalyzeOptions, HiddenCode};
use crate::finding::{sort_findings, Finding, Severity};
use crate::rules::{RuleInfo, RULES};
use crate::suppress::{self, Texts};
use crate::version::{parse_target, Target};
use globset::{GlobBuilder, GlobMatcher};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};
use toml::Spanned;

/// The standalone file wins over `pyproject.toml` in the same folder, as `ruff.toml` does.
pub const CONFIG_FILE: &str = "isolint.toml";
pub const PYPROJECT: &str = "pyproject.toml";

#[derive(Debug, Clone)]
pub struct ConfigError {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Found files are absolute; show them as the user would type them.
        let cwd = std::env::current_dir().unwrap_or_default();
        let path = self.path.strip_prefix(&cwd).unwrap_or(&self.path);
        if self.line == 0 {
            write!(f, "{}: {}", path.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                path.display(),
                self.line,
                self.column,
                self.message
            )
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawConfig {
    select: Option<Vec<Spanned<String>>>,
    ignore: Option<Vec<Spanned<String>>>,
    per_file_ignores: Option<BTreeMap<Spanned<String>, Vec<Spanned<String>>>>,
    exclude: Option<Vec<String>>,
    extend_exclude: Option<Vec<String>>,
    severity: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    target_python: Option<Spanned<toml::Value>>,
    fail_on: Option<Spanned<String>>,
    max_file_size: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
struct Pyproject {
    tool: Option<Tool>,
}

#[derive(Deserialize)]
struct Tool {
    isolint: Option<RawConfig>,
}

/// One per-file-ignores entry: a glob and the rules it turns off.
#[derive(Debug, Clone)]
pub struct PerFileIgnore {
    pub pattern: String,
    matcher: GlobMatcher,
    /// A pattern without `/` matches the file name, wherever the file is.
    basename_only: bool,
    pub rules: Vec<&'static RuleInfo>,
}

/// Resolved settings: a config file (or none) merged with the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The file the settings came from, if any.
    pub file: Option<PathBuf>,
    /// Relative paths in the config (per-file-ignores) are relative to this folder.
    pub root: PathBuf,
    /// `None`: every rule.
    pub select: Option<Vec<&'static RuleInfo>>,
    pub ignore: Vec<&'static RuleInfo>,
    pub per_file_ignores: Vec<PerFileIgnore>,
    /// Replaces the default excluded folder names.
    pub exclude: Option<Vec<String>>,
    pub extend_exclude: Vec<String>,
    pub severity: Vec<(&'static RuleInfo, Severity)>,
    pub targets: Vec<Target>,
    pub fail_on: Severity,
    pub max_file_size: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            file: None,
            root: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            select: None,
            ignore: Vec::new(),
            per_file_ignores: Vec::new(),
            exclude: None,
            extend_exclude: Vec::new(),
            severity: Vec::new(),
            targets: Vec::new(),
            fail_on: Severity::Warning,
            max_file_size: crate::source::DEFAULT_MAX_FILE_SIZE,
        }
    }
}

/// Every rule a setting may name: the analysis rules and the suppression rules.
pub fn all_rules() -> impl Iterator<Item = &'static RuleInfo> {
    RULES
        .iter()
        .copied()
        .chain(suppress::META_RULES.iter().copied())
}

pub fn find_any_rule(key: &str) -> Option<&'static RuleInfo> {
    let key = key.trim();
    all_rules().find(|r| r.id.eq_ignore_ascii_case(key) || r.name == key)
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    (line, offset - line_start + 1)
}

/// The dotted key written on the line that holds `offset` (with the table header above it),
/// to name it in type errors whose message only describes the value.
fn key_on_line(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |p| p + 1);
    let line = text[start..].lines().next().unwrap_or("");
    let (key, _) = line.split_once('=')?;
    let key = key.trim().trim_matches('"');
    let plain = |k: &str| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    };
    if !plain(key) {
        return None;
    }
    let table = text[..start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string())
        .unwrap_or_default();
    Some(match table.as_str() {
        "" | "tool.isolint" => key.to_string(),
        t => {
            let t = t.strip_prefix("tool.isolint.").unwrap_or(t);
            format!("{t}.{key}")
        }
    })
}

struct Loader<'a> {
    path: &'a Path,
    text: &'a str,
    /// `tool.isolint.` in pyproject.toml, empty in isolint.toml.
    prefix: &'static str,
}

impl Loader<'_> {
    fn error_at(&self, offset: usize, message: String) -> ConfigError {
        let (line, column) = line_col(self.text, offset);
        ConfigError {
            path: self.path.to_path_buf(),
            line,
            column,
            message,
        }
    }

    fn toml_error(&self, err: toml::de::Error) -> ConfigError {
        let message = err.message().trim().to_string();
        match err.span() {
            Some(span) => {
                let named = if let Some(rest) = message.strip_prefix("unknown field `") {
                    // serde's wording is about struct fields; users write keys.
                    let (key, expected) = rest.split_once('`').unwrap_or((rest, ""));
                    format!(
                        "unknown key `{}{key}`{}",
                        self.prefix,
                        expected.replacen(", expected", " (expected", 1)
                            + if expected.is_empty() { "" } else { ")" }
                    )
                } else if let Some(key) = key_on_line(self.text, span.start) {
                    format!("`{}{key}`: {message}", self.prefix)
                } else {
                    message
                };
                self.error_at(span.start, named)
            }
            None => ConfigError {
                path: self.path.to_path_buf(),
                line: 0,
                column: 0,
                message,
            },
        }
    }

    fn rules(
        &self,
        key: &str,
        values: &[Spanned<String>],
    ) -> Result<Vec<&'static RuleInfo>, ConfigError> {
        values
            .iter()
            .map(|v| {
                find_any_rule(v.get_ref()).ok_or_else(|| {
                    self.error_at(
                        v.span().start,
                        format!(
                            "`{}{key}`: unknown rule `{}` (see `isolint rules`)",
                            self.prefix,
                            v.get_ref()
                        ),
                    )
                })
            })
            .collect()
    }

    fn severity(&self, key: &str, v: &Spanned<String>) -> Result<Severity, ConfigError> {
        Severity::parse(v.get_ref()).ok_or_else(|| {
            self.error_at(
                v.span().start,
                format!(
                    "`{}{key}`: `{}` is not a severity (error, warning or info)",
                    self.prefix,
                    v.get_ref()
                ),
            )
        })
    }

    fn build(&self, raw: RawConfig) -> Result<Settings, ConfigError> {
        let root = self
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let mut s = Settings {
            file: Some(self.path.to_path_buf()),
            root: absolute(&root),
            ..Settings::default()
        };
        if let Some(select) = &raw.select {
            s.select = Some(self.rules("select", select)?);
        }
        if let Some(ignore) = &raw.ignore {
            s.ignore = self.rules("ignore", ignore)?;
        }
        for (pattern, rules) in raw.per_file_ignores.iter().flatten() {
            let glob = GlobBuilder::new(pattern.get_ref())
                .literal_separator(true)
                .build()
                .map_err(|e| {
                    self.error_at(
                        pattern.span().start,
                        format!(
                            "`{}per-file-ignores`: bad pattern `{}`: {}",
                            self.prefix,
                            pattern.get_ref(),
                            e.kind()
                        ),
                    )
                })?;
            s.per_file_ignores.push(PerFileIgnore {
                pattern: pattern.get_ref().clone(),
                matcher: glob.compile_matcher(),
                basename_only: !pattern.get_ref().contains('/'),
                rules: self.rules("per-file-ignores", rules)?,
            });
        }
        s.exclude = raw.exclude;
        s.extend_exclude = raw.extend_exclude.unwrap_or_default();
        for (rule, level) in raw.severity.iter().flatten() {
            let info = find_any_rule(rule.get_ref()).ok_or_else(|| {
                self.error_at(
                    rule.span().start,
                    format!(
                        "`{}severity`: unknown rule `{}` (see `isolint rules`)",
                        self.prefix,
                        rule.get_ref()
                    ),
                )
            })?;
            s.severity.push((info, self.severity("severity", level)?));
        }
        if let Some(tp) = &raw.target_python {
            let bad = || {
                self.error_at(
                    tp.span().start,
                    format!(
                        "`{}target-python`: expected a version like \"3.12\" or a list of them",
                        self.prefix
                    ),
                )
            };
            let texts: Vec<String> = match tp.get_ref() {
                toml::Value::String(v) => vec![v.clone()],
                toml::Value::Float(f) => vec![f.to_string()],
                toml::Value::Array(items) => items
                    .iter()
                    .map(|i| match i {
                        toml::Value::String(v) => Ok(v.clone()),
                        toml::Value::Float(f) => Ok(f.to_string()),
                        _ => Err(bad()),
                    })
                    .collect::<Result<_, _>>()?,
                _ => return Err(bad()),
            };
            for t in texts {
                s.targets.push(parse_target(&t).ok_or_else(|| {
                    self.error_at(
                        tp.span().start,
                        format!(
                            "`{}target-python`: `{t}` is not a version like \"3.12\" or \"3.13t\"",
                            self.prefix
                        ),
                    )
                })?);
            }
        }
        if let Some(level) = &raw.fail_on {
            s.fail_on = self.severity("fail-on", level)?;
        }
        if let Some(size) = &raw.max_file_size {
            s.max_file_size = u64::try_from(*size.get_ref()).map_err(|_| {
                self.error_at(
                    size.span().start,
                    format!("`{}max-file-size`: must not be negative", self.prefix),
                )
            })?;
        }
        Ok(s)
    }
}

fn read_text(path: &Path) -> Result<String, ConfigError> {
    let bytes = std::fs::read(path).map_err(|e| ConfigError {
        path: path.to_path_buf(),
        line: 0,
        column: 0,
        message: format!("cannot read: {e}"),
    })?;
    String::from_utf8(bytes).map_err(|_| ConfigError {
        path: path.to_path_buf(),
        line: 0,
        column: 0,
        message: "not valid UTF-8".to_string(),
    })
}

/// Loads a config file. `pyproject.toml` (by name) reads `[tool.isolint]`; any other file is
/// read as a standalone isolint config. `Ok(None)`: a pyproject without `[tool.isolint]`.
pub fn load(path: &Path) -> Result<Option<Settings>, ConfigError> {
    let text = read_text(path)?;
    let is_pyproject = path.file_name().is_some_and(|n| n == PYPROJECT);
    let loader = Loader {
        path,
        text: &text,
        prefix: if is_pyproject { "tool.isolint." } else { "" },
    };
    let raw = if is_pyproject {
        let doc: Pyproject = toml::from_str(&text).map_err(|e| loader.toml_error(e))?;
        match doc.tool.and_then(|t| t.isolint) {
            Some(raw) => raw,
            None => return Ok(None),
        }
    } else {
        toml::from_str::<RawConfig>(&text).map_err(|e| loader.toml_error(e))?
    };
    loader.build(raw).map(Some)
}

/// The config file that applies to `path`: the nearest `isolint.toml`, or `pyproject.toml`
/// with a `[tool.isolint]` table, in its folder or any folder above. Looking for the table
/// means reading each pyproject on the way, so a broken one is an error, as it is for ruff.
pub fn find_config(path: &Path) -> Result<Option<PathBuf>, ConfigError> {
    let abs = absolute(path);
    let start = if abs.is_dir() {
        abs.clone()
    } else {
        abs.parent().map(Path::to_path_buf).unwrap_or(abs.clone())
    };
    for dir in start.ancestors() {
        let standalone = dir.join(CONFIG_FILE);
        if standalone.is_file() {
            return Ok(Some(standalone));
        }
        let pyproject = dir.join(PYPROJECT);
        if pyproject.is_file() {
            let text = read_text(&pyproject)?;
            // Cheap test first: most pyproject files are not ours.
            if text.contains("isolint") && load(&pyproject)?.is_some() {
                return Ok(Some(pyproject));
            }
        }
    }
    Ok(None)
}

/// `path` made absolute against the current folder, with `.` and `..` removed lexically (the
/// file may not exist: a stdin file name).
pub fn absolute(path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("/"))
            .join(path)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// `path` relative to `base`, with `/` separators; absolute when it lies outside `base`.
pub fn relative_slash(path: &Path, base: &Path) -> String {
    let abs = absolute(path);
    let rel = abs.strip_prefix(base).unwrap_or(&abs);
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let joined = parts.join("/");
    if rel.is_absolute() {
        // `RootDir` renders as "/": avoid "//".
        format!("/{}", joined.trim_start_matches('/'))
    } else {
        joined
    }
}

impl Settings {
    /// Whether a rule (including the suppression rules) is turned on.
    pub fn enabled(&self, rule_id: &str) -> bool {
        let selected = match &self.select {
            Some(sel) => sel.iter().any(|r| r.id == rule_id),
            None => true,
        };
        selected && !self.ignore.iter().any(|r| r.id == rule_id)
    }

    pub fn analyze_options(&self) -> AnalyzeOptions {
        let mut options = AnalyzeOptions {
            max_file_size: self.max_file_size,
            targets: self.targets.clone(),
            // Every rule runs: `select` and `ignore` choose what is shown and what fails the
            // run, never the verdict (see `postprocess`).
            rules: None,
            ..Default::default()
        };
        options.discover.excludes = self.exclude.clone();
        options.discover.extra_excludes = self.extend_exclude.clone();
        options
    }

    /// The suppressions outside the source that `analyze` must know for the verdict: this
    /// config's `per-file-ignores` and the baseline's entries (`base`: the folder its paths are
    /// relative to). `texts`: buffers not on disk, for the baseline's line fingerprints.
    pub fn external_suppressions(
        &self,
        baseline: Option<(Vec<crate::baseline::Entry>, PathBuf)>,
        texts: Vec<(PathBuf, String)>,
    ) -> Option<suppress::External> {
        if self.per_file_ignores.is_empty() && baseline.is_none() {
            return None;
        }
        let mut key = String::new();
        for p in &self.per_file_ignores {
            let ids: Vec<&str> = p.rules.iter().map(|r| r.id).collect();
            key.push_str(&format!("{}={};", p.pattern, ids.join(",")));
        }
        key.push_str(&format!("root={};", self.root.display()));
        if let Some((entries, base)) = &baseline {
            let text = format!("{entries:?}{}", base.display());
            key.push_str(&format!(
                "baseline={:016x}",
                crate::baseline::fnv1a(text.as_bytes())
            ));
        }
        let settings = self.clone();
        // A baseline entry is one finding: any finding with its key counts as known here
        // (the matcher that removes them counts duplicates; for a verdict, known is known).
        let known: Option<(std::collections::HashSet<crate::baseline::Entry>, PathBuf)> =
            baseline.map(|(entries, base)| (entries.into_iter().collect(), base));
        let texts = std::sync::Mutex::new(Texts::new(texts));
        let why = move |f: &Finding| {
            if settings.ignored_for_file(f) {
                return Some("config");
            }
            let (known, base) = known.as_ref()?;
            let mut texts = texts.lock().unwrap_or_else(|e| e.into_inner());
            known
                .contains(&crate::baseline::entry(f, base, &mut texts))
                .then_some("baseline")
        };
        Some(suppress::External {
            why: std::sync::Arc::new(why),
            key,
        })
    }

    fn ignored_for_file(&self, finding: &Finding) -> bool {
        if self.per_file_ignores.is_empty() {
            return false;
        }
        let rel = relative_slash(&finding.path, &self.root);
        let name = finding
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.per_file_ignores.iter().any(|p| {
            p.rules.iter().any(|r| r.id == finding.rule)
                && if p.basename_only {
                    p.matcher.is_match(&name)
                } else {
                    p.matcher.is_match(&rel)
                }
        })
    }

    /// Everything the settings do after the analysis: per-file ignores, inline suppressions
    /// (and the findings about them), severity overrides. Findings stay sorted.
    pub fn postprocess(&self, analysis: &mut Analysis, texts: &mut Texts) {
        analysis.findings.retain(|f| !self.ignored_for_file(f));
        let ran = RULES.to_vec();
        // The scan already knows which files hold no suppression comment: only the others are
        // read again.
        let files: Vec<PathBuf> = analysis
            .files
            .iter()
            .filter(|f| !analysis.without_suppressions.contains(*f))
            .cloned()
            .collect();
        let mut meta = suppress::apply(&mut analysis.findings, &files, texts, &ran);
        meta.retain(|f| self.enabled(f.rule) && !self.ignored_for_file(f));
        // A rule left out by `select` or `ignore` still ran: its findings leave the report but
        // keep blocking the verdict, as vendored code's do, and are counted as not shown.
        let mut not_selected: BTreeMap<PathBuf, usize> = BTreeMap::new();
        analysis.findings.retain(|f| {
            let shown = self.enabled(f.rule);
            if !shown {
                *not_selected.entry(f.path.clone()).or_default() += 1;
            }
            shown
        });
        analysis
            .hidden
            .extend(not_selected.into_iter().map(|(path, findings)| HiddenCode {
                path,
                reason: HiddenCode::NOT_SELECTED,
                findings,
            }));
        analysis.findings.extend(meta);
        for f in &mut analysis.findings {
            if let Some((_, level)) = self.severity.iter().find(|(r, _)| r.id == f.rule) {
                f.severity = *level;
            }
        }
        sort_findings(&mut analysis.findings);
    }
}
