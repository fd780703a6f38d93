//! `enhance --shard K/N`: one worker's share of a batch, and the summary it leaves.
//!
//! N workers of a batch engine (a Kubernetes Indexed Job, a Slurm array, a CI matrix)
//! each run the same command with their own K, and together cover the corpus exactly
//! once, without talking to each other. Each file goes to the shard its *key* hashes
//! to: the path of its output relative to the output folder, which for a folder input
//! is the file's path relative to that folder (`a/b.wav`) and for a file named on the
//! command line its name. The key is spelled with `/` between components and hashed as
//! bytes (UTF-8; on Unix a name that is not UTF-8 is hashed as its raw bytes), so the
//! share depends neither on where the corpus is mounted, nor on the platform, nor on
//! the order the file system lists a folder in.
//!
//! The rule, [`RULE`]: `shard = (fnv1a64(key) * N) >> 64`, FNV-1a over 64 bits (offset
//! basis 0xcbf29ce484222325, prime 0x100000001b3) scaled to `0..N` by its high bits
//! (the low bits of FNV-1a mix poorly: its lowest bit is the parity of the bytes'
//! lowest bits).
//!
//! Each worker writes a [`Summary`] of its share (by default
//! `OUT/.clearvox-shard-K-of-N.json`, hidden so that a later batch over OUT skips it)
//! that `clearvox merge-shards` checks. A worker run again after a crash redoes its
//! whole share: outputs are replaced atomically and the summary is rewritten.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use clearvox::io::os_reason;

use crate::plan::{self, Input, Job, Output, Plan};
use crate::report::{Failure, FileReport};

/// The name and version of the assignment rule, recorded in every summary: shards
/// made by different rules must not be merged.
pub const RULE: &str = "fnv1a64-relpath-mulshift/1";

/// The summary document's format and version.
pub const SUMMARY_FORMAT: &str = "clearvox-shard-summary/1";

/// `K/N`: shard K (0 to N−1) of N.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let Some((k, n)) = s.split_once('/') else {
            return Err(format!("'{s}' is not K/N (shard K of N, e.g. 0/4)"));
        };
        let count: u64 = n
            .trim()
            .parse()
            .map_err(|_| format!("shard count '{n}' in '{s}' is not a whole number"))?;
        if count == 0 {
            return Err(format!("shard count in '{s}' must be at least 1"));
        }
        let index: u64 = k.trim().parse().map_err(|_| {
            format!(
                "shard index '{k}' in '{s}' is not a whole number from 0 to {}",
                count - 1
            )
        })?;
        if index >= count {
            return Err(format!(
                "shard index {index} in '{s}' is out of range: K goes from 0 to {}",
                count - 1
            ));
        }
        Ok(Self { index, count })
    }
}

/// FNV-1a, 64 bits.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET_BASIS, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

/// The shard (0 to `count`−1) of the file whose key is `key`, by [`RULE`].
pub fn shard_of(key: &[u8], count: u64) -> u64 {
    ((u128::from(fnv1a64(key)) * u128::from(count)) >> 64) as u64
}

/// The key of a relative path: its components joined by `/`, as bytes.
pub fn key_of(rel: &Path) -> Vec<u8> {
    let mut key = Vec::new();
    for part in rel.components() {
        if let Component::Normal(name) = part {
            if !key.is_empty() {
                key.push(b'/');
            }
            key.extend_from_slice(&name_bytes(name));
        }
    }
    key
}

#[cfg(unix)]
fn name_bytes(name: &OsStr) -> Cow<'_, [u8]> {
    use std::os::unix::ffi::OsStrExt;
    Cow::Borrowed(name.as_bytes())
}

#[cfg(not(unix))]
fn name_bytes(name: &OsStr) -> Cow<'_, [u8]> {
    match name.to_string_lossy() {
        Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
        Cow::Owned(s) => Cow::Owned(s.into_bytes()),
    }
}

/// One worker's share of a batch: what it was given and when it started.
pub struct Share {
    shard: Shard,
    /// The key of each job kept, in the plan's order.
    keys: Vec<String>,
    /// Files in the whole batch, before the split.
    corpus_files: usize,
    inputs: Vec<String>,
    output: String,
    summary: PathBuf,
    started: String,
}

impl Share {
    /// Keeps in `plan` only the jobs of `shard`. `inputs` and `output` are the command
    /// line's; `summary` the summary's path if given; `others` the files the run reads
    /// or writes besides the audio (configuration, clips, model, report), which the
    /// summary may not be.
    pub fn take(
        plan: &mut Plan,
        shard: Shard,
        inputs: &[PathBuf],
        output: &Path,
        summary: Option<&Path>,
        others: &[&Path],
    ) -> Result<Self> {
        if !plan.batch {
            bail!(
                "--shard splits a batch: give a folder or several input files, and -o an \
                 existing folder"
            );
        }
        let summary = match summary {
            Some(path) => path.to_path_buf(),
            None => output.join(default_summary_name(shard)),
        };
        check_summary_path(&summary, plan, others)?;
        let corpus_files = plan.jobs.len();
        let mut keys = Vec::new();
        plan.jobs.retain(|job| {
            let key = key_of(job_rel(job, output));
            let mine = shard_of(&key, shard.count) == shard.index;
            if mine {
                keys.push(String::from_utf8_lossy(&key).into_owned());
            }
            mine
        });
        Ok(Self {
            shard,
            keys,
            corpus_files,
            inputs: inputs.iter().map(|p| p.display().to_string()).collect(),
            output: output.display().to_string(),
            summary,
            started: rfc3339_now(),
        })
    }

    /// Removes the summary an earlier run of this shard left, once every check has
    /// passed and before any file is enhanced: a worker that then fails or is killed
    /// leaves no summary, and `merge-shards` reports its shard missing instead of
    /// taking the earlier run's word for files this run may not have made.
    pub fn remove_stale_summary(&self) -> Result<()> {
        match fs::remove_file(&self.summary) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => bail!(
                "cannot remove the earlier shard summary {}: {}",
                self.summary.display(),
                os_reason(&e)
            ),
        }
    }

    /// One line for the log: which share this is and where its summary goes.
    pub fn describe(&self) -> String {
        format!(
            "shard {}/{}: {} of {} file(s); summary {}",
            self.shard.index,
            self.shard.count,
            self.keys.len(),
            self.corpus_files,
            self.summary.display()
        )
    }

    /// Writes the summary of the share: `outcomes` are the jobs' in `jobs`' order;
    /// `mode` the permission bits (`None`: the default).
    pub fn write_summary(
        &self,
        jobs: &[Job],
        outcomes: &[Result<FileReport, Failure>],
        mode: Option<u32>,
    ) -> Result<()> {
        let files: Vec<FileEntry> = self
            .keys
            .iter()
            .zip(jobs)
            .zip(outcomes)
            .map(|((key, job), outcome)| FileEntry {
                path: key.clone(),
                input: job.input_name(),
                output: job.output_name(),
                status: if outcome.is_ok() {
                    Status::Ok
                } else {
                    Status::Failed
                },
                error: outcome.as_ref().err().map(|f| f.error.clone()),
                input_bytes: match &job.input {
                    Input::File(p) => std::fs::metadata(p).ok().map(|m| m.len()),
                    Input::Stdin => None,
                },
                processing_s: outcome.as_ref().ok().map(|r| r.processing_s),
            })
            .collect();
        let failed = files.iter().filter(|f| f.status == Status::Failed).count();
        let summary = Summary {
            format: SUMMARY_FORMAT.into(),
            clearvox_version: env!("CARGO_PKG_VERSION").into(),
            rule: RULE.into(),
            shard: self.shard.index,
            shards: self.shard.count,
            inputs: self.inputs.clone(),
            output: self.output.clone(),
            started: self.started.clone(),
            finished: rfc3339_now(),
            corpus_files: self.corpus_files,
            counts: Counts {
                files: files.len(),
                ok: files.len() - failed,
                failed,
            },
            files,
        };
        crate::report::write_json(&self.summary, &summary, mode).map_err(|e| {
            anyhow::anyhow!(
                "cannot write shard summary {}: {}",
                self.summary.display(),
                os_reason(&e)
            )
        })
    }
}

/// `.clearvox-shard-K-of-N.json`.
pub fn default_summary_name(shard: Shard) -> String {
    format!(".clearvox-shard-{}-of-{}.json", shard.index, shard.count)
}

/// The path of a job's output relative to the output folder (a batch's outputs are
/// all inside it).
fn job_rel<'a>(job: &'a Job, output: &Path) -> &'a Path {
    match &job.output {
        Output::File { path, .. } => path.strip_prefix(output).unwrap_or(path),
        Output::Stdout => Path::new("-"),
    }
}

/// Refuses a summary path whose folder is missing, or that is a file the run reads or
/// writes (`others`: besides the audio).
fn check_summary_path(path: &Path, plan: &Plan, others: &[&Path]) -> Result<()> {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !folder.is_dir() {
        bail!("shard summary folder does not exist: {}", folder.display());
    }
    if path.is_dir() || path.file_name().is_none() {
        bail!("shard summary path {} does not name a file", path.display());
    }
    if let Some(f) = others.iter().find(|f| plan::same_file(f, path)) {
        bail!(
            "shard summary {} is the file {}: choose another path",
            path.display(),
            f.display()
        );
    }
    for job in &plan.jobs {
        let files = [
            match &job.input {
                Input::File(p) => Some(p.as_path()),
                Input::Stdin => None,
            },
            match &job.output {
                Output::File { path, .. } => Some(path.as_path()),
                Output::Stdout => None,
            },
        ];
        if let Some(f) = files
            .into_iter()
            .flatten()
            .find(|f| plan::same_file(f, path))
        {
            bail!(
                "shard summary {} is the file {}: choose another path",
                path.display(),
                f.display()
            );
        }
    }
    Ok(())
}

/// What became of one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Failed,
}

/// One file of a shard.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FileEntry {
    /// The key: the output's path relative to the output folder, `/`-separated
    /// (a name that is not UTF-8 is shown with U+FFFD).
    pub path: String,
    /// The input as given on this worker.
    pub input: String,
    pub output: String,
    pub status: Status,
    /// Why it failed, one line.
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub input_bytes: Option<u64>,
    /// Time spent on the file, seconds (files that were enhanced).
    #[serde(default)]
    pub processing_s: Option<f64>,
}

/// Files of the shard by outcome.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Counts {
    pub files: usize,
    pub ok: usize,
    pub failed: usize,
}

/// The summary a worker writes: `.clearvox-shard-K-of-N.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    /// [`SUMMARY_FORMAT`].
    pub format: String,
    pub clearvox_version: String,
    /// The assignment rule, [`RULE`].
    pub rule: String,
    /// K.
    pub shard: u64,
    /// N.
    pub shards: u64,
    /// The inputs as given on the command line (the corpus root).
    pub inputs: Vec<String>,
    /// The output folder as given.
    pub output: String,
    /// UTC, RFC 3339.
    pub started: String,
    pub finished: String,
    /// Files in the whole batch as this worker found it, all shards together.
    pub corpus_files: usize,
    pub counts: Counts,
    pub files: Vec<FileEntry>,
}

/// Now, UTC, as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn rfc3339_now() -> String {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(since.as_secs(), since.subsec_millis())
}

/// `secs` after the Unix epoch, UTC, as RFC 3339 with milliseconds.
fn rfc3339(secs: u64, millis: u32) -> String {
    let days = secs / 86_400;
    let rest = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_the_published_vectors() {
        // From the FNV reference test suite (Fowler, Noll, Vo).
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn the_assignment_is_fixed() {
        // These numbers are the rule: changing them changes RULE's version.
        assert_eq!(shard_of(b"a/b.wav", 1), 0);
        let got: Vec<u64> = ["a/b.wav", "x.wav", "deep/er/file.WAV", "ünï.wav"]
            .iter()
            .map(|k| shard_of(k.as_bytes(), 7))
            .collect();
        assert_eq!(got, FIXED_SHARDS_OF_7);
    }

    // Also computed independently: `((fnv1a64(key) * 7) >> 64)` in Python gives the same.
    const FIXED_SHARDS_OF_7: [u64; 4] = [5, 4, 6, 2];

    #[test]
    fn keys_use_slashes_and_ignore_dots() {
        assert_eq!(key_of(Path::new("a/./b/c.wav")), b"a/b/c.wav");
        assert_eq!(key_of(Path::new("c.wav")), b"c.wav");
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            let raw = Path::new(OsStr::from_bytes(b"d/\xff.wav"));
            assert_eq!(key_of(raw), b"d/\xff.wav");
        }
    }

    #[test]
    fn shards_are_balanced() {
        let n = 7;
        let mut sizes = vec![0usize; n as usize];
        for i in 0..7000 {
            let key = format!("speaker{:02}/utt{:04}.wav", i % 50, i);
            sizes[shard_of(key.as_bytes(), n) as usize] += 1;
        }
        for s in sizes {
            assert!((850..1150).contains(&s), "{s}");
        }
    }

    #[test]
    fn shard_specs_parse_and_refuse() {
        assert_eq!("2/7".parse::<Shard>(), Ok(Shard { index: 2, count: 7 }));
        assert_eq!("0/1".parse::<Shard>().map(|s| s.count), Ok(1));
        for (bad, phrase) in [
            ("3/3", "out of range"),
            ("-1/2", "not a whole number"),
            ("0/0", "at least 1"),
            ("a/b", "not a whole number"),
            ("3", "not K/N"),
        ] {
            let e = bad.parse::<Shard>().unwrap_err();
            assert!(e.contains(phrase), "{bad}: {e}");
        }
    }

    #[test]
    fn dates_are_utc_rfc3339() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(
            rfc3339(1_796_256_000 + 3661, 999),
            "2026-12-03T01:01:01.999Z"
        );
    }
}
