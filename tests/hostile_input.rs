//! Inputs a careless or hostile user hands over: broken symlinks, FIFOs,
//! directories named like files, headers declaring absurd shapes, and our
//! own outputs offered back as features. Each must end in one clear error
//! line naming the file (or be handled as documented), quickly, with a
//! non-zero exit, no panic and nothing written.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Runs the binary, killing it (and failing the test) if it has not ended
/// after `limit`: a FIFO opened for reading would block forever.
fn run_within(args: &[&str], limit: Duration) -> Output {
    let mut child = bin()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rvc-index");
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > limit {
            child.kill().unwrap();
            let o = child.wait_with_output().unwrap();
            panic!(
                "rvc-index {args:?} still running after {limit:?}: {}",
                stderr(&o)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// The one error line of a failed run; it must contain every needle.
fn expect_error(o: &Output, needles: &[&str]) -> String {
    let err = stderr(o);
    assert!(!o.status.success(), "expected failure, got success: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("rvc-index: error:"))
        .unwrap_or_else(|| panic!("no error line in: {err}"))
        .to_string();
    for n in needles {
        assert!(line.contains(n), "error {line:?} should contain {n:?}");
    }
    line
}

/// An experiment with real features, plus a path inside its feature folder.
fn experiment(dir: &Path) -> (PathBuf, PathBuf) {
    let x = mixture(200, 256, 4, 2);
    let exp = make_experiment(dir, "hostile", &x, 50);
    (exp.clone(), exp.join("3_feature256"))
}

fn train_fails(exp: &Path, needles: &[&str]) {
    let before = listing(exp);
    let o = run_within(
        &["train", exp.to_str().unwrap(), "--device", "cpu"],
        Duration::from_secs(60),
    );
    expect_error(&o, needles);
    assert_eq!(listing(exp), before, "no file may be created");
}

#[cfg(unix)]
#[test]
fn dangling_symlink_is_named_not_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (exp, fd) = experiment(dir.path());
    std::os::unix::fs::symlink(fd.join("gone.npy"), fd.join("0_9.npy")).unwrap();
    train_fails(&exp, &["0_9.npy", "broken symlink"]);
}

#[cfg(unix)]
#[test]
fn self_referencing_symlink_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (exp, fd) = experiment(dir.path());
    std::os::unix::fs::symlink(fd.join("0_7.npy"), fd.join("0_7.npy")).unwrap();
    train_fails(&exp, &["0_7.npy", "broken symlink"]);
}

#[test]
fn directory_named_npy_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (exp, fd) = experiment(dir.path());
    std::fs::create_dir(fd.join("0_5.npy")).unwrap();
    train_fails(&exp, &["0_5.npy", "directory"]);
}

#[cfg(unix)]
fn mkfifo(p: &Path) {
    let ok = Command::new("mkfifo").arg(p).status().unwrap().success();
    assert!(ok, "mkfifo {}", p.display());
}

#[cfg(unix)]
#[test]
fn fifo_feature_file_does_not_hang() {
    let dir = tempfile::tempdir().unwrap();
    let (exp, fd) = experiment(dir.path());
    mkfifo(&fd.join("0_8.npy"));
    train_fails(&exp, &["0_8.npy", "FIFO"]);
}

#[cfg(unix)]
#[test]
fn fifo_index_and_query_files_do_not_hang() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, index) = small_index(d);
    let fifo = d.join("pipe.index");
    mkfifo(&fifo);
    let limit = Duration::from_secs(30);
    expect_error(
        &run_within(&["info", fifo.to_str().unwrap()], limit),
        &["pipe.index", "FIFO"],
    );
    let qfifo = d.join("queries.npy");
    mkfifo(&qfifo);
    let out = d.join("res");
    expect_error(
        &run_within(
            &[
                "search",
                index.to_str().unwrap(),
                qfifo.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
                "--device",
                "cpu",
            ],
            limit,
        ),
        &["queries.npy", "FIFO"],
    );
    expect_error(
        &run_within(
            &[
                "search",
                fifo.to_str().unwrap(),
                d.join("x.npy").to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
                "--device",
                "cpu",
            ],
            limit,
        ),
        &["pipe.index", "FIFO"],
    );
    assert!(!d.join("res_ids.npy").exists() && !d.join("res_distances.npy").exists());
}

/// A `.npy` whose header declares `shape` (float32, C order) and holds no data.
fn npy_with_shape(path: &Path, shape: &str) {
    let mut dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    // magic (6) + version (2) + length (2) + dict + '\n', padded to 64.
    while (10 + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    bytes.extend_from_slice(dict.as_bytes());
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn absurd_column_counts_are_refused_by_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bad = d.join("wide.npy");
    npy_with_shape(&bad, "(0, 1152921504606846976)");
    let (_, index) = small_index(d);
    let (bad, index) = (bad.to_str().unwrap(), index.to_str().unwrap());
    let out = d.join("out");
    let out = out.to_str().unwrap();
    let cases: Vec<Vec<&str>> = vec![
        vec!["build", bad, "--factory", "Flat", "-o", out],
        vec!["search", index, bad, "-o", out],
        vec!["blend", index, bad, "-o", out],
        vec!["expand", bad, "-o", out],
        vec!["compress", bad, "-k", "2", "-o", out],
    ];
    let before = listing(d);
    for mut args in cases {
        args.extend(["--device", "cpu"]);
        let o = run_within(&args, Duration::from_secs(30));
        expect_error(&o, &["wide.npy", "1152921504606846976 columns"]);
    }
    assert_eq!(listing(d), before, "nothing may be written");
}

#[test]
fn feature_dir_equal_to_the_experiment_never_reads_our_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let exp = dir.path().join("flat");
    std::fs::create_dir(&exp).unwrap();
    let x = mixture(400, 256, 4, 9);
    for (i, chunk) in x.axis_chunks_iter(ndarray::Axis(0), 100).enumerate() {
        ndarray_npy::write_npy(exp.join(format!("0_{i}.npy")), &chunk.to_owned()).unwrap();
    }
    let e = exp.to_str().unwrap();
    let mut rows = Vec::new();
    for _ in 0..3 {
        let o = run(&[
            "train",
            e,
            "--feature-dir",
            e,
            "--device",
            "cpu",
            "--json",
            "-q",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        rows.push(v["n"].as_u64().unwrap());
        let t: ndarray::Array2<f32> = ndarray_npy::read_npy(exp.join("total_fea.npy")).unwrap();
        assert_eq!(t.nrows(), 400);
    }
    assert_eq!(rows, vec![400, 400, 400]);
}

/// Index files as faiss writes them: untrained, or trained with a stored
/// nprobe far above nlist.
const FAISS_FILES: &str = r#"
import sys, numpy as np, faiss
out = sys.argv[1]
x = np.random.default_rng(0).standard_normal((500, 16)).astype("float32")
ix = faiss.index_factory(16, "IVF16,Flat")
faiss.extract_index_ivf(ix).nprobe = 2**40
faiss.write_index(ix, out + "/untrained.index")
ix.train(x)
ix.add(x)
faiss.extract_index_ivf(ix).nprobe = 2**60
faiss.write_index(ix, out + "/huge_nprobe.index")
ix.nprobe = 16
D, I = ix.search(x[:20], 8)
np.save(out + "/faiss_ids.npy", I)
np.save(out + "/q.npy", x[:20])
"#;

#[test]
fn stored_nprobe_is_clamped_and_untrained_indexes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    if python(FAISS_FILES, &[d.to_str().unwrap()]).is_none() {
        return;
    }
    let q = d.join("q.npy");
    let out = d.join("res");
    let limit = Duration::from_secs(30);
    for cmd in ["search", "blend"] {
        let o = run_within(
            &[
                cmd,
                d.join("untrained.index").to_str().unwrap(),
                q.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
                "--device",
                "cpu",
            ],
            limit,
        );
        expect_error(&o, &["untrained.index", "not trained"]);
    }
    // 2^60 stored, 2^40 asked: both mean every list, as in faiss.
    let huge = d.join("huge_nprobe.index");
    for extra in [&[][..], &["--nprobe", "1099511627776"][..]] {
        let mut args = vec![
            "search",
            huge.to_str().unwrap(),
            q.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--device",
            "cpu",
        ];
        args.extend_from_slice(extra);
        let o = run_within(&args, limit);
        assert!(o.status.success(), "{}", stderr(&o));
        let ours: ndarray::Array2<i64> = ndarray_npy::read_npy(d.join("res_ids.npy")).unwrap();
        let theirs: ndarray::Array2<i64> = ndarray_npy::read_npy(d.join("faiss_ids.npy")).unwrap();
        assert_eq!(ours, theirs, "every list probed: the exact result");
    }
}

#[test]
fn unbounded_numbers_end_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (x, index) = small_index(d);
    let (x, index) = (x.to_str().unwrap(), index.to_str().unwrap());
    let out = d.join("out");
    let out = out.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["search", index, x, "-o", out, "-k", "1000000000"],
            "2048",
        ),
        (
            vec!["search", index, x, "-o", out, "-k", "4611686018427387904"],
            "2048",
        ),
        (
            vec![
                "search",
                index,
                x,
                "-o",
                out,
                "--query-expansion",
                "k=1000000000",
            ],
            "2048",
        ),
        (
            vec!["expand", x, "-o", out, "--num-expand", "1000000000"],
            "2048",
        ),
        (
            vec!["build", x, "--factory", "Flat", "--nprobe", "0", "-o", out],
            "--nprobe",
        ),
        (
            vec![
                "bench",
                "--synthetic",
                "1000000000000,768",
                "--stages",
                "train",
            ],
            "memory",
        ),
    ];
    let before = listing(d);
    for (mut args, needle) in cases {
        args.extend(["--device", "cpu"]);
        let o = run_within(&args, Duration::from_secs(60));
        let err = stderr(&o);
        assert!(!o.status.success(), "{args:?}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("memory allocation"),
            "{err}"
        );
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(err.trim().lines().count() <= 3, "{args:?}: {err}");
    }
    assert_eq!(listing(d), before, "nothing written");
}
