//! The report of the GPU suite (`benches/device/run.sh`): the script runs
//! each step as its own `rvc-index` command with a time limit, writing that
//! command's `--json` into `OUT/steps/` and one line per step into
//! `OUT/steps/status.tsv` (`name TAB status TAB seconds TAB limit`);
//! `rvc-index bench --suite-report OUT` turns what is there, however
//! partial, into `OUT/gpu_report.json` and a table. The script calls it
//! after every step, so a run cut short still leaves a valid report.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde_json::{Map, Value, json};

use crate::compute::gpu::AssignVariant;
use crate::{Error, Result};

/// fp32 peak (TFLOP/s, vector units, no tensor cores) of adapters by name:
/// the first entry whose every word is in the adapter's name wins, so the
/// more specific names come first.
pub const KNOWN_PEAKS: &[(&str, f64)] = &[
    ("H200 NVL", 60.0),
    ("H200", 67.0),
    ("H100 PCIE", 51.2),
    ("H100 NVL", 60.0),
    ("H100", 67.0),
    ("GH200", 67.0),
    ("A100", 19.5),
    ("L40S", 91.6),
    ("L40", 90.5),
    ("L4", 30.3),
    ("A10G", 31.2),
    ("A10", 31.2),
    ("T4", 8.1),
    ("V100", 15.7),
    ("RTX 4090", 82.6),
    ("RTX 4080", 48.7),
    ("RTX 3090", 35.6),
    ("RTX 3080", 29.8),
    ("MI300X", 163.4),
    ("MI250X", 47.9),
];

/// The known fp32 peak of an adapter, in TFLOP/s, and the table entry
/// that matched.
pub fn fp32_peak(name: &str) -> Option<(&'static str, f64)> {
    let words: Vec<String> = name
        .to_uppercase()
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    KNOWN_PEAKS
        .iter()
        .find(|(pat, _)| pat.split(' ').all(|p| words.iter().any(|w| w == p)))
        .copied()
}

/// One line of `status.tsv`.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub name: String,
    /// ok, failed, timeout or skipped.
    pub status: String,
    pub seconds: Option<f64>,
    pub limit_s: Option<f64>,
}

fn read_steps(dir: &Path) -> Result<Vec<Step>> {
    let path = dir.join("steps").join("status.tsv");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let mut steps = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() < 2 {
            return Err(Error::bad_input(
                &path,
                format!("line {}: expected name, status, seconds, limit", i + 1),
            ));
        }
        steps.push(Step {
            name: f[0].to_string(),
            status: f[1].to_string(),
            seconds: f.get(2).and_then(|s| s.trim().parse().ok()),
            limit_s: f.get(3).and_then(|s| s.trim().parse().ok()),
        });
    }
    Ok(steps)
}

/// A step's JSON, if it wrote a whole one.
fn step_json(dir: &Path, name: &str) -> Option<Value> {
    let text = std::fs::read_to_string(dir.join("steps").join(format!("{name}.json"))).ok()?;
    serde_json::from_str(&text).ok()
}

fn stages(v: &Value) -> impl Iterator<Item = &Value> {
    v.get("stages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn f(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

fn stage_named<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    stages(v).find(|s| s.get("name").and_then(Value::as_str) == Some(name))
}

/// Assemble the report from the steps under `dir`.
pub fn collect(dir: &Path) -> Result<Value> {
    let steps = read_steps(dir)?;
    let config = step_json(dir, "config").unwrap_or(Value::Null);
    let forced: Vec<String> = AssignVariant::ALL
        .iter()
        .map(|v| format!("assign_{}", v.name()))
        .collect();
    let benches: Vec<(String, Value)> = ["assign1", "assign2", "search", "compress", "expand"]
        .into_iter()
        .map(String::from)
        .chain(forced)
        .filter_map(|n| step_json(dir, &n).map(|v| (n, v)))
        .collect();
    let adapter = benches
        .iter()
        .find_map(|(_, v)| v.get("adapter").filter(|a| !a.is_null()).cloned());
    let first = benches.first().map(|(_, v)| v);
    let adapter_name = adapter
        .as_ref()
        .and_then(|a| a.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let peak = fp32_peak(adapter_name);
    let share = |gflops: Option<f64>| -> Value {
        match (gflops, peak) {
            (Some(g), Some((_, p))) => json!(g / (p * 1000.0)),
            _ => Value::Null,
        }
    };

    let mut shares = Map::new();
    let mut assign_gflops = Map::new();
    let mut assign_kernel_gflops = Map::new();
    let mut by_kernel: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut assign = Vec::new();
    for (name, v) in benches.iter().filter(|(n, _)| n.starts_with("assign")) {
        for st in stages(v).filter(|s| s.get("name").and_then(Value::as_str) == Some("assign")) {
            let info = &st["info"];
            let size = format!(
                "{}x{}x{}",
                info["rows"].as_u64().unwrap_or(0),
                info["k"].as_u64().unwrap_or(0),
                info["d"].as_u64().unwrap_or(0)
            );
            let g = f(st, "gflops");
            // The kernels alone (device timestamps), where the adapter has them.
            let kg = f(info, "kernel_gflops");
            let kernel = info["kernel"].as_str().unwrap_or("?").to_string();
            if name == "assign1" || name == "assign2" {
                assign_gflops.insert(size.clone(), json!(g));
                assign_kernel_gflops.insert(size.clone(), json!(kg));
                shares.insert(format!("assign {size}"), share(g));
                shares.insert(format!("assign {size} kernel only"), share(kg));
            } else {
                shares.insert(format!("assign {size} {kernel}"), share(g));
                shares.insert(format!("assign {size} {kernel} kernel only"), share(kg));
            }
            by_kernel
                .entry(kernel)
                .or_default()
                .insert(size.clone(), json!(g));
            assign.push(json!({
                "step": name,
                "size": size,
                "seconds": f(st, "min_s"),
                "gflops": g,
                "share_of_fp32_peak": share(g),
                "kernel_seconds": info.get("kernel_s"),
                "kernel_gflops": kg,
                "kernel_share_of_fp32_peak": share(kg),
                "kernel": info.get("kernel"),
                "checked_rows": info.get("checked_rows"),
                "labels_not_f64_best": info.get("labels_not_f64_best"),
                "labels_wrong": info.get("labels_wrong"),
                "rows_rerun_in_f32": info.get("rows_rerun_in_f32"),
            }));
        }
    }

    let train = |name: &str| -> Value {
        step_json(dir, name).map_or(Value::Null, |t| {
            json!({
                "seconds": t["seconds"]["total"],
                "kmeans_s": t["seconds"]["kmeans"],
                "add_s": t["seconds"]["add"],
                "write_s": t["seconds"]["write_index"].as_f64().unwrap_or(0.0)
                    + t["seconds"]["write_total_fea"].as_f64().unwrap_or(0.0),
                "rows": t["n"],
                "d": t["d"],
                "nlist": t["nlist"],
                "objective_per_row": t["objective_per_row"],
                "backend": t["backend"],
            })
        })
    };
    let (train_gpu, train_cpu) = (train("train_gpu"), train("train_cpu"));

    let mut search_qps: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut search_recall: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut other = Map::new();
    for (name, v) in &benches {
        for st in stages(v) {
            let sname = st.get("name").and_then(Value::as_str).unwrap_or("");
            let factory = st.get("factory").and_then(Value::as_str);
            if name == "search" && sname == "search" {
                let key = format!(
                    "nprobe_{}",
                    st.get("nprobe").and_then(Value::as_u64).unwrap_or(0)
                );
                let fac = factory.unwrap_or("?").to_string();
                search_qps
                    .entry(fac.clone())
                    .or_default()
                    .insert(key.clone(), st["queries_per_s"].clone());
                search_recall
                    .entry(fac)
                    .or_default()
                    .insert(key, st["recall"].clone());
            }
            // Every other stage that counts FLOPs: its share of the peak.
            if sname != "assign" && f(st, "gflops").is_some() {
                let label = match factory {
                    Some(fac) => format!("{sname} {fac}"),
                    None => sname.to_string(),
                };
                shares.insert(label.clone(), share(f(st, "gflops")));
                other.insert(
                    label,
                    json!({"seconds": f(st, "min_s"), "gflops": f(st, "gflops")}),
                );
            }
        }
    }
    let stage_s = |step: &str, stage: &str| -> Value {
        benches
            .iter()
            .find(|(n, _)| n == step)
            .and_then(|(_, v)| stage_named(v, stage))
            .and_then(|s| f(s, "min_s"))
            .map_or(Value::Null, |s| json!(s))
    };

    Ok(json!({
        "suite": "rvc-index GPU suite (benches/device/run.sh)",
        "version": env!("CARGO_PKG_VERSION"),
        "date_unix_s": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        "quick": config.get("quick").cloned().unwrap_or(Value::Null),
        "sizes": config.get("sizes").cloned().unwrap_or(Value::Null),
        "adapter": adapter,
        "fp32_peak_tflops": peak.map(|p| p.1),
        "fp32_peak_source": peak.map(|p| format!("table entry {:?} (vector fp32, no tensor cores)", p.0)),
        "cpu": first.and_then(|v| v.get("cpu")).cloned(),
        "threads": first.and_then(|v| v.get("threads")).cloned(),
        // With the kernel the adapter chose, wall clock of the whole call
        // (uploads and read-back included), and the kernels alone from
        // device timestamps (null where the adapter has none).
        "assign_gflops": assign_gflops,
        "assign_kernel_gflops": assign_kernel_gflops,
        // Per kernel shape (forced): the cooperative-matrix kernel (f16
        // products) can exceed the fp32 peak.
        "assign_gflops_by_kernel": by_kernel,
        "assign": assign,
        "train_seconds": train_gpu.get("seconds").cloned().unwrap_or(Value::Null),
        "cpu_train_seconds": train_cpu.get("seconds").cloned().unwrap_or(Value::Null),
        "train": {"gpu": train_gpu, "cpu": train_cpu},
        "compress_seconds": stage_s("compress", "compress"),
        "search_qps": search_qps,
        "search_recall": search_recall,
        "expand_seconds": stage_s("expand", "expand"),
        "stages": other,
        "share_of_fp32_peak": shares,
        "steps": steps.iter().map(|s| json!({
            "name": s.name, "status": s.status, "seconds": s.seconds, "limit_s": s.limit_s,
        })).collect::<Vec<_>>(),
    }))
}

fn num(v: &Value, prec: usize) -> String {
    v.as_f64()
        .map_or_else(|| "-".into(), |x| format!("{x:.prec$}"))
}

/// The short table `run.sh` prints.
pub fn print_table(r: &Value, out: &mut dyn Write) -> std::io::Result<()> {
    let a = &r["adapter"];
    writeln!(
        out,
        "adapter: {} ({}, {}, driver {} {}); assign kernel {}; fp32 peak {} TFLOP/s",
        a["name"].as_str().unwrap_or("?"),
        a["device_type"].as_str().unwrap_or("?"),
        a["backend"].as_str().unwrap_or("?"),
        a["driver"].as_str().unwrap_or(""),
        a["driver_info"].as_str().unwrap_or(""),
        a["assign_kernel"].as_str().unwrap_or("?"),
        num(&r["fp32_peak_tflops"], 1),
    )?;
    for x in r["assign"].as_array().into_iter().flatten() {
        let pct = |v: &Value| {
            v.as_f64()
                .map_or("-".into(), |s| format!("{:.1}%", s * 100.0))
        };
        writeln!(
            out,
            "assign {:<22} {:<9} {:>9} s {:>9} GFLOP/s ({:>6} of peak); kernel alone {:>9} GFLOP/s ({:>6}); wrong labels {}",
            x["size"].as_str().unwrap_or("?"),
            x["kernel"].as_str().unwrap_or("?"),
            num(&x["seconds"], 4),
            num(&x["gflops"], 1),
            pct(&x["share_of_fp32_peak"]),
            num(&x["kernel_gflops"], 1),
            pct(&x["kernel_share_of_fp32_peak"]),
            x["labels_wrong"],
        )?;
    }
    writeln!(
        out,
        "train (RVC recipe, end to end): gpu {} s, cpu {} s",
        num(&r["train_seconds"], 3),
        num(&r["cpu_train_seconds"], 3)
    )?;
    writeln!(out, "compress: {} s", num(&r["compress_seconds"], 3))?;
    for (fac, per) in r["search_qps"].as_object().into_iter().flatten() {
        let cells: Vec<String> = per
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k} {} q/s", num(v, 0)))
            .collect();
        writeln!(out, "search {fac}: {}", cells.join(", "))?;
    }
    writeln!(out, "expand: {} s", num(&r["expand_seconds"], 3))?;
    for s in r["steps"].as_array().into_iter().flatten() {
        if s["status"] != "ok" {
            writeln!(
                out,
                "step {}: {}",
                s["name"].as_str().unwrap_or("?"),
                s["status"].as_str().unwrap_or("?")
            )?;
        }
    }
    Ok(())
}

/// `bench --suite-report DIR`: write `DIR/gpu_report.json`, print the table.
pub fn report(dir: &Path, out: &mut dyn Write) -> Result<()> {
    if !dir.is_dir() {
        return Err(Error::bad_input(dir, "--suite-report: no such folder"));
    }
    let r = collect(dir)?;
    let mut text = serde_json::to_string_pretty(&r).map_err(|e| Error::Invalid(e.to_string()))?;
    text.push('\n');
    let path = dir.join("gpu_report.json");
    crate::io::write_atomic(&path, |w| w.write_all(text.as_bytes()))?;
    print_table(&r, out).map_err(|e| Error::io("<stdout>", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peaks_match_whole_words_most_specific_first() {
        assert_eq!(fp32_peak("NVIDIA H200").map(|p| p.1), Some(67.0));
        assert_eq!(fp32_peak("NVIDIA H200 NVL").map(|p| p.1), Some(60.0));
        assert_eq!(fp32_peak("NVIDIA H100 PCIe").map(|p| p.1), Some(51.2));
        assert_eq!(fp32_peak("NVIDIA L40S").map(|p| p.1), Some(91.6));
        assert_eq!(fp32_peak("NVIDIA L4").map(|p| p.1), Some(30.3));
        assert_eq!(
            fp32_peak("NVIDIA GeForce RTX 4090").map(|p| p.1),
            Some(82.6)
        );
        assert_eq!(fp32_peak("llvmpipe (LLVM 15.0.6, 256 bits)"), None);
        assert_eq!(fp32_peak("NVIDIA A100-SXM4-80GB").map(|p| p.1), Some(19.5));
    }

    #[test]
    fn partial_steps_give_a_report_with_nulls() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("steps")).unwrap();
        std::fs::write(
            dir.path().join("steps/status.tsv"),
            "assign1\tok\t1.5\t60\ntrain_gpu\ttimeout\t90\t90\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("steps/assign1.json"),
            r#"{"cpu": "x", "threads": 2, "adapter": {"name": "NVIDIA H200"},
               "stages": [{"name": "load", "min_s": 1.0},
                          {"name": "assign", "min_s": 0.5, "gflops": 33500.0,
                           "info": {"rows": 10, "k": 3, "d": 4, "labels_wrong": 0}}]}"#,
        )
        .unwrap();
        let r = collect(dir.path()).unwrap();
        assert_eq!(r["assign_gflops"]["10x3x4"], 33500.0);
        assert!((r["share_of_fp32_peak"]["assign 10x3x4"].as_f64().unwrap() - 0.5).abs() < 1e-9);
        assert_eq!(r["train_seconds"], Value::Null);
        assert_eq!(r["steps"][1]["status"], "timeout");
        let mut out = Vec::new();
        print_table(&r, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("step train_gpu: timeout"), "{text}");
    }
}
