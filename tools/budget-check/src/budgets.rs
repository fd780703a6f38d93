//! `benches/budgets.toml` and the instruction baseline it points to.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// How much looser than the committed measurement a ratio or memory budget may be: a
/// real regression of more than this is caught.
pub const SLACK: f64 = 1.25;

/// One budgeted quantity.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The most the quantity may be.
    pub budget: f64,
    /// What the committed code measured when the budget was set.
    pub measured: Option<f64>,
    /// The goal the budget may never be looser than.
    pub goal: Option<f64>,
}

/// One time-ratio budget.
///
/// A time ratio is not the same in every run (a shared machine's speed drifts while the
/// benches run one after another, and processors of one kind differ), so the budget is
/// set against the highest ratio of the recorded calibration runs, each run's figure
/// kept.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RatioEntry {
    /// The most the ratio may be.
    pub budget: f64,
    /// The committed code's ratio in each calibration run (one figure per line of
    /// `Timing::machines`, in order).
    pub measured: Vec<f64>,
    /// The bench times this many 10 ms frames per iteration (the offline benches); its
    /// time is divided by it before the ratio is taken.
    pub frames: Option<u64>,
}

impl RatioEntry {
    /// The highest ratio of the calibration runs.
    pub fn highest(&self) -> f64 {
        highest(&self.measured)
    }
}

/// The highest of some ratios (0 for none).
pub fn highest(ratios: &[f64]) -> f64 {
    ratios.iter().copied().fold(0.0, f64::max)
}

/// Time budgets: ratios to a reference bench measured in the same run.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timing {
    /// The bench every ratio divides by.
    pub reference: String,
    /// Criterion statistic used (`median` or `mean`).
    pub statistic: String,
    /// The machines the ratios were measured on, one line each (date, processor, the
    /// reference's time per frame): what `RatioEntry::measured` lists, in order.
    pub machines: Vec<String>,
    /// Bench name → ratio budget.
    pub ratio: BTreeMap<String, RatioEntry>,
}

/// Instruction-count budgets: the committed baseline plus a tolerance, and cost goals
/// as ratios of instruction counts.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instructions {
    /// The baseline file, relative to the budgets file.
    pub baseline: PathBuf,
    /// How far above the baseline a count may go, percent.
    pub tolerance_pct: f64,
    /// The bench the goals divide by.
    pub reference: String,
    /// Bench name → the most its instruction count may be, as a multiple of the
    /// reference's. Deterministic, so these hold on every machine, unlike a time ratio.
    pub goals: BTreeMap<String, f64>,
}

/// What `benches/budgets.toml` says about the resampler of one preset.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResamplerChoice {
    /// `sinc` or `fft`, as in the configuration: checked against the preset.
    pub kind: String,
    /// The rubato type and its settings.
    pub rubato: String,
    /// Why this preset uses it.
    pub why: String,
}

/// The whole budgets file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budgets {
    /// Preset name → its resampler.
    pub resamplers: BTreeMap<String, ResamplerChoice>,
    pub timing: Timing,
    pub instructions: Instructions,
    /// `preset@rate` → algorithmic latency, ms.
    pub latency: BTreeMap<String, Entry>,
    /// `preset@rate` → heap bytes held after `Pipeline::new`.
    pub memory: BTreeMap<String, Entry>,
    /// Where the file was read from.
    #[serde(skip)]
    pub path: PathBuf,
}

impl Budgets {
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut b: Budgets =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        b.path = path.to_path_buf();
        b.validate()?;
        Ok(b)
    }

    /// A budget looser than its goal, or looser than the tightness rule allows against
    /// its recorded measurement, is an error in the file, not a pass.
    fn validate(&self) -> Result<()> {
        let machines = self.timing.machines.len();
        for (name, e) in &self.timing.ratio {
            let at = || format!("{}: [timing.ratio] \"{name}\"", self.path.display());
            if !(e.budget.is_finite() && e.budget > 0.0) {
                bail!("{}: bad budget {}", at(), e.budget);
            }
            if e.measured.len() != machines
                || e.measured.iter().any(|m| !(m.is_finite() && *m > 0.0))
            {
                bail!(
                    "{}: `measured` needs one positive ratio per machine of [timing] machines ({machines})",
                    at()
                );
            }
            let highest = e.highest();
            if e.budget > highest * SLACK * (1.0 + 1e-3) + 1e-4 {
                bail!(
                    "{}: budget {} is looser than {SLACK} × the highest measured {highest}",
                    at(),
                    e.budget
                );
            }
        }
        for (name, goal) in &self.instructions.goals {
            if !(goal.is_finite() && *goal > 0.0) {
                bail!(
                    "{}: [instructions.goals] \"{name}\": bad goal {goal}",
                    self.path.display()
                );
            }
        }
        // (section, entries, most a budget may exceed its recorded measurement by)
        let sections = [
            ("memory", &self.memory, SLACK),
            ("latency", &self.latency, 1.0),
        ];
        for (section, entries, slack) in sections {
            for (name, e) in entries {
                let at = || format!("{}: [{section}] \"{name}\"", self.path.display());
                if !(e.budget.is_finite() && e.budget >= 0.0) {
                    bail!("{}: bad budget {}", at(), e.budget);
                }
                if let Some(goal) = e.goal {
                    if e.budget > goal {
                        bail!(
                            "{}: budget {} is looser than its goal {goal}",
                            at(),
                            e.budget
                        );
                    }
                }
                // Measurements are recorded rounded (latency to 0.1 µs,
                // the rest to four significant digits): allow for that rounding only.
                if let Some(m) = e.measured {
                    if e.budget > m * slack * (1.0 + 1e-3) + 1e-4 {
                        bail!(
                            "{}: budget {} is looser than {slack} × the measured {m}",
                            at(),
                            e.budget
                        );
                    }
                }
            }
        }
        for (preset, r) in &self.resamplers {
            if r.rubato.trim().is_empty() || r.why.trim().is_empty() {
                bail!(
                    "{}: [resamplers] {preset}: say which rubato resampler and why",
                    self.path.display()
                );
            }
        }
        if !matches!(self.timing.statistic.as_str(), "median" | "mean") {
            bail!(
                "{}: timing.statistic must be \"median\" or \"mean\"",
                self.path.display()
            );
        }
        if !(0.0..=100.0).contains(&self.instructions.tolerance_pct) {
            bail!(
                "{}: instructions.tolerance_pct must be in 0..100",
                self.path.display()
            );
        }
        Ok(())
    }

    /// The instruction baseline file.
    pub fn baseline_path(&self) -> PathBuf {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        dir.join(&self.instructions.baseline)
    }
}

/// The committed instruction counts: bench name → instructions.
pub fn load_baseline(path: &Path) -> Result<BTreeMap<String, u64>> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Writes the instruction baseline, with a header saying where it comes from.
pub fn save_baseline(path: &Path, counts: &BTreeMap<String, u64>) -> Result<()> {
    let mut text = String::from(
        "# Instruction counts of benches/instructions.rs (callgrind `Ir`, 100 frames of 10 ms each),\n\
         # the baseline of the instruction budgets in budgets.toml. Written by\n\
         # `cargo run --release -p budget-check -- --save-baseline`: do not edit by hand.\n",
    );
    for (name, n) in counts {
        text.push_str(&format!("\"{name}\" = {n}\n"));
    }
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
