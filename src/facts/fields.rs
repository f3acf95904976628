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
    index = "index",
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

/// Every kind id's name, as `Node::kind` gives it.
static KIND_NAMES: LazyLock<Vec<Option<Box<str>>>> = LazyLock::new(|| {
    let language: tree_sitter::Language = tree_sitter_c::LANGUAGE.into();
    (0..language.node_kind_count() as u16)
        .map(|id| language.node_kind_for_id(id).map(Box::from))
        .collect()
});

/// `Node::kind` from a table. `Node::kind` asks tree-sitter for the name, then measures it and
/// validates it as UTF-8 on every call (about 200 instructions); the facts layer asks for a
/// kind several times per node.
pub(crate) trait KindName {
    fn kind_name(&self) -> &'static str;
}

impl KindName for tree_sitter::Node<'_> {
    #[inline]
    fn kind_name(&self) -> &'static str {
        match KIND_NAMES.get(self.kind_id() as usize) {
            Some(Some(name)) => name,
            // Only tree-sitter's built-in error symbols lie outside the grammar's kinds.
            _ if self.is_error() => "ERROR",
            _ => match self.kind() {
                "_ERROR" => "_ERROR",
                _ => "",
            },
        }
    }
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

    #[test]
    fn kind_names_match_tree_sitter() {
        use super::KindName;
        let mut parser = crate::parse::new_parser().unwrap();
        let tree = parser
            .parse("int f(void) { return g(x) + 1; }\nint (\n".as_bytes(), None)
            .unwrap();
        let mut cursor = tree.walk();
        let mut seen = 0;
        loop {
            let node = cursor.node();
            assert_eq!(node.kind_name(), node.kind());
            seen += 1;
            if cursor.goto_first_child() {
                continue;
            }
            while !cursor.goto_next_sibling() {
                if !cursor.goto_parent() {
                    assert!(seen > 10);
                    return;
                }
            }
        }
    }
}
