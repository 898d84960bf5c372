//! Every configuration file in `examples/` loads and validates, and the configuration manual points at
//! each of them, so an example cannot rot when a key is renamed or a range tightened.

use std::path::{Path, PathBuf};

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_configuration_loads() {
    let files = examples();
    assert!(!files.is_empty(), "examples/ holds no *.toml configuration");
    for file in &files {
        // `sources*.toml` are `cambio sources run` files, a format of their own.
        let sources = file
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("sources"));
        if sources {
            if let Err(e) = cambio::sources::SourcesConfig::load(file) {
                panic!("{}: {e}", file.display());
            }
        } else if let Err(e) = cambio::config::Config::load(file) {
            panic!("{e}");
        }
    }
}

#[test]
fn the_configuration_manual_lists_every_example() {
    let manual = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md");
    let text = std::fs::read_to_string(&manual).unwrap_or_else(|e| panic!("{}: {e}", manual.display()));
    for file in examples() {
        let name = format!("examples/{}", file.file_name().expect("a file name").to_string_lossy());
        assert!(text.contains(&name), "docs/configuration.md does not mention {name}");
    }
}
