//! `rvc-index batch`: incremental, resumable re-indexing of many experiments.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use ndarray_npy::write_npy;

/// logs/ with a v1 experiment, a v2 experiment and a broken one.
fn logs(root: &Path) -> PathBuf {
    let logs = root.join("logs");
    make_experiment(&logs, "alto", &mixture(300, 256, 5, 1), 70);
    make_experiment(&logs, "bass", &mixture(250, 768, 5, 2), 60);
    let broken = make_experiment(&logs, "crackle", &mixture(200, 256, 5, 3), 50);
    std::fs::write(broken.join("3_feature256/0_1.npy"), b"\x93NUMPY garbage").unwrap();
    std::fs::create_dir_all(logs.join("not_an_experiment")).unwrap();
    logs
}

fn batch(logs: &Path, extra: &[&str]) -> (bool, String, serde_json::Value) {
    // With --json the JSON is all of stdout; the table goes to stderr.
    batch_json(logs, extra)
}

fn status_of(j: &serde_json::Value, exp: &str) -> String {
    j.as_array()
        .unwrap()
        .iter()
        .find(|o| o["experiment"] == exp)
        .map(|o| o["status"].as_str().unwrap().to_string())
        .unwrap_or_else(|| "absent".into())
}

fn statuses(j: &serde_json::Value) -> Vec<(String, String)> {
    j.as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["experiment"].as_str().unwrap().into(),
                o["status"].as_str().unwrap().into(),
            )
        })
        .collect()
}

const CHECK: &str = r#"
import sys, glob, os, numpy as np, faiss
for exp in sys.argv[1:]:
    added = glob.glob(os.path.join(exp, "added_IVF*.index"))
    assert len(added) == 1, (exp, added)
    assert not glob.glob(os.path.join(exp, ".*.tmp")), os.listdir(exp)
    x = np.load(os.path.join(exp, "total_fea.npy"))
    ix = faiss.read_index(added[0])
    assert ix.ntotal == x.shape[0]
    assert np.array_equal(ix.reconstruct_n(0, ix.ntotal), x), exp
print("OK")
"#;

fn check_with_faiss(exps: &[PathBuf]) {
    let args: Vec<&str> = exps.iter().map(|p| p.to_str().unwrap()).collect();
    if let Some(out) = python(CHECK, &args) {
        assert_eq!(out.trim(), "OK");
    }
}

#[test]
fn builds_skips_and_rebuilds_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path());

    let (ok, table, j) = batch(&logs, &[]);
    assert!(!ok, "a failed experiment makes the exit code non-zero");
    assert_eq!(
        statuses(&j),
        vec![
            ("alto".to_string(), "built".to_string()),
            ("bass".into(), "built".into()),
            ("crackle".into(), "failed".into())
        ]
    );
    assert!(
        table.contains("failed: ") && table.contains("0_1.npy"),
        "{table}"
    );
    assert!(
        table.contains("rvc-index: error: 1 of 3 experiments failed"),
        "{table}"
    );

    // --json=FILE (and the older --json-out FILE) write the same JSON to a
    // file and leave the table on stdout.
    for flag in ["--json=", "--json-out"] {
        let file = dir.path().join("outcomes.json");
        let f = file.to_str().unwrap();
        let spelled: Vec<String> = if flag.ends_with('=') {
            vec![format!("{flag}{f}")]
        } else {
            vec![flag.to_string(), f.to_string()]
        };
        let mut args = vec![logs.to_str().unwrap(), "--dry-run", "--quiet"];
        args.extend(spelled.iter().map(String::as_str));
        let o = run(&[&["batch"][..], &args].concat());
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(stdout.starts_with("experiment "), "{flag}: {stdout}");
        let jf: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(status_of(&jf, "alto"), "up_to_date", "{flag}");
        assert_eq!(status_of(&jf, "crackle"), "would_build", "{flag}");
        std::fs::remove_file(&file).unwrap();
    }
    check_with_faiss(&[logs.join("alto"), logs.join("bass")]);
    let index = logs.join("alto/added_IVF7_Flat_nprobe_1_alto_v1.index");
    let first = std::fs::read(&index).unwrap();

    let (_, _, j) = batch(&logs, &[]);
    assert_eq!(status_of(&j, "alto"), "up_to_date");
    assert_eq!(status_of(&j, "bass"), "up_to_date");
    assert_eq!(status_of(&j, "crackle"), "failed");

    // A new modification time with the same content is not a change.
    let f = logs.join("alto/3_feature256/0_2.npy");
    let bytes = std::fs::read(&f).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&f, &bytes).unwrap();
    let (_, _, j) = batch(&logs, &[]);
    assert_eq!(status_of(&j, "alto"), "up_to_date");

    // New content rebuilds that experiment only.
    write_npy(&f, &mixture(70, 256, 5, 99)).unwrap();
    let (_, out, j) = batch(&logs, &["--dry-run"]);
    assert_eq!(status_of(&j, "alto"), "would_build");
    assert!(out.contains("0_2.npy changed"), "{out}");
    assert_eq!(status_of(&j, "bass"), "up_to_date");
    let (_, _, j) = batch(&logs, &[]);
    assert_eq!(status_of(&j, "alto"), "built");
    assert_eq!(status_of(&j, "bass"), "up_to_date");
    assert_ne!(std::fs::read(&index).unwrap(), first);

    // Other settings rebuild everything; the old nlist's files go away.
    let (_, _, j) = batch(&logs, &["--nlist", "3", "--exclude", "crackle"]);
    assert_eq!(
        statuses(&j),
        vec![
            ("alto".to_string(), "built".to_string()),
            ("bass".into(), "built".into())
        ]
    );
    assert!(
        !index.exists(),
        "stale index of the previous settings removed"
    );
    assert!(
        logs.join("alto/added_IVF3_Flat_nprobe_1_alto_v1.index")
            .exists()
    );
    check_with_faiss(&[logs.join("alto"), logs.join("bass")]);

    let (_, _, j) = batch(&logs, &["--nlist", "3", "--only", "bass", "--force"]);
    assert_eq!(
        statuses(&j),
        vec![("bass".to_string(), "built".to_string())]
    );
}

/// SIGKILL at a chosen point, then a normal run: every experiment ends with
/// a complete index that matches its total_fea.npy.
#[test]
fn resumes_after_sigkill() {
    let points = [
        "writing:total_fea.npy",
        "after-total-fea",
        "after-trained",
        "writing:added_IVF6_Flat_nprobe_1_bass_v2.index",
        "before-manifest",
    ];
    for (i, point) in points.iter().enumerate() {
        let seed = (i + 2).to_string();
        let dir = tempfile::tempdir().unwrap();
        let logs = logs(dir.path());
        std::fs::remove_dir_all(logs.join("crackle")).unwrap();
        // A first complete build with other settings, so stale files exist.
        let (ok, _, _) = batch(&logs, &["--seed", "1"]);
        assert!(ok);
        let marker = dir.path().join("paused");
        let mut child = bin()
            .args([
                "batch",
                logs.to_str().unwrap(),
                "--device",
                "cpu",
                "--quiet",
                "--seed",
                &seed,
            ])
            .env("RVC_INDEX_PAUSE_AT", point)
            .env("RVC_INDEX_PAUSE_MARKER", &marker)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let t = Instant::now();
        while !marker.exists() {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "never reached {point}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let (ok, _, j) = batch(&logs, &["--seed", &seed]);
        assert!(ok, "{point}");
        // The experiment killed mid-build is rebuilt, not taken as up to date.
        let killed = if point.contains("bass") {
            "bass"
        } else {
            "alto"
        };
        assert_eq!(status_of(&j, killed), "built", "{point}");
        if killed == "bass" {
            assert_eq!(
                status_of(&j, "alto"),
                "up_to_date",
                "finished before the kill"
            );
        }
        check_with_faiss(&[logs.join("alto"), logs.join("bass")]);
        let (_, _, j) = batch(&logs, &["--seed", &seed]);
        assert_eq!(
            statuses(&j).iter().filter(|s| s.1 == "up_to_date").count(),
            2,
            "{point}"
        );
    }
}
