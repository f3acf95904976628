//! `isolint server`: a Language Server over standard input and output. It lints each open C
//! buffer (its unsaved text, with the config that applies to its path) on open, change and
//! save, publishes the findings as diagnostics, and answers hover on a finding with the
//! rule's documentation, the text of `isolint explain`.
//!
//! Typing is debounced: changes that arrive within `DEBOUNCE` of each other are linted once, at
//! the last one (a hover or code action in between sees the newest text first). Each diagnostic
//! links its rule's page (`codeDescription`): the pages are written once per version into the
//! user's cache folder, so the link opens offline and matches the running binary. Code actions
//! offer the inline suppression of a finding, and `isolint fix --stage 0` for a single-phase
//! module whose buffer is saved.
//!
//! Only the buffer itself is scanned, as `--stdin-filename` does: facts that need other files
//! of the module (a global written in another `.c` file) show up in `isolint check`.

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
    HoverContents, HoverParams, HoverProviderCapability, InitializeResult, MarkupContent,
    MarkupKind, MessageType, NumberOrString, Position, PublishDiagnosticsParams, Range,
    SaveOptions, ServerCapabilities, ServerInfo, ShowMessageParams, TextDocumentSyncCapability,
    TextDocumentSyncKind, TextDocumentSyncOptions, TextDocumentSyncSaveOptions, TextEdit, Uri,
    WorkspaceEdit,
};
use std::collections::HashMap;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long the server waits after a change for the next one before linting.
const DEBOUNCE: Duration = Duration::from_millis(40);

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

/// 1-based line and byte column → LSP position (0-based line, UTF-16 code units).
fn position(text: &str, line: usize, byte_col: usize) -> Position {
    let line_text = text.split('\n').nth(line.saturating_sub(1)).unwrap_or("");
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

fn diagnostic(text: &str, f: &Finding, docs: Option<&Path>) -> Diagnostic {
    let loc = f.location;
    let start = position(text, loc.line, loc.column);
    let mut end = position(text, loc.end_line.max(loc.line), loc.end_column);
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
    text: String,
    diagnostics: Vec<Diagnostic>,
}

struct Server {
    connection: Connection,
    documents: HashMap<String, Document>,
    docs: Option<PathBuf>,
    /// Changes not linted yet, by URI: the newest text and version of each.
    pending: HashMap<String, (Uri, String, Option<i32>)>,
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

    fn lint(&mut self, uri: Uri, text: String, version: Option<i32>) {
        let path = uri_to_path(&uri);
        let diagnostics = match lint_buffer(&path, &text) {
            Ok(findings) => findings
                .iter()
                .filter(|f| absolute(&f.path) == path)
                .map(|f| diagnostic(&text, f, self.docs.as_deref()))
                .collect(),
            Err(e) => {
                self.notify::<ShowMessage>(ShowMessageParams {
                    typ: MessageType::ERROR,
                    message: format!("isolint: {e}"),
                });
                Vec::new()
            }
        };
        self.notify::<PublishDiagnostics>(PublishDiagnosticsParams {
            uri: uri.clone(),
            diagnostics: diagnostics.clone(),
            version,
        });
        self.documents
            .insert(uri.as_str().to_string(), Document { text, diagnostics });
    }

    fn hover(&self, params: HoverParams) -> Option<Hover> {
        let pos = params.text_document_position_params.position;
        let uri = params.text_document_position_params.text_document.uri;
        let doc = self.documents.get(uri.as_str())?;
        let inside = |d: &&Diagnostic| d.range.start <= pos && pos <= d.range.end;
        let diag = doc.diagnostics.iter().find(inside).or_else(|| {
            doc.diagnostics
                .iter()
                .find(|d| d.range.start.line == pos.line)
        })?;
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

    /// Lints every change still waiting for the debounce.
    fn flush(&mut self) {
        let pending: Vec<(Uri, String, Option<i32>)> =
            self.pending.drain().map(|(_, v)| v).collect();
        for (uri, text, version) in pending {
            self.lint(uri, text, version);
        }
    }

    fn code_actions(&self, params: CodeActionParams) -> Vec<CodeActionOrCommand> {
        let uri = params.text_document.uri;
        let Some(doc) = self.documents.get(uri.as_str()) else {
            return Vec::new();
        };
        let wanted = params.range;
        let overlaps = |d: &&Diagnostic| d.range.start <= wanted.end && wanted.start <= d.range.end;
        let mut actions = Vec::new();
        for d in doc.diagnostics.iter().filter(overlaps) {
            if let Some(a) = suppression_action(&uri, &doc.text, d) {
                actions.push(CodeActionOrCommand::CodeAction(a));
            }
            let single_phase = d.code == Some(NumberOrString::String("ISO001".into()));
            if single_phase {
                if let Some(a) = stage0_action(&uri, &uri_to_path(&uri), &doc.text, d) {
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
                    self.lint(d.uri, d.text, Some(d.version));
                }
            }
            DidChangeTextDocument::METHOD => {
                if let Ok(p) = n.extract::<lsp_types::DidChangeTextDocumentParams>(
                    DidChangeTextDocument::METHOD,
                ) {
                    // Full sync: the last change holds the whole text. Linted when the typing
                    // pauses (`run`'s loop).
                    if let Some(change) = p.content_changes.into_iter().last() {
                        let uri = p.text_document.uri;
                        self.pending.insert(
                            uri.as_str().to_string(),
                            (uri, change.text, Some(p.text_document.version)),
                        );
                    }
                }
            }
            DidSaveTextDocument::METHOD => {
                if let Ok(p) =
                    n.extract::<lsp_types::DidSaveTextDocumentParams>(DidSaveTextDocument::METHOD)
                {
                    let uri = p.text_document.uri;
                    let text = p
                        .text
                        .or_else(|| self.documents.get(uri.as_str()).map(|d| d.text.clone()));
                    // A config file saved next to the buffer changes its findings too: re-lint.
                    if let Some(text) = text {
                        self.lint(uri, text, None);
                    }
                }
            }
            DidCloseTextDocument::METHOD => {
                if let Ok(p) =
                    n.extract::<lsp_types::DidCloseTextDocumentParams>(DidCloseTextDocument::METHOD)
                {
                    self.documents.remove(p.text_document.uri.as_str());
                    self.pending.remove(p.text_document.uri.as_str());
                    self.notify::<PublishDiagnostics>(PublishDiagnosticsParams {
                        uri: p.text_document.uri,
                        diagnostics: Vec::new(),
                        version: None,
                    });
                }
            }
            _ => {}
        }
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
    let (id, _params) = connection.initialize_start()?;
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
        docs: rule_docs_dir(),
        pending: HashMap::new(),
    };
    loop {
        let message = if server.pending.is_empty() {
            match server.connection.receiver.recv() {
                Ok(m) => m,
                Err(_) => break,
            }
        } else {
            match server.connection.receiver.recv_timeout(DEBOUNCE) {
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
            position(text, 2, 11),
            Position {
                line: 1,
                character: 9
            }
        );
    }
}
