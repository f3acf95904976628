//! `isolint server` driven over stdio by a scripted client, as an editor would: initialize,
//! open a buffer, receive diagnostics, change it, hover on a finding, shut down.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

struct Client {
    child: Child,
    stdin: ChildStdin,
    messages: Receiver<Value>,
    next_id: i64,
}

impl Client {
    fn start(cwd: &std::path::Path) -> Self {
        Self::start_with_cache(cwd, &cwd.join(".cache"))
    }

    fn start_with_cache(cwd: &std::path::Path, cache: &std::path::Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_isolint"))
            .arg("server")
            .env("XDG_CACHE_HOME", cache)
            .current_dir(cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("isolint server starts");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, messages) = channel();
        // A reader thread, so that a server that stops answering fails the test by timeout
        // instead of hanging it.
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            loop {
                let mut length = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some(v) = line.strip_prefix("Content-Length: ") {
                        length = v.parse::<usize>().ok();
                    }
                }
                let mut body = vec![0; length.expect("Content-Length header")];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                if tx.send(serde_json::from_slice(&body).unwrap()).is_err() {
                    return;
                }
            }
        });
        Client {
            child,
            stdin,
            messages,
            next_id: 1,
        }
    }

    fn send(&mut self, message: Value) {
        let body = message.to_string();
        write!(self.stdin, "Content-Length: {}\r\n\r\n{body}", body.len()).unwrap();
        self.stdin.flush().unwrap();
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// Sends a request and returns its response, skipping notifications meanwhile.
    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let m = self.receive();
            if m["id"] == id && m.get("method").is_none() {
                return m;
            }
        }
    }

    fn receive(&self) -> Value {
        self.messages
            .recv_timeout(Duration::from_secs(60))
            .expect("the server answers within a minute")
    }

    fn diagnostics(&self, uri: &str) -> Vec<Value> {
        loop {
            let m = self.receive();
            if m["method"] == "textDocument/publishDiagnostics" && m["params"]["uri"] == uri {
                return m["params"]["diagnostics"].as_array().unwrap().clone();
            }
        }
    }
}

#[test]
fn diagnostics_on_open_change_save_and_hover_explains() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().canonicalize().unwrap();
    // The config next to the file applies to the buffer.
    std::fs::write(dir.join("isolint.toml"), "ignore = [\"could-be-const\"]\n").unwrap();
    let file = dir.join("_speedups.c");
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/check/legacy_single_phase/_speedups.c"),
    )
    .unwrap();
    let uri = format!("file://{}", file.display());

    let mut client = Client::start(&dir);
    let init = client.request(
        "initialize",
        json!({"processId": null, "rootUri": format!("file://{}", dir.display()), "capabilities": {}}),
    );
    assert_eq!(init["result"]["serverInfo"]["name"], "isolint");
    assert_eq!(init["result"]["capabilities"]["hoverProvider"], true);
    client.notify("initialized", json!({}));

    // Open: the buffer's text, not the (absent) file on disk, is linted.
    client.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": uri, "languageId": "c", "version": 1, "text": text}}),
    );
    let diags = client.diagnostics(&uri);
    let foo = diags
        .iter()
        .find(|d| d["code"] == "ISO003")
        .unwrap_or_else(|| panic!("{diags:#?}"));
    // Line 33, column 21 (1-based) in the fixture.
    assert_eq!(foo["range"]["start"], json!({"line": 32, "character": 20}));
    assert_eq!(foo["range"]["end"], json!({"line": 32, "character": 28}));
    assert_eq!(foo["severity"], 2);
    assert_eq!(foo["source"], "isolint");
    assert!(foo["message"].as_str().unwrap().contains("Foo_Type"));
    assert!(
        !diags.iter().any(|d| d["code"] == "ISO008"),
        "config applies"
    );

    // Hover on the finding: the rule's documentation.
    let hover = client.request(
        "textDocument/hover",
        json!({"textDocument": {"uri": uri}, "position": {"line": 32, "character": 24}}),
    );
    let value = hover["result"]["contents"]["value"].as_str().unwrap();
    assert!(value.contains("# static-type-object (ISO003)"), "{value}");
    assert!(value.contains("## Why is this bad?"), "{value}");
    // Hover where there is no finding: null.
    let none = client.request(
        "textDocument/hover",
        json!({"textDocument": {"uri": uri}, "position": {"line": 1, "character": 0}}),
    );
    assert!(none["result"].is_null(), "{none}");

    // Change: a suppression comment removes the diagnostic.
    let changed = text.replace(
        "static PyTypeObject Foo_Type = {",
        "static PyTypeObject Foo_Type = { /* isolint: ignore[ISO003] converted in the next release */",
    );
    client.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": uri, "version": 2}, "contentChanges": [{"text": changed}]}),
    );
    let diags = client.diagnostics(&uri);
    assert!(!diags.iter().any(|d| d["code"] == "ISO003"), "{diags:#?}");
    assert!(diags.iter().any(|d| d["code"] == "ISO004"));

    // Save with text: linted again.
    client.notify(
        "textDocument/didSave",
        json!({"textDocument": {"uri": uri}, "text": "static PyObject *only;\nvoid f(void) { only = PyDict_New(); }\n"}),
    );
    let diags = client.diagnostics(&uri);
    // The global, and its unlocked run-time write (free-threading).
    let codes: Vec<&str> = diags.iter().filter_map(|d| d["code"].as_str()).collect();
    assert_eq!(codes, vec!["ISO004", "ISO104"], "{diags:#?}");

    // Close clears the diagnostics.
    client.notify(
        "textDocument/didClose",
        json!({"textDocument": {"uri": uri}}),
    );
    assert!(client.diagnostics(&uri).is_empty());

    let shutdown = client.request("shutdown", Value::Null);
    assert!(shutdown["result"].is_null());
    client.notify("exit", Value::Null);
    let status = client.child.wait().unwrap();
    assert!(status.success(), "{status}");
}

fn start_initialized(dir: &std::path::Path, cache: &std::path::Path) -> Client {
    let mut client = Client::start_with_cache(dir, cache);
    let init = client.request(
        "initialize",
        json!({"processId": null, "rootUri": format!("file://{}", dir.display()), "capabilities": {}}),
    );
    assert_eq!(init["result"]["capabilities"]["codeActionProvider"], true);
    client.notify("initialized", json!({}));
    client
}

/// The text after one LSP `TextEdit`, as an editor applies it (positions in UTF-16 units).
fn apply_edit(text: &str, edit: &Value) -> String {
    let offset = |pos: &Value| {
        let line = pos["line"].as_u64().unwrap() as usize;
        let mut units = pos["character"].as_u64().unwrap() as usize;
        let mut at = 0;
        for (i, l) in text.split_inclusive('\n').enumerate() {
            if i == line {
                for c in l.chars() {
                    if units == 0 || c == '\n' {
                        break;
                    }
                    units = units.saturating_sub(c.len_utf16());
                    at += c.len_utf8();
                }
                return at;
            }
            at += l.len();
        }
        text.len()
    };
    let start = offset(&edit["range"]["start"]);
    let end = offset(&edit["range"]["end"]);
    format!(
        "{}{}{}",
        &text[..start],
        edit["newText"].as_str().unwrap(),
        &text[end..]
    )
}

#[test]
fn doc_links_quick_fixes_and_debounced_typing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().canonicalize().unwrap();
    let cache = dir.join("cache");
    let file = dir.join("_speedups.c");
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/plan/legacy_speedups/_speedups.c"),
    )
    .unwrap();
    // Saved: the stage-0 action is computed from the file on disk.
    std::fs::write(&file, &text).unwrap();
    let uri = format!("file://{}", file.display());
    let mut client = start_initialized(&dir, &cache);
    client.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": uri, "languageId": "c", "version": 1, "text": text}}),
    );
    let diags = client.diagnostics(&uri);

    // Every diagnostic links its rule's page, written for this version and readable offline.
    for d in &diags {
        let href = d["codeDescription"]["href"]
            .as_str()
            .unwrap_or_else(|| panic!("{d:#}"));
        let page = href.strip_prefix("file://").expect("a file link");
        let markdown = std::fs::read_to_string(page).expect("the page exists");
        assert!(
            markdown.contains(&format!("({})", d["code"].as_str().unwrap())),
            "{href}"
        );
    }

    // Quick fixes on the static type: its suppression; on the single-phase init: stage 0 too.
    let static_type = diags
        .iter()
        .find(|d| d["code"] == "ISO003")
        .expect("ISO003");
    let actions = client.request(
        "textDocument/codeAction",
        json!({"textDocument": {"uri": uri}, "range": static_type["range"], "context": {"diagnostics": []}}),
    );
    let actions = actions["result"].as_array().expect("actions").clone();
    let suppress = actions
        .iter()
        .find(|a| {
            a["title"]
                .as_str()
                .unwrap()
                .starts_with("Suppress static-type-object")
        })
        .unwrap_or_else(|| panic!("{actions:#?}"));
    let edit = &suppress["edit"]["changes"][&uri][0];
    let suppressed = apply_edit(&text, edit);
    client.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": uri, "version": 2}, "contentChanges": [{"text": suppressed}]}),
    );
    let after = client.diagnostics(&uri);
    assert!(!after.iter().any(|d| d["code"] == "ISO003"), "{after:#?}");
    assert!(
        !after.iter().any(|d| d["code"] == "ISO900"),
        "the suppression is well formed"
    );

    // Back to the saved text, then the stage-0 action on the single-phase finding.
    client.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": uri, "version": 3}, "contentChanges": [{"text": text}]}),
    );
    let diags = client.diagnostics(&uri);
    let single = diags
        .iter()
        .find(|d| d["code"] == "ISO001")
        .expect("ISO001");
    let actions = client.request(
        "textDocument/codeAction",
        json!({"textDocument": {"uri": uri}, "range": single["range"], "context": {"diagnostics": []}}),
    );
    let actions = actions["result"].as_array().expect("actions").clone();
    let stage0 = actions
        .iter()
        .find(|a| a["title"].as_str().unwrap().contains("fix --stage 0"))
        .unwrap_or_else(|| panic!("{actions:#?}"));
    let converted = apply_edit(&text, &stage0["edit"]["changes"][&uri][0]);
    assert!(converted.contains("return PyModuleDef_Init(&speedups_module);"));

    // Typing: ten quick changes; what is published last is the last text's diagnostics.
    for version in 4..14 {
        let typed = format!(
            "{text}\nstatic PyObject *typed_{version};\nstatic void set_{version}(void) {{ typed_{version} = PyDict_New(); }}\n"
        );
        client.notify(
            "textDocument/didChange",
            json!({"textDocument": {"uri": uri, "version": version}, "contentChanges": [{"text": typed}]}),
        );
    }
    let mut last = client.diagnostics(&uri);
    // Drain: the debounce may publish an intermediate version first.
    while !last
        .iter()
        .any(|d| d["message"].as_str().unwrap_or("").contains("typed_13"))
    {
        last = client.diagnostics(&uri);
    }
    assert!(!last
        .iter()
        .any(|d| d["message"].as_str().unwrap_or("").contains("typed_12")));

    let shutdown = client.request("shutdown", Value::Null);
    assert!(shutdown["result"].is_null());
    client.notify("exit", Value::Null);
    assert!(client.child.wait().unwrap().success());
}
