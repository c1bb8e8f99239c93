//! The crate's layout stays readable: no import cycles between the modules under `src/`, and no
//! source file grows past the size a newcomer can read in one sitting.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The most lines a file under `src/` may have.
const MAX_LINES: usize = 600;

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn files() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = Vec::new();
    sources(&root.join("src"), &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let rel = p
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            (rel, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

/// The top-level module a file belongs to (`src/cache/shared.rs` → `cache`).
fn module_of(rel: &str) -> String {
    let inner = rel.trim_start_matches("src/");
    inner
        .split('/')
        .next()
        .unwrap()
        .trim_end_matches(".rs")
        .to_string()
}

/// The top-level modules a file's code (not its unit tests) names through `crate::`.
fn uses(text: &str) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

#[test]
fn modules_depend_one_way() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, text) in files() {
        let module = module_of(&rel);
        if module == "lib" {
            continue;
        }
        let deps = graph.entry(module.clone()).or_default();
        deps.extend(uses(&text).into_iter().filter(|d| *d != module));
    }
    assert!(
        graph.len() > 10,
        "the walk found too few modules: {graph:?}"
    );
    // A cycle is a module that reaches itself.
    for start in graph.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<&String> = graph[start].iter().collect();
        while let Some(m) = stack.pop() {
            assert_ne!(
                m, start,
                "import cycle through `{start}`; the graph: {graph:#?}"
            );
            if seen.insert(m.clone()) {
                stack.extend(graph.get(m).into_iter().flatten());
            }
        }
    }
    // The model is the bottom layer: it names nothing but the JSON helpers and the clock
    // (a leaf: it names nothing).
    assert!(graph["clock"].is_empty(), "{:?}", graph["clock"]);
    assert!(
        graph["model"].iter().all(|d| d == "json" || d == "clock"),
        "{:?}",
        graph["model"]
    );
}

#[test]
fn source_files_stay_readable() {
    let mut too_long = Vec::new();
    for (rel, text) in files() {
        let lines = text.lines().count();
        if lines > MAX_LINES {
            too_long.push(format!("{rel}: {lines} lines (at most {MAX_LINES})"));
        }
    }
    assert!(too_long.is_empty(), "split these by concern: {too_long:#?}");
}
