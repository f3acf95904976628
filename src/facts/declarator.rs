//! Reading C declarations: storage class, qualifiers, the base type as written, and the shape
//! of each declarator (pointers with their const-ness, arrays, function pointers).

use super::extract::{fold_ws, Cx};
use super::fields::{KindName, FIELD};
use super::structs::struct_def;
use super::{Span, StructDef};
use tree_sitter::Node;

#[derive(Debug, Default, Clone)]
pub(crate) struct TypeInfo {
    pub type_name: String,
    pub is_static: bool,
    pub is_extern: bool,
    pub is_thread_local: bool,
    pub is_const: bool,
    pub is_volatile: bool,
    pub is_atomic: bool,
    pub is_typedef: bool,
    /// A struct defined in the declaration itself.
    pub struct_def: Option<StructDef>,
}

/// The specifiers of a `declaration`, `field_declaration`, `function_definition` or
/// `parameter_declaration`.
pub(crate) fn declaration_type(node: Node, cx: &Cx) -> TypeInfo {
    let mut info = TypeInfo {
        is_typedef: node.kind_name() == "type_definition",
        ..Default::default()
    };
    let mut cursor = node.walk();
    for child in node.children(&mut cursor) {
        match child.kind_name() {
            "storage_class_specifier" => match cx.text(child).trim() {
                "static" => info.is_static = true,
                "extern" => info.is_extern = true,
                "__thread" | "_Thread_local" | "thread_local" => info.is_thread_local = true,
                _ => {}
            },
            "type_qualifier" => match cx.text(child).trim() {
                "const" => info.is_const = true,
                "volatile" => info.is_volatile = true,
                "_Atomic" => info.is_atomic = true,
                _ => {}
            },
            _ => {}
        }
    }
    if let Some(ty) = node.child_by_field_id(FIELD.ty.get()) {
        info.type_name = type_text(ty, cx);
        // `PyAPI_DATA(PyObject *) name;` declares data that the interpreter defines.
        if let Some(inner) = info
            .type_name
            .strip_prefix("PyAPI_DATA(")
            .and_then(|t| t.strip_suffix(')'))
        {
            info.type_name = inner.trim_end_matches(['*', ' ']).to_string();
            info.is_extern = true;
        }
        if ty.kind_name() == "struct_specifier" || ty.kind_name() == "union_specifier" {
            info.struct_def = struct_def(ty, cx, Vec::new());
        }
    }
    info
}

/// `struct foo` for a struct with a body, otherwise the type's own text.
pub(crate) fn type_text(ty: Node, cx: &Cx) -> String {
    match ty.kind_name() {
        "struct_specifier" | "union_specifier" | "enum_specifier" => {
            let keyword = ty.kind_name().trim_end_matches("_specifier");
            match ty.child_by_field_id(FIELD.name.get()) {
                Some(name) => format!("{keyword} {}", cx.text(name)),
                None => keyword.to_string(),
            }
        }
        _ => fold_ws(cx.text(ty)),
    }
}

#[derive(Debug, Default)]
pub(crate) struct Shape<'t> {
    pub name: Option<String>,
    pub name_span: Option<Span>,
    pub pointers: Vec<bool>,
    pub array_dims: usize,
    pub is_prototype: bool,
    pub is_function_pointer: bool,
    pub init: Option<Node<'t>>,
}

pub(crate) fn shape_of<'t>(declarator: Node<'t>, cx: &Cx) -> Shape<'t> {
    let mut shape = Shape::default();
    let mut saw_function = false;
    let mut pointer_after_function = false;
    let mut current = Some(declarator);
    // Declarators nest one level per `*`, `[]` or `()`: a loop, not recursion.
    while let Some(node) = current {
        current = match node.kind_name() {
            "init_declarator" => {
                shape.init = node.child_by_field_id(FIELD.value.get());
                node.child_by_field_id(FIELD.declarator.get())
            }
            "pointer_declarator" | "abstract_pointer_declarator" => {
                let mut cursor = node.walk();
                let is_const = node
                    .children(&mut cursor)
                    .any(|c| c.kind_name() == "type_qualifier" && cx.text(c).trim() == "const");
                shape.pointers.push(is_const);
                if saw_function {
                    pointer_after_function = true;
                }
                node.child_by_field_id(FIELD.declarator.get())
            }
            "array_declarator" | "abstract_array_declarator" => {
                shape.array_dims += 1;
                node.child_by_field_id(FIELD.declarator.get())
            }
            "function_declarator" | "abstract_function_declarator" => {
                saw_function = true;
                node.child_by_field_id(FIELD.declarator.get())
            }
            "parenthesized_declarator"
            | "attributed_declarator"
            | "abstract_parenthesized_declarator" => node.named_child(0),
            "identifier" | "field_identifier" | "type_identifier" => {
                shape.name = Some(cx.text(node).to_string());
                shape.name_span = Some(cx.span(node));
                None
            }
            _ => None,
        };
    }
    if saw_function {
        if pointer_after_function {
            shape.is_function_pointer = true;
        } else {
            shape.is_prototype = true;
        }
    }
    shape
}
