//! `budget-check`: checks clearvox's performance budgets (`benches/budgets.toml`) and
//! exits non-zero on any violation.
//!
//! A development tool of the clearvox source tree (an unpublished workspace member, so
//! `cargo install clearvox` never installs it); run it with `cargo run -p budget-check`.
//!
//! - **timing**: criterion's medians (`target/criterion`, from `cargo bench --bench
//!   pipeline`) as ratios to RNNoise alone measured in the same run, against ratio budgets;
//! - **instructions**: gungraun's callgrind counts (`target/gungraun`, from `cargo bench
//!   --bench instructions -- --save-summary=json`) against the committed baseline plus a
//!   tolerance;
//! - **latency**: measured here, by cross-correlating each preset's output with its input
//!   at 8, 16, 44.1 and 48 kHz;
//! - **memory**: measured here, the heap bytes a `Pipeline` holds after `Pipeline::new`,
//!   per preset, by a counting global allocator;
//! - **resamplers**: the rubato resampler each preset is documented to use is the one it
//!   uses.
//!
//! `--save-baseline` rewrites the instruction baseline from the latest counts and prints
//! what changed; `--calibrate` prints budgets for the current measurements by the rule
//! the committed ones follow.

mod budgets;
mod measure;
mod report;
mod results;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use clearvox::Preset;

use budgets::{Budgets, Entry, RatioEntry, SLACK};
use report::{Row, Verdict};

#[global_allocator]
static ALLOCATOR: counting_alloc::CountingAlloc = counting_alloc::CountingAlloc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
enum Section {
    Resamplers,
    Timing,
    Instructions,
    Latency,
    Memory,
}

/// Checks the performance budgets of benches/budgets.toml against the latest benchmark
/// results and its own latency and memory measurements; exits 1 on any violation.
#[derive(Parser, Debug)]
#[command(name = "budget-check")]
struct Args {
    /// The budgets file.
    #[arg(long, default_value_os_t = manifest_dir().join("benches/budgets.toml"))]
    budgets: PathBuf,
    /// Criterion's output folder (holds GROUP/BENCH/new/estimates.json); default
    /// `target/criterion`. Give it once per run of the benches to judge several runs
    /// together: a time ratio fails only when it is over budget in every one of them.
    #[arg(long)]
    criterion: Vec<PathBuf>,
    /// Folder searched for gungraun's summary.json files.
    #[arg(long, default_value_os_t = target_dir().join("gungraun/clearvox/instructions"))]
    instructions: PathBuf,
    /// The test data folder (the latency is measured on its clean speech).
    #[arg(long, default_value_os_t = manifest_dir().join("testdata"))]
    testdata: PathBuf,
    /// Check only these sections (comma-separated); all by default.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Section>,
    /// Write the latest instruction counts to the baseline file and print what changed.
    #[arg(long)]
    save_baseline: bool,
    /// Print the table as Markdown (as in the README).
    #[arg(long)]
    markdown: bool,
    /// Also print budgets for the current measurements, by the rule: 1.25 × the highest
    /// ratio measured on any machine (this one added) for time, min(goal, 1.25 ×
    /// measured) for memory, the measured value for latency.
    #[arg(long)]
    calibrate: bool,
}

/// The clearvox source tree this tool belongs to (it lives in `tools/budget-check`):
/// the budgets, the test recordings and the benches' results are found there.
fn manifest_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("target"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("budget-check: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Whether every budget holds.
fn run(args: &Args) -> Result<bool> {
    let budgets = Budgets::load(&args.budgets)?;
    if args.save_baseline {
        return save_baseline(args, &budgets).map(|()| true);
    }
    let wanted = |s: Section| args.only.is_empty() || args.only.contains(&s);
    let mut rows = Vec::new();
    let mut suggestions = String::new();
    if wanted(Section::Resamplers) {
        rows.extend(check_resamplers(&budgets)?);
    }
    if wanted(Section::Timing) {
        let (r, s) = check_timing(args, &budgets)?;
        rows.extend(r);
        suggestions.push_str(&s);
    }
    if wanted(Section::Instructions) {
        rows.extend(check_instructions(args, &budgets)?);
    }
    if wanted(Section::Latency) {
        let (r, s) = check_latency(args, &budgets)?;
        rows.extend(r);
        suggestions.push_str(&s);
    }
    if wanted(Section::Memory) {
        let (r, s) = check_memory(&budgets)?;
        rows.extend(r);
        suggestions.push_str(&s);
    }
    if args.markdown {
        report::print_markdown(&rows);
    } else {
        report::print(&rows);
    }
    let bad: Vec<&Row> = rows.iter().filter(|r| r.verdict != Verdict::Ok).collect();
    if args.calibrate {
        println!("\n# Budgets for these measurements ({SLACK} × the highest machine's ratio, this one's added; memory min(goal, {SLACK} × measured); latency as measured):\n{suggestions}");
    }
    println!();
    if bad.is_empty() {
        println!("budget-check: all {} budgets hold", rows.len());
        Ok(true)
    } else {
        println!(
            "budget-check: {} of {} budgets violated: {}",
            bad.len(),
            rows.len(),
            bad.iter()
                .map(|r| format!("{}/{}", r.section, r.name))
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(false)
    }
}

fn check_resamplers(budgets: &Budgets) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for preset in Preset::ALL {
        let used = serde_json::to_value(preset.config().resampler)?;
        let used = used.as_str().unwrap_or_default().to_string();
        let row = match budgets.resamplers.get(preset.name()) {
            None => Row::missing("resampler", preset.name(), "–".into(), "not documented"),
            Some(doc) => Row {
                section: "resampler",
                name: preset.name().into(),
                measured: used.clone(),
                budget: doc.kind.clone(),
                headroom: None,
                verdict: if doc.kind == used {
                    Verdict::Ok
                } else {
                    Verdict::Fail
                },
                note: doc.rubato.clone(),
            },
        };
        rows.push(row);
    }
    Ok(rows)
}

/// A number to three significant digits, rounded towards zero (so a budget rounded this
/// way is never looser than the rule allows).
fn floor_sig3(x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    let scale = 10f64.powi(2 - x.log10().floor() as i32);
    (x * scale).floor() / scale
}

/// A number to four significant digits, rounded to nearest (for recording a measurement).
fn round_sig4(x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    let scale = 10f64.powi(3 - x.log10().floor() as i32);
    (x * scale).round() / scale
}

fn suggest(name: &str, measured: f64, budget: f64, e: &Entry) -> String {
    let mut s = format!("\"{name}\" = {{ measured = {measured}, budget = {budget}");
    if let Some(g) = e.goal {
        s.push_str(&format!(", goal = {g}"));
    }
    s.push_str(" }\n");
    s
}

/// A `[timing.ratio]` line with this machine's ratio added to the recorded ones.
fn suggest_ratio(name: &str, measured: &[f64], budget: f64, e: &RatioEntry) -> String {
    let list: Vec<String> = measured.iter().map(|m| m.to_string()).collect();
    let mut s = format!(
        "\"{name}\" = {{ measured = [{}], budget = {budget}",
        list.join(", ")
    );
    if let Some(f) = e.frames {
        s.push_str(&format!(", frames = {f}"));
    }
    s.push_str(" }\n");
    s
}

/// Time per frame of every ratio bench in one criterion run, ns; `None` where a bench
/// was not run. Fails when the reference was not run.
fn criterion_run(dir: &Path, budgets: &Budgets) -> Result<(f64, BTreeMap<String, Option<f64>>)> {
    let t = &budgets.timing;
    let Some(reference) = results::criterion_estimate(dir, &t.reference, &t.statistic)? else {
        bail!(
            "no criterion result for the reference bench {} under {}: run `cargo bench --bench pipeline` first",
            t.reference,
            dir.display()
        );
    };
    let mut times = BTreeMap::new();
    for (name, e) in &t.ratio {
        let ns = results::criterion_estimate(dir, name, &t.statistic)?;
        let frames = e.frames.unwrap_or(1).max(1) as f64;
        times.insert(name.clone(), ns.map(|ns| ns / frames));
    }
    Ok((reference, times))
}

/// The time ratios of one or more criterion runs against their budgets. A bench fails
/// only when it is over budget in every run given (a burst of load on a shared machine
/// slows one run, a regression slows all); a bench missing from any run fails.
fn check_timing(args: &Args, budgets: &Budgets) -> Result<(Vec<Row>, String)> {
    let t = &budgets.timing;
    let dirs = if args.criterion.is_empty() {
        vec![target_dir().join("criterion")]
    } else {
        args.criterion.clone()
    };
    let runs = dirs
        .iter()
        .map(|d| criterion_run(d, budgets))
        .collect::<Result<Vec<_>>>()?;
    let references: Vec<String> = runs.iter().map(|(r, _)| fmt_ns(*r)).collect();
    let mut rows = vec![Row {
        section: "timing",
        name: t.reference.clone(),
        measured: "1×".into(),
        budget: "reference".into(),
        headroom: None,
        verdict: Verdict::Ok,
        note: format!("{} per 10 ms", references.join(", ")),
    }];
    let mut suggestions = String::from("[timing.ratio]\n");
    for (name, e) in &t.ratio {
        let per_frame: Option<Vec<f64>> = runs.iter().map(|(_, times)| times[name]).collect();
        let Some(per_frame) = per_frame else {
            rows.push(Row::missing(
                "timing",
                name,
                format!("{:.3}×", e.budget),
                "no criterion result",
            ));
            continue;
        };
        let ratios: Vec<f64> = per_frame
            .iter()
            .zip(&runs)
            .map(|(ns, (reference, _))| ns / reference)
            .collect();
        // The run that went best decides: over budget in every run means the best one
        // is over budget too.
        let (best, &ratio) = ratios
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(b.1))
            .unwrap_or((0, &f64::INFINITY));
        let mut note = format!("{} per 10 ms", fmt_ns(per_frame[best]));
        if let Some(frames) = e.frames.filter(|&f| f > 1) {
            let ns = per_frame[best] * frames as f64;
            let samples = frames as f64 * 480.0;
            note.push_str(&format!(
                ", {:.1} M samples/s ({:.0}× real time)",
                samples / ns * 1e3,
                frames as f64 * 1e7 / ns
            ));
        }
        if ratios.len() > 1 {
            let each: Vec<String> = ratios.iter().map(|r| format!("{r:.3}×")).collect();
            let over = ratios.iter().filter(|r| **r > e.budget).count();
            note.push_str(&format!(
                "; runs: {} (over budget in {over} of {})",
                each.join(", "),
                ratios.len()
            ));
        }
        rows.push(
            Row::compare("timing", name, ratio, e.budget, |v| format!("{v:.3}×")).with_note(note),
        );
        let mut measured = e.measured.clone();
        measured.push(round_sig4(ratio));
        let budget = floor_sig3(SLACK * budgets::highest(&measured));
        suggestions.push_str(&suggest_ratio(name, &measured, budget, e));
    }
    Ok((rows, suggestions))
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} µs", ns / 1e3)
    }
}

fn fmt_count(n: f64) -> String {
    let s = format!("{:.0}", n);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn check_instructions(args: &Args, budgets: &Budgets) -> Result<Vec<Row>> {
    let baseline_path = budgets.baseline_path();
    let baseline = budgets::load_baseline(&baseline_path)?;
    let counts = read_counts(&args.instructions)?;
    let tol = budgets.instructions.tolerance_pct;
    let mut rows = Vec::new();
    for (name, &base) in &baseline {
        let budget = (base as f64 * (1.0 + tol / 100.0)).floor();
        match counts.get(name) {
            None => rows.push(Row::missing(
                "instructions",
                name,
                fmt_count(budget),
                "no gungraun summary",
            )),
            Some(&n) => {
                let change = (n as f64 / base as f64 - 1.0) * 100.0;
                let mut note = format!("{change:+.2} % vs baseline");
                if change < -tol {
                    note.push_str(" (faster: refresh the baseline with --save-baseline)");
                }
                rows.push(
                    Row::compare("instructions", name, n as f64, budget, fmt_count).with_note(note),
                );
            }
        }
    }
    // The cost goals, as ratios of instruction counts (deterministic on any machine).
    let goals = &budgets.instructions;
    for (name, &goal) in &goals.goals {
        let budget = format!("{goal:.3}×");
        match (counts.get(name), counts.get(&goals.reference)) {
            (Some(&n), Some(&r)) if r > 0 => rows.push(
                Row::compare("goal", name, n as f64 / r as f64, goal, |v| {
                    format!("{v:.3}×")
                })
                .with_note(format!("instructions ÷ {}", goals.reference)),
            ),
            _ => rows.push(Row::missing(
                "goal",
                name,
                budget,
                "no gungraun summary for it or the reference",
            )),
        }
    }
    for name in counts.keys().filter(|n| !baseline.contains_key(*n)) {
        rows.push(Row::missing(
            "instructions",
            name,
            "–".into(),
            "measured but not in the baseline: add it with --save-baseline",
        ));
    }
    Ok(rows)
}

fn read_counts(dir: &Path) -> Result<BTreeMap<String, u64>> {
    if !dir.is_dir() {
        bail!(
            "no gungraun results under {}: run `cargo bench --bench instructions -- --save-summary=json` first",
            dir.display()
        );
    }
    let counts = results::instruction_counts(dir)?;
    if counts.is_empty() {
        bail!("no summary.json under {}", dir.display());
    }
    Ok(counts)
}

fn save_baseline(args: &Args, budgets: &Budgets) -> Result<()> {
    let path = budgets.baseline_path();
    let old = budgets::load_baseline(&path).unwrap_or_default();
    let new = read_counts(&args.instructions)?;
    println!("instruction baseline {}:", path.display());
    for name in old
        .keys()
        .chain(new.keys().filter(|n| !old.contains_key(*n)))
    {
        match (old.get(name), new.get(name)) {
            (Some(&o), Some(&n)) if o == n => {}
            (Some(&o), Some(&n)) => println!(
                "  {name}: {} -> {} ({:+.2} %)",
                fmt_count(o as f64),
                fmt_count(n as f64),
                (n as f64 / o as f64 - 1.0) * 100.0
            ),
            (None, Some(&n)) => println!("  {name}: new, {}", fmt_count(n as f64)),
            (Some(&o), None) => println!("  {name}: removed (was {})", fmt_count(o as f64)),
            (None, None) => {}
        }
    }
    budgets::save_baseline(&path, &new)?;
    println!("wrote {} counts", new.len());
    Ok(())
}

/// `preset@rate` for every preset and measured rate.
fn preset_rates() -> impl Iterator<Item = (Preset, u32, String)> {
    Preset::ALL.into_iter().flat_map(|p| {
        measure::RATES
            .into_iter()
            .map(move |r| (p, r, format!("{}@{r}", p.name())))
    })
}

fn check_latency(args: &Args, budgets: &Budgets) -> Result<(Vec<Row>, String)> {
    let mut rows = Vec::new();
    let mut suggestions = String::from("[latency]\n");
    for (preset, rate, name) in preset_rates() {
        let l = measure::preset_latency(&args.testdata, preset, rate)
            .with_context(|| format!("measuring the latency of {name}"))?;
        let ms = l.ms();
        let note = format!("{} samples at {rate} Hz, r = {:.2}", l.lag, l.correlation);
        let default = Entry {
            budget: 0.0,
            measured: None,
            goal: None,
        };
        let e = match budgets.latency.get(&name) {
            None => {
                rows.push(
                    Row::missing("latency", &name, "–".into(), "no budget")
                        .with_note(format!("measured {ms:.4} ms, {note}")),
                );
                &default
            }
            Some(e) => {
                rows.push(
                    Row::compare("latency", &name, ms, e.budget, |v| format!("{v:.4} ms"))
                        .with_note(note),
                );
                e
            }
        };
        // The measured value, to a tenth of a microsecond, rounded up.
        let b = (ms * 1e4).ceil() / 1e4;
        let b = e.goal.map_or(b, |g| b.min(g));
        suggestions.push_str(&suggest(&name, b, b, e));
    }
    Ok((rows, suggestions))
}

/// The rates memory is budgeted at: 48 kHz (no resampler) and 44.1 kHz (one each way).
const MEMORY_RATES: [u32; 2] = [48_000, 44_100];

fn check_memory(budgets: &Budgets) -> Result<(Vec<Row>, String)> {
    let mut rows = Vec::new();
    let mut suggestions = String::from("[memory]\n");
    for (preset, rate, name) in preset_rates().filter(|(_, r, _)| MEMORY_RATES.contains(r)) {
        let bytes = measure::pipeline_heap_bytes(preset, rate)? as f64;
        let fmt = |v: f64| format!("{} B", fmt_count(v));
        let default = Entry {
            budget: 0.0,
            measured: None,
            goal: None,
        };
        let e = match budgets.memory.get(&name) {
            None => {
                rows.push(
                    Row::missing("memory", &name, "–".into(), "no budget")
                        .with_note(format!("measured {}", fmt(bytes))),
                );
                &default
            }
            Some(e) => {
                rows.push(Row::compare("memory", &name, bytes, e.budget, fmt));
                e
            }
        };
        let b = (SLACK * bytes).floor();
        let b = e.goal.map_or(b, |g| b.min(g));
        suggestions.push_str(&suggest(&name, bytes, b, e));
    }
    Ok((rows, suggestions))
}
