//! `RVC_INDEX_ASSIGN_KERNEL` through the CLI: each kernel the adapter has
//! runs when named (the bench's assign stage says which ran, and its sampled
//! labels are checked against f64 scoring); an unknown name, or a kernel the
//! adapter lacks (the cooperative-matrix one on lavapipe), is one clear
//! error line and exit code 1.

#[macro_use]
mod device;
mod common;

use common::{bin, stderr};

fn bench(kernel: &str, dir: &std::path::Path) -> (std::process::Output, Option<serde_json::Value>) {
    let json = dir.join(format!("{kernel}.json"));
    let o = bin()
        .env("RVC_INDEX_ASSIGN_KERNEL", kernel)
        .args([
            "bench",
            "--device",
            "gpu",
            "-q",
            "--synthetic",
            "3000,48",
            "--stages",
            "assign",
            "--assign-k",
            "150",
            "--compress",
            "off",
            "--queries",
            "1",
            "--json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    let v = std::fs::read_to_string(&json)
        .ok()
        .map(|t| serde_json::from_str(&t).unwrap());
    (o, v)
}

#[test]
fn each_kernel_runs_when_named() {
    let Some(g) = device::gpu() else { return };
    let dir = tempfile::tempdir().unwrap();
    let have = g.assign_variants();
    for v in rvc_index::compute::gpu::AssignVariant::ALL {
        let (o, json) = bench(v.name(), dir.path());
        if !have.contains(&v) {
            assert_eq!(o.status.code(), Some(1), "{v:?}: {}", stderr(&o));
            let err = stderr(&o);
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(
                err.contains("RVC_INDEX_ASSIGN_KERNEL") && err.contains(v.name()),
                "{err}"
            );
            assert!(json.is_none());
            continue;
        }
        assert!(o.status.success(), "{v:?}: {}", stderr(&o));
        let json = json.unwrap();
        assert_eq!(json["adapter"]["assign_kernel"], v.name());
        let st = json["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "assign")
            .unwrap();
        assert_eq!(st["info"]["kernel"], v.name());
        assert_eq!(st["info"]["labels_wrong"], 0, "{v:?}: {st}");
        assert_eq!(st["info"]["checked_rows"], 2000);
    }
}

#[test]
fn unknown_kernel_is_one_error_line() {
    if device::gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (o, json) = bench("tiled", dir.path());
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("unknown assign kernel"), "{err}");
    assert!(json.is_none());
}
