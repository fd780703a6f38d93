//! `clearvox merge-shards`: checks that the shards of a batch (`enhance --shard K/N`)
//! together enhanced every file exactly once, from the summaries they wrote.
//!
//! The summaries must agree on N and on the assignment rule; every shard 0 to N−1 must
//! be there once; no file may be listed twice, be listed by a shard the rule does not
//! give it to, or have failed; and with `--expect-dir`, every `.wav` file below that
//! folder must be listed, and nothing else. Each problem is one line on stdout, then
//! one verdict line; the exit code is 0 only when all is exactly once and ok.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};
use clap::Args;
use serde::Serialize;

use clearvox::io::os_reason;

use crate::shard::{self, FileEntry, Status, Summary, RULE, SUMMARY_FORMAT};

/// The merged document's format and version.
const MERGED_FORMAT: &str = "clearvox-shard-merge/1";

/// Missing shards named one per line; the rest are counted in one more line.
const MISSING_SHARDS_NAMED: u64 = 100;

/// Arguments of `clearvox merge-shards`.
#[derive(Args, Debug)]
#[command(after_help = "\
Each worker of `clearvox enhance DIR -o OUT --shard K/N` writes its summary to
OUT/.clearvox-shard-K-of-N.json (or to its --shard-summary). Give those files, or OUT
itself: every .clearvox-shard-*-of-*.json in a folder given is read. Problems are
printed one per line (missing shard, duplicate shard, failed, duplicated, misassigned,
missing file, extra file), then a verdict; the exit code is 0 only if every file was
enhanced exactly once.")]
pub struct MergeArgs {
    /// Shard summaries, or folders holding them.
    #[arg(value_name = "SUMMARY", required = true)]
    pub summaries: Vec<PathBuf>,

    /// The corpus folder the shards were given: every .wav file below it must have
    /// been enhanced exactly once, and no other.
    #[arg(long, value_name = "DIR")]
    pub expect_dir: Option<PathBuf>,

    /// Write the merged summary (every shard's files, the problems, the verdict).
    #[arg(long, value_name = "FILE.json")]
    pub json: Option<PathBuf>,
}

/// A summary and the file it was read from.
struct Read {
    path: PathBuf,
    summary: Summary,
}

/// One file of the merged document.
#[derive(Serialize)]
struct MergedFile<'a> {
    shard: u64,
    #[serde(flatten)]
    entry: &'a FileEntry,
}

/// The `--json` document.
#[derive(Serialize)]
struct Merged<'a> {
    format: &'static str,
    clearvox_version: &'static str,
    rule: &'a str,
    shards: u64,
    summaries: Vec<String>,
    expect_dir: Option<String>,
    ok: bool,
    problems: &'a [String],
    files: Vec<MergedFile<'a>>,
}

/// Runs `clearvox merge-shards`.
pub fn run(args: &MergeArgs) -> Result<ExitCode> {
    let paths = summary_paths(&args.summaries)?;
    let mut reads = Vec::with_capacity(paths.len());
    for path in paths {
        let summary = read_summary(&path)?;
        reads.push(Read { path, summary });
    }
    // The output folder, as the first summary names it, is skipped as the batch
    // skipped it (an OUT inside the corpus).
    let output = reads.first().map(|r| Path::new(&r.summary.output));
    let expected = match &args.expect_dir {
        Some(dir) => Some(corpus_keys(dir, output)?),
        None => None,
    };
    if let Some(path) = &args.json {
        crate::report::check_path(path)?;
        if let Some(r) = reads.iter().find(|r| crate::plan::same_file(&r.path, path)) {
            bail!(
                "--json {} is the shard summary {}: choose another path",
                path.display(),
                r.path.display()
            );
        }
    }

    let mut problems = Vec::new();
    let Some(first) = reads.first() else {
        bail!("no shard summaries given");
    };
    let count = first.summary.shards;
    for r in &reads[1..] {
        if r.summary.shards != count {
            problems.push(format!(
                "shard count differs: {} says {} shard(s), {} says {}",
                first.path.display(),
                count,
                r.path.display(),
                r.summary.shards
            ));
        }
        if r.summary.rule != first.summary.rule {
            problems.push(format!(
                "assignment rule differs: {} uses {}, {} uses {}",
                first.path.display(),
                first.summary.rule,
                r.path.display(),
                r.summary.rule
            ));
        }
        if r.summary.corpus_files != first.summary.corpus_files {
            problems.push(format!(
                "the shards saw different corpora: {} found {} file(s), {} found {}",
                first.path.display(),
                first.summary.corpus_files,
                r.path.display(),
                r.summary.corpus_files
            ));
        }
    }
    if first.summary.rule != RULE {
        problems.push(format!(
            "{}: assignment rule {} is not this version's ({RULE}): the split cannot be checked",
            first.path.display(),
            first.summary.rule
        ));
    }
    let consistent = problems.is_empty();

    // Each shard once; a second summary of a shard is reported and not merged.
    let mut by_shard: BTreeMap<u64, &Read> = BTreeMap::new();
    for r in &reads {
        if r.summary.shard >= r.summary.shards {
            problems.push(format!(
                "{}: shard {} of {} is out of range",
                r.path.display(),
                r.summary.shard,
                r.summary.shards
            ));
        } else if let Some(other) = by_shard.get(&r.summary.shard) {
            problems.push(format!(
                "duplicate shard {} of {}: {} and {}",
                r.summary.shard,
                count,
                other.path.display(),
                r.path.display()
            ));
        } else {
            by_shard.insert(r.summary.shard, r);
        }
    }
    if consistent {
        // Found by walking up from 0 past the shards present: a summary claiming a
        // huge N costs a bounded number of steps and lines.
        let absent = count.saturating_sub(by_shard.len() as u64);
        let mut named = 0;
        let mut k = 0;
        while named < absent.min(MISSING_SHARDS_NAMED) {
            if !by_shard.contains_key(&k) {
                problems.push(format!(
                    "missing shard {k} of {count}: no summary (.clearvox-shard-{k}-of-{count}.json)"
                ));
                named += 1;
            }
            k += 1;
        }
        if absent > named {
            problems.push(format!(
                "missing {} more shard(s) of {count}",
                absent - named
            ));
        }
    }

    // Each file once, by the shard the rule gives it to, and enhanced.
    let mut done: BTreeMap<&str, u64> = BTreeMap::new();
    let mut files = Vec::new();
    let (mut failed, mut duplicated, mut misassigned) = (0, 0, 0);
    for (&k, r) in &by_shard {
        for entry in &r.summary.files {
            files.push(MergedFile { shard: k, entry });
            if let Some(other) = done.insert(&entry.path, k) {
                duplicated += 1;
                problems.push(format!(
                    "duplicated: {} (shards {other} and {k})",
                    entry.path
                ));
            }
            if entry.status == Status::Failed {
                failed += 1;
                problems.push(format!(
                    "failed: {} (shard {k}): {}",
                    entry.path,
                    entry.error.as_deref().unwrap_or("no reason given")
                ));
            }
            // A name that is not UTF-8 is stored with U+FFFD: its hash cannot be redone.
            let rule_says = shard::shard_of(entry.path.as_bytes(), count);
            if r.summary.rule == RULE && !entry.path.contains('\u{fffd}') && rule_says != k {
                misassigned += 1;
                problems.push(format!(
                    "misassigned: {} done by shard {k}, the rule gives shard {rule_says}",
                    entry.path
                ));
            }
        }
    }

    let (mut missing, mut extra) = (0, 0);
    // Without the corpus at hand, the shards' own count of it: with every shard
    // present, the files they list must add up to it (a file renamed between two
    // workers' starts is otherwise skipped by both).
    if consistent && by_shard.len() as u64 == count {
        // Distinct files: one done twice is reported above, and must not hide one missed.
        let listed = done.len();
        let corpus = first.summary.corpus_files;
        if listed < corpus {
            missing += corpus - listed;
            problems.push(format!(
                "missing: the shards list {listed} file(s) of the {corpus} the corpus held"
            ));
        } else if listed > corpus {
            extra += listed - corpus;
            problems.push(format!(
                "extra: the shards list {listed} file(s), the corpus held {corpus}"
            ));
        }
    }
    if let (Some(expected), Some(dir)) = (&expected, &args.expect_dir) {
        for key in expected.iter().filter(|k| !done.contains_key(k.as_str())) {
            missing += 1;
            problems.push(format!(
                "missing: {key} (shard {} of {count}; no summary lists it)",
                shard::shard_of(key.as_bytes(), count)
            ));
        }
        for (key, k) in done.iter().filter(|(key, _)| !expected.contains(**key)) {
            extra += 1;
            problems.push(format!(
                "extra: {key} (shard {k}; not in {})",
                dir.display()
            ));
        }
    }

    for p in &problems {
        println!("{p}");
    }
    let ok = problems.is_empty();
    if ok {
        println!(
            "ok: {} file(s) in {count} shard(s), each enhanced exactly once",
            done.len()
        );
    } else {
        let tally = [
            (missing, "missing file(s)"),
            (extra, "extra file(s)"),
            (duplicated, "duplicated file(s)"),
            (failed, "failed file(s)"),
            (misassigned, "misassigned file(s)"),
        ];
        let mut parts: Vec<String> = tally
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect();
        let shard_problems = problems
            .len()
            .saturating_sub(missing + extra + duplicated + failed + misassigned);
        if shard_problems > 0 {
            parts.push(format!("{shard_problems} problem(s) with the summaries"));
        }
        println!("not exactly once: {}", parts.join(", "));
    }

    if let Some(path) = &args.json {
        let merged = Merged {
            format: MERGED_FORMAT,
            clearvox_version: env!("CARGO_PKG_VERSION"),
            rule: &first.summary.rule,
            shards: count,
            summaries: reads.iter().map(|r| r.path.display().to_string()).collect(),
            expect_dir: args.expect_dir.as_ref().map(|d| d.display().to_string()),
            ok,
            problems: &problems,
            files,
        };
        crate::report::write_json(path, &merged, None).map_err(|e| {
            anyhow!(
                "cannot write merged summary {}: {}",
                path.display(),
                os_reason(&e)
            )
        })?;
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The summary files named by `args`: files as given, folders searched (not below) for
/// `.clearvox-shard-*-of-*.json`; the same file named twice is read once.
fn summary_paths(args: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = Vec::new();
    for arg in args {
        if arg.is_dir() {
            let entries = fs::read_dir(arg)
                .map_err(|e| anyhow!("cannot read folder {}: {}", arg.display(), os_reason(&e)))?;
            let mut found = Vec::new();
            for entry in entries {
                let entry = entry.map_err(|e| {
                    anyhow!("cannot read folder {}: {}", arg.display(), os_reason(&e))
                })?;
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.starts_with(".clearvox-shard-")
                    && name.ends_with(".json")
                    && name.contains("-of-")
                {
                    found.push(entry.path());
                }
            }
            if found.is_empty() {
                bail!(
                    "no shard summaries (.clearvox-shard-K-of-N.json) in {}",
                    arg.display()
                );
            }
            found.sort();
            paths.extend(found);
        } else {
            paths.push(arg.clone());
        }
    }
    let mut unique: Vec<PathBuf> = Vec::new();
    for p in paths {
        if !unique.iter().any(|u| crate::plan::same_file(u, &p)) {
            unique.push(p);
        }
    }
    Ok(unique)
}

/// Reads and checks one summary; any fault is one error naming the file.
fn read_summary(path: &Path) -> Result<Summary> {
    let what = |reason: String| anyhow!("shard summary {}: {reason}", path.display());
    let text = fs::read_to_string(path).map_err(|e| what(os_reason(&e)))?;
    let summary: Summary = serde_json::from_str(&text)
        .map_err(|e| what(format!("not a clearvox shard summary ({e})")))?;
    if summary.format != SUMMARY_FORMAT {
        return Err(what(format!(
            "format '{}' is not {SUMMARY_FORMAT}",
            summary.format
        )));
    }
    if summary.shards == 0 {
        return Err(what("0 shards".into()));
    }
    Ok(summary)
}

/// The keys of the `.wav` files below `dir`: their paths relative to it.
fn corpus_keys(dir: &Path, output: Option<&Path>) -> Result<BTreeSet<String>> {
    if !dir.is_dir() {
        bail!("--expect-dir {} is not a folder", dir.display());
    }
    let files = crate::plan::wav_files(dir, output)?;
    Ok(files
        .iter()
        .map(|f| {
            let rel = f.strip_prefix(dir).unwrap_or(f);
            String::from_utf8_lossy(&shard::key_of(rel)).into_owned()
        })
        .collect())
}
