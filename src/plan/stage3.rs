//! Stage 3 as an edit: declare what is now true.
//!
//! `Py_mod_multiple_interpreters` gets the strongest level the verdict allows, and `Py_mod_gil`
//! gets `Py_MOD_GIL_NOT_USED` only where the free-threading verdict allows it. A declaration
//! stronger than the verdict (counting a missing slot as its default) is not lowered: the
//! module is refused with the findings that block the level, because a maintainer's explicit
//! claim weighed against a finding that may be wrong is theirs to settle; `check` reports the
//! same as `overclaimed-isolation` / `overclaimed-gil`. A slot that is missing is
//! added before the array's `{0, NULL}` terminator, under the guard of the Python that has it
//! (the free-threading HOWTO's spelling: `#if PY_VERSION_HEX >= 0x030D0000`). `Py_mod_gil` is
//! not added when the verdict says `used`: that is the default, and the `missing-gil-slot` hint
//! then keeps naming what blocks `NOT_USED`.

use super::context::PlanCtx;
use super::stage0::Edit;
use crate::facts::{Init, InitList};
use crate::model::InitStyle;
use crate::rules::{GilLevel, Verdict};

#[derive(Debug, Clone)]
pub enum Stage3 {
    /// Both slots already say what the verdict says.
    Done,
    Edits(Vec<Edit>),
    Refused(String),
}

const MULTIPLE_INTERPRETERS: &str = "Py_mod_multiple_interpreters";
const GIL: &str = "Py_mod_gil";

pub fn stage3(ctx: &PlanCtx, verdict: &Verdict) -> Stage3 {
    let module = ctx.module;
    if module.init_style != InitStyle::MultiPhase {
        return Stage3::Refused(
            "single-phase init has no slots to declare in: stage 0 (`isolint fix --stage 0`) first"
                .into(),
        );
    }
    let Some(def) = module.def.as_ref() else {
        return Stage3::Refused("the module definition was not found".into());
    };
    let Some(slots_var) = def.slots_var else {
        return Stage3::Refused(
            "the module definition has no `m_slots` array to declare in".into(),
        );
    };
    let var = ctx.project.var(slots_var);
    let Some(text) = ctx.texts.get(&slots_var.file) else {
        return Stage3::Refused(format!(
            "`{}` could not be read again as it was scanned",
            ctx.project.files[slots_var.file].path.display()
        ));
    };
    let Some(Init::List(list)) = var.init.as_ref() else {
        return Stage3::Refused(format!("`{}` has no initializer list", var.name));
    };

    let mut lowered = Vec::new();
    if verdict.supported < verdict.declared {
        let blockers: Vec<&crate::rules::Blocker> = verdict
            .blockers
            .iter()
            .filter(|(level, _)| *level > verdict.supported)
            .flat_map(|(_, b)| b)
            .collect();
        lowered.push(format!(
            "declares `{}`{} but the verdict allows only `{}`: {}",
            verdict.multiple_interpreters,
            if verdict.multiple_interpreters_is_default {
                " (no slot: the default)"
            } else {
                ""
            },
            verdict.supported.slot_value(),
            cite(&blockers)
        ));
    }
    let gil_axis = &verdict.gil_axis;
    if gil_axis.declared == GilLevel::NotUsed && gil_axis.supported == GilLevel::Used {
        let blockers: Vec<&crate::rules::Blocker> = gil_axis.blockers.iter().collect();
        lowered.push(format!(
            "declares `Py_MOD_GIL_NOT_USED` but the free-threading verdict does not allow it: {}",
            cite(&blockers)
        ));
    }
    if !lowered.is_empty() {
        lowered.push(
            "fix those findings (or suppress the false ones), or lower the declaration by hand"
                .into(),
        );
        return Stage3::Refused(lowered.join("\n"));
    }

    let mut edits = Vec::new();
    let mut inserted = String::new();
    let level = verdict.supported.slot_value();
    let declared: Vec<_> = def
        .slots
        .iter()
        .filter(|s| s.slot == MULTIPLE_INTERPRETERS)
        .collect();
    let split = splits_at_313(verdict);
    if declared.is_empty() {
        inserted.push_str(&if split {
            version_split()
        } else {
            guarded(0x030C_0000, MULTIPLE_INTERPRETERS, level)
        });
    }
    for slot in declared {
        if split {
            // The whole entry becomes the version split; its braces are found in the text.
            let Some((start, end)) = entry_bounds(text, &slot.value.span) else {
                return Stage3::Refused(format!(
                    "the `{MULTIPLE_INTERPRETERS}` entry of `{}` could not be rewritten: write its version split by hand",
                    var.name
                ));
            };
            edits.push(Edit {
                file: slots_var.file,
                start,
                end,
                text: version_split(),
            });
        } else if slot.value.text != level {
            edits.push(replace(slots_var.file, &slot.value.span, level));
        }
    }

    let gil = verdict.gil_axis.supported;
    let declared: Vec<_> = def.slots.iter().filter(|s| s.slot == GIL).collect();
    if declared.is_empty() && gil == GilLevel::NotUsed {
        inserted.push_str(&guarded(0x030D_0000, GIL, gil.slot_value()));
    }
    for slot in declared {
        let now = if slot.value.text.contains("NOT_USED") {
            GilLevel::NotUsed
        } else {
            GilLevel::Used
        };
        if now != gil {
            edits.push(replace(slots_var.file, &slot.value.span, gil.slot_value()));
        }
    }

    if !inserted.is_empty() {
        let Some(at) = terminator_line(text, list) else {
            return Stage3::Refused(format!(
                "`{}` does not end in a `{{0, NULL}}` entry on its own line",
                var.name
            ));
        };
        edits.push(Edit {
            file: slots_var.file,
            start: at,
            end: at,
            text: inserted,
        });
    }
    if edits.is_empty() {
        Stage3::Done
    } else {
        Stage3::Edits(edits)
    }
}

/// `mutable-global-state `x` (src/m.c:12)`, the first few and a count of the rest.
fn cite(blockers: &[&crate::rules::Blocker]) -> String {
    const SHOWN: usize = 4;
    // A finding that blocks both levels is listed under each: name it once.
    let mut seen = std::collections::HashSet::new();
    let blockers: Vec<&&crate::rules::Blocker> = blockers
        .iter()
        .filter(|b| seen.insert((b.name, b.symbol.as_deref(), &b.path, b.line)))
        .collect();
    let mut parts: Vec<String> = blockers
        .iter()
        .take(SHOWN)
        .map(|b| {
            format!(
                "{} `{}` ({}:{})",
                b.name,
                b.symbol.as_deref().unwrap_or("?"),
                b.path.display(),
                b.line
            )
        })
        .collect();
    if blockers.len() > SHOWN {
        parts.push(format!("and {} more", blockers.len() - SHOWN));
    }
    parts.join(", ")
}

fn replace(file: usize, span: &crate::facts::Span, value: &str) -> Edit {
    Edit {
        file,
        start: span.start,
        end: span.end,
        text: value.to_string(),
    }
}

/// Whether the level is a shared GIL only because the datetime C API cannot be imported in an
/// isolated interpreter before 3.13 (`datetime-capi-isolation`): then the honest declaration
/// is per-interpreter-GIL from 3.13 and a shared GIL for 3.12.
fn splits_at_313(verdict: &Verdict) -> bool {
    let mut per_interpreter = verdict
        .blockers
        .iter()
        .filter(|(level, _)| *level == crate::rules::Level::PerInterpreterGil)
        .flat_map(|(_, b)| b)
        .peekable();
    verdict.supported == crate::rules::Level::SharedGil
        && per_interpreter.peek().is_some()
        && per_interpreter.all(|b| b.name == "datetime-capi-isolation")
}

/// Per-interpreter-GIL from 3.13, a shared GIL for 3.12, as whole lines.
fn version_split() -> String {
    format!(
        "#if PY_VERSION_HEX >= 0x030D0000\n    {{{MULTIPLE_INTERPRETERS}, {}}},\n#elif PY_VERSION_HEX >= 0x030C0000\n    /* `_datetime` cannot be imported in an interpreter with its own GIL before 3.13 */\n    {{{MULTIPLE_INTERPRETERS}, {}}},\n#endif\n",
        crate::rules::Level::PerInterpreterGil.slot_value(),
        crate::rules::Level::SharedGil.slot_value()
    )
}

/// The lines of the entry `{Py_mod_multiple_interpreters, VALUE},` around the value's span,
/// when the entry is alone on its line: from the line's start to the line's end, newline
/// included.
fn entry_bounds(text: &str, value: &crate::facts::Span) -> Option<(usize, usize)> {
    let start = text.get(..value.start)?.rfind('\n').map_or(0, |i| i + 1);
    let end = value.end + text.get(value.end..)?.find('\n')? + 1;
    let line: String = text[start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    (line.starts_with(&format!("{{{MULTIPLE_INTERPRETERS},")) && line.ends_with("},"))
        .then_some((start, end))
}

fn guarded(version: u32, slot: &str, value: &str) -> String {
    format!("#if PY_VERSION_HEX >= 0x{version:08X}\n    {{{slot}, {value}}},\n#endif\n")
}

/// The start of the line that holds the array's last entry when it is the `{0, NULL}`
/// terminator (`{0}`, `{0, 0}`, `{0, NULL}`), alone on its line.
fn terminator_line(text: &str, list: &InitList) -> Option<usize> {
    let last = list.entries.last()?;
    let Init::List(entry) = &last.value else {
        return None;
    };
    let span = &entry.span;
    let written: String = text
        .get(span.start..span.end)?
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    if !matches!(
        written.as_str(),
        "{0}" | "{0,0}" | "{0,NULL}" | "{NULL}" | "{NULL,NULL}"
    ) {
        return None;
    }
    let line = text[..span.start].rfind('\n').map_or(0, |i| i + 1);
    text[line..span.start].trim().is_empty().then_some(line)
}
