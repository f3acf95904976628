//! From the model to one `ModulePlan`: the verdict, then each stage with its sites, checklist,
//! generated code and notes.

use super::access::accesses;
use super::context::PlanCtx;
use super::data::*;
use super::stage0::{stage0, Stage0};
use super::state::{self, StateNames, Visit};
use super::types::{self, HeapType};
use crate::finding::{Finding, Severity};
use crate::model::{InitStyle, TypeKind};
use crate::rules::Blocks;

const NOT_SUPPORTED: &str = "Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED";
const SUPPORTED: &str = "Py_MOD_MULTIPLE_INTERPRETERS_SUPPORTED";
const PER_GIL: &str = "Py_MOD_PER_INTERPRETER_GIL_SUPPORTED";

/// `verdict` is the module's verdict as `check` gives it: the declare stage shows exactly what
/// `isolint fix --stage 3` writes from it.
pub fn module_plan(
    ctx: &PlanCtx,
    findings: &[Finding],
    check_verdict: &crate::rules::Verdict,
) -> Option<ModulePlan> {
    let init = ctx.module.init_function?;
    let init_site = ctx.fn_site(init);
    let mine: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.module.as_deref() == Some(ctx.module.name.as_str()))
        .collect();
    let migrated = ctx.migrated();
    let names = StateNames::new(ctx);
    let fields = state::fields(ctx, &migrated);
    let heap: Vec<HeapType> = types::ordered(
        ctx.module
            .types
            .iter()
            .filter_map(|t| types::heap_type(ctx, t))
            .collect(),
    );
    let fix = stage0(ctx);
    // The stages are `isolint fix`'s: 0 multi-phase init, 1 module state and the way each
    // function reaches it, 2 heap types, 3 declare, then 4 free-threading (by hand).
    let stages = vec![
        stage_0(ctx, &fix),
        with_access(stage_1(ctx, &names, &fields, &migrated), ctx, &migrated),
        stage_heap_types(ctx, &names, &heap),
        stage_declare(ctx, &names, &fields, check_verdict),
        stage_free_threading(&mine, check_verdict),
    ];
    Some(ModulePlan {
        module: ctx.module.name.clone(),
        path: init_site.path.clone(),
        line: init_site.line,
        verdict: verdict(ctx, &mine, check_verdict),
        stages,
        verify: format!(
            "isolint verify --python python3.12 --python python3.13 --with-scan {} {}",
            shell_word(&init_site.path),
            // `import` needs the dotted name (`pkg.sub._ext`), which the build file or
            // `m_name` gives; the `PyInit_` name is the last resort.
            shell_word(
                &ctx.module
                    .import_name()
                    .unwrap_or_else(|| ctx.module.name.clone())
            )
        ),
    })
}

fn shell_word(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The verdict `check` computes (`rules::module_verdict`), with each blocking finding named
/// by the level it rules out.
/// The plan's verdict section, from `check`'s verdict: a suppressed finding is no blocker here
/// either.
fn verdict(ctx: &PlanCtx, findings: &[&Finding], model: &crate::rules::Verdict) -> Verdict {
    let declares = ctx
        .module
        .slot("Py_mod_multiple_interpreters")
        .map(|s| s.value.text.clone());
    let suppressed = |f: &Finding| {
        model.suppressed.iter().any(|s| {
            s.finding.rule == f.rule
                && s.finding.path == f.path
                && s.finding.line == f.location.line
                && s.finding.symbol == f.symbol
        })
    };
    let mut blockers = Vec::new();
    for f in findings
        .iter()
        .filter(|f| f.severity >= Severity::Warning && !suppressed(f))
    {
        let blocks = match crate::rules::find_rule(f.rule).map(|r| r.blocks) {
            Some(Blocks::SharedGil) if f.name == "single-phase-init" => "any declaration",
            Some(Blocks::SharedGil) => SUPPORTED,
            Some(Blocks::PerInterpreterGil) => PER_GIL,
            _ => continue,
        };
        blockers.push(Blocker {
            blocks: blocks.to_string(),
            rule: format!("{}[{}]", f.rule, f.name),
            message: f.message.clone(),
            site: SiteRef {
                path: f.path.display().to_string(),
                line: f.location.line,
                symbol: f.symbol.clone().unwrap_or_default(),
            },
        });
    }
    let honest_today = (ctx.module.init_style == InitStyle::MultiPhase)
        .then(|| model.supported.slot_value().to_string());
    Verdict {
        init_style: ctx.module.init_style.as_str().to_string(),
        declares,
        honest_today,
        blockers,
        gil_declares: model.gil_axis.declared.slot_value().to_string(),
        gil_honest_today: model.gil_axis.supported.slot_value().to_string(),
    }
}

fn code(title: &str, kind: CodeKind, code: String) -> CodeBlock {
    CodeBlock {
        title: title.to_string(),
        kind,
        code,
    }
}

fn stage_0(ctx: &PlanCtx, fix: &Stage0) -> Stage {
    let init = ctx.module.init_function;
    let mut sites: Vec<SiteRef> = init.map(|f| ctx.fn_site(f)).into_iter().collect();
    if let Some(def) = &ctx.module.def {
        sites.push(ctx.var_site(def.var));
    }
    let negative_size = ctx
        .module
        .def
        .as_ref()
        .and_then(|d| d.m_size())
        .is_some_and(|e| e.text.trim_start().starts_with('-'));
    let declares_interp = ctx.module.slot("Py_mod_multiple_interpreters").is_some();
    let mut notes = Vec::new();
    let mut blocks = Vec::new();
    let status = match fix {
        Stage0::Done if !negative_size => StageStatus::Done,
        _ => StageStatus::Todo,
    };
    match fix {
        Stage0::Done => {
            if negative_size {
                notes.push("The module is multi-phase but `m_size` is negative: set it to 0 or to the size of its state.".into());
            }
            if !declares_interp {
                notes.push(format!(
                    "The module does not declare `Py_mod_multiple_interpreters`: a multi-phase module that says nothing is taken as `{SUPPORTED}`. Until stage 3, declare what the verdict says."
                ));
            }
        }
        Stage0::Edits(_) => {
            notes.push("`isolint fix --stage 0` makes this change; `--apply` writes it. The diff below is exactly what it writes.".into());
            if let Some(diff) = super::diff_of(ctx, fix) {
                blocks.push(code(
                    "The diff `isolint fix --stage 0` writes",
                    CodeKind::Diff,
                    diff,
                ));
            }
        }
        Stage0::Refused(reason) => {
            let reasons = reason.replace('\n', "; ");
            notes.push(format!("`isolint fix --stage 0` refuses this module: {reasons}. Make the change by hand, following the template."));
            let def = ctx.def_name().unwrap_or("module_def");
            // A head written through a macro (`MOD_INIT(name)`) keeps its macro; the template
            // spells the function it expands to.
            let init_name = init
                .map(|f| ctx.function(f))
                .filter(|f| f.macro_head.is_none())
                .map(|f| f.name.clone())
                .unwrap_or_else(|| {
                    format!(
                        "PyInit_{}",
                        ctx.module.name.rsplit('.').next().unwrap_or("")
                    )
                });
            blocks.push(code(
                "Template",
                CodeKind::Excerpt,
                format!(
                    "static int\n{p}_exec(PyObject *module)\n{{\n    /* the body of {init_name}, after the module is created;\n       `return NULL` becomes `return -1`, `return m` becomes `return 0` */\n    return 0;\n}}\n\nstatic PyModuleDef_Slot {def}_slots[] = {{\n    {{Py_mod_exec, {p}_exec}},\n#ifdef Py_mod_multiple_interpreters\n    {{Py_mod_multiple_interpreters, {NOT_SUPPORTED}}},\n#endif\n    {{0, NULL}}\n}};\n\n/* in {def}: .m_size = 0, .m_slots = {def}_slots */\n\nPyMODINIT_FUNC\n{init_name}(void)\n{{\n    return PyModuleDef_Init(&{def});\n}}\n",
                    p = ctx.prefix
                ),
            ));
        }
    }
    if matches!(fix, Stage0::Edits(_) | Stage0::Refused(_)) {
        notes.push("The exec function can run more than once per process (a re-import after `del sys.modules[...]`, or a sub-interpreter on Pythons before 3.12): whatever it stores in globals is overwritten each time until stage 1 moves it into module state.".into());
    }
    Stage {
        number: 0,
        title: "Honest multi-phase init".into(),
        status,
        min_python: "3.5".into(),
        compat: "Multi-phase init (PEP 489) needs nothing newer than 3.5. `Py_mod_multiple_interpreters` exists from 3.12; `#ifdef Py_mod_multiple_interpreters` keeps older Pythons building.".into(),
        summary: "Move the `PyInit` body into a `Py_mod_exec` function, return `PyModuleDef_Init(&def)`, set `m_size` to at least 0, and declare `Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED` for 3.12+ so isolated sub-interpreters refuse the module instead of sharing its globals.".into(),
        sites,
        checklist: vec![
            "Move the body of `PyInit` into a `Py_mod_exec` function (`return NULL` → `return -1`, `return m` → `return 0`, no `Py_DECREF(m)`)".into(),
            "Return `PyModuleDef_Init(&def)` from `PyInit`".into(),
            "Set `m_size` to 0 (or more)".into(),
            "Declare `Py_mod_multiple_interpreters = Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED` under `#ifdef`".into(),
            "Build, run the tests".into(),
        ],
        accesses: Vec::new(),
        code: blocks,
        notes,
    }
}

fn stage_1(
    ctx: &PlanCtx,
    names: &StateNames,
    fields: &[state::Field],
    migrated: &[&crate::model::Global],
) -> Stage {
    let sites: Vec<SiteRef> = migrated.iter().map(|g| ctx.var_site(g.var)).collect();
    let has_state = ctx
        .module
        .def
        .as_ref()
        .and_then(|d| d.m_size())
        .is_some_and(|e| e.text.contains("sizeof"));
    let status =
        if migrated.is_empty() || has_state && migrated.iter().all(|g| ctx.is_static_type(g.var)) {
            StageStatus::Done
        } else {
            StageStatus::Todo
        };
    let mut checklist: Vec<String> = fields
        .iter()
        .map(|f| format!("Move `{}` into `{}` ({})", f.name, names.ty, f.comment))
        .collect();
    checklist.push(format!(
        "Set `m_size = sizeof({})`, `m_traverse`, `m_clear`, `m_free` in the module definition",
        names.ty
    ));
    let mut notes = vec![
        "A reference the exec code hands to `PyModule_AddObject` is stolen; with module state, keep the state's own reference and add it with `PyModule_AddObjectRef` (3.10+, or pythoncapi-compat's `pythoncapi_compat.h` before).".to_string(),
    ];
    let by_hand: Vec<&str> = fields
        .iter()
        .filter(|f| f.visit == Visit::ByHand)
        .map(|f| f.name.as_str())
        .collect();
    if !by_hand.is_empty() {
        notes.push(format!(
            "Fields that hold objects in a way the generator cannot name ({}): visit and clear them by hand.",
            by_hand.join(", ")
        ));
    }
    let mut code_blocks = vec![
        code(
            "The state struct",
            CodeKind::Declarations,
            state::state_struct(names, fields),
        ),
        code(
            "The state getter",
            CodeKind::Declarations,
            state::getter(names),
        ),
        code(
            "`m_traverse`, `m_clear` and `m_free`",
            CodeKind::Declarations,
            state::gc_functions(names, fields),
        ),
        code(
            "In the module definition",
            CodeKind::Excerpt,
            state::def_fields(names),
        ),
        code(
            "Filling the state in exec",
            CodeKind::Declarations,
            state::exec_code(ctx, names, migrated),
        ),
    ];
    // What `isolint fix --stage 1` writes: the object globals every user can reach through
    // the module; the templates above cover the rest, by hand.
    match super::stage1::stage1(ctx) {
        Ok(fix) => {
            if !fix.edits.is_empty() {
                notes.push("`isolint fix --stage 1` moves the object globals whose every user reaches the module (exec, module-level functions, and the static helpers only they call); `--apply` writes it. Its diff, with the code above, is exactly what it writes.".into());
                if let Some(diff) = super::diff_of(ctx, &Stage0::Edits(fix.edits)) {
                    code_blocks.push(code(
                        "The diff `isolint fix --stage 1` writes",
                        CodeKind::Diff,
                        diff,
                    ));
                }
            }
            if !fix.refused.is_empty() {
                notes.push(format!(
                    "`isolint fix --stage 1` leaves these as they are: {}.",
                    fix.refused.join("; ")
                ));
            }
        }
        Err(why) => notes.push(format!(
            "`isolint fix --stage 1` does not run yet: {}.",
            why.replace('\n', "; ")
        )),
    }
    Stage {
        number: 1,
        title: "Module state".into(),
        status,
        min_python: "3.5".into(),
        compat: "`PyModule_GetState` and the `m_traverse`/`m_clear`/`m_free` fields work on every Python 3; `PyModule_AddObjectRef` is 3.10+ (pythoncapi-compat has it for older Pythons).".into(),
        summary: format!(
            "Give the module a state struct with one field per process-global ({} here), filled by the exec function and visited by the GC.",
            fields.len()
        ),
        sites,
        checklist,
        accesses: Vec::new(),
        code: code_blocks,
        notes,
    }
}

/// Stage 1's second half: every function that uses a migrated global reaches the state.
fn with_access(mut stage: Stage, ctx: &PlanCtx, migrated: &[&crate::model::Global]) -> Stage {
    let access = reaching_the_state(ctx, migrated);
    if access.status == StageStatus::Todo {
        stage.status = StageStatus::Todo;
    }
    stage.min_python = access.min_python;
    stage.compat = format!("{} {}", stage.compat, access.compat);
    stage.summary = format!("{} {}", stage.summary, access.summary);
    stage.sites.extend(access.sites);
    stage.checklist.extend(access.checklist);
    stage.accesses = access.accesses;
    stage.notes.extend(access.notes);
    stage
}

fn reaching_the_state(ctx: &PlanCtx, migrated: &[&crate::model::Global]) -> Stage {
    let list = accesses(ctx, migrated);
    let design: Vec<&str> = list
        .iter()
        .filter(|a| a.kind == AccessKind::NeedsDesign)
        .map(|a| a.function.as_str())
        .collect();
    let mut notes = Vec::new();
    if !design.is_empty() {
        notes.push(format!(
            "Needs a design decision: {} (no Python object in reach).",
            design
                .iter()
                .map(|d| format!("`{d}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Stage {
        number: 1,
        title: "Reaching the state".into(),
        status: if list.is_empty() { StageStatus::Done } else { StageStatus::Todo },
        min_python: "3.9".into(),
        compat: "Module functions: every Python 3. Methods: `defining_class` (METH_METHOD, 3.9+). Slots, getters and setters: `PyType_GetModuleByDef` (3.11+); on 3.9 and 3.10, `PyType_GetModule(Py_TYPE(self))` works when the type is never subclassed.".into(),
        summary: format!(
            "Every function that reads or writes a migrated global reaches the state instead: {} functions.",
            list.len()
        ),
        sites: list.iter().map(|a| a.site.clone()).collect(),
        checklist: list
            .iter()
            .map(|a| format!("`{}` ({}): uses {}", a.function, a.kind.as_str(), a.uses.iter().map(|u| format!("`{u}`")).collect::<Vec<_>>().join(", ")))
            .collect(),
        accesses: list,
        code: Vec::new(),
        notes,
    }
}

fn stage_heap_types(ctx: &PlanCtx, names: &StateNames, heap: &[HeapType]) -> Stage {
    let statics: Vec<&crate::model::TypeDef> = ctx
        .module
        .types
        .iter()
        .filter(|t| t.kind == TypeKind::Static)
        .collect();
    let mut blocks = Vec::new();
    let mut notes = Vec::new();
    let mut checklist = Vec::new();
    for ht in heap {
        blocks.push(code(
            &format!("`{}` as a spec", ht.var_name),
            CodeKind::Declarations,
            ht.code.clone(),
        ));
        blocks.push(code(
            &format!("`{}`: dealloc and traverse", ht.var_name),
            CodeKind::Excerpt,
            types::instance_changes(ht),
        ));
        notes.extend(ht.notes.iter().map(|n| format!("`{}`: {n}", ht.var_name)));
        checklist.push(format!(
            "`{}`: replace the static type with `{}`, create it in exec, keep it in `state->{}`",
            ht.var_name, ht.spec_name, ht.var_name
        ));
        checklist.push(format!(
            "`{}`: its dealloc decrefs the type{}",
            ht.var_name,
            if ht.gc {
                ", untracks first, and traverse visits `Py_TYPE(self)`"
            } else {
                ""
            }
        ));
    }
    if !heap.is_empty() {
        let mut body = String::new();
        for ht in heap {
            body.push_str(&types::exec_lines(ht, "state"));
        }
        blocks.push(code(
            "Creating the types in exec",
            CodeKind::Declarations,
            format!(
                "static int\n{p}_exec_types(PyObject *module)\n{{\n    {ty} *state = {getter}(module);\n{body}    return 0;\n}}\n",
                p = ctx.prefix,
                ty = names.ty,
                getter = names.getter
            ),
        ));
        // Every use of `&Foo_Type` (PyObject_New, type checks) must read the state instead.
        for ht in heap {
            if let Some(g) = ctx
                .module
                .globals
                .iter()
                .find(|g| ctx.project.var(g.var).name == ht.var_name)
            {
                let users: Vec<String> = g
                    .readers
                    .iter()
                    .filter(|f| !ctx.module.init_functions.contains(f))
                    .map(|f| format!("`{}`", ctx.function(*f).name))
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                if !users.is_empty() {
                    checklist.push(format!(
                        "`&{}` → `state->{}` in {}",
                        ht.var_name,
                        ht.var_name,
                        users.join(", ")
                    ));
                }
            }
        }
    }
    if !statics.is_empty() {
        match super::stage2::stage2(ctx) {
            Ok(fix) => {
                if !fix.edits.is_empty() {
                    notes.push("`isolint fix --stage 2` writes the specs above in place of the static types, creates them in exec, keeps them in the module state, and rewrites every use; `--apply` writes it. Its diff is exactly what it writes.".into());
                    if let Some(diff) = super::diff_of(ctx, &Stage0::Edits(fix.edits)) {
                        blocks.push(code(
                            "The diff `isolint fix --stage 2` writes",
                            CodeKind::Diff,
                            diff,
                        ));
                    }
                }
                if !fix.refused.is_empty() {
                    notes.push(format!(
                        "`isolint fix --stage 2` leaves these as they are: {}.",
                        fix.refused.join("; ")
                    ));
                }
                notes.extend(fix.notes.iter().map(|n| format!("Fixed on the way: {n}.")));
            }
            Err(why) => notes.push(format!(
                "`isolint fix --stage 2` does not run yet: {}.",
                why.replace('\n', "; ")
            )),
        }
    }
    Stage {
        number: 2,
        title: "Static types to heap types".into(),
        status: if statics.is_empty() { StageStatus::Done } else { StageStatus::Todo },
        min_python: "3.10".into(),
        compat: "`PyType_FromModuleAndSpec` is 3.9+; `Py_TPFLAGS_IMMUTABLETYPE` and `Py_TPFLAGS_DISALLOW_INSTANTIATION` are 3.10+ (guard them with `#ifdef` for 3.9); `PyModule_AddObjectRef` is 3.10+ (pythoncapi-compat before).".into(),
        summary: format!(
            "{} static type(s) become heap types created per module from a `PyType_Spec`.",
            statics.len()
        ),
        sites: statics.iter().map(|t| ctx.var_site(t.var)).collect(),
        checklist,
        accesses: Vec::new(),
        code: blocks,
        notes,
    }
}

fn stage_declare(
    ctx: &PlanCtx,
    names: &StateNames,
    fields: &[state::Field],
    verdict: &crate::rules::Verdict,
) -> Stage {
    let c_state: Vec<String> = fields
        .iter()
        .filter(|f| f.visit == Visit::None)
        .map(|f| format!("`{}`", f.name))
        .collect();
    let mut notes = vec![format!(
        "Once stages 0–2 are done and `isolint check` reports nothing for `{}`, the module can declare `{PER_GIL}`.",
        ctx.module.name
    )];
    if !c_state.is_empty() {
        notes.push(format!(
            "Free-threading (3.13t+): {} in `{}` are plain C data shared by the threads of one interpreter; stage 4 makes them atomic or locks them before `Py_mod_gil = Py_MOD_GIL_NOT_USED`.",
            c_state.join(", "),
            names.ty
        ));
    }
    let done = ctx
        .module
        .slot("Py_mod_multiple_interpreters")
        .is_some_and(|s| s.value.text.contains(PER_GIL));
    // What `isolint fix --stage 3` writes today: the slots set to what the verdict allows now.
    let mut code_blocks = vec![code(
        "Slots",
        CodeKind::Excerpt,
        format!("#if PY_VERSION_HEX >= 0x030C0000\n    {{Py_mod_multiple_interpreters, {PER_GIL}}},\n#endif\n"),
    )];
    match super::stage3::stage3(ctx, verdict) {
        super::stage3::Stage3::Edits(edits) => {
            notes.push(format!(
                "`isolint fix --stage 3` declares what the verdict allows today (`{}`, `Py_mod_gil` {}); the diff below is exactly what it writes.",
                verdict.supported.slot_value(),
                verdict.gil_axis.supported.slot_value()
            ));
            if let Some(diff) = super::diff_of(ctx, &Stage0::Edits(edits)) {
                code_blocks.push(code(
                    "The diff `isolint fix --stage 3` writes",
                    CodeKind::Diff,
                    diff,
                ));
            }
        }
        super::stage3::Stage3::Refused(why) => {
            notes.push(format!("`isolint fix --stage 3` does not run yet: {why}."));
        }
        super::stage3::Stage3::Done => {}
    }
    Stage {
        number: 3,
        title: "Declare".into(),
        status: if done { StageStatus::Done } else { StageStatus::Todo },
        min_python: "3.12".into(),
        compat: "`Py_mod_multiple_interpreters` is 3.12+ and `Py_mod_gil` 3.13+: keep both behind `#ifdef`.".into(),
        summary: "Declare the strongest honest level.".into(),
        sites: ctx
            .module
            .def
            .as_ref()
            .and_then(|d| d.slots_var)
            .map(|v| ctx.var_site(v))
            .into_iter()
            .collect(),
        checklist: vec![
            format!("`{{Py_mod_multiple_interpreters, {PER_GIL}}}` under `#if PY_VERSION_HEX >= 0x030C0000`"),
        ],
        accesses: Vec::new(),
        code: code_blocks,
        notes,
    }
}

/// Stage 4: free-threading. The verdict's `gil` axis: fix what blocks `Py_MOD_GIL_NOT_USED`,
/// then declare it.
fn stage_free_threading(findings: &[&Finding], check_verdict: &crate::rules::Verdict) -> Stage {
    let gil = check_verdict.gil_axis.clone();
    let blocking: Vec<&&Finding> = findings
        .iter()
        .filter(|f| {
            gil.blockers
                .iter()
                .any(|b| b.rule == f.rule && b.line == f.location.line && b.path == f.path)
        })
        .collect();
    let sites: Vec<SiteRef> = blocking
        .iter()
        .map(|f| SiteRef {
            path: f.path.display().to_string(),
            line: f.location.line,
            symbol: f.symbol.clone().unwrap_or_default(),
        })
        .collect();
    let mut checklist: Vec<String> = Vec::new();
    for f in &blocking {
        let item = format!(
            "{} [{}]({}#L{}): {}",
            f.name,
            f.location.line,
            f.path.display(),
            f.location.line,
            f.help
        );
        if !checklist.contains(&item) {
            checklist.push(item);
        }
    }
    // Stage 0 made the module multi-phase: the slot, not `PyUnstable_Module_SetGIL`.
    checklist.push("`{Py_mod_gil, Py_MOD_GIL_NOT_USED}` in the slots (under `#ifdef Py_mod_gil`), once the test suite passes on a free-threaded build".into());
    let declared = gil.declared == crate::rules::GilLevel::NotUsed;
    let done = declared && gil.blockers.is_empty();
    let mut notes = Vec::new();
    if declared && !gil.blockers.is_empty() {
        notes.push(format!("The module declares `Py_MOD_GIL_NOT_USED` over {} blocking finding(s) (`overclaimed-gil`): declare `Py_MOD_GIL_USED` until they are fixed.", gil.blockers.len()));
    } else if gil.blockers.is_empty() && !declared {
        notes.push("The scan found no free-threading hazard: after a run on a free-threaded build (`isolint verify --python python3.13t`, pytest-run-parallel), declare `Py_MOD_GIL_NOT_USED`. Without it the module re-enables the GIL, which is safe but slow.".into());
    }
    let code_text =
        "#ifdef Py_mod_gil\n    {Py_mod_gil, Py_MOD_GIL_NOT_USED},\n#endif\n".to_string();
    Stage {
        number: 4,
        title: "Free-threading".into(),
        status: if done { StageStatus::Done } else { StageStatus::Todo },
        min_python: "3.13".into(),
        compat: "`Py_mod_gil` and the `...Ref` APIs are 3.13+: `pythoncapi_compat.h` provides the APIs, and `#ifdef` keeps the slot out of older builds.".into(),
        summary: format!(
            "Fix what races without the GIL ({} finding(s)), then declare `Py_MOD_GIL_NOT_USED`.",
            blocking.len()
        ),
        sites,
        checklist,
        accesses: Vec::new(),
        code: vec![code("Declaration", CodeKind::Excerpt, code_text)],
        notes,
    }
}
