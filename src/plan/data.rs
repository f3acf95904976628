//! The plan as plain data: what the Markdown and JSON renderers read. Nothing here knows about
//! facts or trees, so both renderers carry the same content.

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct PlanReport {
    pub modules: Vec<ModulePlan>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModulePlan {
    pub module: String,
    pub path: String,
    pub line: usize,
    pub verdict: Verdict,
    pub stages: Vec<Stage>,
    /// The `isolint verify` command that confirms the result.
    pub verify: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub init_style: String,
    /// The `Py_mod_multiple_interpreters` value the module declares, as written.
    pub declares: Option<String>,
    /// The strongest value it could honestly declare today (`None`: single-phase modules cannot
    /// declare anything).
    pub honest_today: Option<String>,
    /// What keeps it from each higher level.
    pub blockers: Vec<Blocker>,
    /// The `Py_mod_gil` value it declares (slot, `PyUnstable_Module_SetGIL`, or the default).
    pub gil_declares: String,
    /// `Py_MOD_GIL_NOT_USED` when no free-threading finding blocks it, else
    /// `Py_MOD_GIL_USED` (stage 4 lists the blockers).
    pub gil_honest_today: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Blocker {
    /// The level it blocks.
    pub blocks: String,
    pub rule: String,
    pub message: String,
    pub site: SiteRef,
}

/// `file:line` with the symbol there.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct SiteRef {
    pub path: String,
    pub line: usize,
    pub symbol: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    pub number: u8,
    pub title: String,
    /// `done` when there is nothing left to do for this module.
    pub status: StageStatus,
    pub min_python: String,
    /// How projects that support older Pythons keep building.
    pub compat: String,
    pub summary: String,
    pub sites: Vec<SiteRef>,
    pub checklist: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub accesses: Vec<Access>,
    pub code: Vec<CodeBlock>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum StageStatus {
    Todo,
    Done,
}

#[derive(Debug, Clone, Serialize)]
pub struct CodeBlock {
    pub title: String,
    pub kind: CodeKind,
    pub code: String,
}

/// What a code block is, so tools (and the compile tests) know what they can do with it.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum CodeKind {
    /// Complete C declarations that compile appended to the module's source.
    Declarations,
    /// A fragment or a template to adapt by hand.
    Excerpt,
    /// A unified diff.
    Diff,
}

impl CodeKind {
    pub fn fence(self) -> &'static str {
        match self {
            CodeKind::Diff => "diff",
            _ => "c",
        }
    }
}

/// How one function reaches the module state (stage 1).
#[derive(Debug, Clone, Serialize)]
pub struct Access {
    pub function: String,
    pub site: SiteRef,
    pub kind: AccessKind,
    /// The globals it uses.
    pub uses: Vec<String>,
    /// The C that gives it `state`.
    pub how: String,
    /// For helpers: the call chains up to a function that has an object in reach.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub callers: Vec<String>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum AccessKind {
    ModuleFunction,
    Method,
    Slot,
    Helper,
    NeedsDesign,
}

impl AccessKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessKind::ModuleFunction => "module function",
            AccessKind::Method => "method",
            AccessKind::Slot => "slot, getter or setter",
            AccessKind::Helper => "static helper",
            AccessKind::NeedsDesign => "needs a design decision",
        }
    }
}
