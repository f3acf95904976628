//! The module verdict: the strongest isolation level the findings allow, what the module
//! declares, and which findings block each level above.

use super::find_rule;
use crate::finding::{Finding, Severity};
use crate::model::{ExtensionModule, InitStyle, SlotValue};
use serde::Serialize;

/// The highest level a rule's findings rule out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocks {
    /// Hints: no level is blocked.
    Nothing,
    /// State that is safe under one shared GIL but races with per-interpreter GILs.
    PerInterpreterGil,
    /// State shared across interpreters at all: Python objects, static types, single-phase
    /// init.
    SharedGil,
}

/// The `Py_mod_multiple_interpreters` levels, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    /// `Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED`, or single-phase init.
    None,
    /// `Py_MOD_MULTIPLE_INTERPRETERS_SUPPORTED`.
    SharedGil,
    /// `Py_MOD_PER_INTERPRETER_GIL_SUPPORTED`.
    PerInterpreterGil,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::None => "none",
            Level::SharedGil => "shared-gil",
            Level::PerInterpreterGil => "per-interpreter-gil",
        }
    }
    pub fn slot_value(self) -> &'static str {
        match self {
            Level::None => "Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED",
            Level::SharedGil => "Py_MOD_MULTIPLE_INTERPRETERS_SUPPORTED",
            Level::PerInterpreterGil => "Py_MOD_PER_INTERPRETER_GIL_SUPPORTED",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Blocker {
    pub rule: &'static str,
    pub name: &'static str,
    pub path: std::path::PathBuf,
    pub line: usize,
    pub symbol: Option<String>,
}

/// A finding that would block a level but that the project suppressed: by an inline
/// `isolint: ignore` comment, by the config's `per-file-ignores`, or by the baseline. It no
/// longer counts against the level; the verdict still lists it, so the result says what it
/// rests on.
#[derive(Debug, Clone, Serialize)]
pub struct SuppressedBlocker {
    #[serde(flatten)]
    pub finding: Blocker,
    /// The highest level it would block; `None` on the free-threading axis.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<Level>,
    /// `comment`, `config` or `baseline`.
    pub by: &'static str,
}

/// Whether a finding is suppressed, and by what (`comment`, `config`, `baseline`).
pub type SuppressedBy<'a> = &'a (dyn Fn(&Finding) -> Option<&'static str> + Sync);

/// No suppressions: the verdict of every finding.
pub fn nothing_suppressed(_: &Finding) -> Option<&'static str> {
    None
}

/// What a module may declare in `Py_mod_gil`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GilLevel {
    /// `Py_MOD_GIL_USED`: free-threaded builds re-enable the GIL when it is imported.
    Used,
    /// `Py_MOD_GIL_NOT_USED`.
    NotUsed,
}

impl GilLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            GilLevel::Used => "used",
            GilLevel::NotUsed => "not-used",
        }
    }
    pub fn slot_value(self) -> &'static str {
        match self {
            GilLevel::Used => "Py_MOD_GIL_USED",
            GilLevel::NotUsed => "Py_MOD_GIL_NOT_USED",
        }
    }
}

/// Where a module's GIL declaration comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GilSource {
    /// A `Py_mod_gil` slot.
    Slot,
    /// `PyUnstable_Module_SetGIL(m, ...)` (single-phase init).
    SetGil,
    /// Nothing: `Py_MOD_GIL_USED`.
    Default,
}

/// The free-threading axis of the verdict: what the module declares for `Py_mod_gil`, what
/// the findings allow, and the findings that keep it from `not-used`.
#[derive(Debug, Clone, Serialize)]
pub struct GilVerdict {
    pub declared: GilLevel,
    pub declared_by: GilSource,
    pub supported: GilLevel,
    pub blockers: Vec<Blocker>,
    /// Free-threading findings that would block `not-used` but are suppressed.
    pub suppressed: Vec<SuppressedBlocker>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// The `Py_mod_multiple_interpreters` value as written, or the default it gets.
    pub multiple_interpreters: String,
    /// Whether the value is the default (no slot).
    pub multiple_interpreters_is_default: bool,
    pub declared: Level,
    /// The `Py_mod_gil` value as written, or its default.
    pub gil: String,
    pub gil_is_default: bool,
    /// The strongest level the findings allow.
    pub supported: Level,
    /// No free-threading hazard was found: `Py_MOD_GIL_NOT_USED` is not ruled out.
    pub gil_not_used_possible: bool,
    /// For each level above `supported`, the findings that block it.
    pub blockers: Vec<(Level, Vec<Blocker>)>,
    /// Findings that would block a level but are suppressed: they do not count.
    pub suppressed: Vec<SuppressedBlocker>,
    /// The free-threading axis.
    pub gil_axis: GilVerdict,
}

fn declared_gil(value: &str) -> GilLevel {
    if value.contains("NOT_USED") {
        GilLevel::NotUsed
    } else {
        GilLevel::Used
    }
}

/// A finding that keeps the module from `Py_MOD_GIL_NOT_USED`: the free-threading rules, in
/// code a free-threaded build compiles.
fn blocks_gil(f: &Finding) -> bool {
    f.severity != Severity::Info
        && super::free_threading::free_threaded_compiles(&f.python)
        && find_rule(f.rule).is_some_and(|r| r.blocks_gil)
}

pub fn declared_level(value: &str) -> Level {
    if value.contains("PER_INTERPRETER_GIL_SUPPORTED") {
        Level::PerInterpreterGil
    } else if value.contains("NOT_SUPPORTED") {
        Level::None
    } else {
        Level::SharedGil
    }
}

fn blocks(f: &Finding) -> Blocks {
    if f.severity == Severity::Info || f.python.python2_only() {
        return Blocks::Nothing;
    }
    find_rule(f.rule).map_or(Blocks::Nothing, |r| r.blocks)
}

/// The module's verdict from its own findings (all rules that ran before the verdict). A
/// finding `suppressed` names does not block its level; it is listed under `suppressed`.
pub fn module_verdict(
    module: &ExtensionModule,
    findings: &[Finding],
    suppressed: SuppressedBy,
) -> Verdict {
    verdict_of(&VerdictInputs::of(module), findings, suppressed)
}

/// What a verdict reads of its module besides the findings: small enough to keep for every
/// module of a scan until its findings are in, and to cache with the module's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerdictInputs {
    /// The module's `Py_mod_multiple_interpreters` value as written.
    pub multiple_interpreters_slot: Option<String>,
    pub multi_phase: bool,
    /// The definition's own `Py_mod_gil` slot (not the value passed to
    /// `PyUnstable_Module_SetGIL`).
    pub gil_slot: Option<String>,
    /// The value a single-phase module passes to `PyUnstable_Module_SetGIL`, if it calls it.
    pub set_gil: Option<String>,
}

impl VerdictInputs {
    pub fn of(module: &ExtensionModule) -> Self {
        // The definition's own slot, not `ExtensionModule::slot`, which also answers with what
        // a single-phase module passes to `PyUnstable_Module_SetGIL`: the source matters here.
        let def_slot = |name: &str| {
            module
                .def
                .as_ref()
                .and_then(|d| d.slots.iter().find(|s| s.slot == name))
                .map(|s| s.value.text.clone())
        };
        Self {
            multiple_interpreters_slot: module
                .slot("Py_mod_multiple_interpreters")
                .map(|s: &SlotValue| s.value.text.clone()),
            multi_phase: module.init_style == InitStyle::MultiPhase,
            gil_slot: def_slot("Py_mod_gil"),
            set_gil: module.set_gil.as_ref().map(|s| s.value.clone()),
        }
    }
}

/// [`module_verdict`] from what it reads of the module.
pub fn verdict_of(
    module: &VerdictInputs,
    findings: &[Finding],
    suppressed: SuppressedBy,
) -> Verdict {
    let multi_phase = module.multi_phase;
    let (multiple_interpreters, mi_default) = match module.multiple_interpreters_slot.clone() {
        Some(v) => (v, false),
        None if multi_phase => (Level::SharedGil.slot_value().to_string(), true),
        None => (
            "single-phase init: not loadable in isolated interpreters".to_string(),
            true,
        ),
    };
    let declared = if multi_phase {
        declared_level(&multiple_interpreters)
    } else {
        Level::None
    };
    let (gil, gil_default, gil_source) = match (module.gil_slot.clone(), &module.set_gil) {
        (Some(v), _) => (v, false, GilSource::Slot),
        (None, Some(set)) if !set.is_empty() => (set.clone(), false, GilSource::SetGil),
        _ => ("Py_MOD_GIL_USED".to_string(), true, GilSource::Default),
    };
    let blocker = |f: &Finding| Blocker {
        rule: f.rule,
        name: f.name,
        path: f.path.clone(),
        line: f.location.line,
        symbol: f.symbol.clone(),
    };
    let mut suppressed_blockers = Vec::new();
    let mut gil_suppressed = Vec::new();
    let mut counted: Vec<&Finding> = Vec::with_capacity(findings.len());
    for f in findings {
        let Some(by) = suppressed(f) else {
            counted.push(f);
            continue;
        };
        let level = match blocks(f) {
            Blocks::SharedGil => Some(Level::SharedGil),
            Blocks::PerInterpreterGil => Some(Level::PerInterpreterGil),
            Blocks::Nothing => None,
        };
        if level.is_some() {
            suppressed_blockers.push(SuppressedBlocker {
                finding: blocker(f),
                level,
                by,
            });
        }
        if blocks_gil(f) {
            gil_suppressed.push(SuppressedBlocker {
                finding: blocker(f),
                level: None,
                by,
            });
        }
    }
    let shared: Vec<Blocker> = counted
        .iter()
        .filter(|f| blocks(f) == Blocks::SharedGil)
        .map(|f| blocker(f))
        .collect();
    // What blocks per-interpreter-gil: what blocks shared-gil too comes first, so a message
    // that names three and says "and N more" never hides the worse blocker.
    let per_interp: Vec<Blocker> = counted
        .iter()
        .filter(|f| blocks(f) == Blocks::SharedGil)
        .chain(
            counted
                .iter()
                .filter(|f| blocks(f) == Blocks::PerInterpreterGil),
        )
        .map(|f| blocker(f))
        .collect();
    let supported = if !multi_phase || !shared.is_empty() {
        Level::None
    } else if !per_interp.is_empty() {
        Level::SharedGil
    } else {
        Level::PerInterpreterGil
    };
    let mut blockers = Vec::new();
    if supported < Level::SharedGil {
        blockers.push((Level::SharedGil, shared));
    }
    if supported < Level::PerInterpreterGil {
        blockers.push((Level::PerInterpreterGil, per_interp));
    }
    let gil_blockers: Vec<Blocker> = counted
        .iter()
        .filter(|f| blocks_gil(f))
        .map(|f| blocker(f))
        .collect();
    let gil_axis = GilVerdict {
        declared: declared_gil(&gil),
        declared_by: gil_source,
        supported: if gil_blockers.is_empty() {
            GilLevel::NotUsed
        } else {
            GilLevel::Used
        },
        blockers: gil_blockers,
        suppressed: gil_suppressed,
    };
    Verdict {
        multiple_interpreters,
        multiple_interpreters_is_default: mi_default,
        declared,
        gil,
        gil_is_default: gil_default,
        supported,
        gil_not_used_possible: gil_axis.supported == GilLevel::NotUsed,
        blockers,
        suppressed: suppressed_blockers,
        gil_axis,
    }
}
