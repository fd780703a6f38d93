//! Files that appear complete or not at all, written safely in shared folders.
//!
//! [`AtomicFile`] is the one way clearvox writes an output file (the WAV writer and the
//! CLI's JSON report both go through it):
//!
//! - the data goes to a hidden temporary file in the target's folder (the same file
//!   system, so the final rename is atomic), named `.<name>.<random>.tmp` with 64
//!   unpredictable bits, and created with `O_CREAT | O_EXCL` (`create_new`): an
//!   existing file or a symbolic link planted at that name is never opened, truncated
//!   or followed — another name is drawn instead;
//! - it is created with the requested permission bits (further narrowed by the umask),
//!   so the data is never readable by more users than the final file will be, and those
//!   exact bits are set before the rename;
//! - [`commit`](AtomicFile::commit) syncs it and renames it over the target: a symbolic
//!   link at the target is replaced, never followed; dropping the guard before that
//!   removes the temporary file and leaves an existing target as it was.

use std::collections::hash_map::RandomState;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Distinguishes temporary names drawn by one process (mixed into the random part).
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Names tried before giving up on finding a free temporary name.
const TEMP_ATTEMPTS: usize = 64;

/// The temporary file of one output, renamed over the target by
/// [`commit`](Self::commit) and removed if dropped before.
///
/// [`create`](Self::create) returns the guard and the open file separately, so that a
/// writer that owns its file (such as `hound`'s) can write through it while the guard
/// stays with the caller.
///
/// # Examples
///
/// ```
/// use std::io::Write;
/// use clearvox::io::AtomicFile;
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("notes.txt");
/// let (guard, mut file) = AtomicFile::create(&path, Some(0o600))?;
/// file.write_all(b"complete or absent")?;
/// assert!(!path.exists()); // nothing at the target until committed
/// guard.commit(file)?;
/// assert_eq!(std::fs::read(&path)?, b"complete or absent");
/// # #[cfg(unix)]
/// # {
/// use std::os::unix::fs::PermissionsExt;
/// assert_eq!(std::fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
/// # }
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct AtomicFile {
    target: PathBuf,
    temp: PathBuf,
    /// Permission bits to give the file (Unix); `None` keeps the default (0o666 less
    /// the umask).
    #[cfg_attr(not(unix), allow(dead_code))]
    mode: Option<u32>,
    committed: bool,
}

impl AtomicFile {
    /// Creates the hidden temporary file for `target` in `target`'s folder.
    ///
    /// `mode` is the permission bits (`0o640`, ...) the committed file gets on Unix, the
    /// temporary one being created with them already; `None` keeps the usual default.
    /// Ignored on other systems. The folder must exist; nothing is checked about the
    /// target itself.
    pub fn create(target: &Path, mode: Option<u32>) -> io::Result<(Self, File)> {
        let name = target.file_name().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "the path does not name a file")
        })?;
        let folder = folder_of(target);
        let mode = mode.map(|m| m & 0o7777);
        let (temp, file) = create_temp(folder, name, mode, random_u64)?;
        Ok((
            Self {
                target: target.to_path_buf(),
                temp,
                mode,
                committed: false,
            },
            file,
        ))
    }

    /// The file this will become.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// The temporary file being written.
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// Sets the permission bits, syncs `file` (a handle on the temporary file), closes
    /// it and renames the temporary file over the target.
    ///
    /// On failure the temporary file is removed and an existing target is untouched.
    pub fn commit(mut self, file: File) -> io::Result<()> {
        #[cfg(unix)]
        if let Some(mode) = self.mode {
            use std::os::unix::fs::PermissionsExt;
            // On the open handle: the bits land on the file written, whatever the
            // folder holds under its name by now.
            file.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        file.sync_all()?;
        drop(file);
        fs::rename(&self.temp, &self.target)?;
        self.committed = true;
        sync_folder(folder_of(&self.target));
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// The folder `path` is in (`.` for a bare file name).
pub(crate) fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// 64 bits nobody outside the process can predict: the standard library seeds every
/// `RandomState` from the OS's random source.
fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(TEMP_COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.finish()
}

/// Creates a new hidden temporary file for `name` in `folder`, never opening anything
/// that exists already (a file or a symbolic link, dangling or not).
fn create_temp(
    folder: &Path,
    name: &OsStr,
    mode: Option<u32>,
    mut random: impl FnMut() -> u64,
) -> io::Result<(PathBuf, File)> {
    for _ in 0..TEMP_ATTEMPTS {
        let mut temp_name = OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(".{:016x}.tmp", random()));
        let temp = folder.join(temp_name);
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        if let Some(mode) = mode {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(mode);
        }
        #[cfg(not(unix))]
        let _ = mode;
        match options.open(&temp) {
            Ok(f) => return Ok((temp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "no free temporary file name next to it",
    ))
}

/// Makes the rename durable where the OS allows syncing a folder; failures only cost
/// durability after a power cut, so they are ignored.
fn sync_folder(folder: &Path) {
    #[cfg(unix)]
    if let Ok(f) = File::open(folder) {
        let _ = f.sync_all();
    }
    #[cfg(not(unix))]
    let _ = folder;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn temporary_names_are_unpredictable_and_distinct() {
        let a = random_u64();
        let b = random_u64();
        assert_ne!(a, b);
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("x.json");
        let (g1, _f1) = AtomicFile::create(&target, None).unwrap();
        let (g2, _f2) = AtomicFile::create(&target, None).unwrap();
        assert_ne!(g1.temp_path(), g2.temp_path());
        let shown = g1.temp_path().file_name().unwrap().to_string_lossy();
        assert!(
            shown.starts_with(".x.json.") && shown.ends_with(".tmp"),
            "{shown}"
        );
        assert_eq!(shown.len(), ".x.json.".len() + 16 + ".tmp".len(), "{shown}");
    }

    #[cfg(unix)]
    #[test]
    fn a_planted_link_or_file_at_the_temporary_name_is_never_opened() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"keep").unwrap();
        // The first names drawn are taken: a link to the victim, a dangling link and a
        // plain file; the fourth is free.
        let draws = [1u64, 2, 3, 4];
        std::os::unix::fs::symlink(&victim, dir.path().join(".r.json.0000000000000001.tmp"))
            .unwrap();
        std::os::unix::fs::symlink(
            dir.path().join("nowhere"),
            dir.path().join(".r.json.0000000000000002.tmp"),
        )
        .unwrap();
        fs::write(dir.path().join(".r.json.0000000000000003.tmp"), b"other").unwrap();
        let mut i = 0;
        let (temp, mut f) = create_temp(dir.path(), OsStr::new("r.json"), Some(0o600), || {
            i += 1;
            draws[i - 1]
        })
        .unwrap();
        assert!(temp.ends_with(".r.json.0000000000000004.tmp"), "{temp:?}");
        f.write_all(b"new").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        assert!(!dir.path().join("nowhere").exists());
        assert_eq!(
            fs::read(dir.path().join(".r.json.0000000000000003.tmp")).unwrap(),
            b"other"
        );
        // Every name taken: an error, nothing opened.
        let e = create_temp(dir.path(), OsStr::new("r.json"), None, || 1).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
    }

    #[cfg(unix)]
    #[test]
    fn the_mode_is_set_from_the_start_and_kept_exactly() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.wav");
        for mode in [0o600, 0o604, 0o640] {
            let (g, f) = AtomicFile::create(&target, Some(mode)).unwrap();
            let during = fs::metadata(g.temp_path()).unwrap().permissions().mode() & 0o777;
            assert_eq!(during & !mode, 0, "{during:o} is wider than {mode:o}");
            g.commit(f).unwrap();
            let after = fs::metadata(&target).unwrap().permissions().mode() & 0o777;
            assert_eq!(after, mode);
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_link_at_the_target_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"keep").unwrap();
        let target = dir.path().join("out");
        std::os::unix::fs::symlink(&victim, &target).unwrap();
        let (g, mut f) = AtomicFile::create(&target, None).unwrap();
        f.write_all(b"new").unwrap();
        g.commit(f).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        assert_eq!(fs::read(&target).unwrap(), b"new");
        assert!(!fs::symlink_metadata(&target).unwrap().is_symlink());
    }

    #[test]
    fn dropped_before_commit_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("t");
        fs::write(&target, b"old").unwrap();
        let (g, mut f) = AtomicFile::create(&target, None).unwrap();
        f.write_all(b"half").unwrap();
        drop(f);
        drop(g);
        assert_eq!(names(dir.path()), ["t"]);
        assert_eq!(fs::read(&target).unwrap(), b"old");
    }
}
