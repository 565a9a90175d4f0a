//! What a document costs before anything expensive looks at it.
//!
//! async-graphql's complexity and depth visitors walk each operation with every fragment spread
//! expanded: a document of a kilobyte whose fragments each spread the next one twice expands to
//! 2^depth selections, and the walk would take minutes on a worker thread that no timeout can
//! interrupt. Its rule for overlapping fields expands, for every selection set of every definition,
//! the fragments spread at its top level (a chain of fragments costs the square of its length), and
//! compares the arguments of same-named fields pairwise.
//!
//! This module bounds all of it before validation starts, in time linear in the document and without
//! recursion through fragments (a chain of thousands cannot exhaust the stack). A selection costs one,
//! plus one per argument and directive (and one per variable definition); the cost of a document is the sum, over every operation and
//! every fragment definition, of what it costs with its spreads expanded. That sum over-counts a
//! fragment nested in another (it is counted in both), which ordinary documents can afford. A field
//! with more arguments than any field of the schema takes is refused outright.

use std::collections::{HashMap, HashSet};

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};

use crate::error::ApiError;

/// More arguments than any field of the schema takes (its widest takes six).
const MAX_ARGUMENTS_PER_FIELD: usize = 32;

/// Refuses a document that expands to more than `limit` selections (counted as the module documentation
/// says), that spreads a fragment into itself, or that gives a field too many arguments.
pub fn check_expanded_size(document: &ExecutableDocument, limit: usize) -> Result<(), ApiError> {
    let limit = limit as u64;
    let too_large = || ApiError::QueryTooComplex {
        reason: format!("the document expands to more than {limit} selections"),
    };
    let mut fragments: HashMap<&str, Direct<'_>> = HashMap::with_capacity(document.fragments.len());
    for (name, fragment) in &document.fragments {
        fragments.insert(
            name.as_str(),
            Direct::of(&fragment.node.selection_set.node)?,
        );
    }
    let expanded = expand_all(&fragments)?;
    let size_of = |direct: &Direct<'_>| {
        direct
            .spreads
            .iter()
            .fold(direct.selections, |total, name| {
                total.saturating_add(expanded.get(name).copied().unwrap_or(0))
            })
    };
    let mut total = expanded
        .values()
        .fold(0u64, |sum, size| sum.saturating_add(*size));
    for (_, operation) in document.operations.iter() {
        let direct = Direct::of(&operation.node.selection_set.node)?;
        // Variables and the operation's own directives are validated too.
        let own = operation.node.variable_definitions.len() + operation.node.directives.len();
        total = total
            .saturating_add(size_of(&direct))
            .saturating_add(own as u64);
    }
    if total > limit {
        return Err(too_large());
    }
    Ok(())
}

/// A selection set seen without expanding fragments: how many selections it holds (at any depth) and
/// the names of the fragments it spreads (once per spread).
struct Direct<'a> {
    selections: u64,
    spreads: Vec<&'a str>,
}

impl<'a> Direct<'a> {
    fn of(set: &'a SelectionSet) -> Result<Self, ApiError> {
        let mut direct = Direct {
            selections: 0,
            spreads: Vec::new(),
        };
        // Nesting of fields and inline fragments is bounded by the parser's recursion limit.
        direct.add(set)?;
        Ok(direct)
    }

    fn add(&mut self, set: &'a SelectionSet) -> Result<(), ApiError> {
        for item in &set.items {
            let (extra, nested) = match &item.node {
                Selection::Field(field) => {
                    let arguments = field.node.arguments.len();
                    if arguments > MAX_ARGUMENTS_PER_FIELD {
                        return Err(ApiError::InvalidDocument(format!(
                            "field {} has {arguments} arguments; at most {MAX_ARGUMENTS_PER_FIELD}",
                            field.node.name.node
                        )));
                    }
                    (
                        arguments + field.node.directives.len(),
                        Some(&field.node.selection_set.node),
                    )
                }
                Selection::InlineFragment(inline) => (
                    inline.node.directives.len(),
                    Some(&inline.node.selection_set.node),
                ),
                Selection::FragmentSpread(spread) => {
                    self.spreads.push(spread.node.fragment_name.node.as_str());
                    (spread.node.directives.len(), None)
                }
            };
            self.selections = self.selections.saturating_add(1 + extra as u64);
            if let Some(nested) = nested {
                self.add(nested)?;
            }
        }
        Ok(())
    }
}

/// The expanded size of every fragment, in dependency order with an explicit stack. A spread of an
/// unknown fragment counts nothing here (validation reports it); a cycle is refused.
fn expand_all<'a>(
    fragments: &HashMap<&'a str, Direct<'a>>,
) -> Result<HashMap<&'a str, u64>, ApiError> {
    let mut expanded: HashMap<&'a str, u64> = HashMap::with_capacity(fragments.len());
    let mut on_path: HashSet<&'a str> = HashSet::new();
    for &root in fragments.keys() {
        if expanded.contains_key(root) {
            continue;
        }
        // (fragment, index of the next spread to look at)
        let mut stack: Vec<(&'a str, usize)> = vec![(root, 0)];
        on_path.insert(root);
        while let Some((name, next)) = stack.last().copied() {
            let direct = &fragments[name];
            if let Some(&child) = direct.spreads.get(next) {
                if let Some(top) = stack.last_mut() {
                    top.1 += 1;
                }
                if expanded.contains_key(child) || !fragments.contains_key(child) {
                    continue;
                }
                if on_path.contains(child) {
                    return Err(ApiError::InvalidDocument(format!(
                        "fragment {child} spreads itself"
                    )));
                }
                on_path.insert(child);
                stack.push((child, 0));
                continue;
            }
            let size = direct
                .spreads
                .iter()
                .fold(direct.selections, |total, child| {
                    total.saturating_add(expanded.get(child).copied().unwrap_or(0))
                });
            expanded.insert(name, size);
            on_path.remove(name);
            stack.pop();
        }
    }
    Ok(expanded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(query: &str, limit: usize) -> Result<(), &'static str> {
        let document = async_graphql::parser::parse_query(query).expect("parses");
        check_expanded_size(&document, limit).map_err(|err| err.code())
    }

    /// Fragments that each spread the next one twice: 2^depth selections from a few hundred bytes.
    fn doubling(depth: usize) -> String {
        let mut query = String::from("query { ...F0 }\n");
        for i in 0..depth {
            query.push_str(&format!(
                "fragment F{i} on Query {{ ...F{} ...F{} }}\n",
                i + 1,
                i + 1
            ));
        }
        query.push_str(&format!("fragment F{depth} on Query {{ me {{ role }} }}\n"));
        query
    }

    #[test]
    fn ordinary_documents_pass() {
        assert_eq!(check("{ me { role } }", 100), Ok(()));
        assert_eq!(
            check(
                "query { ...A ...A } fragment A on Query { me { role } }",
                100
            ),
            Ok(())
        );
        // A spread of an unknown fragment is left to validation.
        assert_eq!(check("{ ...Missing }", 100), Ok(()));
    }

    #[test]
    fn exponential_fragments_are_refused_quickly() {
        assert_eq!(check(&doubling(5), 10_000), Ok(()));
        // 2^60 selections: counted by memoized sums, not by expanding.
        assert_eq!(check(&doubling(60), 10_000), Err("QUERY_TOO_COMPLEX"));
    }

    #[test]
    fn unused_fragments_count_too() {
        let mut query = doubling(30);
        query = query.replacen("query { ...F0 }", "query { me { role } }", 1);
        assert_eq!(check(&query, 10_000), Err("QUERY_TOO_COMPLEX"));
    }

    #[test]
    fn long_chains_do_not_recurse() {
        let depth = 50_000;
        let mut query = String::from("query { ...F0 }\n");
        for i in 0..depth {
            query.push_str(&format!("fragment F{i} on Query {{ ...F{} }}\n", i + 1));
        }
        query.push_str(&format!("fragment F{depth} on Query {{ me {{ role }} }}\n"));
        assert_eq!(check(&query, 10_000), Err("QUERY_TOO_COMPLEX"));
    }

    #[test]
    fn cycles_are_refused() {
        let query = "query { ...A } fragment A on Query { ...B } fragment B on Query { ...A }";
        assert_eq!(check(query, 10_000), Err("GRAPHQL_VALIDATION_FAILED"));
    }

    #[test]
    fn arguments_count_and_are_capped() {
        assert_eq!(check("{ a: me { role } b: me { role } }", 4), Ok(()));
        let args: String = (0..10).map(|i| format!("a{i}: 1 ")).collect();
        let query = format!("{{ me({args}) {{ role }} }}");
        assert_eq!(check(&query, 11), Err("QUERY_TOO_COMPLEX"));
        assert_eq!(check(&query, 12), Ok(()));
        let many: String = (0..33).map(|i| format!("a{i}: 1 ")).collect();
        let query = format!("{{ me({many}) {{ role }} }}");
        assert_eq!(check(&query, 10_000), Err("GRAPHQL_VALIDATION_FAILED"));
    }

    #[test]
    fn wide_selections_count() {
        let wide: String = (0..200).map(|i| format!("a{i}: me {{ role }} ")).collect();
        assert_eq!(check(&format!("{{ {wide} }}"), 1_000), Ok(()));
        assert_eq!(
            check(&format!("{{ {wide} }}"), 399),
            Err("QUERY_TOO_COMPLEX")
        );
    }
}
