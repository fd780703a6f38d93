//! The crate's `rust-version` is the truth: the highest `rust-version` that any of its
//! dependencies (as locked in `Cargo.lock`, normal dependencies of a default build)
//! declares. Only one toolchain is installed where this runs, so the manifest cannot be
//! checked by building with an old compiler; this keeps it from drifting below what
//! the dependencies need, and clippy's `incompatible_msrv` lint checks the standard
//! library APIs the crate itself uses against it.

use std::collections::{BTreeSet, HashMap};
use std::process::Command;

use serde_json::Value;

/// `1.87`, `1.87.0` → (1, 87, 0).
fn version(text: &str) -> (u64, u64, u64) {
    let mut parts = text.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    let mut next = || parts.next().unwrap_or(0);
    (next(), next(), next())
}

#[test]
fn rust_version_is_at_least_what_the_locked_dependencies_need() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata is JSON");

    let packages: HashMap<&str, &Value> = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| (p["id"].as_str().expect("package id"), p))
        .collect();
    let nodes: HashMap<&str, &Value> = metadata["resolve"]["nodes"]
        .as_array()
        .expect("resolve nodes")
        .iter()
        .map(|n| (n["id"].as_str().expect("node id"), n))
        .collect();
    let root = packages
        .values()
        .find(|p| p["name"] == "clearvox")
        .expect("the clearvox package");

    // Everything a user's build of the library compiles: normal dependencies only.
    let mut seen = BTreeSet::new();
    let mut todo = vec![root["id"].as_str().expect("root id")];
    while let Some(id) = todo.pop() {
        if !seen.insert(id) {
            continue;
        }
        for dep in nodes[id]["deps"].as_array().expect("deps") {
            let normal = dep["dep_kinds"]
                .as_array()
                .expect("dep_kinds")
                .iter()
                .any(|k| k["kind"].is_null());
            if normal {
                todo.push(dep["pkg"].as_str().expect("dep id"));
            }
        }
    }
    let (needed, by) = seen
        .iter()
        .filter(|id| **id != root["id"])
        .filter_map(|id| {
            let p = packages[id];
            let v = p["rust_version"].as_str()?;
            Some((version(v), format!("{} {}", p["name"], p["version"])))
        })
        .max()
        .expect("some dependency declares a rust-version");
    let declared = version(
        root["rust_version"]
            .as_str()
            .expect("clearvox declares rust-version"),
    );
    assert!(
        declared >= needed,
        "Cargo.toml says rust-version {declared:?}, but {by} needs {needed:?}: \
         raise rust-version to the highest of the dependencies"
    );
}
