//! The house rules, checked on the source: layers only look down, sibling
//! files import each other without cycles, and no `.rs` file is over 500
//! lines. No GPU needed.
//!
//! Layers, from the top: the CLI (`main.rs`), the tools (`validate`,
//! `bench`, `run`, `plot`, `surfaces`, `args`), the loop (`checkpoint`,
//! `schedule`, `arena`, `ema`, `shard`), the engine and the tensor-wise rules
//! (`engine`, `matrix`, `quant`), the rules (`rules`, `reference`), the
//! ground (`error`, `device`, `random`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layer of each top-level module of `src/`: higher looks down on lower.
const LAYERS: &[(&str, u32)] = &[
    ("error", 0),
    ("device", 0),
    ("random", 0),
    ("rules", 1),
    ("reference", 1),
    ("engine", 2),
    ("matrix", 2),
    ("lbfgs", 2),
    ("quant", 2),
    ("checkpoint", 3),
    ("schedule", 3),
    ("shard", 3),
    ("arena", 3),
    ("ema", 3),
    ("validate", 4),
    ("bench", 4),
    ("run", 4),
    ("plot", 4),
    ("surfaces", 4),
    ("args", 4),
];

fn layer(module: &str) -> Option<u32> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its comment lines.
fn code(text: &str) -> String {
    text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// The first path segments named after `prefix` (`crate::`, `super::`),
/// including those in brace groups (`crate::{a::X, b}`).
fn names_after(code: &str, prefix: &str) -> BTreeSet<String> {
    let ident = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    let mut names = BTreeSet::new();
    for (at, _) in code.match_indices(prefix) {
        let rest = &code[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            names.extend(group.split(',').map(|part| ident(part.trim())).filter(|n| !n.is_empty()));
        } else {
            names.insert(ident(rest));
        }
    }
    names
}

/// Every import of a module from a higher layer, as "file: a -> b".
fn layer_violations(files: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for (rel, text) in files {
        let top = rel.split('/').next().unwrap_or("").trim_end_matches(".rs");
        let Some(mine) = layer(top) else { continue };
        for name in names_after(&code(text), "crate::") {
            if let Some(theirs) = layer(&name).filter(|&l| l > mine) {
                out.push(format!("src/{rel}: {top} (layer {mine}) imports {name} (layer {theirs})"));
            }
        }
    }
    out
}

/// Cycles among the files of one directory (`mod.rs`, the parent that
/// declares them, aside), found through `super::x` and `crate::dir::x`.
fn sibling_cycles(files: &[(String, String)]) -> Vec<String> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let is_leaf = |rel: &str| !rel.ends_with("mod.rs") && rel.contains('/');
    for (rel, text) in files.iter().filter(|(r, _)| is_leaf(r)) {
        let (dir, _) = rel.rsplit_once('/').unwrap_or(("", rel));
        let code = code(text);
        let mut refs = names_after(&code, "super::");
        refs.extend(names_after(&code, &format!("crate::{}::", dir.replace('/', "::"))));
        let siblings = refs.into_iter().map(|n| format!("{dir}/{n}.rs")).filter(|s| s != rel && files.iter().any(|(r, _)| r == s));
        graph.entry(rel.clone()).or_default().extend(siblings);
    }
    let mut cycles = Vec::new();
    for start in graph.keys() {
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((node, path)) = stack.pop() {
            for next in graph.get(&node).into_iter().flatten() {
                if next == start {
                    cycles.push(format!("{} -> {start}", path.join(" -> ")));
                } else if seen.insert(next.clone()) {
                    stack.push((next.clone(), [path.clone(), vec![next.clone()]].concat()));
                }
            }
        }
    }
    cycles
}

fn sources(dir: &str) -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut paths = Vec::new();
    rust_files(&root, &mut paths);
    paths.sort();
    paths.into_iter().map(|p| (p.strip_prefix(&root).unwrap_or(&p).to_string_lossy().replace('\\', "/"), std::fs::read_to_string(&p).unwrap_or_default())).collect()
}

#[test]
fn layers_only_look_down() {
    let files = sources("src");
    assert!(files.len() > 40, "found only {} source files", files.len());
    let violations = layer_violations(&files);
    assert!(violations.is_empty(), "lower layers reach up:\n{}", violations.join("\n"));
}

#[test]
fn sibling_files_import_without_cycles() {
    let cycles = sibling_cycles(&sources("src"));
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn no_source_file_is_over_500_lines() {
    let mut long = Vec::new();
    for dir in ["src", "integrations", "web"] {
        for (rel, text) in sources(dir) {
            let lines = text.lines().count();
            if lines > 500 && !rel.contains("target/") {
                long.push(format!("{dir}/{rel}: {lines} lines"));
            }
        }
    }
    assert!(long.is_empty(), "split these by idea:\n{}", long.join("\n"));
}

/// The checks have teeth: a rule that imports the bench, a tensor-wise rule
/// that imports `run`, and two engine files that import each other are
/// each caught.
#[test]
fn the_checks_catch_back_imports_and_cycles() {
    let file = |rel: &str, text: &str| (rel.to_string(), text.to_string());
    let bad = [
        file("rules/adam.rs", "use crate::bench::unfused::Instr;\nuse crate::error::Result;"),
        file("matrix/lamb.rs", "use crate::{engine::ParamSlice, run::RunInput};"),
        file("engine/mod.rs", "// crate::bench in a comment is no import"),
    ];
    assert_eq!(layer_violations(&bad).len(), 2, "{:?}", layer_violations(&bad));
    let cyclic = [file("engine/pipeline.rs", "use super::shader;"), file("engine/shader.rs", "use super::pipeline::Key;"), file("engine/key.rs", "use super::state::StateKind;")];
    assert_eq!(sibling_cycles(&cyclic).len(), 2, "{:?}", sibling_cycles(&cyclic));
}
