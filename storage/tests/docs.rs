//! `docs/storage.md` describes every mutation tag the code reads.

use halyard_storage::mutation::MutationTag;

#[test]
fn every_mutation_tag_has_a_row_in_the_storage_docs() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/storage.md");
    let doc = std::fs::read_to_string(path).expect("docs/storage.md");
    let missing: Vec<String> = MutationTag::ALL
        .iter()
        .filter(|t| !doc.contains(&format!("\n| {} | `", t.tag())))
        .map(|t| format!("{} ({:?})", t.tag(), t))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/storage.md has no row for mutation tags {missing:?}"
    );
}
