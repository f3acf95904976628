//! `--format json`: one versioned document, documented in docs/json-format.md.

use crate::analysis::Analysis;
use serde_json::{json, Value};

/// 2: `findings[].python` became a range object (it was a display string).
pub const FORMAT_VERSION: u32 = 2;

pub fn to_value(analysis: &Analysis) -> Value {
    let mut value = frame(analysis);
    value["modules"] = analysis.modules.iter().map(module_json).collect();
    value["findings"] = json!(analysis.findings);
    value
}

/// The document with empty `findings` and `modules` lists.
fn frame(analysis: &Analysis) -> Value {
    json!({
        "version": FORMAT_VERSION,
        "tool": {"name": "isolint", "version": env!("CARGO_PKG_VERSION")},
        "files_scanned": analysis.files_scanned,
        "skipped": analysis.skipped,
        "errors": analysis.errors,
        "parse_errors": analysis.parse_errors,
        "hidden": analysis.hidden,
        "build_notes": analysis.build_notes,
        "modules": [],
        "findings": [],
    })
}

fn module_json(m: &crate::model::ModuleSummary) -> Value {
    serde_json::to_value(ModuleOut::of(m)).expect("a module summary is plain data")
}

/// The document, pretty-printed: the text of `to_value`, without holding every finding as a
/// `Value` at once (a large scan's findings took several times their text).
pub fn render(analysis: &Analysis) -> String {
    let mut text = Vec::new();
    write(analysis, &mut text).expect("writing to memory does not fail");
    String::from_utf8(text).expect("serde_json writes UTF-8")
}

/// [`render`], written to `out` a finding at a time: the whole text of a large scan is never
/// held (16 copies of the corpus print 27 MB).
pub fn write(analysis: &Analysis, out: &mut impl std::io::Write) -> std::io::Result<()> {
    match write_document(analysis, out) {
        Ok(()) => out.write_all(b"\n"),
        Err(Failure::Io(e)) => Err(e),
        Err(Failure::Json(e)) => writeln!(out, "{{\"error\": \"{e}\"}}"),
    }
}

enum Failure {
    Io(std::io::Error),
    Json(serde_json::Error),
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Io(e)
    }
}

impl From<serde_json::Error> for Failure {
    fn from(e: serde_json::Error) -> Self {
        Failure::Json(e)
    }
}

/// A top-level list's elements, each printed on its own.
type Elements<'a> = Box<dyn Iterator<Item = serde_json::Result<String>> + 'a>;

fn write_document(analysis: &Analysis, out: &mut impl std::io::Write) -> Result<(), Failure> {
    let frame = serde_json::to_string_pretty(&frame(analysis))?;
    // The top-level lists, each written an element at a time where the frame holds it empty
    // (keys in the frame's order: serde_json sorts them).
    let modules = analysis
        .modules
        .iter()
        .map(|m| serde_json::to_string_pretty(&ModuleOut::of(m)));
    let findings = analysis
        .findings
        .iter()
        .map(|f| serde_json::to_string_pretty(&FindingOut::of(f)));
    let mut lists: Vec<(&str, Elements)> = vec![
        ("\n  \"findings\": [],\n", Box::new(findings)),
        ("\n  \"modules\": [],\n", Box::new(modules)),
    ];
    let mut places = Vec::new();
    for (i, (empty, _)) in lists.iter().enumerate() {
        match frame.find(empty) {
            Some(at) => places.push((at, i)),
            None => {
                let whole = serde_json::to_string_pretty(&to_value(analysis))?;
                return Ok(out.write_all(whole.as_bytes())?);
            }
        }
    }
    places.sort_unstable();
    let mut from = 0;
    let mut line = String::new();
    for (at, i) in places {
        let (empty, elements) = &mut lists[i];
        let key = &empty[..empty.len() - "[],\n".len()];
        out.write_all(&frame.as_bytes()[from..at])?;
        out.write_all(key.as_bytes())?;
        out.write_all(b"[")?;
        let mut any = false;
        for (n, element) in elements.enumerate() {
            // Part of the document is out: an element that does not serialize is a failed
            // write.
            let element = element.map_err(std::io::Error::other)?;
            line.clear();
            line.push_str(if n == 0 { "\n" } else { ",\n" });
            // Each element as `to_string_pretty` prints it, two levels in: a string's newlines
            // are escaped, so every line break is the printer's.
            for (j, part) in element.split('\n').enumerate() {
                if j > 0 {
                    line.push('\n');
                }
                line.push_str("    ");
                line.push_str(part);
            }
            out.write_all(line.as_bytes())?;
            any = true;
        }
        out.write_all(if any { b"\n  ],\n" } else { b"],\n" })?;
        from = at + empty.len();
    }
    out.write_all(&frame.as_bytes()[from..])?;
    Ok(())
}

/// The verdict's free-threading axis; the SARIF reporter carries the same object.
pub fn gil_json(g: &crate::rules::GilVerdict) -> Value {
    serde_json::to_value(GilOut::of(g)).expect("a verdict is plain data")
}

/// A module as the report prints it, keys sorted like [`FindingOut`]'s.
#[derive(serde::Serialize)]
struct ModuleOut<'a> {
    files: &'a [std::path::PathBuf],
    files_from: &'a str,
    heap_types: usize,
    import_name: &'a Option<String>,
    init: &'a str,
    line: usize,
    m_size: &'a Option<String>,
    name: &'a str,
    path: &'a std::path::Path,
    slots: &'a std::collections::BTreeMap<&'static str, Option<String>>,
    static_types: usize,
    verdict: Option<VerdictOut<'a>>,
}

#[derive(serde::Serialize)]
struct VerdictOut<'a> {
    blockers: Vec<LevelBlockersOut<'a>>,
    declared: DeclaredOut<'a>,
    gil: GilOut<'a>,
    gil_not_used: bool,
    supported: crate::rules::Level,
    suppressed: Vec<SuppressedOut<'a>>,
}

#[derive(serde::Serialize)]
struct DeclaredOut<'a> {
    gil: &'a str,
    gil_default: bool,
    level: crate::rules::Level,
    multiple_interpreters: &'a str,
    multiple_interpreters_default: bool,
}

#[derive(serde::Serialize)]
struct LevelBlockersOut<'a> {
    findings: Vec<BlockerOut<'a>>,
    level: crate::rules::Level,
}

#[derive(serde::Serialize)]
struct GilOut<'a> {
    blockers: Vec<BlockerOut<'a>>,
    declared: crate::rules::GilLevel,
    declared_by: crate::rules::GilSource,
    supported: crate::rules::GilLevel,
    suppressed: Vec<SuppressedOut<'a>>,
}

#[derive(serde::Serialize)]
struct BlockerOut<'a> {
    line: usize,
    name: &'a str,
    path: &'a std::path::Path,
    rule: &'a str,
    symbol: &'a Option<String>,
}

/// `by` and `level` sort before every key of the blocker.
#[derive(serde::Serialize)]
struct SuppressedOut<'a> {
    by: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    level: Option<crate::rules::Level>,
    #[serde(flatten)]
    finding: BlockerOut<'a>,
}

impl<'a> ModuleOut<'a> {
    fn of(m: &'a crate::model::ModuleSummary) -> Self {
        ModuleOut {
            files: &m.files,
            files_from: m.files_from,
            heap_types: m.heap_types,
            import_name: &m.import_name,
            init: m.init,
            line: m.line,
            m_size: &m.m_size,
            name: &m.name,
            path: &m.path,
            slots: &m.slots,
            static_types: m.static_types,
            verdict: m.verdict.as_ref().map(|v| VerdictOut {
                blockers: v
                    .blockers
                    .iter()
                    .map(|(level, list)| LevelBlockersOut {
                        findings: list.iter().map(BlockerOut::of).collect(),
                        level: *level,
                    })
                    .collect(),
                declared: DeclaredOut {
                    gil: &v.gil,
                    gil_default: v.gil_is_default,
                    level: v.declared,
                    multiple_interpreters: &v.multiple_interpreters,
                    multiple_interpreters_default: v.multiple_interpreters_is_default,
                },
                gil: GilOut::of(&v.gil_axis),
                gil_not_used: v.gil_not_used_possible,
                supported: v.supported,
                suppressed: v.suppressed.iter().map(SuppressedOut::of).collect(),
            }),
        }
    }
}

impl<'a> GilOut<'a> {
    fn of(g: &'a crate::rules::GilVerdict) -> Self {
        GilOut {
            blockers: g.blockers.iter().map(BlockerOut::of).collect(),
            declared: g.declared,
            declared_by: g.declared_by,
            supported: g.supported,
            suppressed: g.suppressed.iter().map(SuppressedOut::of).collect(),
        }
    }
}

impl<'a> BlockerOut<'a> {
    fn of(b: &'a crate::rules::Blocker) -> Self {
        BlockerOut {
            line: b.line,
            name: b.name,
            path: &b.path,
            rule: b.rule,
            symbol: &b.symbol,
        }
    }
}

impl<'a> SuppressedOut<'a> {
    fn of(s: &'a crate::rules::SuppressedBlocker) -> Self {
        SuppressedOut {
            by: s.by,
            level: s.level,
            finding: BlockerOut::of(&s.finding),
        }
    }
}

/// A finding as `to_value` prints it: every object's keys in sorted order (a `Value`'s map is
/// sorted), written straight from the finding instead of through a `Value` tree per finding,
/// which took most of the report's time. `formats` tests and the corpus outputs hold the two
/// to the same bytes.
#[derive(serde::Serialize)]
struct FindingOut<'a> {
    column: usize,
    end_column: usize,
    end_line: usize,
    function: &'a Option<String>,
    help: &'a str,
    line: usize,
    message: &'a str,
    module: &'a Option<String>,
    name: &'a str,
    path: &'a std::path::Path,
    python: RangeOut,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    related: Vec<RelatedOut<'a>>,
    rule: &'a str,
    severity: crate::finding::Severity,
    symbol: &'a Option<String>,
    uncertain: bool,
}

#[derive(serde::Serialize)]
struct RelatedOut<'a> {
    column: usize,
    end_column: usize,
    end_line: usize,
    line: usize,
    message: &'a str,
    path: &'a std::path::Path,
}

/// `crate::version::serialize_range`, keys sorted.
#[derive(serde::Serialize)]
struct RangeOut {
    free_threaded: Option<bool>,
    max: Option<String>,
    min: Option<String>,
}

impl<'a> FindingOut<'a> {
    fn of(f: &'a crate::finding::Finding) -> Self {
        let (min, max) = crate::version::range_bounds(&f.python);
        FindingOut {
            column: f.location.column,
            end_column: f.location.end_column,
            end_line: f.location.end_line,
            function: &f.function,
            help: &f.help,
            line: f.location.line,
            message: &f.message,
            module: &f.module,
            name: f.name,
            path: &f.path,
            python: RangeOut {
                free_threaded: f.python.free_threaded,
                max,
                min,
            },
            related: f
                .related
                .iter()
                .map(|r| RelatedOut {
                    column: r.location.column,
                    end_column: r.location.end_column,
                    end_line: r.location.end_line,
                    line: r.location.line,
                    message: &r.message,
                    path: &r.path,
                })
                .collect(),
            rule: f.rule,
            severity: f.severity,
            symbol: &f.symbol,
            uncertain: f.uncertain,
        }
    }
}
