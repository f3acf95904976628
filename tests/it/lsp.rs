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

/// What the client has been told: each file's latest diagnostics, by URI.
type Published = std::collections::BTreeMap<String, Vec<Value>>;

impl Client {
    /// Receives until `until` says stop, recording every published diagnostic on the way.
    fn record_until(&self, published: &mut Published, until: impl Fn(&Value) -> bool) {
        loop {
            let m = self.receive();
            if m["method"] == "textDocument/publishDiagnostics" {
                let uri = m["params"]["uri"].as_str().unwrap().to_string();
                let list = m["params"]["diagnostics"].as_array().unwrap().clone();
                published.insert(uri, list);
            }
            if until(&m) {
                return;
            }
        }
    }

    /// A request as a barrier: everything the server sent before its answer is recorded.
    fn barrier(&mut self, published: &mut Published) {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": "textDocument/hover",
            "params": {"textDocument": {"uri": "file:///nowhere.c"}, "position": {"line": 0, "character": 0}}}));
        self.record_until(published, |m| m["id"] == id && m.get("method").is_none());
    }

    fn shut_down(mut self) {
        let shutdown = self.request("shutdown", Value::Null);
        assert!(shutdown["result"].is_null());
        self.notify("exit", Value::Null);
        assert!(self.child.wait().unwrap().success());
    }
}

/// A module in three files (`_split.c`, `registry.c`, their header `state.h`), a second module
/// including the same header, and a header no module includes yet.
fn two_module_workspace(dir: &std::path::Path) {
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/check/split_module");
    for name in ["_split.c", "registry.c", "state.h"] {
        let text = std::fs::read_to_string(fixture.join(name)).unwrap();
        std::fs::write(dir.join(name), text).unwrap();
    }
    // The header gets a counter the module file calls; its body decides the findings.
    let state = std::fs::read_to_string(dir.join("state.h")).unwrap().replace(
        "int registry_add(PyObject *key, PyObject *value);",
        "int registry_add(PyObject *key, PyObject *value);\n\nstatic int calls;\nstatic inline void count_call(void) { (void)calls; }",
    );
    std::fs::write(dir.join("state.h"), state).unwrap();
    let split = std::fs::read_to_string(dir.join("_split.c"))
        .unwrap()
        .replace(
            "    PyObject *key, *value;",
            "    PyObject *key, *value;\n    count_call();",
        );
    std::fs::write(dir.join("_split.c"), split).unwrap();
    std::fs::write(
        dir.join("_other.c"),
        "#include \"state.h\"\n\nstatic PyObject *seen;\n\nstatic PyObject *\nlook(PyObject *m, PyObject *arg)\n{\n    count_call();\n    seen = arg;\n    Py_RETURN_NONE;\n}\n\nstatic PyMethodDef other_methods[] = {\n    {\"look\", look, METH_O, NULL},\n    {NULL, NULL, 0, NULL}\n};\n\nstatic struct PyModuleDef other_module = {\n    PyModuleDef_HEAD_INIT, \"_other\", NULL, -1, other_methods\n};\n\nPyMODINIT_FUNC\nPyInit__other(void)\n{\n    return PyModule_Create(&other_module);\n}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("extra.h"),
        "#include <Python.h>\n\nstatic PyObject *extra_cache;\nstatic inline void extra_set(PyObject *o) { extra_cache = o; }\n",
    )
    .unwrap();
}

/// Each file's findings (by file name) as (code, 0-based line, character, LSP severity,
/// message), sorted.
type FindingsByFile = std::collections::BTreeMap<String, Vec<(String, u64, u64, u64, String)>>;

/// `isolint check` of `dir` (a fresh process, no cache), as each file's diagnostics would be
/// published: by file name, (code, line, character, severity, message) sorted.
fn fresh_check(dir: &std::path::Path) -> FindingsByFile {
    let out = Command::new(env!("CARGO_BIN_EXE_isolint"))
        .args(["check", "--no-cache", "--format", "json"])
        .arg(dir)
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut by_file: std::collections::BTreeMap<String, Vec<_>> = Default::default();
    for f in report["findings"].as_array().unwrap() {
        let name = std::path::Path::new(f["path"].as_str().unwrap())
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let severity = match f["severity"].as_str().unwrap() {
            "error" => 1,
            "warning" => 2,
            _ => 3,
        };
        by_file.entry(name).or_default().push((
            f["rule"].as_str().unwrap().to_string(),
            f["line"].as_u64().unwrap() - 1,
            f["column"].as_u64().unwrap() - 1,
            severity,
            f["message"].as_str().unwrap().to_string(),
        ));
    }
    for list in by_file.values_mut() {
        list.sort();
    }
    by_file
}

/// The published diagnostics in the same shape; each message is checked to start with the
/// finding's (the diagnostic adds the rule name and the help).
fn published_by_file(published: &Published, expected: &FindingsByFile) -> FindingsByFile {
    let mut by_file = std::collections::BTreeMap::new();
    for (uri, diags) in published {
        if diags.is_empty() {
            continue;
        }
        let name = uri.rsplit('/').next().unwrap().to_string();
        let mut list: Vec<_> = diags
            .iter()
            .map(|d| {
                let message = d["message"].as_str().unwrap();
                (
                    d["code"].as_str().unwrap().to_string(),
                    d["range"]["start"]["line"].as_u64().unwrap(),
                    d["range"]["start"]["character"].as_u64().unwrap(),
                    d["severity"].as_u64().unwrap(),
                    message.to_string(),
                )
            })
            .collect();
        list.sort();
        // Messages: the published one starts with the finding's message.
        if let Some(want) = expected.get(&name) {
            if want.len() == list.len() {
                for (got, want) in list.iter_mut().zip(want) {
                    if got.4.starts_with(&want.4) {
                        got.4.clone_from(&want.4);
                    }
                }
            }
        }
        by_file.insert(name, list);
    }
    by_file
}

#[test]
fn twenty_edits_publish_what_a_fresh_check_finds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().canonicalize().unwrap();
    let work = dir.join("work");
    let mirror = dir.join("mirror");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::create_dir_all(&mirror).unwrap();
    two_module_workspace(&work);
    two_module_workspace(&mirror);
    let mut client = start_initialized(&work, &dir.join("cache"));

    // The workspace analysis: every file with findings, before anything is opened.
    let mut published = Published::new();
    client.barrier(&mut published);
    assert_eq!(
        published_by_file(&published, &fresh_check(&mirror)),
        fresh_check(&mirror)
    );
    assert!(
        published.keys().any(|u| u.ends_with("/registry.c")),
        "{published:#?}"
    );

    let names = ["_split.c", "state.h", "registry.c", "_other.c"];
    let mut texts: Vec<String> = names
        .iter()
        .map(|n| std::fs::read_to_string(work.join(n)).unwrap())
        .collect();
    for (i, name) in names.iter().enumerate() {
        let uri = format!("file://{}", work.join(name).display());
        client.notify(
            "textDocument/didOpen",
            json!({"textDocument": {"uri": uri, "languageId": "c", "version": 0, "text": texts[i]}}),
        );
    }
    client.barrier(&mut published);

    // Each edit changes one buffer (never saved); the next edits build on it.
    let edits: [(usize, &str, &str); 20] = [
        (0, "    count_call();\n", "    count_call();\n    registry_generation = 3;\n"),
        (1, "{ (void)calls; }", "{ calls++; }"),
        (3, "NULL, -1, other_methods", "NULL, 0, other_methods"),
        (2, "int registry_generation = 0;", "int registry_generation = 0; /* isolint: ignore[mutable-global-state] guarded by the GIL */"),
        (3, "#include \"state.h\"\n", "#include \"state.h\"\n#include \"extra.h\"\n"),
        (3, "    seen = arg;\n", "    seen = arg;\n    extra_set(arg);\n"),
        (1, "static int calls;", "static PyObject *calls_cache;\nstatic int calls;"),
        (0, "    registry_generation = 3;\n", ""),
        (2, "        registry = PyDict_New();", "        registry = PyList_New(0);"),
        (1, "{ calls++; }", "{ calls++; calls_cache = NULL; }"),
        (3, "static PyObject *seen;", "static PyObject *seen; /* isolint: ignore[ISO004] */"),
        (0, "PyInit__split(void)", "PyInit__split2(void)"),
        (2, "registry_generation++;", "registry_generation += 2;"),
        (3, "#include \"extra.h\"\n", ""),
        (1, "static PyObject *calls_cache;\n", ""),
        (0, "PyInit__split2(void)", "PyInit__split(void)"),
        (0, "NULL, -1, split_methods", "NULL, 0, split_methods"),
        (2, "/* isolint: ignore[mutable-global-state] guarded by the GIL */", ""),
        (1, "{ calls++; calls_cache = NULL; }", "{ (void)calls; }"),
        (3, "    seen = arg;\n", "    Py_XSETREF(seen, Py_NewRef(arg));\n"),
    ];
    let mut changed_elsewhere = 0;
    for (step, (file, from, to)) in edits.iter().enumerate() {
        assert!(
            texts[*file].contains(from),
            "edit {step}: {from:?} in {}",
            names[*file]
        );
        texts[*file] = texts[*file].replacen(from, to, 1);
        std::fs::write(mirror.join(names[*file]), &texts[*file]).unwrap();
        let uri = format!("file://{}", work.join(names[*file]).display());
        let version = step as i64 + 1;
        client.notify(
            "textDocument/didChange",
            json!({"textDocument": {"uri": uri, "version": version}, "contentChanges": [{"text": texts[*file]}]}),
        );
        let before = published.clone();
        client.record_until(&mut published, |m| {
            m["method"] == "textDocument/publishDiagnostics"
                && m["params"]["uri"] == uri
                && m["params"]["version"] == version
        });
        changed_elsewhere += published
            .iter()
            .filter(|(u, d)| **u != uri && before.get(*u) != Some(*d))
            .count();
        let want = fresh_check(&mirror);
        assert_eq!(
            published_by_file(&published, &want),
            want,
            "after edit {step} ({} {from:?} -> {to:?})",
            names[*file]
        );
    }
    // Header edits republished the files that include it.
    assert!(changed_elsewhere > 0);
    client.shut_down();
}

#[test]
fn a_header_edit_changes_its_includers_in_the_server_and_in_a_cached_re_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().canonicalize().unwrap();
    two_module_workspace(&dir);
    let check = || {
        let out = Command::new(env!("CARGO_BIN_EXE_isolint"))
            .args(["check", "--format", "concise", "."])
            .current_dir(&dir)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    // Warms the facts cache.
    let cli_before = check();
    assert!(dir.join(".isolint_cache").exists());
    let missing_gil = |text: &str| -> String {
        text.lines()
            .find(|l| l.starts_with("./_split.c") && l.contains("missing-gil-slot"))
            .unwrap_or_else(|| panic!("{text}"))
            .to_string()
    };
    assert!(missing_gil(&cli_before).contains("2 free-threading finding(s)"));

    let mut client = start_initialized(&dir, &dir.join("xdg"));
    let mut published = Published::new();
    client.barrier(&mut published);
    let split_uri = format!("file://{}", dir.join("_split.c").display());
    let gil_message = |published: &Published| -> String {
        published[&split_uri]
            .iter()
            .find(|d| d["code"] == "ISO023")
            .map(|d| d["message"].as_str().unwrap().to_string())
            .unwrap_or_default()
    };
    assert!(gil_message(&published).contains("2 free-threading finding(s)"));

    // The header is opened and edited (not saved): the module file, never opened, changes.
    let header = dir.join("state.h");
    let header_uri = format!("file://{}", header.display());
    let text = std::fs::read_to_string(&header).unwrap();
    client.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": header_uri, "languageId": "c", "version": 1, "text": text}}),
    );
    let edited = text.replace("{ (void)calls; }", "{ calls++; }");
    client.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": header_uri, "version": 2}, "contentChanges": [{"text": edited}]}),
    );
    client.record_until(&mut published, |m| {
        m["params"]["uri"] == header_uri && m["params"]["version"] == 2
    });
    assert!(
        gil_message(&published).contains("3 free-threading finding(s)"),
        "{published:#?}"
    );
    let header_codes: Vec<&str> = published[&header_uri]
        .iter()
        .filter_map(|d| d["code"].as_str())
        .collect();
    assert!(header_codes.contains(&"ISO104"), "{header_codes:?}");

    // Saved: the CLI re-run with the cache sees it too, and agrees with the server.
    std::fs::write(&header, &edited).unwrap();
    client.notify(
        "textDocument/didSave",
        json!({"textDocument": {"uri": header_uri}, "text": edited}),
    );
    client.barrier(&mut published);
    let cli_after = check();
    assert!(
        missing_gil(&cli_after).contains("3 free-threading finding(s)"),
        "{cli_after}"
    );
    assert!(cli_after.contains("./state.h:12:"), "{cli_after}");
    assert!(missing_gil(&cli_after).contains(
        gil_message(&published)
            .lines()
            .next()
            .unwrap()
            .split(" [")
            .next()
            .unwrap()
    ));

    // Undone and saved again: both go back.
    std::fs::write(&header, &text).unwrap();
    client.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": header_uri, "version": 3}, "contentChanges": [{"text": text}]}),
    );
    client.notify(
        "textDocument/didSave",
        json!({"textDocument": {"uri": header_uri}, "text": text}),
    );
    client.barrier(&mut published);
    assert!(gil_message(&published).contains("2 free-threading finding(s)"));
    assert!(
        published.get(&header_uri).is_none_or(|d| d.is_empty()),
        "{published:#?}"
    );
    assert_eq!(check(), cli_before);
    client.shut_down();
}

#[test]
fn a_buffer_in_an_excluded_folder_gets_no_diagnostics() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().canonicalize().unwrap();
    two_module_workspace(&dir);
    std::fs::write(dir.join("isolint.toml"), "extend-exclude = [\"scratch\"]\n").unwrap();
    std::fs::create_dir(dir.join("scratch")).unwrap();
    let excluded = dir.join("scratch/lib.c");
    let text = "static PyObject *lib_cache;\nvoid lib_set(PyObject *o) { lib_cache = o; }\n";
    std::fs::write(&excluded, text).unwrap();
    let mut client = start_initialized(&dir, &dir.join("xdg"));
    let mut published = Published::new();
    client.barrier(&mut published);
    assert!(published.keys().any(|u| u.ends_with("/registry.c")));

    // Opened and edited, it stays out, as in `isolint check`.
    let uri = format!("file://{}", excluded.display());
    client.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": uri, "languageId": "c", "version": 1, "text": text}}),
    );
    let edited =
        format!("{text}static PyObject *more;\nvoid more_set(PyObject *o) {{ more = o; }}\n");
    client.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": uri, "version": 2}, "contentChanges": [{"text": edited}]}),
    );
    client.record_until(&mut published, |m| {
        m["params"]["uri"] == uri && m["params"]["version"] == 2
    });
    assert!(published[&uri].is_empty(), "{published:#?}");
    let want = fresh_check(&dir);
    assert!(!want.contains_key("lib.c"), "{want:#?}");
    assert_eq!(published_by_file(&published, &want), want);
    client.shut_down();
}

#[test]
fn files_of_no_module_are_rechecked_together() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().canonicalize().unwrap();
    // No `PyInit_*`: both files are checked as one unit; the global in a.c is written in b.c.
    std::fs::write(dir.join("a.c"), "#include <Python.h>\nPyObject *shared;\n").unwrap();
    let b =
        "#include <Python.h>\nextern PyObject *shared;\nvoid keep(PyObject *o) { shared = o; }\n";
    std::fs::write(dir.join("b.c"), b).unwrap();
    let mut client = start_initialized(&dir, &dir.join("xdg"));
    let mut published = Published::new();
    client.barrier(&mut published);
    let a_uri = format!("file://{}", dir.join("a.c").display());
    let b_uri = format!("file://{}", dir.join("b.c").display());
    assert_eq!(published[&a_uri][0]["code"], "ISO004", "{published:#?}");

    client.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": b_uri, "languageId": "c", "version": 1, "text": b}}),
    );
    let edited = b.replace("shared = o;", "(void)o;");
    client.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": b_uri, "version": 2}, "contentChanges": [{"text": edited}]}),
    );
    client.record_until(&mut published, |m| {
        m["params"]["uri"] == b_uri && m["params"]["version"] == 2
    });
    // The write is gone from b.c, so a.c's global is no longer written at run time.
    assert!(published[&a_uri].is_empty(), "{published:#?}");
    assert!(published[&b_uri].is_empty(), "{published:#?}");
    client.shut_down();
}
