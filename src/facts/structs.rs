//! Struct layouts: which fields hold Python objects, and whether instances are objects.

use super::declarator::{shape_of, type_text};
use super::extract::Cx;
use super::fields::{KindName, FIELD};
use super::{Field, StructDef};
use std::sync::LazyLock;
use streaming_iterator::StreamingIterator;
use tree_sitter::{Node, Query, QueryCursor};

struct FieldQuery {
    query: Query,
    field: u32,
    field_type: u32,
    field_declarator: u32,
}

static FIELD_QUERY: LazyLock<FieldQuery> = LazyLock::new(|| {
    let query = Query::new(
        &tree_sitter_c::LANGUAGE.into(),
        include_str!("../../queries/struct_fields.scm"),
    )
    .expect("queries/struct_fields.scm compiles against tree-sitter-c");
    let index = |name: &str| {
        query
            .capture_index_for_name(name)
            .unwrap_or_else(|| panic!("capture @{name}"))
    };
    FieldQuery {
        field: index("field"),
        field_type: index("field.type"),
        field_declarator: index("field.declarator"),
        query,
    }
});

pub(crate) fn struct_def(spec: Node, cx: &Cx, typedef_names: Vec<String>) -> Option<StructDef> {
    let body = spec.child_by_field_id(FIELD.body.get())?;
    let mut names = Vec::new();
    if let Some(tag) = spec.child_by_field_id(FIELD.name.get()) {
        names.push(cx.text(tag).to_string());
    }
    names.extend(typedef_names);
    let q = &*FIELD_QUERY;
    let mut cursor = QueryCursor::new();
    // Only the struct's own fields: nested struct bodies are their own definitions.
    cursor.set_max_start_depth(Some(2));
    let mut fields = Vec::new();
    let mut matches = cursor.matches(&q.query, body, cx.src);
    while let Some(m) = matches.next() {
        let mut ty = None;
        let mut declarators = Vec::new();
        let mut field_node = None;
        for cap in m.captures() {
            if cap.index == q.field_type {
                ty = Some(cap.node);
            } else if cap.index == q.field_declarator {
                declarators.push(cap.node);
            } else if cap.index == q.field {
                field_node = Some(cap.node);
            }
        }
        let (Some(ty), Some(field_node)) = (ty, field_node) else {
            continue;
        };
        if field_node.parent() != Some(body)
            && field_node.parent().and_then(|p| p.parent()) != Some(body)
        {
            continue;
        }
        let type_name = type_text(ty, cx);
        for declarator in declarators {
            let shape = shape_of(declarator, cx);
            if let Some(name) = shape.name {
                fields.push(Field {
                    name,
                    type_name: type_name.clone(),
                    pointers: shape.pointers.len(),
                    array_dims: shape.array_dims,
                    line: cx.lines.position(declarator.start_byte()).0,
                });
            }
        }
    }
    fields.sort_by_key(|f| f.line);
    Some(StructDef {
        names,
        fields,
        span: cx.span(spec),
    })
}

/// `typedef struct tag { ... } Name;` and `typedef struct tag Name;` after the fact.
pub(crate) fn typedef_structs(node: Node, cx: &Cx) -> Option<StructDef> {
    let ty = node.child_by_field_id(FIELD.ty.get())?;
    if ty.kind_name() != "struct_specifier" {
        return None;
    }
    let mut cursor = node.walk();
    let names: Vec<String> = node
        .children_by_field_id(FIELD.declarator, &mut cursor)
        .filter_map(|d| shape_of(d, cx).name)
        .collect();
    struct_def(ty, cx, names)
}
