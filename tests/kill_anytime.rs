//! SIGKILL at arbitrary moments, without fault-injection hooks, so that the
//! guarantee is checked on the binary users run: CI runs this file once more
//! with `cargo test --release` (the hooks of tests/integrity.rs exist only in
//! debug builds). After every kill the folder holds a whole set (the old one,
//! the new one, or a journalled commit that the next run completes); after
//! the next complete run it holds that run's set and nothing else of ours.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use rand::{RngExt, SeedableRng};

const RVC_FILES: [&str; 3] = [
    "total_fea.npy",
    "trained_IVF153_Flat_nprobe_1_voice_v2.index",
    "added_IVF153_Flat_nprobe_1_voice_v2.index",
];

fn experiment(root: &Path) -> std::path::PathBuf {
    make_experiment(root, "voice", &mixture(6000, 768, 80, 3), 500)
}

fn args<'a>(exp: &'a Path, seed: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        exp.to_str().unwrap(),
        "--device",
        "cpu",
        "-q",
        "--seed",
        seed,
    ]
}

fn snapshot(exp: &Path) -> BTreeMap<&'static str, Vec<u8>> {
    RVC_FILES
        .iter()
        .filter_map(|&n| std::fs::read(exp.join(n)).ok().map(|b| (n, b)))
        .collect()
}

/// A complete run with `seed` in a folder of its own: its set and duration.
fn reference(seed: &str) -> (BTreeMap<&'static str, Vec<u8>>, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(dir.path());
    let t = Instant::now();
    let o = run(&args(&exp, seed));
    assert!(o.status.success(), "{}", stderr(&o));
    (snapshot(&exp), t.elapsed())
}

fn ours_left(exp: &Path) -> Vec<String> {
    listing(exp)
        .into_iter()
        .filter(|n| n.ends_with(".tmp") || n == ".rvc-index-commit.json")
        .collect()
}

#[test]
fn sigkill_at_random_moments() {
    let (a, ta) = reference("1");
    let (b, tb) = reference("2");
    assert_ne!(a, b);
    let span = ta.max(tb);
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(dir.path());
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let empty = BTreeMap::new();
    for round in 0..12 {
        let seed = if round % 2 == 0 { "2" } else { "1" };
        let mut child = bin()
            .args(args(&exp, seed))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let wait = span.mul_f64(rng.random_range(0.05..1.1));
        std::thread::sleep(wait);
        let _ = child.kill();
        child.wait().unwrap();
        let s = snapshot(&exp);
        if !exp.join(".rvc-index-commit.json").exists() {
            assert!(
                s == a || s == b || s == empty,
                "round {round}, killed after {wait:?}: a mixed set"
            );
        }
    }
    let o = run(&args(&exp, "2"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(snapshot(&exp), b);
    assert_eq!(ours_left(&exp), Vec::<String>::new());
}
