//! Wording shared by rules: where a global is written.

use crate::model::{Global, Project, WriteClass};

/// "written in `f` (line 80) and in `g` (line 120)".
pub fn describe_writes(project: &Project, global: &Global) -> String {
    let mut places: Vec<(String, usize)> = Vec::new();
    for w in &global.writes {
        let site = project.write_site(w);
        let name = project.function(w.function).name.clone();
        if !places.iter().any(|(n, _)| *n == name) {
            places.push((name, site.span.line));
        }
    }
    let shown: Vec<String> = places
        .iter()
        .take(3)
        .map(|(n, l)| format!("`{n}` (line {l})"))
        .collect();
    let mut text = shown.join(", in ");
    if places.len() > 3 {
        text.push_str(&format!(" and {} more functions", places.len() - 3));
    }
    text
}

/// The sentence on how a global is written, by class.
pub fn write_summary(project: &Project, global: &Global) -> String {
    let places = describe_writes(project, global);
    match global.class {
        WriteClass::NeverWritten => "never written after its initializer".to_string(),
        WriteClass::InitOnly => format!(
            "written only while the module initialises, in {places}; every interpreter that imports the module overwrites it"
        ),
        WriteClass::AddressEscapes => {
            let mut wheres: Vec<String> = Vec::new();
            if !places.is_empty() {
                wheres.push(places);
            }
            for holder in global.address_in_initializers.iter().take(2) {
                wheres.push(format!("the initializer of `{}`", project.var(*holder).name));
            }
            format!("its address escapes in {}, so it may be written through it", wheres.join(" and in "))
        }
        WriteClass::Runtime => format!("written at run time in {places}"),
    }
}
