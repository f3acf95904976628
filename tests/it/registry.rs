//! The rule registry: unique ids and names, documented sections, a fixture for every rule, and
//! docs/rules/ generated from the doc comments.

use isolint::rules::{doc_index, doc_page, RULES};
use std::collections::BTreeSet;
use std::path::Path;

const SECTIONS: &[&str] = &[
    "## What it does",
    "## Why is this bad?",
    "## Example",
    "## Use instead",
    "## Minimum Python",
    "## References",
];

#[test]
fn ids_and_names_are_unique_and_well_formed() {
    let mut ids = BTreeSet::new();
    let mut names = BTreeSet::new();
    for r in RULES {
        assert!(ids.insert(r.id), "duplicate id {}", r.id);
        assert!(names.insert(r.name), "duplicate name {}", r.name);
        assert!(
            r.id.len() == 6
                && r.id.starts_with("ISO")
                && r.id[3..].chars().all(|c| c.is_ascii_digit()),
            "{}",
            r.id
        );
        assert!(
            r.name.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
            "{} is not kebab-case",
            r.name
        );
        // Lower-case start (acronyms such as `C-API` aside), no trailing period.
        let first_word = r.summary.split_whitespace().next().unwrap_or("");
        let capitalised = first_word
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_uppercase())
            && first_word
                .chars()
                .nth(1)
                .is_some_and(|c| c.is_ascii_lowercase());
        assert!(
            !r.summary.ends_with('.') && !capitalised,
            "summary style: {}",
            r.summary
        );
    }
}

#[test]
fn every_doc_has_its_sections_in_order() {
    for r in RULES {
        let mut at = 0;
        for section in SECTIONS {
            let found = r.docs[at..]
                .find(section)
                .unwrap_or_else(|| panic!("{}: missing or misplaced `{section}`", r.name));
            at += found + section.len();
        }
    }
}

fn expectations(dir: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            expectations(&path, out);
        } else if let Ok(text) = std::fs::read_to_string(&path) {
            for line in text.lines() {
                if let Some(pos) = line.find("expect:") {
                    let rest = line[pos + 7..].split("*/").next().unwrap_or("");
                    out.extend(
                        rest.split(',')
                            .map(|r| r.trim().to_string())
                            .filter(|r| !r.is_empty()),
                    );
                }
            }
        }
    }
}

#[test]
fn every_rule_has_a_fixture() {
    let mut expected = BTreeSet::new();
    expectations(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/check"),
        &mut expected,
    );
    let missing: Vec<&str> = RULES
        .iter()
        .map(|r| r.name)
        .filter(|n| !expected.contains(*n))
        .collect();
    assert!(
        missing.is_empty(),
        "rules without a fixture expectation: {missing:?}"
    );
}

#[test]
fn rule_docs_are_generated_and_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/rules");
    let mut pages: Vec<(String, String)> = RULES
        .iter()
        .map(|r| (format!("{}.md", r.name), doc_page(r)))
        .collect();
    pages.push(("README.md".to_string(), doc_index()));
    if std::env::var_os("ISOLINT_BLESS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in &pages {
            std::fs::write(dir.join(name), text).unwrap();
        }
    }
    let mut stale = Vec::new();
    for (name, text) in &pages {
        if std::fs::read_to_string(dir.join(name)).ok().as_deref() != Some(text.as_str()) {
            stale.push(name.clone());
        }
    }
    assert!(
        stale.is_empty(),
        "docs/rules is stale for {stale:?}: run `ISOLINT_BLESS=1 cargo test --test it registry::`"
    );
    let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let generated: BTreeSet<String> = pages.into_iter().map(|(n, _)| n).collect();
    assert_eq!(on_disk, generated, "docs/rules holds pages of no rule");
}
