//! The library's modules import each other without a cycle: each module is read for
//! the `crate::` paths it names (outside its unit tests), those paths are resolved to
//! the modules that define them, and the graph is searched for a cycle. A module may
//! name its own parents and children; anything else that leads back to it is a
//! cycle, which this test names. (The binaries under `src/bin/` are not modules of the
//! library and are skipped.)

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// Every module of the library, by path (`""` is the crate root, `dsp::convert`), with
/// its source text up to its unit tests and without comments.
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, src: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .expect("src/ is readable")
            .map(|e| e.expect("a directory entry").path())
            .collect();
        entries.sort();
        for path in entries {
            let rel = path.strip_prefix(src).expect("under src/");
            if rel.starts_with("bin") {
                continue;
            }
            if path.is_dir() {
                walk(&path, src, out);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let mut parts: Vec<String> = rel
                .with_extension("")
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
                parts.pop();
            }
            let text = fs::read_to_string(&path).expect("a source file is readable");
            let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
            let code: String = text
                .lines()
                .map(|line| line.split("//").next().unwrap_or(""))
                .collect::<Vec<_>>()
                .join("\n");
            out.insert(parts.join("::"), code);
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    walk(&src, &src, &mut out);
    out
}

/// What the crate root re-exports (`pub use config::{Config, Preset};`): name → path.
fn root_reexports(root: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for statement in root.split(';') {
        let Some(used) = statement.trim().strip_prefix("pub use ") else {
            continue;
        };
        match used.split_once("::{") {
            Some((module, items)) => {
                for item in items.trim_end_matches('}').split(',') {
                    let item = item.trim();
                    if !item.is_empty() {
                        out.insert(item.to_string(), format!("{module}::{item}"));
                    }
                }
            }
            None => {
                if let Some((_, item)) = used.rsplit_once("::") {
                    out.insert(item.to_string(), used.to_string());
                }
            }
        }
    }
    out
}

/// The longest known module that `path` (after `crate::`) starts with, looking through
/// the crate root's re-exports.
fn resolve<'a>(
    path: &str,
    names: &'a BTreeSet<String>,
    reexports: &BTreeMap<String, String>,
) -> Option<&'a String> {
    let first = path.split("::").next().unwrap_or("");
    let path = match reexports.get(first) {
        Some(full) => format!("{full}{}", &path[first.len()..]),
        None => path.to_string(),
    };
    let mut parts: Vec<&str> = path.split("::").collect();
    while !parts.is_empty() {
        if let Some(name) = names.get(&parts.join("::")) {
            return Some(name);
        }
        parts.pop();
    }
    None
}

/// The paths a source names after `crate::`, including those inside `use crate::{..}`.
fn crate_paths(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let ident = |c: char| c.is_alphanumeric() || c == '_' || c == ':';
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = group.split('}').next().unwrap_or("");
            for item in inner.split([',', '{', ' ', '\n']) {
                let item = item.trim_end_matches(':');
                if !item.is_empty() {
                    paths.push(item.to_string());
                }
            }
        } else {
            let path: String = rest.chars().take_while(|&c| ident(c)).collect();
            paths.push(path.trim_end_matches(':').to_string());
        }
    }
    paths
}

#[test]
fn no_module_imports_its_way_back_to_itself() {
    let modules = modules();
    let names: BTreeSet<String> = modules.keys().cloned().collect();
    let reexports = root_reexports(&modules[""]);
    assert!(
        names.contains("dsp::convert") && names.contains("error"),
        "{names:?}"
    );
    let related = |a: &str, b: &str| {
        a == b
            || b.is_empty()
            || a.starts_with(&format!("{b}::"))
            || b.starts_with(&format!("{a}::"))
    };
    let mut edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (name, code) in &modules {
        let targets = edges.entry(name).or_default();
        for path in crate_paths(code) {
            if let Some(target) = resolve(&path, &names, &reexports) {
                if !related(name, target) {
                    targets.insert(target);
                }
            }
        }
    }
    // Depth-first search; a module met again on the current path closes a cycle.
    fn visit<'a>(
        node: &'a str,
        edges: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<&'a str>> {
        if let Some(start) = path.iter().position(|&n| n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node);
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node);
        for &next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node);
        None
    }
    let mut done = BTreeSet::new();
    for &node in edges.keys() {
        if let Some(cycle) = visit(node, &edges, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}", cycle.join(" → "));
        }
    }
}
