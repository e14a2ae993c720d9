//! `benches/device/run.sh --quick` against this build's binary, on whatever
//! adapter exists (lavapipe in CI): every step must pass and the report
//! must hold every figure the suite promises, with the GPU's assignment
//! labels checked against f64 scoring. Then a run whose budget is spent
//! before the first step: the report is still whole, every step "skipped".

#[macro_use]
mod device;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn suite(out: &Path, budget: Option<&str>) -> (std::process::Output, Value) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/device/run.sh");
    let mut c = Command::new("bash");
    c.arg(&script)
        .arg("--quick")
        .arg(out)
        .env("RVC_INDEX_BIN", env!("CARGO_BIN_EXE_rvc-index"))
        .env("NODEVICE_SELECT", "1")
        .env_remove("RVC_INDEX_ASSIGN_KERNEL");
    if let Some(b) = budget {
        c.env("RVC_SUITE_BUDGET_S", b);
    }
    let o = c.output().expect("run benches/device/run.sh");
    let text = std::fs::read_to_string(out.join("gpu_report.json")).unwrap_or_else(|e| {
        panic!(
            "no report ({e}); stdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    });
    let v = serde_json::from_str(&text).expect("gpu_report.json is JSON");
    (o, v)
}

fn positive(v: &Value, what: &str) -> f64 {
    let x = v
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: not a number: {v}"));
    assert!(x > 0.0 && x.is_finite(), "{what}: {x}");
    x
}

#[test]
fn quick_suite_reports_every_figure() {
    if device::gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (o, r) = suite(dir.path(), None);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let steps = r["steps"].as_array().expect("steps");
    let names: Vec<&str> = steps.iter().map(|s| s["name"].as_str().unwrap()).collect();
    let coop = r["adapter"]["cooperative_matrix"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s == "16x16x16 f16->f32");
    let mut want = vec!["assign1", "assign_tiled64", "assign_tiled128"];
    if coop {
        want.push("assign_coop16");
    }
    want.extend([
        "export",
        "train_gpu",
        "search",
        "compress",
        "assign2",
        "expand",
        "train_cpu",
    ]);
    assert_eq!(names, want);
    for s in steps {
        assert_eq!(s["status"], "ok", "{s}\n{stdout}");
    }
    assert_eq!(r["quick"], true);

    let a = &r["adapter"];
    for key in ["name", "driver", "backend", "device_type", "assign_kernel"] {
        assert!(a[key].is_string(), "adapter.{key}: {a}");
    }
    assert_eq!(a["backend"], "Vulkan");

    let sizes = &r["sizes"];
    let d = sizes["d"].as_u64().unwrap();
    let gf = r["assign_gflops"].as_object().expect("assign_gflops");
    assert_eq!(gf.len(), 2, "{gf:?}");
    for step in ["assign1", "assign2"] {
        let nk = &sizes[step];
        let key = format!("{}x{}x{d}", nk[0], nk[1]);
        positive(&gf[&key], &key);
    }
    for x in r["assign"].as_array().unwrap() {
        assert_eq!(x["labels_wrong"], 0, "{x}");
        assert!(x["checked_rows"].as_u64().unwrap() > 0, "{x}");
        let step = x["step"].as_str().unwrap();
        match step.strip_prefix("assign_") {
            Some(forced) => assert_eq!(x["kernel"], forced, "{x}"),
            None => assert_eq!(x["kernel"], a["assign_kernel"], "{x}"),
        }
    }
    // The kernels alone, from device timestamps where the adapter has them.
    let kg = r["assign_kernel_gflops"]
        .as_object()
        .expect("assign_kernel_gflops");
    assert_eq!(kg.len(), 2, "{kg:?}");
    for (size, v) in kg {
        if !v.is_null() {
            positive(v, size);
        }
    }
    // Each forced shape at the first size.
    let by = r["assign_gflops_by_kernel"].as_object().unwrap();
    let first = format!("{}x{}x{d}", sizes["assign1"][0], sizes["assign1"][1]);
    for kern in ["tiled64", "tiled128"] {
        positive(&by[kern][&first], kern);
    }

    positive(&r["train_seconds"], "train_seconds");
    positive(&r["cpu_train_seconds"], "cpu_train_seconds");
    assert_eq!(r["train"]["gpu"]["backend"]["kind"], "gpu");
    assert_eq!(r["train"]["cpu"]["backend"]["kind"], "cpu");
    assert_eq!(r["train"]["gpu"]["rows"], sizes["train_rows"]);
    positive(&r["compress_seconds"], "compress_seconds");
    positive(&r["expand_seconds"], "expand_seconds");

    let qps = r["search_qps"].as_object().expect("search_qps");
    assert_eq!(qps.len(), 2, "{qps:?}");
    assert!(qps.keys().any(|k| k.ends_with(",Flat")), "{qps:?}");
    assert!(qps.keys().any(|k| k.contains("x4fs,RFlat")), "{qps:?}");
    for (fac, per) in qps {
        for np in ["nprobe_1", "nprobe_16"] {
            positive(&per[np], &format!("{fac} {np}"));
        }
    }
    // Shares of the peak: one per FLOP-counting stage; null here (no known
    // peak for a software adapter), numbers on a known GPU.
    let shares = r["share_of_fp32_peak"].as_object().unwrap();
    assert!(shares.len() >= 5, "{shares:?}");
    let peak_known = r["fp32_peak_tflops"].is_number();
    for (k, v) in shares {
        assert_eq!(v.is_number(), peak_known, "{k}: {v}");
    }
    // The table names the adapter and every figure.
    for needle in [
        "adapter:",
        "assign ",
        "train (RVC recipe",
        "compress:",
        "search ",
        "expand:",
    ] {
        assert!(stdout.contains(needle), "{needle} missing:\n{stdout}");
    }
    // The scratch data are gone.
    assert!(!dir.path().join("work").exists());
}

#[test]
fn spent_budget_still_writes_a_whole_report() {
    let dir = tempfile::tempdir().unwrap();
    let (o, r) = suite(dir.path(), Some("0"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let steps = r["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 10);
    assert!(steps.iter().all(|s| s["status"] == "skipped"), "{steps:?}");
    assert!(r["train_seconds"].is_null() && r["adapter"].is_null());
    assert_eq!(r["assign_gflops"], serde_json::json!({}));
}
