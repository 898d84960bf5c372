//! The layers import only downward: no import cycle between the top-level modules of `src/`, and the pure
//! core (`time`, `evolve`, `horizon`, `tick`, `quality`, `model`, `drift`, `eval`, `forecast`, `engine`)
//! names no module above it (every other top-level module: the service, the registry, the contest, I/O).
//!
//! A module's dependencies are the `crate::<module>` paths its files name outside their test modules (the
//! same rule as `../shared/tools/import_cycles.py`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module → the top-level modules it names.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for entry in std::fs::read_dir(&src).expect("src") {
        let path = entry.expect("entry").path();
        let name = path.file_stem().and_then(|s| s.to_str()).expect("name").to_string();
        if name == "lib" || name == "main" || (path.is_file() && path.extension().is_none_or(|e| e != "rs")) {
            continue;
        }
        let mut files = Vec::new();
        collect(&path, &mut files);
        let deps = graph.entry(name.clone()).or_default();
        for f in files {
            let text = std::fs::read_to_string(&f).expect("read");
            for dep in crate_paths(&without_tests(&text)) {
                if dep != name {
                    deps.insert(dep);
                }
            }
        }
    }
    graph
}

fn collect(path: &Path, out: &mut Vec<std::path::PathBuf>) {
    if path.is_dir() {
        for e in std::fs::read_dir(path).expect("dir") {
            collect(&e.expect("entry").path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") && path.file_name().is_some_and(|n| n != "tests.rs") {
        out.push(path.to_path_buf());
    }
}

/// The text without line comments and without `#[cfg(test)]` items (a test module, or a test-only `use`).
fn without_tests(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().map(|l| l.split("//").next().unwrap_or("")).peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]" {
            // Skip the next item: a one-line `use`, or a block up to its matching brace.
            let mut depth = 0i32;
            for l in lines.by_ref() {
                depth += l.matches('{').count() as i32 - l.matches('}').count() as i32;
                if depth <= 0 && (l.contains('}') || l.trim_end().ends_with(';')) {
                    break;
                }
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The `x` of every `crate::x` path, including `use crate::{x, y}` groups.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let mut deps = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = group.split('}').next().unwrap_or("");
            for item in group.split(',') {
                deps.insert(ident(item.trim()));
            }
        } else {
            deps.insert(ident(rest));
        }
    }
    deps.retain(|d| !d.is_empty());
    deps
}

fn ident(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// Whether `to` is reachable from `from`.
fn reaches(graph: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from.to_string()];
    while let Some(m) = stack.pop() {
        for d in graph.get(&m).into_iter().flatten() {
            if d == to {
                return true;
            }
            if seen.insert(d.clone()) {
                stack.push(d.clone());
            }
        }
    }
    false
}

#[test]
fn no_import_cycle_between_top_level_modules() {
    let g = graph();
    assert!(g.len() >= 10, "found the modules: {:?}", g.keys());
    let cycles: Vec<String> = g
        .iter()
        .flat_map(|(m, deps)| {
            deps.iter()
                .filter(|d| reaches(&g, d, m))
                .map(move |d| format!("{m} <-> {d}"))
        })
        .collect();
    assert!(cycles.is_empty(), "import cycles: {cycles:?}");
}

#[test]
fn the_core_does_not_reach_the_io_layers() {
    let g = graph();
    let core = [
        "time", "evolve", "horizon", "tick", "quality", "model", "drift", "eval", "forecast", "engine",
    ];
    for c in core {
        assert!(g.contains_key(c), "the core module {c} is not in src/");
    }
    // Every other top-level module is above the core (the service, the registry, the connectors, the lake,
    // the contest...): a module added later is held to the rule without being listed here.
    let above: Vec<&String> = g.keys().filter(|m| !core.contains(&m.as_str())).collect();
    assert!(above.len() >= 10, "modules above the core: {above:?}");
    for c in core {
        for i in &above {
            assert!(!reaches(&g, c, i), "the core module {c} depends on {i}");
        }
    }
}

#[test]
fn the_checker_sees_a_cycle() {
    // The analysis itself binds: a pair of modules naming each other is a cycle.
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("a".into());
    assert!(reaches(&g, "a", "a"));
    assert_eq!(
        crate_paths("use crate::{tick::Pair, time};\nlet x = crate::engine::X;"),
        { ["engine", "tick", "time"].iter().map(|s| s.to_string()).collect() }
    );
    assert!(!without_tests("#[cfg(test)]\nmod tests {\n  use crate::nats;\n}\n").contains("nats"));
}
