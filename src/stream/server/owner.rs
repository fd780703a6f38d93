//! Who owns a stream: the client that created it. The resume key is the client's own
//! secret, sent in the `X-Clearvox-Resume-Key` request header from the first connection
//! on, so that a client whose first answer was lost in transit still holds it. A client
//! that sends none gets a random key from the receiver, once, in the answer's header.
//! The receiver keeps only the key's SHA-256 digest: in memory from the handshake that
//! creates the stream, and on disk (`OUT/<id>.key`, mode 600) from the moment the
//! stream's own files are created, so a connection that sends nothing leaves no file. A
//! later connection that names the stream must present the key, or it is refused before
//! it touches the stream.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use ring::rand::{SecureRandom, SystemRandom};

use super::auth::{same_digest, sha256, Digest};
use super::session::unix_ms;
use crate::io::os_reason;

/// Handshake header of the resume key: in the answer that creates a stream, and in
/// every later request that names it.
pub const RESUME_KEY_HEADER: &str = "x-clearvox-resume-key";

/// Longest resume key looked at, bytes (the receiver's and clearvox's client's are 64).
const MAX_KEY_LEN: usize = 256;
/// Shortest resume key a client may choose, bytes: a key is a secret, and a short one
/// could be guessed.
pub const MIN_CLIENT_KEY_LEN: usize = 32;
/// Ids tried for an unnamed stream before giving up.
const UNNAMED_TRIES: u32 = 16;

/// Why a handshake naming a stream is refused.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The stream is another client's (HTTP 403).
    Forbidden(String),
    /// The receiver cannot keep the key (HTTP 500).
    Failed(String),
}

/// The stream's key file.
pub(super) fn key_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.key"))
}

/// 32 random bytes, as 64 hex digits: the receiver's keys, and clearvox's client's.
pub(crate) fn new_key() -> Option<String> {
    let mut bytes = [0u8; 32];
    SystemRandom::new().fill(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// 64 hex digits of `digest`.
fn hex(digest: &Digest) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// `text` (64 hex digits) as a digest.
fn parse_hex(text: &str) -> Option<Digest> {
    let text = text.trim();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Writes `digest` as the key file of a stream whose files are being created (mode 600).
/// If the file is already there (the stream was created by a connection of the same
/// owner a moment ago) it must hold the same digest; another one means another client
/// made the stream first, refused as `PermissionDenied`.
pub(super) fn write_key_digest(path: &Path, digest: &Digest) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => file.write_all(format!("{}\n", hex(digest)).as_bytes()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let stored = std::fs::read_to_string(path)?;
            if parse_hex(&stored).is_some_and(|d| same_digest(&d, digest)) {
                Ok(())
            } else {
                Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "the stream was created by another client",
                ))
            }
        }
        Err(e) => Err(e),
    }
}

/// Whether the stream `id` has files of its own in `dir` (its log is written first).
fn stream_exists(dir: &Path, id: &str) -> bool {
    dir.join(format!("{id}.jsonl")).exists() || dir.join(format!("{id}.wav")).exists()
}

/// What a handshake that names a stream may do with it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Claim {
    /// A key the receiver made for a client that presented none: for the answer's
    /// header.
    pub answer: Option<String>,
    /// The digest of a new stream's key, to bind the stream to (in memory now, on disk
    /// with its files); `None` when the stream's key file was there and matched.
    pub new_stream: Option<Digest>,
}

/// Checks the named stream `id` for a connection that presented `presented` (the
/// `X-Clearvox-Resume-Key` header): a stream that has a key file needs its key; a stream
/// with files but no key file is nobody's; a new one is claimed with the presented key
/// (at least [`MIN_CLIENT_KEY_LEN`] bytes), or with a fresh one, returned for the
/// answer's header, if none was presented. Writes nothing.
pub(super) fn claim_named(dir: &Path, id: &str, presented: Option<&str>) -> Result<Claim, Refusal> {
    let path = key_path(dir, id);
    match std::fs::read_to_string(&path) {
        Ok(stored) => {
            let Some(key) = presented else {
                return Err(Refusal::Forbidden(format!(
                    "stream {id} exists: resuming it needs its X-Clearvox-Resume-Key"
                )));
            };
            let matches = key.len() <= MAX_KEY_LEN
                && parse_hex(&stored).is_some_and(|d| same_digest(&d, &sha256(key.as_bytes())));
            if matches {
                Ok(Claim {
                    answer: None,
                    new_stream: None,
                })
            } else {
                Err(Refusal::Forbidden(format!(
                    "stream {id}: wrong X-Clearvox-Resume-Key"
                )))
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if stream_exists(dir, id) {
                return Err(Refusal::Forbidden(format!(
                    "stream {id} has no resume key (it was written without one): it cannot be resumed"
                )));
            }
            match presented {
                Some(key) if key.len() < MIN_CLIENT_KEY_LEN || key.len() > MAX_KEY_LEN => {
                    Err(Refusal::Forbidden(format!(
                        "stream {id}: an X-Clearvox-Resume-Key must be {MIN_CLIENT_KEY_LEN} to \
                         {MAX_KEY_LEN} bytes"
                    )))
                }
                Some(key) => Ok(Claim {
                    answer: None,
                    new_stream: Some(sha256(key.as_bytes())),
                }),
                None => {
                    let key = new_key().ok_or_else(|| {
                        Refusal::Failed("no system randomness for a resume key".into())
                    })?;
                    Ok(Claim {
                        new_stream: Some(sha256(key.as_bytes())),
                        answer: Some(key),
                    })
                }
            }
        }
        Err(e) => Err(Refusal::Failed(format!(
            "cannot read the key file of stream {id}: {}",
            os_reason(&e)
        ))),
    }
}

/// A fresh id for an unnamed connection, `conn-<unix_ms>-<n>` with `n` from `number`,
/// and the digest of a key nobody is given, so that no client can name the stream
/// (nor have named it before it was made). Writes nothing.
pub(super) fn claim_unnamed(
    dir: &Path,
    mut number: impl FnMut() -> u64,
) -> io::Result<(String, Digest)> {
    for _ in 0..UNNAMED_TRIES {
        let id = format!("conn-{}-{}", unix_ms(), number());
        if stream_exists(dir, &id) || key_path(dir, &id).exists() {
            continue;
        }
        let key = new_key().ok_or_else(|| io::Error::other("no system randomness"))?;
        return Ok((id, sha256(key.as_bytes())));
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "no free id for an unnamed stream",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Binds `id` as a session would when its files are created.
    fn create(dir: &Path, id: &str, claim: &Claim) {
        write_key_digest(&key_path(dir, id), claim.new_stream.as_ref().unwrap()).unwrap();
        std::fs::write(dir.join(format!("{id}.jsonl")), "").unwrap();
    }

    #[test]
    fn a_stream_is_resumed_only_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let claim = claim_named(dir.path(), "s1", None).unwrap();
        let key = claim.answer.clone().unwrap();
        assert_eq!(key.len(), 64);
        assert!(!key_path(dir.path(), "s1").exists(), "nothing written yet");
        create(dir.path(), "s1", &claim);
        let stored = std::fs::read_to_string(dir.path().join("s1.key")).unwrap();
        assert!(!stored.contains(&key), "only the digest is kept");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("s1.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(
            claim_named(dir.path(), "s1", Some(&key)),
            Ok(Claim {
                answer: None,
                new_stream: None
            })
        );
        assert!(matches!(
            claim_named(dir.path(), "s1", None),
            Err(Refusal::Forbidden(_))
        ));
        let wrong = "0".repeat(64);
        assert!(matches!(
            claim_named(dir.path(), "s1", Some(&wrong)),
            Err(Refusal::Forbidden(_))
        ));
        // Another digest cannot be written over it.
        let err = write_key_digest(&key_path(dir.path(), "s1"), &sha256(b"other")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        // A stream written without a key is nobody's to resume.
        std::fs::write(dir.path().join("old.jsonl"), "").unwrap();
        assert!(matches!(
            claim_named(dir.path(), "old", None),
            Err(Refusal::Forbidden(_))
        ));
    }

    #[test]
    fn a_key_the_client_chose_holds_though_the_first_answer_was_lost() {
        let dir = tempfile::tempdir().unwrap();
        let mine = "a-secret-the-client-made-up-of-40-bytes!";
        // Created with the client's key: the answer carries none (nothing to lose).
        let claim = claim_named(dir.path(), "s2", Some(mine)).unwrap();
        assert_eq!(claim.answer, None);
        assert_eq!(claim.new_stream, Some(sha256(mine.as_bytes())));
        create(dir.path(), "s2", &claim);
        let stored = std::fs::read_to_string(dir.path().join("s2.key")).unwrap();
        assert!(!stored.contains(mine), "only the digest is kept");
        // The reconnect presents the same key, whatever became of the first answer.
        assert!(claim_named(dir.path(), "s2", Some(mine)).is_ok());
        assert!(matches!(
            claim_named(dir.path(), "s2", Some(&"x".repeat(40))),
            Err(Refusal::Forbidden(_))
        ));
        // A key too short to be a secret claims nothing.
        assert!(matches!(
            claim_named(dir.path(), "s3", Some("short")),
            Err(Refusal::Forbidden(_))
        ));
    }

    #[test]
    fn unnamed_ids_skip_what_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let taken = format!("conn-{}-1", unix_ms());
        std::fs::write(dir.path().join(format!("{taken}.jsonl")), "").unwrap();
        let mut n = 0;
        let (id, _) = claim_unnamed(dir.path(), || {
            n += 1;
            n
        })
        .unwrap();
        assert!(id.starts_with("conn-") && id != taken, "{id}");
    }
}
