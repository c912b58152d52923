//! `docs/bad-inputs.md` lists the bad-input cases with the test that checks each: every test
//! it names must exist (as `fn NAME(` in the named file, marked `#[test]`), every row must name
//! one, and its closing count must equal the number of rows.

use std::path::Path;

#[test]
fn every_case_in_the_bad_input_table_names_an_existing_test() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let doc = std::fs::read_to_string(root.join("docs/bad-inputs.md")).unwrap();
    let mut rows = 0;
    for line in doc
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| #"))
    {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 5 || cells[1].parse::<usize>().is_err() {
            continue;
        }
        rows += 1;
        assert_eq!(
            cells[1],
            rows.to_string(),
            "rows are numbered 1, 2, ...: {line}"
        );
        let test = cells
            .iter()
            .filter_map(|c| c.strip_prefix('`').and_then(|c| c.strip_suffix('`')))
            .find(|c| c.contains("::") && (c.starts_with("cli/") || c.starts_with("lib/")))
            .unwrap_or_else(|| panic!("row {rows} names no test: {line}"));
        let (file, name) = test.split_once("::").unwrap();
        let path = if let Some(f) = file.strip_prefix("cli/") {
            root.join("crates/sptune-cli/tests").join(f)
        } else if let Some(f) = file.strip_prefix("lib/") {
            root.join("crates/sptune/tests").join(f)
        } else {
            panic!("row {rows}: {file} is neither cli/ nor lib/")
        };
        let src = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("row {rows}: {}: {e}", path.display()));
        let at = src
            .find(&format!("fn {name}("))
            .unwrap_or_else(|| panic!("row {rows}: no fn {name} in {}", path.display()));
        let before = &src[..at];
        let attr = before.trim_end().lines().last().unwrap_or("");
        assert!(
            attr.trim() == "#[test]",
            "row {rows}: {name} is not a #[test]"
        );
    }
    let count = format!("Count: {rows} cases, {rows} pass.");
    assert!(
        doc.contains(&count),
        "the table has {rows} rows; the doc must say {count:?}"
    );
}
