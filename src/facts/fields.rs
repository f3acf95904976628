//! tree-sitter-c's field ids, looked up once. `child_by_field_name` compares the name against
//! every field name of the grammar on each call; on a large tree that was the walker's top cost.

use std::num::NonZeroU16;
use std::sync::LazyLock;

macro_rules! fields {
    ($($name:ident = $text:literal),* $(,)?) => {
        pub(crate) struct Fields {
            $(pub $name: NonZeroU16,)*
        }

        pub(crate) static FIELD: LazyLock<Fields> = LazyLock::new(|| {
            let language: tree_sitter::Language = tree_sitter_c::LANGUAGE.into();
            Fields {
                $($name: language
                    .field_id_for_name($text)
                    .expect(concat!("tree-sitter-c has the field ", $text)),)*
            }
        });
    };
}

fields!(
    declarator = "declarator",
    ty = "type",
    argument = "argument",
    operator = "operator",
    value = "value",
    body = "body",
    name = "name",
    function = "function",
    parameters = "parameters",
    arguments = "arguments",
    right = "right",
    left = "left",
    field = "field",
    designator = "designator",
    condition = "condition",
    consequence = "consequence",
);

/// A table from every node kind id of tree-sitter-c to `classify(kind name, is named)`.
/// Comparing ids instead of `Node::kind` strings (measured and UTF-8-validated on each call)
/// matters on paths that see every node; building the table from every id also covers the
/// several ids an aliased kind can have.
pub(crate) fn kind_table<T>(classify: impl Fn(&str, bool) -> T) -> Vec<T> {
    let language: tree_sitter::Language = tree_sitter_c::LANGUAGE.into();
    (0..language.node_kind_count() as u16)
        .map(|id| {
            let name = language.node_kind_for_id(id).unwrap_or("");
            classify(name, language.node_kind_is_named(id))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_field_exists_in_the_grammar() {
        // Forces the lookup: a renamed field in a grammar update fails here, not mid-scan.
        let f = &*super::FIELD;
        assert_ne!(f.declarator, f.ty);
        let identifiers = super::kind_table(|name, named| named && name == "identifier");
        assert!(identifiers.iter().any(|&b| b));
    }
}
