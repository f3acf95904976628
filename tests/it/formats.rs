//! First contact: every format tells the same story, the human format fits the terminal, and
//! `--statistics` and `isolint rules` are what they say.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn isolint(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_isolint"))
        .args(args)
        .current_dir(root())
        .env("ISOLINT_NO_CACHE", "1")
        .env_remove("NO_COLOR")
        .env_remove("COLUMNS")
        .output()
        .expect("isolint runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json_of(args: &[&str]) -> Value {
    let out = isolint(args);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {out:?}"))
}

/// What each finding must carry in every format.
#[derive(Debug)]
struct Fact {
    rule: String,
    name: String,
    severity: String,
    path: String,
    line: u64,
    column: u64,
    /// `>=3.12`, `<3.12`, or `None` for every Python.
    range: Option<String>,
    uncertain: bool,
}

impl Fact {
    fn qualifier_text(&self) -> String {
        let mut text = String::new();
        if let Some(range) = &self.range {
            text.push_str(&format!(" [Python {range}]"));
        }
        if self.uncertain {
            text.push_str(" (near a parse error: uncertain)");
        }
        text
    }
}

fn facts(doc: &Value) -> Vec<Fact> {
    doc["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            let python = &f["python"];
            let bound = |key: &str| python[key].as_str().map(str::to_string);
            let range = match (bound("min"), bound("max")) {
                (None, None) => None,
                (Some(lo), None) => Some(format!(">={lo}")),
                (None, Some(hi)) => Some(format!("<{hi}")),
                (Some(lo), Some(hi)) => Some(format!(">={lo},<{hi}")),
            };
            assert!(python["free_threaded"].is_null(), "{python}");
            Fact {
                rule: f["rule"].as_str().unwrap().into(),
                name: f["name"].as_str().unwrap().into(),
                severity: f["severity"].as_str().unwrap().into(),
                path: f["path"].as_str().unwrap().into(),
                line: f["line"].as_u64().unwrap(),
                column: f["column"].as_u64().unwrap(),
                range,
                uncertain: f["uncertain"].as_bool().unwrap(),
            }
        })
        .collect()
}

const FIXTURE: &str = "fixtures/formats";

#[test]
fn every_format_carries_the_same_facts() {
    let doc = json_of(&["check", "--format", "json", FIXTURE]);
    assert_eq!(doc["version"], 2);
    let facts = facts(&doc);
    // The fixture exists to have each kind of qualifier; make sure it still does.
    assert!(
        facts.iter().any(|f| f.range.as_deref() == Some("<3.12")),
        "{facts:?}"
    );
    assert!(facts.iter().any(|f| f.uncertain), "{facts:?}");
    assert!(
        facts.iter().any(|f| f.range.is_none() && !f.uncertain),
        "{facts:?}"
    );

    let concise = stdout(&isolint(&["check", "--format", "concise", FIXTURE]));
    let github = stdout(&isolint(&["check", "--format", "github", FIXTURE]));
    let human = stdout(&isolint(&[
        "check", "--format", "human", "--color", "never", "--width", "5000", FIXTURE,
    ]));
    let sarif: Value =
        serde_json::from_str(&stdout(&isolint(&["check", "--format", "sarif", FIXTURE])))
            .expect("SARIF is JSON");
    let results = sarif["runs"][0]["results"].as_array().expect("results");
    assert_eq!(results.len(), facts.len());
    assert_eq!(concise.lines().count(), facts.len(), "{concise}");

    // The human format: one diagnostic per finding, each starting with `RULE[name]`.
    let mut blocks: Vec<String> = Vec::new();
    for line in human.lines() {
        if line.starts_with("ISO") && line.contains('[') {
            blocks.push(String::new());
        }
        if let Some(block) = blocks.last_mut() {
            block.push_str(line);
            block.push('\n');
        }
    }
    assert_eq!(blocks.len(), facts.len(), "{human}");

    for f in &facts {
        let place = format!("{}:{}:{}", f.path, f.line, f.column);
        let tags = f.qualifier_text();

        let line = concise
            .lines()
            .find(|l| l.starts_with(&format!("{place}: ")) && l.contains(&f.rule))
            .unwrap_or_else(|| panic!("concise lacks {place} {f:?}:\n{concise}"));
        assert!(
            line.contains(&format!("{}[{}]", f.severity, f.rule)),
            "{line}"
        );
        assert!(
            line.ends_with(&format!("{tags} ({})", f.name)),
            "{f:?}: {line}"
        );

        let command = match f.severity.as_str() {
            "info" => "notice",
            other => other,
        };
        let annotation = github
            .lines()
            .find(|l| {
                l.contains(&format!("file={},line={},", f.path, f.line))
                    && l.contains(&format!("title={} ({})", f.rule, f.name))
            })
            .unwrap_or_else(|| panic!("github lacks {f:?}:\n{github}"));
        assert!(
            annotation.starts_with(&format!("::{command} ")),
            "{annotation}"
        );
        assert!(
            annotation.contains(&format!("col={},", f.column)),
            "{annotation}"
        );
        assert!(
            annotation.contains(&format!("{tags}%0Ahelp: ")),
            "{f:?}: {annotation}"
        );

        let result = results
            .iter()
            .find(|r| {
                let region = &r["locations"][0]["physicalLocation"]["region"];
                r["ruleId"] == f.rule.as_str() && region["startLine"] == f.line
            })
            .unwrap_or_else(|| panic!("SARIF lacks {f:?}"));
        let level = match f.severity.as_str() {
            "info" => "note",
            other => other,
        };
        assert_eq!(result["level"], level);
        assert_eq!(result["properties"]["uncertain"], f.uncertain);
        let json_finding = doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["rule"] == f.rule.as_str() && j["line"] == f.line)
            .unwrap();
        assert_eq!(result["properties"]["python"], json_finding["python"]);
        let text = result["message"]["text"].as_str().unwrap();
        assert!(text.contains(&format!("{tags}\nhelp: ")), "{f:?}: {text}");

        let block = blocks
            .iter()
            .find(|b| b.starts_with(&format!("{}[{}]", f.rule, f.name)) && b.contains(&place))
            .unwrap_or_else(|| panic!("human lacks {place} {f:?}:\n{human}"));
        let icon = match f.severity.as_str() {
            "error" => "×",
            "warning" => "⚠",
            _ => "☞",
        };
        assert!(block.contains(icon), "{f:?}: {block}");
        if !tags.is_empty() {
            assert!(block.contains(tags.trim()), "{f:?}: {block}");
        }
    }
}

/// Display width in columns (every character of the report is one column wide).
fn columns(line: &str) -> usize {
    line.chars().count()
}

#[test]
fn human_output_wraps_to_the_width() {
    // Source lines of this fixture are under 80 columns; the prose around them must be too.
    let dir = root().join("fixtures/check/legacy_single_phase");
    let long_source_lines: Vec<String> = std::fs::read_to_string(dir.join("_speedups.c"))
        .unwrap()
        .lines()
        .filter(|l| columns(l) > 60)
        .map(str::to_string)
        .collect();
    let out = isolint(&[
        "check",
        "--color",
        "never",
        "--width",
        "80",
        "fixtures/check/legacy_single_phase",
    ]);
    let text = stdout(&out);
    assert!(text.contains("modules:"), "{text}");
    for line in text.lines() {
        let is_source = long_source_lines.iter().any(|s| line.ends_with(s.as_str()));
        assert!(
            columns(line) <= 80 || is_source,
            "{} columns: {line}\n{text}",
            columns(line)
        );
    }
    // Not a terminal and no --width: 100 columns, not miette's 200.
    let text = stdout(&isolint(&[
        "check",
        "--color",
        "never",
        "fixtures/check/legacy_single_phase",
    ]));
    let widest = text
        .lines()
        .filter(|l| !long_source_lines.iter().any(|s| l.ends_with(s.as_str())))
        .map(columns)
        .max()
        .unwrap();
    assert!(
        widest <= 100 && widest > 80,
        "widest prose line: {widest}\n{text}"
    );
}

#[test]
fn colour_only_when_asked_or_on_a_terminal() {
    let fixture = "fixtures/check/legacy_single_phase";
    let plain = stdout(&isolint(&["check", fixture]));
    assert!(!plain.contains('\u{1b}'), "a pipe gets no escape codes");
    let coloured = stdout(&isolint(&["check", "--color", "always", fixture]));
    assert!(coloured.contains('\u{1b}'), "--color always colours");
}

#[test]
fn statistics_count_findings_per_rule() {
    let fixture = "fixtures/check/legacy_single_phase";
    let doc = json_of(&["check", "--format", "json", fixture]);
    let findings = doc["findings"].as_array().unwrap();
    let stats = json_of(&["check", "--format", "json", "--statistics", fixture]);
    let rows = stats.as_array().expect("a JSON list");
    let total: u64 = rows.iter().map(|r| r["count"].as_u64().unwrap()).sum();
    assert_eq!(total as usize, findings.len());
    for row in rows {
        let n = findings.iter().filter(|f| f["rule"] == row["rule"]).count();
        assert_eq!(row["count"].as_u64().unwrap() as usize, n, "{row}");
    }
    let counts: Vec<u64> = rows.iter().map(|r| r["count"].as_u64().unwrap()).collect();
    assert!(
        counts.windows(2).all(|w| w[0] >= w[1]),
        "most first: {counts:?}"
    );

    let out = isolint(&["check", "--statistics", "--color", "never", fixture]);
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the exit status does not change"
    );
    assert!(
        !text.contains("help:"),
        "statistics replace the findings: {text}"
    );
    let first = &rows[0];
    let line = format!("{}  {}  ", first["count"], first["rule"].as_str().unwrap());
    assert!(
        text.lines().any(|l| l.trim_start().starts_with(&line)),
        "{text}"
    );
    assert!(
        text.contains(" in 1 module ("),
        "the summary follows: {text}"
    );
}

#[test]
fn summary_names_the_files_with_parse_errors() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..7 {
        std::fs::write(
            dir.path().join(format!("broken{i}.c")),
            "#include <Python.h>\nstatic int f(void) { return ) ; }\n",
        )
        .unwrap();
    }
    std::fs::write(dir.path().join("fine.c"), "static const int x = 1;\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_isolint"))
        .args([
            "check",
            "--no-cache",
            "--color",
            "never",
            "--width",
            "200",
            ".",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(text.contains("7 with parse errors"), "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("parse errors in: "))
        .unwrap_or_else(|| panic!("{text}"));
    for i in 0..5 {
        assert!(line.contains(&format!("broken{i}.c (line 2)")), "{line}");
    }
    assert!(
        !line.contains("broken5.c") && !line.contains("fine.c"),
        "{line}"
    );
    assert!(line.contains("and 2 more"), "{line}");
}

#[test]
fn rules_table_is_aligned_and_in_id_order() {
    let text = stdout(&isolint(&["rules", "--width", "100"]));
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("ISO")).collect();
    let ids: Vec<&str> = rows.iter().map(|l| &l[..6]).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    assert_eq!(ids.len(), isolint::config::all_rules().count());
    // Every row's columns start where the header's do.
    let header = text.lines().next().unwrap();
    for column in ["name", "severity", "fix", "summary"] {
        let at = header.find(column).unwrap();
        for row in &rows {
            assert_ne!(&row[at..at + 1], " ", "`{column}` misaligned: {row}");
            assert_eq!(&row[at - 1..at], " ", "`{column}` misaligned: {row}");
        }
    }
    for line in text.lines() {
        assert!(columns(line) <= 100, "{line}");
    }
    let json: Value = serde_json::from_str(&stdout(&isolint(&["rules", "--format", "json"])))
        .expect("rules --format json");
    let json_ids: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(json_ids, ids);
}

/// Counts the README states are the registry's.
#[test]
fn readme_counts_are_true() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let rules = isolint::config::all_rules().count();
    let stated: Vec<usize> = readme
        .match_indices(" rules")
        .filter_map(|(at, _)| {
            let before = readme[..at].trim_end();
            let digits: String = before
                .chars()
                .rev()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.chars().rev().collect::<String>().parse().ok()
        })
        .collect();
    assert!(
        !stated.is_empty(),
        "the README states how many rules there are"
    );
    for n in stated {
        assert_eq!(n, rules, "README says {n} rules, the registry has {rules}");
    }
}

/// The summary the README quotes for its first command is what that command prints.
#[test]
fn readme_example_prints_what_the_readme_says() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let command = readme
        .lines()
        .find(|l| l.starts_with("cargo run -- check "))
        .expect("the README's first command");
    let args: Vec<&str> = command
        .trim_start_matches("cargo run -- ")
        .split('#')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let quoted = readme
        .split("```text\n")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .expect("the quoted summary");
    let out = isolint(&args);
    let text = stdout(&out);
    assert!(
        text.lines().any(|l| l == quoted),
        "README quotes `{quoted}`, the command prints:\n{text}"
    );
    assert_eq!(out.status.code(), Some(1), "the README says it exits 1");
}
