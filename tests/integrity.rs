//! The outputs of `train` are one set: a failed, killed, interrupted or
//! concurrent rerun leaves the previous set or the new one, whole, and no
//! temporary files once the next run has finished.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use common::*;

const ADDED: &str = "added_IVF38_Flat_nprobe_1_voice_v2.index";
const TRAINED: &str = "trained_IVF38_Flat_nprobe_1_voice_v2.index";
const RVC_FILES: [&str; 3] = ["total_fea.npy", TRAINED, ADDED];

fn features() -> ndarray::Array2<f32> {
    mixture(1500, 768, 60, 1)
}

/// An experiment folder `voice` under `root`, features only.
fn experiment(root: &Path) -> PathBuf {
    make_experiment(root, "voice", &features(), 170)
}

fn train_args<'a>(exp: &'a Path, seed: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        exp.to_str().unwrap(),
        "--device",
        "cpu",
        "--seed",
        seed,
    ]
}

fn train_ok(exp: &Path, seed: &str) {
    let o = run(&train_args(exp, seed));
    assert!(o.status.success(), "{}", stderr(&o));
}

/// The bytes of RVC's three files, where they exist.
fn snapshot(exp: &Path) -> BTreeMap<String, Vec<u8>> {
    RVC_FILES
        .iter()
        .filter_map(|n| std::fs::read(exp.join(n)).ok().map(|b| (n.to_string(), b)))
        .collect()
}

/// The complete set a run with `seed` writes, from a folder of its own.
fn expected_set(seed: &str) -> BTreeMap<String, Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(dir.path());
    train_ok(&exp, seed);
    let s = snapshot(&exp);
    assert_eq!(s.len(), 3);
    s
}

/// Hidden temporary files or a commit journal left in the folder.
fn leftovers(exp: &Path) -> Vec<String> {
    listing(exp)
        .into_iter()
        .filter(|n| n.ends_with(".tmp") || n == ".rvc-index-commit.json")
        .collect()
}

fn one_error_line(o: &std::process::Output, needle: &str) {
    let err = stderr(o);
    assert!(!o.status.success(), "expected failure: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("rvc-index: error:"))
        .unwrap_or_else(|| panic!("no error line: {err}"));
    assert!(line.contains(needle), "{line:?} should contain {needle:?}");
}

#[test]
fn a_failed_rerun_keeps_the_previous_set() {
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(dir.path());
    train_ok(&exp, "1");
    let before = snapshot(&exp);
    let manifest = std::fs::read(exp.join(".rvc-index-manifest.json")).unwrap();
    let e = exp.to_str().unwrap();

    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--factory", "IVF16,PQ7x4fs"],
            "not a multiple of M = 7",
        ),
        (vec!["--niter", "1000000000"], "1 to 10000"),
        (
            vec!["--nlist", "32", "--factory", "IVF16,Flat"],
            "contradicts --factory",
        ),
    ];
    for (extra, needle) in cases {
        let mut args = vec!["train", e, "--device", "cpu", "--seed", "2"];
        args.extend(extra);
        let o = run(&args);
        let err = stderr(&o);
        assert!(!o.status.success(), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(snapshot(&exp), before, "{args:?}");
    }

    // A full disk while the added index is written: nothing of the new set
    // appears, nothing is left behind.
    for point in [
        "writing:total_fea.npy",
        &format!("writing:{TRAINED}"),
        &format!("writing:{ADDED}"),
        "writing:.rvc-index-manifest.json",
    ] {
        let o = bin()
            .args(train_args(&exp, "2"))
            .env("RVC_INDEX_FAIL_AT", point)
            .output()
            .unwrap();
        one_error_line(&o, "no space left on device");
        assert_eq!(snapshot(&exp), before, "{point}");
        assert_eq!(
            std::fs::read(exp.join(".rvc-index-manifest.json")).unwrap(),
            manifest,
            "{point}"
        );
        assert_eq!(leftovers(&exp), Vec::<String>::new(), "{point}");
    }
}

/// Start `train` paused at `point` (debug builds), once the pause is reached.
fn paused_at(exp: &Path, seed: &str, point: &str, marker: &Path) -> Child {
    let mut cmd = bin();
    cmd.args(train_args(exp, seed));
    spawn_paused(cmd, point, marker)
}

#[test]
fn sigkill_anywhere_then_rerun_leaves_one_whole_set() {
    let a = expected_set("1");
    let b = expected_set("2");
    assert_ne!(a, b);
    let points = [
        "writing:total_fea.npy",
        "after-total-fea",
        "after-trained",
        &format!("writing:{ADDED}"),
        "before-manifest",
        "commit-journal",
        "commit-first-rename",
    ];
    for point in points {
        let dir = tempfile::tempdir().unwrap();
        let exp = experiment(dir.path());
        train_ok(&exp, "1");
        let mut child = paused_at(&exp, "2", point, &dir.path().join("paused"));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let journal = exp.join(".rvc-index-commit.json").exists();
        assert_eq!(journal, point.starts_with("commit-"), "{point}");
        if !journal {
            assert_eq!(snapshot(&exp), a, "killed at {point}: the old set is whole");
        }
        // The next run finishes (or drops) what the killed one left, then
        // writes its own set.
        let o = run(&train_args(&exp, "2"));
        assert!(o.status.success(), "{point}: {}", stderr(&o));
        assert_eq!(
            stderr(&o).contains("completed the outputs of an interrupted run"),
            journal,
            "{point}"
        );
        assert_eq!(snapshot(&exp), b, "{point}");
        assert_eq!(leftovers(&exp), Vec::<String>::new(), "{point}");
    }
}

#[cfg(unix)]
#[test]
fn sigterm_removes_the_unfinished_files() {
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(dir.path());
    train_ok(&exp, "1");
    let before = snapshot(&exp);
    let point = format!("writing:{ADDED}");
    let child = paused_at(&exp, "2", &point, &dir.path().join("paused"));
    assert!(
        listing(&exp).iter().any(|n| n.ends_with(".tmp")),
        "temporary files exist while writing"
    );
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(stderr(&o).contains("interrupted"), "{}", stderr(&o));
    assert_eq!(snapshot(&exp), before);
    assert_eq!(leftovers(&exp), Vec::<String>::new());
}

/// Whether another process holds the experiment's lock (the folder itself).
#[cfg(unix)]
fn locked(exp: &Path) -> bool {
    let f = std::fs::File::open(exp).unwrap();
    match f.try_lock() {
        Ok(()) => false,
        Err(std::fs::TryLockError::WouldBlock) => true,
        Err(e) => panic!("{e}"),
    }
}

#[cfg(unix)]
#[test]
fn two_runs_at_once_take_turns() {
    let a = expected_set("1");
    let b = expected_set("2");
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(dir.path());
    let marker = dir.path().join("paused");
    // The first run holds the lock (paused before its commit).
    let first = paused_at(&exp, "1", "before-manifest", &marker);
    assert!(locked(&exp));
    let second = bin()
        .args(train_args(&exp, "2"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // The second waits; the first is killed mid-run and the second then
    // finds its leftovers, cleans them and writes its own set.
    let mut first = first;
    first.kill().unwrap();
    first.wait().unwrap();
    let o = second.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("another rvc-index run is writing this experiment"),
        "{}",
        stderr(&o)
    );
    assert_eq!(snapshot(&exp), b);
    assert_eq!(leftovers(&exp), Vec::<String>::new());

    // Two complete runs started together: both succeed, one after the other.
    let runs: Vec<Child> = ["1", "2"]
        .iter()
        .map(|s| {
            bin()
                .args(train_args(&exp, s))
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for r in runs {
        let o = r.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let s = snapshot(&exp);
    assert!(s == a || s == b, "one whole set");
    assert_eq!(leftovers(&exp), Vec::<String>::new());
}
