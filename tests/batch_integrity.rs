//! `batch` under abuse: a corrupted output of unchanged size, two runs over
//! one logs/ folder at once, and shards of a job array.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::*;

fn logs(root: &Path, names: &[&str]) -> PathBuf {
    let logs = root.join("logs");
    for (i, n) in names.iter().enumerate() {
        make_experiment(&logs, n, &mixture(400, 256, 5, i as u64 + 1), 100);
    }
    logs
}

fn status(j: &serde_json::Value, exp: &str) -> (String, String) {
    let o = j
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["experiment"] == exp)
        .unwrap_or_else(|| panic!("{exp} not in {j}"));
    (
        o["status"].as_str().unwrap().into(),
        o["reason"].as_str().unwrap().into(),
    )
}

fn names(j: &serde_json::Value) -> Vec<String> {
    j.as_array()
        .unwrap()
        .iter()
        .map(|o| o["experiment"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_corrupted_output_of_the_same_size_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path(), &["alto", "bass"]);
    let (ok, _, _) = batch_json(&logs, &[]);
    assert!(ok);
    let index = logs.join("alto/added_IVF10_Flat_nprobe_1_alto_v1.index");
    let good = std::fs::read(&index).unwrap();
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    std::fs::write(&index, &bad).unwrap();
    let (ok, _, j) = batch_json(&logs, &[]);
    assert!(ok);
    let (s, reason) = status(&j, "alto");
    assert_eq!(s, "built");
    assert!(reason.contains("missing or modified"), "{reason}");
    assert_eq!(status(&j, "bass").0, "up_to_date");
    assert_eq!(std::fs::read(&index).unwrap(), good, "rebuilt identically");

    // Touched but unchanged: re-hashed and still up to date.
    std::fs::write(&index, &good).unwrap();
    let (_, _, j) = batch_json(&logs, &[]);
    assert_eq!(status(&j, "alto").0, "up_to_date");
}

#[test]
fn two_batch_runs_at_once_build_each_experiment_once() {
    let dir = tempfile::tempdir().unwrap();
    let names_ = ["a1", "a2", "a3", "a4"];
    let logs = logs(dir.path(), &names_);
    let spawn = || {
        bin()
            .args([
                "batch",
                logs.to_str().unwrap(),
                "--device",
                "cpu",
                "--quiet",
                "--json",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (p, q) = (spawn(), spawn());
    let mut built = 0;
    for child in [p, q] {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        for n in names_ {
            let (s, reason) = status(&j, n);
            assert!(s == "built" || s == "up_to_date", "{n}: {s} ({reason})");
            built += usize::from(s == "built");
        }
    }
    assert_eq!(built, names_.len(), "each experiment built exactly once");
    let (_, _, j) = batch_json(&logs, &[]);
    for n in names_ {
        assert_eq!(status(&j, n).0, "up_to_date");
        let left: Vec<String> = listing(&logs.join(n))
            .into_iter()
            .filter(|f| f.ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}

#[test]
fn shards_partition_the_experiments() {
    let dir = tempfile::tempdir().unwrap();
    let all = ["e1", "e2", "e3", "e4", "e5"];
    let logs = logs(dir.path(), &all);
    let mut seen = Vec::new();
    for i in 1..=3 {
        let shard = format!("{i}/3");
        let (ok, _, j) = batch_json(&logs, &["--shard", &shard, "--dry-run"]);
        assert!(ok);
        let mine = names(&j);
        let expected: Vec<String> = all
            .iter()
            .enumerate()
            .filter(|(k, _)| k % 3 == i - 1)
            .map(|(_, n)| n.to_string())
            .collect();
        assert_eq!(mine, expected, "shard {shard}");
        seen.extend(mine);
    }
    seen.sort();
    assert_eq!(seen, all.map(String::from).to_vec());
    for bad in ["0/3", "4/3", "x"] {
        let o = run(&["batch", logs.to_str().unwrap(), "--shard", bad]);
        assert!(!o.status.success());
        assert!(stderr(&o).contains("I/N"), "{}", stderr(&o));
    }
}
