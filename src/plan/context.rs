//! What every part of the planner reads: the project, one module, the source texts, and the
//! names that module already uses (so generated names never collide).

use super::data::SiteRef;
use crate::facts::{Function, Init, InitList, Span, Variable};
use crate::model::pytypes::{self, Layouts};
use crate::model::{ExtensionModule, FnRef, Global, Project, TypeKind, VarRef};
use std::collections::{BTreeMap, BTreeSet};

pub struct PlanCtx<'a> {
    pub project: &'a Project,
    pub module: &'a ExtensionModule,
    pub layouts: &'a Layouts<'a>,
    /// File texts, by file index; `None` when the file could not be read again.
    pub texts: &'a BTreeMap<usize, String>,
    /// Every identifier the module's files define: generated names avoid them.
    taken: BTreeSet<String>,
    /// The C prefix of generated names: the module name without leading underscores.
    pub prefix: String,
}

impl<'a> PlanCtx<'a> {
    pub fn new(
        project: &'a Project,
        module: &'a ExtensionModule,
        layouts: &'a Layouts<'a>,
        texts: &'a BTreeMap<usize, String>,
    ) -> Self {
        let mut taken = BTreeSet::new();
        for &f in &module.files {
            let file = &project.files[f];
            taken.extend(file.functions.iter().map(|f| f.name.clone()));
            taken.extend(file.variables.iter().map(|v| v.name.clone()));
            taken.extend(file.macros.iter().map(|m| m.name.clone()));
            taken.extend(file.structs.iter().flat_map(|s| s.names.iter().cloned()));
        }
        let short = module.name.rsplit('.').next().unwrap_or(&module.name);
        let mut prefix: String = short
            .trim_start_matches('_')
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        if prefix.is_empty() || prefix.starts_with(|c: char| c.is_ascii_digit()) {
            prefix.insert_str(0, "mod_");
        }
        Self {
            project,
            module,
            layouts,
            texts,
            taken,
            prefix,
        }
    }

    /// `base`, or `base_2`, ... when the module already defines `base`.
    pub fn fresh(&self, base: &str) -> String {
        if !self.taken.contains(base) {
            return base.to_string();
        }
        (2..)
            .map(|n| format!("{base}_{n}"))
            .find(|n| !self.taken.contains(n))
            .unwrap_or_else(|| base.to_string())
    }

    pub fn state_type(&self) -> String {
        self.fresh(&format!("{}_state", self.prefix))
    }
    pub fn state_getter(&self) -> String {
        self.fresh(&format!("get_{}_state", self.prefix))
    }

    pub fn path(&self, file: usize) -> String {
        self.project.files[file].path.display().to_string()
    }

    pub fn var_site(&self, var: VarRef) -> SiteRef {
        let v = self.project.var(var);
        SiteRef {
            path: self.path(var.file),
            line: v.span.line,
            symbol: v.name.clone(),
        }
    }

    pub fn fn_site(&self, f: FnRef) -> SiteRef {
        let function = self.project.function(f);
        SiteRef {
            path: self.path(f.file),
            line: function.span.line,
            symbol: function.name.clone(),
        }
    }

    pub fn text(&self, file: usize, span: Span) -> Option<&'a str> {
        self.texts.get(&file)?.get(span.start..span.end)
    }

    /// `[4]` in `static PyObject *callbacks[4];`: the declarator after the name, up to the
    /// initializer or the end of the declaration.
    pub fn array_suffix(&self, var: VarRef) -> String {
        let v = self.project.var(var);
        if v.array_dims == 0 {
            return String::new();
        }
        let Some(text) = self.texts.get(&var.file) else {
            return "[]".repeat(v.array_dims);
        };
        let rest = text.get(v.span.end..v.decl_span.end).unwrap_or("");
        let end = rest.find(['=', ';', ',']).unwrap_or(rest.len());
        rest[..end].trim().to_string()
    }

    pub fn def_name(&self) -> Option<&'a str> {
        let def = self.module.def.as_ref()?;
        Some(self.project.var(def.var).name.as_str())
    }

    pub fn function(&self, f: FnRef) -> &'a Function {
        self.project.function(f)
    }

    pub fn is_static_type(&self, var: VarRef) -> bool {
        self.module
            .types
            .iter()
            .any(|t| t.var == var && t.kind == TypeKind::Static)
    }

    /// The globals that move into the module state: mutable state the module writes, Python
    /// objects it keeps, and its static types (as `PyTypeObject *` fields, stage 2).
    pub fn migrated(&self) -> Vec<&'a Global> {
        let mut out: Vec<&Global> = self
            .module
            .globals
            .iter()
            .filter(|g| self.migrates(g))
            .collect();
        out.sort_by_key(|g| {
            let v = self.project.var(g.var);
            (g.var.file, v.span.start)
        });
        out
    }

    fn migrates(&self, g: &Global) -> bool {
        let v = self.project.var(g.var);
        if v.versions.python2_only() || v.is_immutable() || v.is_extern && v.init.is_none() {
            return false;
        }
        if self.is_static_type(g.var) {
            return true;
        }
        if pytypes::is_type_object(&v.type_name) || pytypes::is_definition_table(&v.type_name) {
            return false;
        }
        if Some(g.var) == self.module.def.as_ref().map(|d| d.var) {
            return false;
        }
        g.class != crate::model::WriteClass::NeverWritten
    }

    /// The field name for a global: its own name, or `function_name` for a static local.
    pub fn field_name(&self, var: VarRef) -> String {
        let v = self.project.var(var);
        match &v.function {
            Some(f) => format!("{f}_{}", v.name),
            None => v.name.clone(),
        }
    }
}

/// `PyObject *` (or an array of them): a field traverse and clear can handle by name.
pub fn object_pointer(layouts: &Layouts, v: &Variable) -> bool {
    v.pointers.len() == 1 && v.inline_fields.is_empty() && layouts.is_object(&v.type_name)
}

/// Every identifier named anywhere in an initializer list.
pub fn idents_in(list: &InitList, out: &mut Vec<String>, depth: usize) {
    if depth > 8 {
        return;
    }
    out.extend(list.names.iter().flatten().cloned());
    for entry in &list.entries {
        match &entry.value {
            Init::Expr(e) => {
                if let Some(n) = e.ident() {
                    out.push(n.to_string());
                } else if let crate::facts::ExprKind::Other = e.kind {
                    // `(PyCFunction)(void(*)(void))f`: the last identifier is the function.
                    if let Some(last) = last_ident(&e.text) {
                        out.push(last);
                    }
                }
            }
            Init::List(inner) => idents_in(inner, out, depth + 1),
        }
    }
}

/// The last C identifier in an expression text (the function behind a cast).
pub fn last_ident(text: &str) -> Option<String> {
    let trimmed = text.trim_end_matches(|c: char| c == ')' || c.is_whitespace());
    let start = trimmed
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .map_or(0, |i| i + 1);
    let word = &trimmed[start..];
    (!word.is_empty() && !word.starts_with(|c: char| c.is_ascii_digit())).then(|| word.to_string())
}
