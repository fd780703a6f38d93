//! `clearvox enhance DIR -o OUT --shard K/N` as N separate workers, and
//! `clearvox merge-shards` over their summaries.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use crate::support::cli::*;

/// Files in the generated corpus.
const CORPUS_FILES: usize = 30;

/// Writes `CORPUS_FILES` short, distinct 16 kHz mono WAVs in nested folders under `dir`
/// (plus a hidden file and a text file the batch skips); returns their paths relative
/// to `dir`, `/`-separated.
fn corpus(dir: &Path) -> BTreeSet<String> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut rels = BTreeSet::new();
    for i in 0..CORPUS_FILES {
        let rel = match i % 3 {
            0 => format!("take{i:02}.wav"),
            1 => format!("spk{}/take{i:02}.wav", i % 4),
            _ => format!("spk{}/day{}/take{i:02}.WAV", i % 2, i % 5),
        };
        let path = dir.join(&rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        let mut x = 0x9e37_79b9_u32.wrapping_mul(i as u32 + 1);
        for _ in 0..800 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            w.write_sample((x >> 20) as i16 - 2048).unwrap();
        }
        w.finalize().unwrap();
        rels.insert(rel);
    }
    fs::write(dir.join(".hidden.wav"), b"skipped").unwrap();
    fs::write(dir.join("notes.txt"), b"skipped").unwrap();
    rels
}

/// Runs `clearvox enhance -q --preset bypass <args>` and requires success.
fn enhance(args: &[&str]) {
    let run = clearvox()
        .args(["enhance", "-q", "--preset", "bypass", "--jobs", "2"])
        .args(args)
        .output()
        .unwrap();
    assert!(run.status.success(), "{args:?}: {}", stderr_of(&run));
}

/// The WAV files below `dir`, by path relative to it (`/`-separated), with their bytes.
fn outputs(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut found = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("wav"))
            {
                let rel = path.strip_prefix(dir).unwrap().to_str().unwrap();
                found.insert(rel.replace('\\', "/"), fs::read(&path).unwrap());
            }
        }
    }
    found
}

/// A shard summary as JSON.
fn summary(path: &Path) -> serde_json::Value {
    let text =
        fs::read_to_string(path).unwrap_or_else(|e| panic!("summary {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The `path` of every file a summary lists, with its status.
fn listed(summary: &serde_json::Value) -> Vec<(String, String)> {
    summary["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs `clearvox merge-shards <args>`: (success, stdout lines, stderr).
fn merge(args: &[&str]) -> (bool, Vec<String>, String) {
    let run = clearvox().arg("merge-shards").args(args).output().unwrap();
    let out = String::from_utf8_lossy(&run.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    (run.status.success(), out, stderr_of(&run))
}

/// Runs the N workers of `corpus` into `out` (one process each); returns the summaries.
fn run_shards(corpus: &Path, out: &Path, n: usize) -> Vec<PathBuf> {
    (0..n)
        .map(|k| {
            enhance(&[s(corpus), "-o", s(out), "--shard", &format!("{k}/{n}")]);
            out.join(format!(".clearvox-shard-{k}-of-{n}.json"))
        })
        .collect()
}

#[test]
fn shards_cover_the_corpus_exactly_once_as_an_unsharded_run_would() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = d.join("corpus");
    let rels = corpus(&c);
    let whole = d.join("whole");
    fs::create_dir(&whole).unwrap();
    enhance(&[s(&c), "-o", s(&whole)]);
    let expected = outputs(&whole);
    assert_eq!(expected.keys().cloned().collect::<BTreeSet<_>>(), rels);

    for n in [1usize, 3, 7] {
        // Each worker writes into a folder of its own: the files it produced are
        // exactly those it lists.
        let mut union: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut sizes = Vec::new();
        let mut folders = Vec::new();
        for k in 0..n {
            let out = d.join(format!("out-{n}-{k}"));
            fs::create_dir(&out).unwrap();
            enhance(&[s(&c), "-o", s(&out), "--shard", &format!("{k}/{n}")]);
            let sum = summary(&out.join(format!(".clearvox-shard-{k}-of-{n}.json")));
            assert_eq!(sum["shard"], k as u64);
            assert_eq!(sum["shards"], n as u64);
            assert_eq!(sum["corpus_files"], CORPUS_FILES as u64);
            assert_eq!(sum["rule"], "fnv1a64-relpath-mulshift/1");
            let files = outputs(&out);
            let names: BTreeSet<String> = listed(&sum).into_iter().map(|(p, _)| p).collect();
            assert_eq!(names, files.keys().cloned().collect(), "shard {k}/{n}");
            assert!(listed(&sum).iter().all(|(_, status)| status == "ok"));
            sizes.push(files.len());
            for (rel, bytes) in files {
                assert!(
                    union.insert(rel.clone(), bytes).is_none(),
                    "{rel} produced by two shards of {n}"
                );
            }
            folders.push(out);
        }
        // Together: the whole corpus, bit for bit the unsharded outputs.
        assert_eq!(union, expected, "{n} shards");
        if n > 1 {
            assert!(sizes.iter().all(|&s| s < CORPUS_FILES), "{sizes:?}");
        }
        let mut args: Vec<&str> = folders.iter().map(|f| s(f)).collect();
        args.extend(["--expect-dir", s(&c)]);
        let (ok, out, err) = merge(&args);
        assert!(ok, "{out:?} {err}");
        assert_eq!(
            out,
            [format!(
                "ok: {CORPUS_FILES} file(s) in {n} shard(s), each enhanced exactly once"
            )]
        );
    }
}

/// The shard of each file in a 3-way split of `corpus`, as its workers record it.
fn assignment(corpus: &str, out: &Path, cwd: &Path) -> BTreeMap<String, u64> {
    let mut shards = BTreeMap::new();
    for k in 0..3u64 {
        let run = clearvox()
            .current_dir(cwd)
            .args(["enhance", "-q", "--preset", "bypass", corpus, "-o", s(out)])
            .args(["--shard", &format!("{k}/3")])
            .output()
            .unwrap();
        assert!(run.status.success(), "{}", stderr_of(&run));
        let sum = summary(&out.join(format!(".clearvox-shard-{k}-of-3.json")));
        for (path, _) in listed(&sum) {
            assert!(shards.insert(path, k).is_none());
        }
    }
    shards
}

#[test]
fn the_assignment_does_not_depend_on_where_the_corpus_is() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rels = corpus(&d.join("corpus"));
    // The same corpus elsewhere, deeper, reached by an absolute path and with a
    // trailing slash.
    let moved = d.join("mnt/shared/volume/corpus");
    fs::create_dir_all(&moved).unwrap();
    for rel in &rels {
        let to = moved.join(rel);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(d.join("corpus").join(rel), to).unwrap();
    }
    for out in ["o1", "o2"] {
        fs::create_dir(d.join(out)).unwrap();
    }
    let here = assignment("corpus", &d.join("o1"), d);
    let there = assignment(&format!("{}/", s(&moved)), &d.join("o2"), Path::new("/"));
    assert_eq!(here.keys().cloned().collect::<BTreeSet<_>>(), rels);
    assert_eq!(here, there);
    // Every shard got some of the 30 files.
    let used: BTreeSet<u64> = here.values().copied().collect();
    assert_eq!(used.len(), 3, "{here:?}");
}

#[test]
fn merge_names_what_is_not_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = d.join("corpus");
    corpus(&c);
    let out = d.join("out");
    fs::create_dir(&out).unwrap();
    let sums = run_shards(&c, &out, 3);
    let all: Vec<&str> = sums.iter().map(|p| s(p)).collect();
    let expect = ["--expect-dir", s(&c)];
    let (ok, lines, _) = merge(&[&all[..], &expect[..]].concat());
    assert!(ok, "{lines:?}");

    // A shard's summary missing.
    let (ok, lines, _) = merge(&[all[0], all[2]]);
    assert!(!ok);
    assert_eq!(
        lines[0],
        "missing shard 1 of 3: no summary (.clearvox-shard-1-of-3.json)"
    );
    assert!(
        lines.last().unwrap().starts_with("not exactly once: "),
        "{lines:?}"
    );

    // A shard's summary twice (a copy under another name).
    let copy = d.join("copy.json");
    fs::copy(&sums[1], &copy).unwrap();
    let (ok, lines, _) = merge(&[&all[..], &[s(&copy)]].concat());
    assert!(!ok);
    assert_eq!(
        lines[0],
        format!("duplicate shard 1 of 3: {} and {}", all[1], s(&copy))
    );

    // A file listed by two shards: shard 0's summary also claims one of shard 2's.
    let mut forged = summary(&sums[0]);
    let stolen = summary(&sums[2])["files"][0].clone();
    let stolen_path = stolen["path"].as_str().unwrap().to_string();
    forged["files"].as_array_mut().unwrap().push(stolen);
    let forged_path = d.join("forged.json");
    fs::write(&forged_path, forged.to_string()).unwrap();
    let (ok, lines, _) = merge(&[s(&forged_path), all[1], all[2]]);
    assert!(!ok);
    assert!(
        lines.contains(&format!("duplicated: {stolen_path} (shards 0 and 2)")),
        "{lines:?}"
    );
    assert!(
        lines.contains(&format!(
            "misassigned: {stolen_path} done by shard 0, the rule gives shard 2"
        )),
        "{lines:?}"
    );

    // The corpus gained a file after the run.
    fs::copy(c.join("take00.wav"), c.join("late.wav")).unwrap();
    let (ok, lines, _) = merge(&[&all[..], &expect[..]].concat());
    assert!(!ok);
    let k = lines[0]
        .strip_prefix("missing: late.wav (shard ")
        .unwrap_or_else(|| panic!("{lines:?}"));
    assert!(k.ends_with(" of 3; no summary lists it)"), "{lines:?}");
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[1], "not exactly once: 1 missing file(s)");
    fs::remove_file(c.join("late.wav")).unwrap();

    // A file that fails: its shard exits non-zero but still writes its summary.
    fs::write(c.join("broken.wav"), b"RIFF, but not a WAV file").unwrap();
    let mut failed_in = None;
    for k in 0..3 {
        let run = clearvox()
            .args(["enhance", "-q", "--preset", "bypass", s(&c), "-o", s(&out)])
            .args(["--shard", &format!("{k}/3")])
            .output()
            .unwrap();
        if !run.status.success() {
            assert!(
                stderr_of(&run).contains("broken.wav"),
                "{}",
                stderr_of(&run)
            );
            failed_in = Some(k);
        }
    }
    let k = failed_in.expect("the shard of broken.wav failed");
    let (ok, lines, _) =
        merge(&[&all[..], &expect[..], &["--json", s(&d.join("m.json"))]].concat());
    assert!(!ok);
    assert!(
        lines[0].starts_with(&format!("failed: broken.wav (shard {k}): ")),
        "{lines:?}"
    );
    assert_eq!(lines[1], "not exactly once: 1 failed file(s)");
    let merged = summary(&d.join("m.json"));
    assert_eq!(merged["ok"], false);
    assert_eq!(merged["files"].as_array().unwrap().len(), CORPUS_FILES + 1);
}

#[test]
fn a_corrupt_summary_is_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bad = d.join(".clearvox-shard-0-of-2.json");
    for text in [
        "{\"format\": \"clearvox-shard-summary/1\", \"shard\": ",
        "[1, 2]",
        "",
    ] {
        fs::write(&bad, text).unwrap();
        let (ok, lines, err) = merge(&[s(&bad), "--json", s(&d.join("m.json"))]);
        assert!(!ok);
        assert!(lines.is_empty());
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with(&format!("error: shard summary {}: ", s(&bad))),
            "{err}"
        );
    }
    let (ok, _, err) = merge(&[s(d)]);
    assert!(!ok);
    assert!(err.starts_with("error: shard summary "), "{err}");
    fs::remove_file(&bad).unwrap();
    let (ok, _, err) = merge(&[s(d)]);
    assert!(!ok);
    assert!(err.contains("no shard summaries"), "{err}");
    assert!(!d.join("m.json").exists());
}

#[test]
fn bad_shard_values_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = d.join("corpus");
    corpus(&c);
    fs::create_dir(d.join("out")).unwrap();
    for (value, phrase) in [
        ("3/3", "out of range"),
        ("-1/2", "'-1'"),
        ("0/0", "at least 1"),
        ("a/b", "not a whole number"),
        ("2", "not K/N"),
    ] {
        let run = clearvox()
            .current_dir(d)
            .args(["enhance", "corpus", "-o", "out", "--shard", value])
            .output()
            .unwrap();
        let err = stderr_of(&run);
        assert_eq!(run.status.code(), Some(2), "{value}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(phrase), "{value}: {err}");
    }
    // One input file is not a batch.
    let run = clearvox()
        .current_dir(d)
        .args([
            "enhance",
            "corpus/take00.wav",
            "-o",
            "out",
            "--shard",
            "0/2",
        ])
        .output()
        .unwrap();
    let err = stderr_of(&run);
    assert!(!run.status.success());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--shard splits a batch"), "{err}");
    assert!(listing(&d.join("out")).is_empty());
}

#[test]
fn a_shard_run_again_redoes_its_share_and_rewrites_its_summary() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = d.join("corpus");
    corpus(&c);
    let out = d.join("out");
    fs::create_dir(&out).unwrap();
    let sum_path = d.join("s1.json");
    let args = [
        s(&c),
        "-o",
        s(&out),
        "--shard",
        "1/2",
        "--shard-summary",
        s(&sum_path),
    ];
    enhance(&args);
    let first = outputs(&out);
    let names: Vec<String> = listed(&summary(&sum_path))
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(names, first.keys().cloned().collect::<Vec<_>>());
    // As after a crash: an output lost, another cut short, the summary cut short.
    let mut lost = first.keys();
    let (a, b) = (lost.next().unwrap(), lost.next().unwrap());
    fs::remove_file(out.join(a)).unwrap();
    fs::write(out.join(b), b"RIFF").unwrap();
    fs::write(&sum_path, b"{\"format\":").unwrap();
    enhance(&args);
    assert_eq!(outputs(&out), first);
    let again = summary(&sum_path);
    assert_eq!(again["counts"]["ok"], first.len() as u64);
    assert!(listing(&out)
        .iter()
        .all(|n| !n.starts_with(".clearvox-shard")));
}

#[test]
fn merge_checks_the_count_the_rule_and_where_it_writes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = d.join("corpus");
    corpus(&c);
    let out = d.join("out");
    fs::create_dir(&out).unwrap();
    let sums = run_shards(&c, &out, 3);
    let all: Vec<&str> = sums.iter().map(|p| s(p)).collect();

    // Without --expect-dir, a file no shard lists (renamed between two workers'
    // starts) is found by the shards' own count of the corpus.
    let mut short = summary(&sums[1]);
    short["files"].as_array_mut().unwrap().pop();
    let short_path = d.join("short.json");
    fs::write(&short_path, short.to_string()).unwrap();
    let (ok, lines, _) = merge(&[all[0], s(&short_path), all[2]]);
    assert!(!ok);
    assert!(
        lines.contains(&"missing: the shards list 29 file(s) of the 30 the corpus held".into()),
        "{lines:?}"
    );

    // A rule this version does not know cannot vouch for the split.
    let mut foreign = Vec::new();
    for (k, p) in sums.iter().enumerate() {
        let mut v = summary(p);
        v["rule"] = "sha256-relpath-mod/1".into();
        let path = d.join(format!("foreign{k}.json"));
        fs::write(&path, v.to_string()).unwrap();
        foreign.push(path);
    }
    let foreign: Vec<&str> = foreign.iter().map(|p| s(p)).collect();
    let (ok, lines, _) = merge(&foreign);
    assert!(!ok);
    assert!(
        lines[0].contains("assignment rule sha256-relpath-mod/1 is not this version's"),
        "{lines:?}"
    );

    // --json may not replace a summary it reads.
    let run = clearvox()
        .args(["merge-shards", all[0], all[1], all[2], "--json", all[1]])
        .output()
        .unwrap();
    assert!(!run.status.success());
    let err = stderr_of(&run);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("is the shard summary"), "{err}");
    assert!(summary(&sums[1])["files"].is_array());
}

#[test]
fn a_shard_that_fails_after_starting_leaves_no_stale_summary() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = d.join("corpus");
    corpus(&c);
    let out = d.join("out");
    fs::create_dir(&out).unwrap();
    let sums = run_shards(&c, &out, 3);
    let all: Vec<&str> = sums.iter().map(|p| s(p)).collect();
    assert!(merge(&all).0);

    // Shard 1 is run again and fails once it has started (its noise clip is not a
    // WAV file): the earlier run's summary must not vouch for this run.
    let clip = d.join("room.wav");
    fs::write(&clip, b"not audio").unwrap();
    let run = clearvox()
        .arg("enhance")
        .args([
            s(&c),
            "-o",
            s(&out),
            "--preset",
            "bypass",
            "-q",
            "--shard",
            "1/3",
        ])
        .args(["--noise-profile", s(&clip)])
        .output()
        .unwrap();
    assert!(!run.status.success());
    assert!(!sums[1].exists(), "{}", stderr_of(&run));
    let (ok, lines, _) = merge(&[all[0], all[2]]);
    assert!(!ok);
    assert_eq!(
        lines[0],
        "missing shard 1 of 3: no summary (.clearvox-shard-1-of-3.json)"
    );

    // The summary may not be another file of the run: the report here.
    let run = clearvox()
        .arg("enhance")
        .args([
            s(&c),
            "-o",
            s(&out),
            "--preset",
            "bypass",
            "-q",
            "--shard",
            "0/3",
        ])
        .args(["--report", all[0], "--shard-summary", all[0]])
        .output()
        .unwrap();
    assert!(!run.status.success());
    let err = stderr_of(&run);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("choose another path"), "{err}");
}

#[test]
fn an_output_folder_inside_the_corpus_is_not_part_of_it() {
    // `enhance corpus -o corpus/out` skips corpus/out; so does the merge's walk.
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("corpus");
    corpus(&c);
    let out = c.join("out");
    fs::create_dir(&out).unwrap();
    let sums = run_shards(&c, &out, 2);
    let mut args: Vec<&str> = sums.iter().map(|p| s(p)).collect();
    args.extend(["--expect-dir", s(&c)]);
    let (ok, lines, _) = merge(&args);
    assert!(ok, "{lines:?}");
    assert_eq!(
        lines,
        ["ok: 30 file(s) in 2 shard(s), each enhanced exactly once"]
    );
}
