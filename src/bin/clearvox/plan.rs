//! Turns `IN... -o OUT` into a list of jobs (one input file, one output), checking
//! everything that can be checked before any audio is read.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use clearvox::io::os_reason;

/// Where a job reads from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    Stdin,
    File(PathBuf),
}

/// Where a job writes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Stdout,
    File {
        path: PathBuf,
        /// Create missing folders between the output folder and the file (folder
        /// mirroring); otherwise the file's folder must exist.
        create_folders: bool,
    },
}

/// One file to enhance.
#[derive(Clone, Debug)]
pub struct Job {
    pub input: Input,
    pub output: Output,
}

impl Job {
    /// The input as shown in messages and reports.
    pub fn input_name(&self) -> String {
        match &self.input {
            Input::Stdin => "-".into(),
            Input::File(p) => p.display().to_string(),
        }
    }

    /// The output as shown in messages and reports.
    pub fn output_name(&self) -> String {
        match &self.output {
            Output::Stdout => "-".into(),
            Output::File { path, .. } => path.display().to_string(),
        }
    }
}

/// The jobs of one run.
#[derive(Debug)]
pub struct Plan {
    pub jobs: Vec<Job>,
    /// Several inputs or a folder: failures are collected instead of ending the run.
    pub batch: bool,
}

fn is_dash(p: &Path) -> bool {
    p.as_os_str() == "-"
}

fn is_wav(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("wav"))
}

fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.to_str().is_some_and(|n| n.starts_with('.'))
}

/// Plans the run for `inputs` and `output`.
pub fn plan(inputs: &[PathBuf], output: &Path) -> Result<Plan> {
    if inputs.is_empty() {
        bail!("no input given");
    }
    if inputs.iter().any(|p| is_dash(p)) {
        if inputs.len() > 1 {
            bail!("`-` (stdin) must be the only input");
        }
        let output = if is_dash(output) {
            Output::Stdout
        } else {
            if output.is_dir() {
                bail!(
                    "output {} is a folder: reading from stdin needs an output file or `-`",
                    output.display()
                );
            }
            single_output(output)?
        };
        if let Output::File { path, .. } = &output {
            if stdin_is(path) {
                bail!(
                    "output {} is the file stdin reads: choose another output",
                    path.display()
                );
            }
        }
        return Ok(Plan {
            jobs: vec![Job {
                input: Input::Stdin,
                output,
            }],
            batch: false,
        });
    }
    if inputs.len() == 1 && !inputs[0].is_dir() {
        let input = &inputs[0];
        let output = if is_dash(output) {
            Output::Stdout
        } else if output.is_dir() {
            let Some(name) = input.file_name() else {
                bail!("input {} does not name a file", input.display());
            };
            single_output(&output.join(name))?
        } else {
            single_output(output)?
        };
        check_not_input(input, &output)?;
        return Ok(Plan {
            jobs: vec![Job {
                input: Input::File(input.clone()),
                output,
            }],
            batch: false,
        });
    }

    // A folder or several inputs: OUT is an existing folder.
    if is_dash(output) {
        bail!("`-o -` (stdout) takes a single input file, not a folder or several inputs");
    }
    match fs::metadata(output) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => bail!(
            "output {} is not a folder: with a folder or several inputs, -o must name an existing folder",
            output.display()
        ),
        Err(_) => bail!("output folder does not exist: {}", output.display()),
    }
    let out_canon = fs::canonicalize(output).ok();
    let mut jobs = Vec::new();
    let mut folders_without_wav = Vec::new();
    for input in inputs {
        if input.is_dir() {
            if out_canon.is_some() && fs::canonicalize(input).ok() == out_canon {
                bail!(
                    "output folder {} is the input folder {}: choose another output folder",
                    output.display(),
                    input.display()
                );
            }
            let mut found = Vec::new();
            let mut visited = HashSet::new();
            walk(input, out_canon.as_deref(), &mut visited, &mut found)?;
            if found.is_empty() {
                folders_without_wav.push(input.display().to_string());
            }
            found.sort();
            for file in found {
                let rel = file.strip_prefix(input).unwrap_or(&file).to_path_buf();
                jobs.push(Job {
                    output: Output::File {
                        path: output.join(rel),
                        create_folders: true,
                    },
                    input: Input::File(file),
                });
            }
        } else {
            let Some(name) = input.file_name() else {
                bail!("input {} does not name a file", input.display());
            };
            jobs.push(Job {
                output: Output::File {
                    path: output.join(name),
                    create_folders: false,
                },
                input: Input::File(input.clone()),
            });
        }
    }
    if jobs.is_empty() {
        bail!("no .wav files found in {}", folders_without_wav.join(", "));
    }
    let mut seen: HashMap<PathBuf, &Job> = HashMap::new();
    for job in &jobs {
        if let (Input::File(input), Output::File { path, .. }) = (&job.input, &job.output) {
            if let Some(other) = seen.get(path) {
                bail!(
                    "{} and {} would both be written to {}",
                    other.input_name(),
                    input.display(),
                    path.display()
                );
            }
            check_not_input(input, &job.output)?;
            seen.insert(path.clone(), job);
        }
    }
    Ok(Plan { jobs, batch: true })
}

/// The output of a single-file run: its folder must exist.
fn single_output(path: &Path) -> Result<Output> {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !folder.is_dir() {
        bail!("output folder does not exist: {}", folder.display());
    }
    if path.file_name().is_none() {
        bail!("output path {} does not name a file", path.display());
    }
    Ok(Output::File {
        path: path.to_path_buf(),
        create_folders: false,
    })
}

/// Refuses to write an output over its own input.
fn check_not_input(input: &Path, output: &Output) -> Result<()> {
    let Output::File { path, .. } = output else {
        return Ok(());
    };
    if same_file(input, path) {
        bail!(
            "output {} is the input file itself: choose another output",
            path.display()
        );
    }
    Ok(())
}

/// Refuses outputs that are one of the files the run reads besides its audio inputs
/// (the `--config` file, the noise clip, the model).
pub fn check_other_inputs(plan: &Plan, others: &[PathBuf]) -> Result<()> {
    for job in &plan.jobs {
        if let Output::File { path, .. } = &job.output {
            if let Some(other) = others.iter().find(|o| same_file(o, path)) {
                bail!(
                    "output {} is the input file {}: choose another output",
                    path.display(),
                    other.display()
                );
            }
        }
    }
    Ok(())
}

/// Refuses a report path that is any file the run reads or writes: an input (audio or
/// `others`) would be destroyed, an output replaced by the report.
pub fn check_report(report: &Path, plan: &Plan, others: &[PathBuf]) -> Result<()> {
    let inputs = plan.jobs.iter().filter_map(|j| match &j.input {
        Input::File(p) => Some(p.as_path()),
        Input::Stdin => None,
    });
    if let Some(input) = inputs
        .chain(others.iter().map(PathBuf::as_path))
        .find(|i| same_file(i, report))
    {
        bail!(
            "report {} is the input file {}: choose another report path",
            report.display(),
            input.display()
        );
    }
    if plan.jobs.iter().any(|j| j.input == Input::Stdin) && stdin_is(report) {
        bail!(
            "report {} is the file stdin reads: choose another report path",
            report.display()
        );
    }
    for job in &plan.jobs {
        if let Output::File { path, .. } = &job.output {
            if same_file(path, report) {
                bail!(
                    "report {} is the output file {}: choose another report path",
                    report.display(),
                    path.display()
                );
            }
        }
    }
    Ok(())
}

/// Whether `a` and `b` name the same file: for two existing paths, the same device and
/// inode (symbolic links, `./` and `..`, hard links); otherwise the same canonical
/// folder and file name, so that two spellings of a file still to be created match.
pub fn same_file(a: &Path, b: &Path) -> bool {
    if let (Ok(ma), Ok(mb)) = (fs::metadata(a), fs::metadata(b)) {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            return ma.dev() == mb.dev() && ma.ino() == mb.ino();
        }
        #[cfg(not(unix))]
        {
            let _ = (ma, mb);
            return fs::canonicalize(a).ok() == fs::canonicalize(b).ok();
        }
    }
    match (resolved(a), resolved(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// Whether stdin is the file at `path` (`< file`).
fn stdin_is(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (stdin_metadata(), fs::metadata(path)) {
            (Some(a), Ok(b)) => a.is_file() && a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

/// What stdin is, where the OS can tell (a file redirected with `<` has metadata).
pub fn stdin_metadata() -> Option<fs::Metadata> {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        let fd = std::io::stdin().as_fd().try_clone_to_owned().ok()?;
        fs::File::from(fd).metadata().ok()
    }
    #[cfg(not(unix))]
    None
}

/// `path` made absolute without following a last component that does not exist: the
/// canonical folder joined with the file name.
fn resolved(path: &Path) -> Option<PathBuf> {
    if let Ok(p) = fs::canonicalize(path) {
        return Some(p);
    }
    let name = path.file_name()?;
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Some(fs::canonicalize(folder).ok()?.join(name))
}

/// The `.wav` files below `dir`, sorted, found as a batch finds them (the same rules as
/// [`plan`], `output` the batch's output folder, never entered): what `merge-shards
/// --expect-dir` compares the shards' summaries with.
pub fn wav_files(dir: &Path, output: Option<&Path>) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let skip = output.and_then(|o| fs::canonicalize(o).ok());
    walk(dir, skip.as_deref(), &mut HashSet::new(), &mut found)?;
    found.sort();
    Ok(found)
}

/// Collects the `.wav` files below `dir` (any case; hidden files and folders skipped),
/// following symbolic links but never entering a folder twice, and never entering the
/// output folder.
fn walk(
    dir: &Path,
    skip: Option<&Path>,
    visited: &mut HashSet<PathBuf>,
    found: &mut Vec<PathBuf>,
) -> Result<()> {
    let canon = fs::canonicalize(dir)
        .map_err(|e| anyhow::anyhow!("cannot read folder {}: {}", dir.display(), os_reason(&e)))?;
    if Some(canon.as_path()) == skip || !visited.insert(canon) {
        return Ok(());
    }
    let entries = fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("cannot read folder {}: {}", dir.display(), os_reason(&e)))?;
    // In name order, not the file system's: when two paths lead to one folder (a
    // symbolic link, a bind mount), the first by name is the one kept, on every
    // machine, so that a file's path relative to the batch (its shard key) is stable.
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| {
            anyhow::anyhow!("cannot read folder {}: {}", dir.display(), os_reason(&e))
        })?;
        if !is_hidden(&entry.file_name()) {
            names.push(entry.path());
        }
    }
    names.sort();
    for path in names {
        // `metadata` follows symbolic links; a dangling link is skipped.
        let Ok(meta) = fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            walk(&path, skip, visited, found)?;
        } else if meta.is_file() && is_wav(&path) {
            found.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_file_sees_through_spellings_links_and_hard_links() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let a = d.join("a.wav");
        fs::write(&a, b"x").unwrap();
        fs::write(d.join("b.wav"), b"x").unwrap();
        fs::create_dir(d.join("sub")).unwrap();
        assert!(same_file(&a, &d.join("sub/../a.wav")));
        assert!(same_file(&a, &d.join(".").join("a.wav")));
        assert!(!same_file(&a, &d.join("b.wav")));
        // Not created yet: the same folder and name.
        assert!(same_file(&d.join("new.json"), &d.join("sub/../new.json")));
        assert!(!same_file(&d.join("new.json"), &d.join("sub/new.json")));
        #[cfg(unix)]
        {
            fs::hard_link(&a, d.join("hard.wav")).unwrap();
            assert!(same_file(&a, &d.join("hard.wav")));
            std::os::unix::fs::symlink(&a, d.join("soft.wav")).unwrap();
            assert!(same_file(&d.join("soft.wav"), &a));
        }
    }

    #[test]
    fn wav_extension_is_case_insensitive() {
        assert!(is_wav(Path::new("a/b.WAV")));
        assert!(is_wav(Path::new("b.Wav")));
        assert!(!is_wav(Path::new("b.wav.tmp")));
        assert!(!is_wav(Path::new("wav")));
    }
}
