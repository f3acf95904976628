//! Reporters: they only read a finished `VerifyReport`.

use super::matrix::{Cell, Check, SharedObject, Status};
use super::plan::{Column, ModuleResult};
use super::VerifyReport;
use serde_json::Value;
use std::fmt::Write;

pub fn json(report: &VerifyReport) -> String {
    let mut text = serde_json::to_string_pretty(report)
        .unwrap_or_else(|e| format!("{{\"error\": \"cannot serialize the report: {e}\"}}"));
    text.push('\n');
    text
}

pub fn human(report: &VerifyReport) -> String {
    if let Some(env) = &report.environment {
        return environment_human(report, env);
    }
    let mut out = String::new();
    let labels: Vec<&str> = report.pythons.iter().map(|p| p.label.as_str()).collect();
    let _ = writeln!(
        out,
        "isolint verify: {} module(s) on Python {}",
        report.modules.len(),
        labels.join(", ")
    );
    if let Some(scan) = &report.scan {
        out.push_str(&scan.miss_banner());
    }
    for module in &report.modules {
        out.push('\n');
        module_table(&mut out, module, &labels, &report.checks);
        module_details(&mut out, module);
    }
    if let Some(scan) = &report.scan {
        out.push('\n');
        scan.write_human(&mut out);
    }
    out.push('\n');
    summary(&mut out, report);
    out
}

fn module_table(out: &mut String, module: &ModuleResult, labels: &[&str], checks: &[&str]) {
    let _ = writeln!(out, "{}", module.name);
    for column in &module.results {
        match &column.target {
            Some(target) if target != &module.name => {
                let _ = writeln!(out, "  {}: {target}", column.python);
            }
            _ => {}
        }
    }
    // Builds for different Pythons can compile different slots (`#if PY_VERSION_HEX`).
    let mut kinds: Vec<(String, Vec<&str>)> = Vec::new();
    for column in &module.results {
        let Some(kind) = column.module.as_ref().map(describe_module) else {
            continue;
        };
        match kinds.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, pythons)) => pythons.push(&column.python),
            None => kinds.push((kind, vec![&column.python])),
        }
    }
    for (kind, pythons) in &kinds {
        let _ = match kinds.len() {
            1 => writeln!(out, "  {kind}"),
            _ => writeln!(out, "  {}: {kind}", pythons.join(", ")),
        };
    }
    let width = 18;
    let mut header = format!("  {:<16}", "check");
    for label in labels {
        let _ = write!(header, "{label:<width$}");
    }
    let _ = writeln!(out, "{}", header.trim_end());
    for check in checks {
        let mut line = format!("  {check:<16}");
        for column in &module.results {
            let cell = column.cells.iter().find(|c| c.check.id() == *check);
            let text = cell.map_or_else(|| "-".to_string(), Cell::label);
            let _ = write!(line, "{text:<width$}");
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

fn describe_module(info: &Value) -> String {
    let field = |key: &str| info.get(key).and_then(Value::as_str);
    if field("init") == Some("not-from-def") {
        return "no PyModuleDef: not an extension module".into();
    }
    let mut text = format!("{} init", field("init").unwrap_or("unknown"));
    if field("init") == Some("multi-phase") {
        let slot = field("multiple_interpreters").unwrap_or("no slot");
        let _ = write!(text, ", Py_mod_multiple_interpreters: {slot}");
    }
    if let Some(gil) = field("gil") {
        let _ = write!(text, ", Py_mod_gil: {gil}");
    }
    text
}

fn module_details(out: &mut String, module: &ModuleResult) {
    for column in &module.results {
        for cell in &column.cells {
            let follows_main = cell.check != Check::MainImport
                && column
                    .cells
                    .first()
                    .is_some_and(|main| main.status != Status::Pass);
            if matches!(cell.status, Status::Pass | Status::NotApplicable) || follows_main {
                continue;
            }
            cell_details(out, column, cell);
        }
    }
}

fn cell_details(out: &mut String, column: &Column, cell: &Cell) {
    let _ = writeln!(
        out,
        "  [{}] {}: {} - {}",
        column.python,
        cell.check.id(),
        cell.label(),
        cell.detail
    );
    // Objects that are shared in the same way for the same reason (a single-phase module's
    // functions, copied with its dict) are one line, not one block each.
    let mut groups: Vec<(&SharedObject, Vec<&str>)> = Vec::new();
    for shared in &cell.shared {
        let same = groups.iter_mut().find(|(first, _)| {
            first.type_name == shared.type_name
                && first.interpreters == shared.interpreters
                && first.nested == shared.nested
                && first.explained_by == shared.explained_by
        });
        match same {
            Some((_, names)) => names.push(&shared.name),
            None => groups.push((shared, vec![&shared.name])),
        }
    }
    let embed = matches!(cell.check, Check::EmbedFinalize | Check::EmbedSubinterp);
    for (shared, names) in groups {
        if embed {
            let _ = writeln!(
                out,
                "      from an earlier cycle: {} ({}), first seen in {}",
                names.join(", "),
                shared.type_name,
                shared.interpreters.last().map_or("?", String::as_str)
            );
            continue;
        }
        let nested = match shared.nested {
            0 => String::new(),
            n => format!(", {n} more inside"),
        };
        let _ = writeln!(
            out,
            "      shared: {} ({}) in {}{nested}",
            names.join(", "),
            shared.type_name,
            shared.interpreters.join(", ")
        );
        for finding in &shared.explained_by {
            let _ = writeln!(out, "        <- {finding}");
        }
    }
    for finding in &cell.explained_by {
        let _ = writeln!(out, "      <- {finding}");
    }
    let runs = cell
        .variants
        .iter()
        .filter_map(|v| v.run.as_ref().map(|r| (Some(v), r)));
    let runs: Vec<_> = cell
        .run
        .as_ref()
        .map(|r| (None, r))
        .into_iter()
        .chain(runs)
        .collect();
    for (variant, run) in runs {
        let Some(traceback) = &run.traceback else {
            continue;
        };
        let from = variant
            .map(|v| format!(" ({})", v.name))
            .unwrap_or_default();
        let _ = writeln!(out, "      faulthandler{from}:");
        for line in traceback.lines().take(12) {
            let _ = writeln!(out, "        {line}");
        }
    }
}

fn summary(out: &mut String, report: &VerifyReport) {
    let cells: Vec<&Cell> = report
        .modules
        .iter()
        .flat_map(|m| &m.results)
        .flat_map(|c| &c.cells)
        .collect();
    let count = |status: Status| cells.iter().filter(|c| c.status == status).count();
    let parts: Vec<String> = [
        Status::Pass,
        Status::Fail,
        Status::Crashed,
        Status::Timeout,
        Status::Refused,
        Status::Inconclusive,
        Status::NotApplicable,
    ]
    .into_iter()
    .filter(|s| count(*s) > 0)
    .map(|s| format!("{} {}", count(s), s.as_str()))
    .collect();
    let verdict = if report.exit_code == 0 {
        "ok"
    } else {
        "FAILED"
    };
    let _ = writeln!(out, "{verdict}: {}", parts.join(", "));
}

/// The checks shown as readiness columns, with their short headers.
fn readiness_columns(report: &VerifyReport) -> Vec<(&'static str, &'static str)> {
    let all = [
        ("isolated-import", "isolated import"),
        ("shared-objects", "shared objects"),
        ("cycles", "cycles"),
        ("concurrent", "concurrent"),
        ("gil-reenabled", "FT GIL"),
        ("threads", "FT threads"),
        ("embed-finalize", "embed finalize"),
        ("embed-subinterp", "embed subinterp"),
    ];
    all.into_iter()
        .filter(|(id, _)| report.checks.contains(id))
        .collect()
}

fn readiness_cells(
    report: &VerifyReport,
    env: &super::environment::Environment,
) -> (Vec<String>, Vec<Vec<String>>) {
    let columns = readiness_columns(report);
    let mut header = vec![
        "module".to_string(),
        "package".to_string(),
        "slots".to_string(),
    ];
    header.extend(columns.iter().map(|(_, h)| h.to_string()));
    header.push("per-interpreter GIL".into());
    let mut rows = Vec::new();
    for row in &env.rows {
        let package = match (&row.package, &row.version) {
            (Some(p), Some(v)) => format!("{p} {v}"),
            (Some(p), None) => p.clone(),
            _ => "-".into(),
        };
        let mut line = vec![row.module.clone(), package, row.slots.clone()];
        for (id, _) in &columns {
            let cell = row.cells.iter().find(|(c, _)| c == id);
            line.push(cell.map_or_else(|| "-".into(), |(_, l)| l.clone()));
        }
        line.push(match &row.blocker {
            None => "yes".into(),
            Some(why) => format!("no: {why}"),
        });
        rows.push(line);
    }
    (header, rows)
}

fn environment_human(report: &VerifyReport, env: &super::environment::Environment) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "isolint verify --environment: {} extension module(s) on Python {} ({:.1} s)",
        env.rows.len(),
        env.python,
        env.duration_ms as f64 / 1000.0
    );
    let (header, rows) = readiness_cells(report, env);
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (i, text) in row.iter().enumerate() {
            widths[i] = widths[i].max(text.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        let mut text = String::from(" ");
        for (i, cell) in cells.iter().enumerate() {
            let _ = write!(text, " {cell:<width$}", width = widths[i]);
        }
        text.trim_end().to_string()
    };
    out.push('\n');
    let _ = writeln!(out, "{}", line(&header));
    for row in &rows {
        let _ = writeln!(out, "{}", line(row));
    }
    for broken in &env.broken {
        let _ = writeln!(
            out,
            "  broken distribution {}: {}",
            broken.get("path").and_then(Value::as_str).unwrap_or("?"),
            broken.get("reason").and_then(Value::as_str).unwrap_or("?")
        );
    }
    let mut details = String::new();
    for module in &report.modules {
        for column in &module.results {
            let main_failed = column
                .cells
                .first()
                .is_some_and(|main| main.status != Status::Pass);
            for cell in &column.cells {
                let quiet = matches!(cell.status, Status::Pass | Status::NotApplicable)
                    || (main_failed && cell.check != Check::MainImport);
                if !quiet {
                    let _ = writeln!(
                        details,
                        "  {} {}: {} - {}",
                        module.name,
                        cell.check.id(),
                        cell.label(),
                        cell.detail
                    );
                }
            }
        }
    }
    if !details.is_empty() {
        out.push_str("\nWhy:\n");
        out.push_str(&details);
    }
    out.push('\n');
    let _ = writeln!(out, "{}", env.summary.line());
    summary(&mut out, report);
    out
}

fn markdown_escape(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

pub fn markdown(report: &VerifyReport) -> String {
    let mut out = String::new();
    if let Some(env) = &report.environment {
        let _ = writeln!(
            out,
            "{} extension module(s) on Python {} ({:.1} s).\n",
            env.rows.len(),
            env.python,
            env.duration_ms as f64 / 1000.0
        );
        let (header, rows) = readiness_cells(report, env);
        table(&mut out, &header, &rows);
        let _ = writeln!(out, "\n{}", env.summary.line());
        return out;
    }
    let mut header = vec!["module".to_string(), "python".to_string()];
    header.extend(report.checks.iter().map(|c| c.to_string()));
    let mut rows = Vec::new();
    for module in &report.modules {
        for column in &module.results {
            let mut row = vec![module.name.clone(), column.python.clone()];
            for check in &report.checks {
                let cell = column.cells.iter().find(|c| c.check.id() == *check);
                row.push(cell.map_or_else(|| "-".into(), Cell::label));
            }
            rows.push(row);
        }
    }
    table(&mut out, &header, &rows);
    out
}

fn table(out: &mut String, header: &[String], rows: &[Vec<String>]) {
    let cells = |row: &[String]| -> String {
        row.iter()
            .map(|c| markdown_escape(c))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let _ = writeln!(out, "| {} |", cells(header));
    let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
    for row in rows {
        let _ = writeln!(out, "| {} |", cells(row));
    }
}
