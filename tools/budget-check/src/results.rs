//! Reading what the benchmarks wrote: criterion's `estimates.json` and gungraun's
//! `summary.json` files.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use serde_json::Value;

/// The statistic (`median` or `mean`) of bench `name` (`group/bench`), nanoseconds per
/// iteration, from `<dir>/<group>/<bench>/new/estimates.json`. `None` when the bench
/// has not been run.
pub fn criterion_estimate(dir: &Path, name: &str, statistic: &str) -> Result<Option<f64>> {
    let path = dir.join(name).join("new").join("estimates.json");
    if !path.exists() {
        return Ok(None);
    }
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let v: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    v[statistic]["point_estimate"]
        .as_f64()
        .map(Some)
        .ok_or_else(|| anyhow!("{}: no {statistic}.point_estimate", path.display()))
}

/// Instruction counts (`Ir`) of every gungraun benchmark summary under `dir`, by bench
/// name `<function>/<id>` (e.g. `stage/rnnoise`).
pub fn instruction_counts(dir: &Path) -> Result<BTreeMap<String, u64>> {
    let mut found = BTreeMap::new();
    visit(dir, &mut found)?;
    Ok(found)
}

fn visit(dir: &Path, found: &mut BTreeMap<String, u64>) -> Result<()> {
    let entries = fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            visit(&path, found)?;
        } else if path.file_name().is_some_and(|n| n == "summary.json") {
            let (name, ir) = read_summary(&path)?;
            found.insert(name, ir);
        }
    }
    Ok(())
}

/// The bench name and callgrind instruction count of one `summary.json`.
fn read_summary(path: &Path) -> Result<(String, u64)> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let v: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let function = v["function_name"]
        .as_str()
        .ok_or_else(|| anyhow!("{}: no function_name", path.display()))?;
    let name = match v["id"].as_str() {
        Some(id) => format!("{function}/{id}"),
        None => function.to_string(),
    };
    let ir = v["profiles"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["tool"] == "Callgrind")
        .find_map(|p| p["data"]["total"]["metrics"]["Ir"]["values"]["new"].as_u64())
        .ok_or_else(|| anyhow!("{}: no callgrind Ir count", path.display()))?;
    Ok((name, ir))
}
