//! Every class of bad input: one clear line naming the file, a non-zero
//! exit, and no output created or truncated.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use ndarray::{Array2, Array3};
use ndarray_npy::write_npy;

/// A sentinel standing in for a previous run's output: it must survive.
const OLD: &[u8] = b"previous total_fea";

fn experiment(dir: &Path) -> (PathBuf, PathBuf) {
    let x = mixture(200, 256, 4, 2);
    let exp = make_experiment(dir, "bad", &x, 50);
    std::fs::write(exp.join("total_fea.npy"), OLD).unwrap();
    let fd = exp.join("3_feature256");
    (exp, fd)
}

/// Runs train, expects failure with `needle` in a one-line message, and
/// checks that nothing was written.
fn expect_failure(exp: &Path, needle: &str) {
    let before = listing(exp);
    let o = run(&["train", exp.to_str().unwrap(), "--device", "cpu"]);
    let err = stderr(&o);
    assert!(!o.status.success(), "expected failure, got success: {err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("rvc-index: error:"))
        .unwrap_or_else(|| panic!("no error line in: {err}"));
    assert!(
        line.contains(needle),
        "error {line:?} should contain {needle:?}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(listing(exp), before, "no file may be created");
    if exp.join("total_fea.npy").exists() {
        assert_eq!(std::fs::read(exp.join("total_fea.npy")).unwrap(), OLD);
    }
}

#[test]
fn missing_experiment_folder() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(&[
        "train",
        dir.path().join("nope").to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("nope: experiment folder not found"),
        "{}",
        stderr(&o)
    );
    assert_eq!(listing(dir.path()), Vec::<String>::new());
}

#[test]
fn experiment_without_features() {
    let dir = tempfile::tempdir().unwrap();
    let exp = dir.path().join("empty");
    std::fs::create_dir_all(exp.join("3_feature768")).unwrap();
    expect_failure(&exp, "no features");
    let o = run(&[
        "train",
        exp.to_str().unwrap(),
        "--version",
        "v2",
        "--device",
        "cpu",
    ]);
    assert!(
        stderr(&o).contains("3_feature768: no .npy feature files"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn truncated_npy() {
    let dir = tempfile::tempdir().unwrap();
    let (exp, fd) = experiment(dir.path());
    let f = fd.join("0_2.npy");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() - 100]).unwrap();
    expect_failure(&exp, "0_2.npy: truncated");
}

#[test]
fn garbage_npy() {
    let dir = tempfile::tempdir().unwrap();
    let (exp, fd) = experiment(dir.path());
    std::fs::write(fd.join("0_1.npy"), b"not numpy at all").unwrap();
    expect_failure(&exp, "0_1.npy: not a valid .npy file");
}

#[test]
fn not_two_dimensional() {
    let dir = tempfile::tempdir().unwrap();
    let (exp, fd) = experiment(dir.path());
    write_npy(fd.join("0_1.npy"), &Array3::<f32>::zeros((2, 3, 256))).unwrap();
    expect_failure(&exp, "0_1.npy: expected a 2-D array");
}

#[test]
fn unsupported_dtype() {
    let dir = tempfile::tempdir().unwrap();
    let (exp, fd) = experiment(dir.path());
    write_npy(fd.join("0_3.npy"), &Array2::<i32>::zeros((5, 256))).unwrap();
    expect_failure(&exp, "0_3.npy: unsupported dtype \"<i4\"");
}

#[test]
fn column_count_differs() {
    let dir = tempfile::tempdir().unwrap();
    let (exp, fd) = experiment(dir.path());
    write_npy(fd.join("0_3.npy"), &Array2::<f32>::zeros((5, 255))).unwrap();
    expect_failure(&exp, "0_3.npy: has 255 columns but 0_0.npy has 256");
}

#[test]
fn nan_and_inf_name_file_and_row() {
    let dir = tempfile::tempdir().unwrap();
    let (exp, fd) = experiment(dir.path());
    let mut x = mixture(50, 256, 2, 5);
    x[[17, 3]] = f32::NAN;
    write_npy(fd.join("0_1.npy"), &x).unwrap();
    expect_failure(&exp, "0_1.npy: row 17, column 3 is NaN");
    x[[17, 3]] = 1.0;
    x[[4, 0]] = f32::NEG_INFINITY;
    write_npy(fd.join("0_1.npy"), &x).unwrap();
    expect_failure(&exp, "0_1.npy: row 4, column 0 is -inf");
}

#[test]
fn too_few_rows_for_one_list() {
    let dir = tempfile::tempdir().unwrap();
    let x = mixture(38, 256, 2, 2);
    let exp = make_experiment(dir.path(), "tiny", &x, 20);
    expect_failure(&exp, "only 38 feature rows");
    let o = run(&[
        "train",
        exp.to_str().unwrap(),
        "--nlist",
        "50",
        "--device",
        "cpu",
    ]);
    assert!(
        stderr(&o).contains("fewer than the 50 lists"),
        "{}",
        stderr(&o)
    );
}
