//! `isolint server`: a Language Server over standard input and output.
//!
//! On `initialize` it analyses each workspace folder as `isolint check` does (the same
//! discovery, config, build files and facts cache) and publishes the diagnostics of every file
//! with findings. After an edit it re-checks only the modules holding the edited file
//! (`AnalyzeOptions::focus`), with every open buffer's unsaved text in place of the file's, and
//! republishes each of those modules' files whose diagnostics changed: an edited header
//! updates every file that includes it. A buffer outside every workspace folder is linted on
//! its own, as `--stdin-filename` does. Hover on a finding shows the rule's documentation, the
//! text of `isolint explain`.
//!
//! Each workspace folder keeps what its checks learnt of every file in memory
//! (`analysis::Resident`): a re-check looks at each file's stamp instead of reading it, parses
//! only the edited buffer (and files changed on disk), and opens the facts cache only for what
//! the memory cannot answer.
//!
//! Typing is debounced: changes that arrive within the debounce (`DEBOUNCE`, or the client's
//! `initializationOptions.debounceMs`) of each other are checked once, at the last one (a
//! hover, code action or save in between sees the newest text first). Each diagnostic links its
//! rule's page (`codeDescription`): the pages are written once per version into the user's
//! cache folder, so the link opens offline and matches the running binary. Code actions offer
//! the inline suppression of a finding, and `isolint fix --stage 0` for a single-phase module
//! whose buffer is saved.

use crate::analysis::Analysis;
use crate::config::{self, absolute, find_any_rule, Settings};
use crate::finding::{Finding, Severity};
use crate::rules::RuleInfo;
use crate::suppress::Texts;
use lsp_server::{Connection, ErrorCode, Message, Notification, Request, Response};
use lsp_types::notification::{
    DidChangeTextDocument, DidCloseTextDocument, DidOpenTextDocument, DidSaveTextDocument,
    Notification as _, PublishDiagnostics, ShowMessage,
};
use lsp_types::request::{CodeActionRequest, HoverRequest, Request as _};
use lsp_types::{
    CodeAction, CodeActionKind, CodeActionOrCommand, CodeActionParams,
    CodeActionProviderCapability, CodeDescription, Diagnostic, DiagnosticSeverity, Hover,
    HoverContents, HoverParams, HoverProviderCapability, InitializeParams, InitializeResult,
    MarkupContent, MarkupKind, MessageType, NumberOrString, Position, PublishDiagnosticsParams,
    Range, SaveOptions, ServerCapabilities, ServerInfo, ShowMessageParams,
    TextDocumentSyncCapability, TextDocumentSyncKind, TextDocumentSyncOptions,
    TextDocumentSyncSaveOptions, TextEdit, Uri, WorkspaceEdit,
};
use std::collections::{BTreeSet, HashMap};
use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long the server waits after a change for the next one before linting.
const DEBOUNCE: Duration = Duration::from_millis(200);

type BoxError = Box<dyn Error + Send + Sync>;

/// `isolint explain RULE`: the same Markdown on the command line and in hover.
pub fn explain_markdown(rule: &RuleInfo) -> String {
    crate::rules::doc_page(rule)
}

/// Lints one buffer as if it were the file at `path`, with the config that applies there.
pub fn lint_buffer(path: &Path, text: &str) -> Result<Vec<Finding>, config::ConfigError> {
    let settings = match config::find_config(path)? {
        Some(file) => config::load(&file)?.unwrap_or_default(),
        None => Settings::default(),
    };
    let mut options = settings.analyze_options();
    options.stdin = Some((path.to_path_buf(), text.as_bytes().to_vec()));
    options.suppress =
        settings.external_suppressions(None, vec![(path.to_path_buf(), text.to_string())]);
    let mut analysis = crate::analyze(&options);
    let mut texts = Texts::new([(path.to_path_buf(), text.to_string())]);
    settings.postprocess(&mut analysis, &mut texts);
    Ok(analysis.findings)
}

/// `file:///a%20b/c.c` → `/a b/c.c`. Other schemes (unsaved `untitled:` buffers) get a name
/// that still classifies as C.
fn uri_to_path(uri: &Uri) -> PathBuf {
    let s = uri.as_str();
    let Some(rest) = s.strip_prefix("file://") else {
        return PathBuf::from("untitled.c");
    };
    // `file://host/path`: the path starts at the first `/`.
    let rest = &rest[rest.find('/').unwrap_or(0)..];
    let bytes = rest.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    let decoded = String::from_utf8_lossy(&out).into_owned();
    // Windows drive letters arrive as `/C:/...`.
    let trimmed = if decoded.len() > 2 && decoded.as_bytes()[2] == b':' {
        decoded[1..].to_string()
    } else {
        decoded
    };
    absolute(Path::new(&trimmed))
}

/// A text split at its `\n`s once, so that each finding's position is found without scanning
/// the text from its start (a file with many findings took time quadratic in its length).
struct Lines<'a> {
    text: &'a str,
    /// The byte offset where each line starts.
    starts: Vec<usize>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(memchr::memchr_iter(b'\n', text.as_bytes()).map(|at| at + 1));
        Self { text, starts }
    }

    /// 1-based line `line` without its `\n` (as `str::split('\n')` gives it); empty past the end.
    fn line(&self, line: usize) -> &'a str {
        let Some(&start) = line.checked_sub(1).and_then(|i| self.starts.get(i)) else {
            return "";
        };
        let end = self
            .starts
            .get(line)
            .map_or(self.text.len(), |&next| next - 1);
        &self.text[start..end]
    }
}

/// 1-based line and byte column → LSP position (0-based line, UTF-16 code units). Line 0 is
/// taken as line 1.
fn position(lines: &Lines, line: usize, byte_col: usize) -> Position {
    let line_text = lines.line(line.max(1));
    let mut end = byte_col.saturating_sub(1).min(line_text.len());
    while !line_text.is_char_boundary(end) {
        end -= 1;
    }
    Position {
        line: line.saturating_sub(1) as u32,
        character: line_text[..end].encode_utf16().count() as u32,
    }
}

/// The folder holding one Markdown page per rule for this version: `$XDG_CACHE_HOME` or
/// `~/.cache`, then `isolint/docs/<version>/`. Written when missing; `None` when no folder can
/// be written (then diagnostics carry no link).
fn rule_docs_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    let dir = base
        .join("isolint")
        .join("docs")
        .join(env!("CARGO_PKG_VERSION"));
    std::fs::create_dir_all(&dir).ok()?;
    for rule in crate::rules::RULES
        .iter()
        .chain(crate::suppress::META_RULES.iter())
    {
        let page = dir.join(format!("{}.md", rule.name));
        let text = explain_markdown(rule);
        if std::fs::read_to_string(&page).ok().as_deref() != Some(text.as_str()) {
            std::fs::write(&page, text).ok()?;
        }
    }
    Some(dir)
}

fn path_to_uri(path: &Path) -> Option<Uri> {
    let mut s = String::from("file://");
    for b in path.to_string_lossy().bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s.parse().ok()
}

fn diagnostic(lines: &Lines, f: &Finding, docs: Option<&Path>) -> Diagnostic {
    let loc = f.location;
    let start = position(lines, loc.line, loc.column);
    let mut end = position(lines, loc.end_line.max(loc.line), loc.end_column);
    if end <= start {
        end = Position {
            line: start.line,
            character: start.character + 1,
        };
    }
    Diagnostic {
        range: Range { start, end },
        severity: Some(match f.severity {
            Severity::Error => DiagnosticSeverity::ERROR,
            Severity::Warning => DiagnosticSeverity::WARNING,
            Severity::Info => DiagnosticSeverity::INFORMATION,
        }),
        code: Some(NumberOrString::String(f.rule.to_string())),
        source: Some("isolint".to_string()),
        message: format!(
            "{}{} [{}]\nhelp: {}",
            f.message,
            f.qualifiers(),
            f.name,
            f.help
        ),
        code_description: docs
            .and_then(|d| path_to_uri(&d.join(format!("{}.md", f.name))))
            .map(|href| CodeDescription { href }),
        data: Some(serde_json::json!({"name": f.name})),
        ..Default::default()
    }
}

/// The quick fix that suppresses one finding: an `isolint: ignore[...]` comment at the end of
/// its line, with a reason left for the author to write (a suppression without one is itself
/// reported).
fn suppression_action(uri: &Uri, text: &str, d: &Diagnostic) -> Option<CodeAction> {
    let name = d.data.as_ref()?.get("name")?.as_str()?;
    let line = d.range.start.line;
    let line_text = text.split('\n').nth(line as usize)?;
    let code = line_text.trim_end_matches(['\r', ' ', '\t']);
    let character = code.encode_utf16().count() as u32;
    let at = Position { line, character };
    let edit = TextEdit {
        range: Range { start: at, end: at },
        new_text: format!(" /* isolint: ignore[{name}] FIXME: say why this is safe */"),
    };
    Some(quick_fix(
        format!("Suppress {name} on this line"),
        uri,
        d,
        edit,
    ))
}

/// A quick fix for one diagnostic that makes one edit in its document.
fn quick_fix(title: String, uri: &Uri, d: &Diagnostic, edit: TextEdit) -> CodeAction {
    CodeAction {
        title,
        kind: Some(CodeActionKind::QUICKFIX),
        diagnostics: Some(vec![d.clone()]),
        edit: Some(WorkspaceEdit {
            changes: Some(HashMap::from([(uri.clone(), vec![edit])])),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `isolint fix --stage 0` for the module of a saved buffer, as one edit of the whole buffer.
/// Only when the buffer equals the file: the edit is computed from what is on disk.
fn stage0_action(uri: &Uri, path: &Path, text: &str, d: &Diagnostic) -> Option<CodeAction> {
    let analysis = crate::analyze(&crate::AnalyzeOptions {
        paths: vec![path.to_path_buf()],
        model: true,
        ..Default::default()
    });
    let fix = crate::plan::fix_stage(&analysis, 0);
    let (_, old, new) = fix.files.iter().find(|(p, _, _)| absolute(p) == path)?;
    if old != text {
        return None;
    }
    let lines = text.split('\n').count() as u32;
    let edit = TextEdit {
        range: Range {
            start: Position {
                line: 0,
                character: 0,
            },
            end: Position {
                line: lines,
                character: 0,
            },
        },
        new_text: new.clone(),
    };
    Some(quick_fix(
        "Convert to multi-phase init (isolint fix --stage 0)".into(),
        uri,
        d,
        edit,
    ))
}

struct Document {
    uri: Uri,
    text: String,
    version: Option<i32>,
}

/// A workspace folder, analysed as `isolint check` analyses it: the same discovery, config,
/// build files and facts cache. Each edit then re-checks only the modules holding the edited
/// file (`AnalyzeOptions::focus`), with every open buffer's text in place of the disk's.
struct Workspace {
    root: PathBuf,
    settings: Settings,
    cache_dir: Option<PathBuf>,
    /// Each module's files, as its last check found them.
    modules: Vec<Vec<PathBuf>>,
    /// The files the last check scanned: a file on disk that is not among them is excluded
    /// (config `exclude`), and its buffer stays out of the checks.
    files: std::collections::HashSet<PathBuf>,
    /// What the checks learnt of every file (its text's hash and stamp, macros, link facts,
    /// encoded facts), kept between them: a re-check after an edit reads, parses and decodes
    /// only what changed.
    resident: crate::analysis::Resident,
}

impl Workspace {
    fn open(root: PathBuf) -> Result<Self, config::ConfigError> {
        let config = config::find_config(&root)?;
        let settings = match &config {
            Some(file) => config::load(file)?.unwrap_or_default(),
            None => Settings::default(),
        };
        Ok(Self {
            cache_dir: cache_dir(&root, config.as_deref()),
            root,
            settings,
            modules: Vec::new(),
            files: Default::default(),
            resident: Default::default(),
        })
    }

    fn holds(&self, path: &Path) -> bool {
        path.starts_with(&self.root)
    }

    /// The files whose findings a check of the modules holding `path` settles: those modules'
    /// files (every module holding one of them is checked with them), and `path` itself.
    fn scope_of(&self, path: &Path) -> BTreeSet<PathBuf> {
        let mut scope: BTreeSet<PathBuf> = self
            .modules
            .iter()
            .filter(|files| files.iter().any(|f| f == path))
            .flatten()
            .cloned()
            .collect();
        scope.insert(path.to_path_buf());
        scope
    }
}

/// Where `isolint check` keeps the facts cache for a project: `ISOLINT_CACHE_DIR`, else
/// `.isolint_cache` beside the config file, else in the workspace folder; none with
/// `ISOLINT_NO_CACHE`.
fn cache_dir(root: &Path, config: Option<&Path>) -> Option<PathBuf> {
    let no_cache = std::env::var("ISOLINT_NO_CACHE").is_ok_and(|v| {
        !matches!(
            v.to_ascii_lowercase().as_str(),
            "" | "0" | "false" | "no" | "off"
        )
    });
    if no_cache {
        return None;
    }
    if let Some(dir) = std::env::var_os("ISOLINT_CACHE_DIR").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    crate::cache::default_dir(config, || Some(root.to_path_buf()))
}

/// A file that changes the findings of the whole workspace when saved.
fn is_config_file(path: &Path) -> bool {
    matches!(
        path.file_name().and_then(|n| n.to_str()),
        Some("isolint.toml" | "pyproject.toml")
    )
}

struct Server {
    connection: Connection,
    /// Open buffers, by path.
    documents: HashMap<PathBuf, Document>,
    /// What was last published for each file.
    published: HashMap<PathBuf, Vec<Diagnostic>>,
    docs: Option<PathBuf>,
    /// Files changed and not checked yet: checked when the typing pauses for `debounce`.
    pending: BTreeSet<PathBuf>,
    debounce: Duration,
    workspaces: Vec<Workspace>,
}

impl Server {
    fn notify<N: lsp_types::notification::Notification>(&self, params: N::Params) {
        let _ = self
            .connection
            .sender
            .send(Message::Notification(Notification::new(
                N::METHOD.to_string(),
                params,
            )));
    }

    fn show_error(&self, message: String) {
        self.notify::<ShowMessage>(ShowMessageParams {
            typ: MessageType::ERROR,
            message: format!("isolint: {message}"),
        });
    }

    /// The text findings in `path` are placed in: the open buffer's, else the file's.
    fn text_of(&self, path: &Path) -> String {
        match self.documents.get(path) {
            Some(doc) => doc.text.clone(),
            None => std::fs::read(path)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default(),
        }
    }

    /// Publishes `path`'s findings: always when `force`, else only when they changed.
    fn publish(&mut self, path: &Path, findings: &[&Finding], force: bool) {
        let before = self.published.get(path);
        if !force && findings.is_empty() && before.is_none() {
            // Nothing published, nothing to publish: the text is not even read.
            return;
        }
        let text = self.text_of(path);
        let lines = Lines::new(&text);
        let diagnostics: Vec<Diagnostic> = findings
            .iter()
            .map(|f| diagnostic(&lines, f, self.docs.as_deref()))
            .collect();
        let before = self.published.get(path);
        if !force && before.map_or(diagnostics.is_empty(), |b| *b == diagnostics) {
            return;
        }
        let (uri, version) = match self.documents.get(path) {
            Some(doc) => (Some(doc.uri.clone()), doc.version),
            None => (path_to_uri(path), None),
        };
        let Some(uri) = uri else { return };
        self.notify::<PublishDiagnostics>(PublishDiagnosticsParams {
            uri,
            diagnostics: diagnostics.clone(),
            version,
        });
        if diagnostics.is_empty() {
            self.published.remove(path);
        } else {
            self.published.insert(path.to_path_buf(), diagnostics);
        }
    }

    /// Runs `isolint check` over workspace `w` with the open buffers' texts; with `focus`, only
    /// on the modules holding those files.
    fn analyse(&mut self, w: usize, focus: Option<Vec<PathBuf>>) -> Analysis {
        let ws = &self.workspaces[w];
        let buffers: Vec<(PathBuf, String)> = self
            .documents
            .iter()
            .filter(|(p, _)| ws.holds(p) && (ws.files.contains(*p) || !p.exists()))
            .map(|(p, d)| (p.clone(), d.text.clone()))
            .collect();
        let mut options = ws.settings.analyze_options();
        options.paths = vec![ws.root.clone()];
        options.cache_dir = ws.cache_dir.clone();
        options.suppress = ws.settings.external_suppressions(None, buffers.clone());
        options.overrides = buffers
            .iter()
            .map(|(p, t)| (p.clone(), t.as_bytes().to_vec()))
            .collect();
        options.focus = focus;
        let mut resident = std::mem::take(&mut self.workspaces[w].resident);
        let mut analysis = crate::analysis::analyze_resident(&options, &mut resident);
        let ws = &mut self.workspaces[w];
        ws.resident = resident;
        let mut texts = Texts::new(buffers);
        ws.settings.postprocess(&mut analysis, &mut texts);
        analysis
    }

    /// Runs [`Self::analyse`] and remembers which files it scanned.
    fn analyse_and_note(&mut self, w: usize, focus: Option<Vec<PathBuf>>) -> Analysis {
        let analysis = self.analyse(w, focus);
        self.workspaces[w].files = analysis.files.iter().map(|f| absolute(f)).collect();
        analysis
    }

    /// The workspace's first analysis (and again after its config file is saved): every file
    /// with findings gets its diagnostics, every file without loses the ones it had.
    fn analyse_workspace(&mut self, w: usize) {
        let analysis = self.analyse_and_note(w, None);
        let ws = &mut self.workspaces[w];
        ws.modules = analysis.modules.iter().map(module_files).collect();
        let root = ws.root.clone();
        let by_file = findings_by_file(&analysis.findings);
        let mut paths: BTreeSet<PathBuf> = by_file.keys().cloned().collect();
        paths.extend(
            self.published
                .keys()
                .filter(|p| p.starts_with(&root))
                .cloned(),
        );
        for path in paths {
            let findings = by_file.get(&path).cloned().unwrap_or_default();
            self.publish(&path, &findings, false);
        }
    }

    /// After an edit of `path`: checks the modules holding it (with their files' buffers) and
    /// republishes each of their files whose diagnostics changed, `path` itself always.
    fn recheck(&mut self, path: &Path) {
        let Some(w) = self.workspace_of(path) else {
            self.lint_alone(path);
            return;
        };
        let mut scope = self.workspaces[w].scope_of(path);
        let mut analysis = self.analyse_and_note(w, Some(scope.iter().cloned().collect()));
        // The edit may have added an include: the module then holds files outside the scope,
        // and the modules holding those are checked with it. A second check sees the same
        // texts, so the same files: one more round at most.
        let grown: Vec<PathBuf> = analysis
            .modules
            .iter()
            .map(module_files)
            .filter(|files| files.iter().any(|f| f == path))
            .flatten()
            .filter(|f| !scope.contains(f))
            .collect();
        if !grown.is_empty() {
            scope.extend(grown);
            analysis = self.analyse_and_note(w, Some(scope.iter().cloned().collect()));
        }
        let ws = &mut self.workspaces[w];
        ws.modules
            .retain(|files| !files.iter().any(|f| scope.contains(f)));
        ws.modules.extend(analysis.modules.iter().map(module_files));
        // A file of no module is checked with every other such file of its package (one
        // unit): their findings were all checked again.
        if ws.files.contains(path) && !ws.modules.iter().any(|m| m.iter().any(|f| f == path)) {
            let in_modules: std::collections::HashSet<&PathBuf> =
                ws.modules.iter().flatten().collect();
            let mut packages = crate::buildfiles::PackageRoots::default();
            let home = packages.of(path);
            let unattached: Vec<PathBuf> = ws
                .files
                .iter()
                .filter(|f| !in_modules.contains(f) && packages.of(f) == home)
                .cloned()
                .collect();
            scope.extend(unattached);
        }
        let by_file = findings_by_file(&analysis.findings);
        for file in scope.iter().filter(|f| f.as_path() != path) {
            let findings = by_file.get(file).cloned().unwrap_or_default();
            self.publish(file, &findings, false);
        }
        let findings = by_file.get(path).cloned().unwrap_or_default();
        self.publish(path, &findings, self.documents.contains_key(path));
    }

    fn workspace_of(&self, path: &Path) -> Option<usize> {
        (0..self.workspaces.len())
            .filter(|&w| self.workspaces[w].holds(path))
            .max_by_key(|&w| self.workspaces[w].root.components().count())
    }

    /// A buffer outside every workspace folder: linted on its own, as `--stdin-filename` does.
    fn lint_alone(&mut self, path: &Path) {
        let Some(doc) = self.documents.get(path) else {
            self.publish(path, &[], true);
            return;
        };
        let text = doc.text.clone();
        let findings = match lint_buffer(path, &text) {
            Ok(findings) => findings,
            Err(e) => {
                self.show_error(e.to_string());
                Vec::new()
            }
        };
        let own: Vec<&Finding> = findings
            .iter()
            .filter(|f| absolute(&f.path) == path)
            .collect();
        self.publish(path, &own, true);
    }

    fn hover(&self, params: HoverParams) -> Option<Hover> {
        let pos = params.text_document_position_params.position;
        let uri = params.text_document_position_params.text_document.uri;
        let diagnostics = self.published.get(&uri_to_path(&uri))?;
        let inside = |d: &&Diagnostic| d.range.start <= pos && pos <= d.range.end;
        let diag = diagnostics
            .iter()
            .find(inside)
            .or_else(|| diagnostics.iter().find(|d| d.range.start.line == pos.line))?;
        let Some(NumberOrString::String(id)) = &diag.code else {
            return None;
        };
        let rule = find_any_rule(id)?;
        Some(Hover {
            contents: HoverContents::Markup(MarkupContent {
                kind: MarkupKind::Markdown,
                value: format!("**{}**\n\n---\n\n{}", diag.message, explain_markdown(rule)),
            }),
            range: Some(diag.range),
        })
    }

    /// Checks every change still waiting for the debounce.
    fn flush(&mut self) {
        for path in std::mem::take(&mut self.pending) {
            self.recheck(&path);
        }
    }

    fn code_actions(&self, params: CodeActionParams) -> Vec<CodeActionOrCommand> {
        let uri = params.text_document.uri;
        let path = uri_to_path(&uri);
        let Some(diagnostics) = self.published.get(&path) else {
            return Vec::new();
        };
        let text = self.text_of(&path);
        let wanted = params.range;
        let overlaps = |d: &&Diagnostic| d.range.start <= wanted.end && wanted.start <= d.range.end;
        let mut actions = Vec::new();
        for d in diagnostics.iter().filter(overlaps) {
            if let Some(a) = suppression_action(&uri, &text, d) {
                actions.push(CodeActionOrCommand::CodeAction(a));
            }
            let single_phase = d.code == Some(NumberOrString::String("ISO001".into()));
            if single_phase {
                if let Some(a) = stage0_action(&uri, &path, &text, d) {
                    actions.push(CodeActionOrCommand::CodeAction(a));
                }
            }
        }
        actions
    }

    fn handle_notification(&mut self, n: Notification) {
        match n.method.as_str() {
            DidOpenTextDocument::METHOD => {
                if let Ok(p) =
                    n.extract::<lsp_types::DidOpenTextDocumentParams>(DidOpenTextDocument::METHOD)
                {
                    let d = p.text_document;
                    let path = uri_to_path(&d.uri);
                    let on_disk = std::fs::read(&path).ok();
                    let unchanged = on_disk.as_deref() == Some(d.text.as_bytes());
                    self.documents.insert(
                        path.clone(),
                        Document {
                            uri: d.uri,
                            text: d.text,
                            version: Some(d.version),
                        },
                    );
                    self.pending.remove(&path);
                    match self.workspace_of(&path) {
                        // The workspace analysis already has the saved text's findings.
                        Some(_) if unchanged => {
                            let published = self.published.get(&path).cloned().unwrap_or_default();
                            let (uri, version) = {
                                let doc = &self.documents[&path];
                                (doc.uri.clone(), doc.version)
                            };
                            self.notify::<PublishDiagnostics>(PublishDiagnosticsParams {
                                uri,
                                diagnostics: published,
                                version,
                            });
                        }
                        _ => self.recheck(&path),
                    }
                }
            }
            DidChangeTextDocument::METHOD => {
                if let Ok(p) = n.extract::<lsp_types::DidChangeTextDocumentParams>(
                    DidChangeTextDocument::METHOD,
                ) {
                    // Full sync: the last change holds the whole text. Checked when the typing
                    // pauses (`run`'s loop).
                    if let Some(change) = p.content_changes.into_iter().last() {
                        let uri = p.text_document.uri;
                        let path = uri_to_path(&uri);
                        self.documents.insert(
                            path.clone(),
                            Document {
                                uri,
                                text: change.text,
                                version: Some(p.text_document.version),
                            },
                        );
                        self.pending.insert(path);
                    }
                }
            }
            DidSaveTextDocument::METHOD => {
                if let Ok(p) =
                    n.extract::<lsp_types::DidSaveTextDocumentParams>(DidSaveTextDocument::METHOD)
                {
                    let uri = p.text_document.uri;
                    let path = uri_to_path(&uri);
                    if let (Some(text), Some(doc)) = (p.text, self.documents.get_mut(&path)) {
                        doc.text = text;
                    }
                    self.pending.remove(&path);
                    if is_config_file(&path) {
                        // A config file changes the findings of its whole workspace.
                        if let Some(w) = self.workspace_of(&path) {
                            self.reload_workspace(w);
                        }
                        for open in self.documents.keys().cloned().collect::<Vec<_>>() {
                            if self.workspace_of(&open).is_none() {
                                self.lint_alone(&open);
                            }
                        }
                    } else {
                        self.recheck(&path);
                    }
                }
            }
            DidCloseTextDocument::METHOD => {
                if let Ok(p) =
                    n.extract::<lsp_types::DidCloseTextDocumentParams>(DidCloseTextDocument::METHOD)
                {
                    let path = uri_to_path(&p.text_document.uri);
                    self.pending.remove(&path);
                    let text = self.documents.remove(&path).map(|d| d.text);
                    match self.workspace_of(&path) {
                        // The file's findings go back to those of its saved text.
                        Some(_) => {
                            let saved = std::fs::read(&path).ok();
                            if saved.as_deref() != text.as_deref().map(str::as_bytes) {
                                self.recheck(&path);
                            }
                        }
                        None => self.publish(&path, &[], true),
                    }
                }
            }
            _ => {}
        }
    }

    /// Reads the workspace's config again and analyses the whole workspace.
    fn reload_workspace(&mut self, w: usize) {
        match Workspace::open(self.workspaces[w].root.clone()) {
            Ok(ws) => self.workspaces[w] = ws,
            Err(e) => self.show_error(e.to_string()),
        }
        self.analyse_workspace(w);
    }

    fn handle_request(&mut self, req: Request) -> Result<bool, BoxError> {
        if self.connection.handle_shutdown(&req)? {
            return Ok(true);
        }
        let response = match req.method.as_str() {
            HoverRequest::METHOD => match serde_json::from_value::<HoverParams>(req.params) {
                Ok(params) => Response::new_ok(req.id, self.hover(params)),
                Err(e) => Response::new_err(req.id, ErrorCode::InvalidParams as i32, e.to_string()),
            },
            CodeActionRequest::METHOD => {
                match serde_json::from_value::<CodeActionParams>(req.params) {
                    Ok(params) => Response::new_ok(req.id, self.code_actions(params)),
                    Err(e) => {
                        Response::new_err(req.id, ErrorCode::InvalidParams as i32, e.to_string())
                    }
                }
            }
            _ => Response::new_err(
                req.id,
                ErrorCode::MethodNotFound as i32,
                format!("isolint does not handle `{}`", req.method),
            ),
        };
        self.connection.sender.send(Message::Response(response))?;
        Ok(false)
    }
}

/// A module's files, as absolute paths.
fn module_files(module: &crate::model::ModuleSummary) -> Vec<PathBuf> {
    module.files.iter().map(|f| absolute(f)).collect()
}

fn findings_by_file(findings: &[Finding]) -> HashMap<PathBuf, Vec<&Finding>> {
    let mut by_file: HashMap<PathBuf, Vec<&Finding>> = HashMap::new();
    for f in findings {
        by_file.entry(absolute(&f.path)).or_default().push(f);
    }
    by_file
}

/// The workspace folders of `initialize`: `workspaceFolders`, else `rootUri`, else `rootPath`.
#[allow(deprecated)]
fn workspace_roots(params: &InitializeParams) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = params
        .workspace_folders
        .iter()
        .flatten()
        .map(|f| uri_to_path(&f.uri))
        .collect();
    if roots.is_empty() {
        if let Some(uri) = &params.root_uri {
            roots.push(uri_to_path(uri));
        } else if let Some(path) = &params.root_path {
            roots.push(absolute(Path::new(path)));
        }
    }
    roots.retain(|r| r.is_dir());
    roots.sort();
    roots.dedup();
    roots
}

/// `initializationOptions.debounceMs`, else `ISOLINT_LSP_DEBOUNCE_MS`, else [`DEBOUNCE`].
fn debounce_of(params: &InitializeParams) -> Duration {
    params
        .initialization_options
        .as_ref()
        .and_then(|o| o.get("debounceMs"))
        .and_then(serde_json::Value::as_u64)
        .or_else(|| {
            std::env::var("ISOLINT_LSP_DEBOUNCE_MS")
                .ok()
                .and_then(|v| v.parse().ok())
        })
        .map_or(DEBOUNCE, Duration::from_millis)
}

pub fn run() -> Result<(), BoxError> {
    let (connection, io_threads) = Connection::stdio();
    let capabilities = ServerCapabilities {
        text_document_sync: Some(TextDocumentSyncCapability::Options(
            TextDocumentSyncOptions {
                open_close: Some(true),
                change: Some(TextDocumentSyncKind::FULL),
                save: Some(TextDocumentSyncSaveOptions::SaveOptions(SaveOptions {
                    include_text: Some(true),
                })),
                ..Default::default()
            },
        )),
        hover_provider: Some(HoverProviderCapability::Simple(true)),
        code_action_provider: Some(CodeActionProviderCapability::Simple(true)),
        ..Default::default()
    };
    let (id, params) = connection.initialize_start()?;
    let params: InitializeParams = serde_json::from_value(params).unwrap_or_default();
    let result = InitializeResult {
        capabilities,
        server_info: Some(ServerInfo {
            name: "isolint".to_string(),
            version: Some(env!("CARGO_PKG_VERSION").to_string()),
        }),
    };
    connection.initialize_finish(id, serde_json::to_value(result)?)?;
    let mut server = Server {
        connection,
        documents: HashMap::new(),
        published: HashMap::new(),
        docs: rule_docs_dir(),
        pending: BTreeSet::new(),
        debounce: debounce_of(&params),
        workspaces: Vec::new(),
    };
    for root in workspace_roots(&params) {
        match Workspace::open(root) {
            Ok(ws) => server.workspaces.push(ws),
            Err(e) => server.show_error(e.to_string()),
        }
    }
    for w in 0..server.workspaces.len() {
        server.analyse_workspace(w);
    }
    loop {
        let message = if server.pending.is_empty() {
            match server.connection.receiver.recv() {
                Ok(m) => m,
                Err(_) => break,
            }
        } else {
            match server.connection.receiver.recv_timeout(server.debounce) {
                Ok(m) => m,
                Err(e) if e.is_timeout() => {
                    server.flush();
                    continue;
                }
                Err(_) => break,
            }
        };
        let is_change = matches!(&message, Message::Notification(n) if n.method == DidChangeTextDocument::METHOD);
        if !is_change {
            // Anything else (a hover, a code action, a save) sees the newest text.
            server.flush();
        }
        match message {
            Message::Request(req) => {
                if server.handle_request(req)? {
                    break;
                }
            }
            Message::Notification(n) if n.method == "exit" => break,
            Message::Notification(n) => server.handle_notification(n),
            Message::Response(_) => {}
        }
    }
    drop(server);
    io_threads.join()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_uris_decode() {
        let uri: Uri = "file:///tmp/a%20b/c.c".parse().unwrap();
        assert_eq!(uri_to_path(&uri), PathBuf::from("/tmp/a b/c.c"));
    }

    #[test]
    fn positions_count_utf16() {
        let text = "x\n/* é */ static int y;\n";
        // `static` starts at byte 10 of line 2 (é is two bytes, one UTF-16 unit).
        assert_eq!(
            position(&Lines::new(text), 2, 11),
            Position {
                line: 1,
                character: 9
            }
        );
    }

    #[test]
    fn lines_split_as_str_split_does() {
        for text in ["", "a", "a\n", "a\nb", "\n\n", "x\r\ny\n\nz", "é\nü\n"] {
            let lines = Lines::new(text);
            let by_split: Vec<&str> = text.split('\n').collect();
            for (i, expected) in by_split.iter().enumerate() {
                assert_eq!(lines.line(i + 1), *expected, "{text:?} line {}", i + 1);
            }
            assert_eq!(lines.line(by_split.len() + 1), "");
            assert_eq!(lines.line(0), "");
        }
    }
}
