//! `rvc-index info`: text, --json, and the one-line error.

mod faiss_support;

use std::process::Command;

use rvc_index::Metric;
use rvc_index::faiss::write_index;
use serde_json::Value;

use faiss_support::{IvfSpec, PqSpec, ivf_pqfs};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rvc-index"))
}

#[test]
fn info_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.index");
    let mut ivf = IvfSpec::new(100, 8, 2, Metric::L2);
    ivf.nprobe = 1;
    let index = ivf_pqfs(&PqSpec {
        ivf,
        m: 4,
        by_residual: false,
        bbs: 32,
        refine: Some(1.0),
    });
    write_index(&path, &index).unwrap();
    let size = std::fs::metadata(&path).unwrap().len();
    let sizes = index.list_sizes().unwrap();

    let out = bin().arg("info").arg(&path).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for want in [
        "IxRF > IwPf > IxF2",
        "inside RFlat",
        "IVF2,PQ4x4fs,RFlat",
        "ntotal       100",
        "nlist        2",
        "k_factor     1",
        "M 4, nbits 4",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }

    let out = bin().args(["info", "--json"]).arg(&path).output().unwrap();
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["file_size"], size);
    assert_eq!(v["type_chain"], serde_json::json!(["IxRF", "IwPf", "IxF2"]));
    assert_eq!(v["d"], 8);
    assert_eq!(v["ntotal"], 100);
    assert_eq!(v["metric"], "L2");
    assert_eq!(v["ivf"]["nlist"], 2);
    assert_eq!(v["ivf"]["nprobe"], 1);
    assert_eq!(v["ivf"]["lists"]["min"], *sizes.iter().min().unwrap());
    assert_eq!(v["ivf"]["lists"]["max"], *sizes.iter().max().unwrap());
    let (a, b) = (sizes[0] as f64, sizes[1] as f64);
    let imb = 2.0 * (a * a + b * b) / ((a + b) * (a + b));
    assert!((v["ivf"]["lists"]["imbalance_factor"].as_f64().unwrap() - imb).abs() < 1e-12);
    assert_eq!(v["pq"]["m"], 4);
    assert_eq!(v["pq"]["nbits"], 4);
    assert_eq!(v["refine"]["k_factor"], 1.0);
}

#[test]
fn info_errors_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.index");
    std::fs::write(&path, b"IwFl\x08\x00").unwrap();
    let out = bin().arg("info").arg(&path).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("rvc-index: error: "), "{err}");
    assert!(err.contains("at byte 4") && err.contains("IwFl.d"), "{err}");

    std::fs::write(&path, b"IwPQ....").unwrap();
    let out = bin().arg("info").arg(&path).output().unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with("rvc-index: error: unsupported: IwPQ"),
        "{err}"
    );

    let out = bin()
        .arg("info")
        .arg(dir.path().join("missing.index"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .starts_with("rvc-index: error: ")
    );
}
