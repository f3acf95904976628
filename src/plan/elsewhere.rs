//! Stage 2 for a static type defined in another file of the module than its definition
//! (ciso8601's `FixedOffset_type` in `timezone.c`, next to `module.c`).
//!
//! The module state is a struct of the definition's file, which the other file cannot see.
//! That file gets the type through one function the definition's file exports, which returns
//! the place of the type in the state (`PyTypeObject **<mod>_state_<Type>(PyObject *module)`):
//! the creation stores into it where `PyType_Ready` was (so what ran before it, such as an
//! import the base comes from, still does), and every other use reads it. The functions of
//! that file that use the type need the module: one whose first parameter already is the
//! module its every caller has keeps it; any other gets a `PyObject *module` first parameter,
//! in its definition, its prototypes (a shared header) and each call, when every caller has
//! the module (the exec function, a module function, or such a function again). Methods and
//! slots there cannot: they would find their module through the definition, which is `static`
//! in its own file.

use super::context::PlanCtx;
use super::stage0::{normalize, Edit};
use super::stage1::{call_args, contains_word, first_argument_edits, word_uses, Reach};
use super::stage2::next_byte;
use crate::facts::Function;
use crate::model::FnRef;
use std::collections::{BTreeMap, BTreeSet};

const MODULE_PARAM: &str = "module";

/// How the functions outside the definition's file reach the module.
pub(super) struct Elsewhere<'a, 'c> {
    ctx: &'c PlanCtx<'a>,
    /// The file of the module definition: its functions are `Reach`'s.
    def_file: usize,
    /// The code mask of every file of the module.
    masks: &'c BTreeMap<usize, Vec<u8>>,
    memo: BTreeMap<FnRef, Result<String, String>>,
    visiting: BTreeSet<FnRef>,
    /// Functions that get a `PyObject *module` first parameter.
    threaded: BTreeSet<FnRef>,
}

impl<'a, 'c> Elsewhere<'a, 'c> {
    pub(super) fn new(
        ctx: &'c PlanCtx<'a>,
        def_file: usize,
        masks: &'c BTreeMap<usize, Vec<u8>>,
    ) -> Self {
        Elsewhere {
            ctx,
            def_file,
            masks,
            memo: BTreeMap::new(),
            visiting: BTreeSet::new(),
            threaded: BTreeSet::new(),
        }
    }

    fn text(&self, file: usize) -> &'c str {
        self.ctx.texts.get(&file).map_or("", String::as_str)
    }

    fn mask(&self, file: usize) -> &'c [u8] {
        self.masks.get(&file).map_or(&[], Vec::as_slice)
    }

    /// The module as `f` has it: an expression of its own.
    pub(super) fn arg_of(&mut self, reach: &mut Reach, f: FnRef) -> Result<String, String> {
        if f.file == self.def_file {
            return reach.arg_of(f);
        }
        if let Some(r) = self.memo.get(&f) {
            return r.clone();
        }
        if !self.visiting.insert(f) {
            return Err(format!(
                "`{}` is part of a cycle of calls",
                self.ctx.function(f).name
            ));
        }
        let r = self.classify(reach, f);
        self.visiting.remove(&f);
        self.memo.insert(f, r.clone());
        r
    }

    /// The functions of the module that call `f`.
    fn callers(&self, f: FnRef) -> Vec<FnRef> {
        let function = self.ctx.function(f);
        let mut out = Vec::new();
        for &fi in &self.ctx.module.files {
            if function.is_static && fi != f.file {
                continue;
            }
            for (index, g) in self.ctx.project.files[fi].functions.iter().enumerate() {
                if g.calls.iter().any(|c| c.callee == function.name) {
                    out.push(FnRef { file: fi, index });
                }
            }
        }
        out
    }

    fn classify(&mut self, reach: &mut Reach, f: FnRef) -> Result<String, String> {
        let ctx = self.ctx;
        let function = ctx.function(f);
        let name = &function.name;
        let path = ctx.path(f.file);
        if function.uncertain || function.macro_head.is_some() {
            return Err(format!("`{name}` overlaps a parse error or a macro head"));
        }
        if reach.is_type_function(name) {
            return Err(format!(
                "`{name}` is a method or slot of a type and is in `{path}`: it would find its module through the module definition, which is local to `{}`",
                ctx.path(self.def_file)
            ));
        }
        let callers = self.callers(f);
        if callers.is_empty() {
            return Err(format!(
                "`{name}` (in `{path}`) has no caller in the module and no module argument: it is likely a callback of a C library"
            ));
        }
        let mut args = Vec::new();
        for &c in &callers {
            match self.arg_of(reach, c) {
                Ok(a) => args.push((c, a)),
                Err(why) => {
                    return Err(format!(
                        "`{name}` (in `{path}`) has no module argument, and one of its callers has none to give (its caller: {why})"
                    ))
                }
            }
        }
        // Its first parameter is the module every caller passes.
        if let Some(first) = module_param(function) {
            let passes = args.iter().all(|(c, arg)| {
                self.calls_in(*c, name)
                    .iter()
                    .all(|&(s, e)| normalize(&self.text(c.file)[s..e]) == normalize(arg))
            });
            if passes {
                return Ok(first);
            }
        }
        // Otherwise a new first parameter, when the edit can reach every mention.
        let by_hand = format!(
            "`{name}` (in `{path}`) has no module argument: add one and pass it from its callers"
        );
        // A macro that calls it would keep calling it without the module.
        if let Some(m) = ctx.module.files.iter().find_map(|&fi| {
            ctx.project.files[fi]
                .macros
                .iter()
                .find(|m| contains_word(&m.body, name))
        }) {
            return Err(format!(
                "{by_hand} (the macro `{}` names it, and macros are not rewritten)",
                m.name
            ));
        }
        let mask = self.mask(f.file);
        if !word_uses(
            mask,
            function.def_span.start,
            function.def_span.end,
            MODULE_PARAM,
        )
        .is_empty()
        {
            return Err(format!(
                "{by_hand} (it already uses the name `{MODULE_PARAM}`)"
            ));
        }
        let calls: usize = callers
            .iter()
            .map(|c| {
                ctx.function(*c)
                    .calls
                    .iter()
                    .filter(|call| &call.callee == name)
                    .count()
            })
            .sum();
        let mut others = 0;
        for &fi in &ctx.module.files {
            if function.is_static && fi != f.file {
                continue;
            }
            let m = self.mask(fi);
            others += word_uses(m, 0, m.len(), name).len();
        }
        let prototypes = self.prototypes(f).len();
        if others != calls + prototypes + 1 {
            return Err(format!(
                "{by_hand} (it is named {} time(s) besides its {calls} call(s) and {prototypes} prototype(s): a function pointer or a macro)",
                others.saturating_sub(calls + prototypes + 1)
            ));
        }
        self.threaded.insert(f);
        Ok(MODULE_PARAM.to_string())
    }

    /// The first argument of each call to `name` in `caller`, as a range of its file.
    fn calls_in(&self, caller: FnRef, name: &str) -> Vec<(usize, usize)> {
        let mask = self.mask(caller.file);
        self.ctx
            .function(caller)
            .calls
            .iter()
            .filter(|c| c.callee == name)
            .map(|c| {
                call_args(mask, c.span.start, c.span.end)
                    .first()
                    .copied()
                    .unwrap_or((c.span.start, c.span.start))
            })
            .collect()
    }

    /// The declarations of `f` outside any function (`PyObject *f(int x);` in a header), as
    /// `(file, start of the name)`.
    fn prototypes(&self, f: FnRef) -> Vec<(usize, usize)> {
        let function = self.ctx.function(f);
        let mut out = Vec::new();
        for &fi in &self.ctx.module.files {
            let mask = self.mask(fi);
            let functions = &self.ctx.project.files[fi].functions;
            for at in word_uses(mask, 0, mask.len(), &function.name) {
                if functions
                    .iter()
                    .any(|g| g.def_span.start <= at && at < g.def_span.end)
                {
                    continue;
                }
                let Some((open, b'(')) = next_byte(mask, at + function.name.len()) else {
                    continue;
                };
                let Some(&(_, close)) = call_args(mask, open, mask.len()).last() else {
                    continue;
                };
                if matches!(next_byte(mask, close + 1), Some((_, b';'))) {
                    out.push((fi, at));
                }
            }
        }
        out
    }

    /// The functions of the definition's file that call a function this gives a parameter:
    /// their own module comes from `Reach`, which may thread it further.
    pub(super) fn def_file_callers(&self) -> Vec<FnRef> {
        self.threaded
            .iter()
            .flat_map(|&f| self.callers(f))
            .filter(|c| c.file == self.def_file)
            .collect()
    }

    /// The new parameter of each function that gets one, in its definition and prototypes,
    /// and the caller's module in each call.
    pub(super) fn edits(&self, reach: &Reach) -> Result<Vec<Edit>, String> {
        let mut edits = Vec::new();
        for &f in &self.threaded {
            let function = self.ctx.function(f);
            let mut heads = self.prototypes(f);
            heads.push((f.file, function.span.start));
            for (fi, at) in heads {
                let (text, mask) = (self.text(fi), self.mask(fi));
                let open = next_byte(mask, at + function.name.len())
                    .filter(|&(_, b)| b == b'(')
                    .map(|(i, _)| i)
                    .ok_or_else(|| format!("`{}` has no parameter list", function.name))?;
                let close = call_args(mask, open, mask.len())
                    .last()
                    .map(|&(_, e)| e)
                    .ok_or_else(|| format!("`{}` has no parameter list", function.name))?;
                let inside = normalize(&text[open + 1..close]);
                edits.push(if inside.is_empty() || inside == "void" {
                    Edit {
                        file: fi,
                        start: open + 1,
                        end: close,
                        text: format!("PyObject *{MODULE_PARAM}"),
                    }
                } else {
                    Edit {
                        file: fi,
                        start: open + 1,
                        end: open + 1,
                        text: format!("PyObject *{MODULE_PARAM}, "),
                    }
                });
            }
            for c in self.callers(f) {
                let arg = if c.file == self.def_file {
                    reach.arg(c)
                } else {
                    self.memo.get(&c).and_then(|r| r.clone().ok())
                }
                .ok_or_else(|| {
                    format!(
                        "`{}` has no module for `{}`",
                        self.ctx.function(c).name,
                        function.name
                    )
                })?;
                let text = self.text(c.file);
                let calls = self.ctx.function(c).calls.iter();
                edits.extend(
                    first_argument_edits(text, c.file, &function.name, calls, &arg).map_err(
                        |line| {
                            format!(
                                "`{}`: line {line}: the call to `{}` is not written out (a macro?)",
                                self.ctx.path(c.file),
                                function.name
                            )
                        },
                    )?,
                );
            }
        }
        Ok(edits)
    }
}

/// The name of `function`'s first parameter when it is a `PyObject *` (the module, when every
/// caller passes its own there).
fn module_param(function: &Function) -> Option<String> {
    let p = function.params.first()?;
    (p.pointers == 1 && p.type_name.trim() == "PyObject")
        .then(|| p.name.clone())
        .flatten()
}
