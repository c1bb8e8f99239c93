//! The committed header must be what cbindgen generates from the sources now.

#[test]
fn committed_header_is_current() {
    let generated = include_str!(concat!(env!("OUT_DIR"), "/tokenchecker.h"));
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/include/tokenchecker.h"
    ))
    .expect("include/tokenchecker.h exists");
    assert!(
        generated == committed,
        "include/tokenchecker.h is stale: run scripts/update-header and commit it"
    );
}

#[test]
fn version_macros_match_cargo() {
    let committed = include_str!("../include/tokenchecker.h");
    let line = format!(
        "#define TOKENCHECKER_VERSION \"{}\"",
        env!("CARGO_PKG_VERSION")
    );
    assert!(committed.contains(&line));
}
