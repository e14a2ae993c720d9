//! What a benchmark run reports, and the table it prints.

use std::collections::BTreeMap;
use std::io::Write;

use ndarray::ArrayView2;

use super::{BenchConfig, min_median};
use crate::compute::BackendInfo;

/// Recall against exact search, as the harness's `recall_stats` defines it.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Recall {
    /// The true nearest neighbour ranked first.
    pub r1_at_1: f64,
    /// The true nearest neighbour among the k results.
    pub r1_at_k: f64,
    /// Size of the intersection of the k results with the true k, over k.
    pub rk_at_k: f64,
}

impl Recall {
    /// `found` and `truth` are nq×k ids (-1 = none). Like `np.intersect1d`,
    /// repeated ids count once.
    pub fn of(found: ArrayView2<i64>, truth: ArrayView2<i64>, k: usize) -> Recall {
        let nq = found.nrows().min(truth.nrows());
        if nq == 0 || k == 0 {
            return Recall {
                r1_at_1: 0.0,
                r1_at_k: 0.0,
                rk_at_k: 0.0,
            };
        }
        let (mut r11, mut r1k, mut inter) = (0usize, 0usize, 0usize);
        for i in 0..nq {
            let f: Vec<i64> = found.row(i).iter().take(k).copied().collect();
            let t: Vec<i64> = truth.row(i).iter().take(k).copied().collect();
            r11 += (f.first() == t.first()) as usize;
            r1k += t.first().is_some_and(|g| f.contains(g)) as usize;
            let mut fu = f.clone();
            fu.sort_unstable();
            fu.dedup();
            let mut tu = t;
            tu.sort_unstable();
            tu.dedup();
            inter += fu.iter().filter(|x| tu.binary_search(x).is_ok()).count();
        }
        Recall {
            r1_at_1: r11 as f64 / nq as f64,
            r1_at_k: r1k as f64 / nq as f64,
            rk_at_k: inter as f64 / (nq * k) as f64,
        }
    }
}

/// One timed stage.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Stage {
    /// load, compress, exact, train, train_pq, add, serialize, coarse,
    /// search, base_search, refine, expand.
    pub name: String,
    pub factory: Option<String>,
    pub nprobe: Option<usize>,
    /// Wall-clock seconds of every repetition.
    pub seconds: Vec<f64>,
    pub min_s: f64,
    pub median_s: f64,
    /// Nominal floating-point operations of the stage's distance
    /// computations (2·rows·centroids·D per full assignment), whether or not
    /// the implementation skipped some; `gflops` = flops / `min_s`.
    pub flops: Option<f64>,
    pub gflops: Option<f64>,
    /// Peak resident memory during the stage (VmHWM, reset before it where
    /// the system allows, else since the start).
    pub peak_rss_bytes: Option<u64>,
    /// Mean squared distance of a row to its centre after the stage.
    pub objective_per_row: Option<f64>,
    pub recall: Option<Recall>,
    pub queries_per_s: Option<f64>,
    pub index_bytes: Option<u64>,
    /// Anything else worth knowing (nlist, iterations, rows used, ...).
    pub info: BTreeMap<String, serde_json::Value>,
}

impl Stage {
    pub fn new(name: &str, seconds: Vec<f64>) -> Stage {
        let (min_s, median_s) = min_median(&seconds);
        Stage {
            name: name.into(),
            factory: None,
            nprobe: None,
            seconds,
            min_s,
            median_s,
            flops: None,
            gflops: None,
            peak_rss_bytes: None,
            objective_per_row: None,
            recall: None,
            queries_per_s: None,
            index_bytes: None,
            info: BTreeMap::new(),
        }
    }

    pub fn flops(mut self, flops: f64) -> Stage {
        self.flops = Some(flops);
        if self.min_s > 0.0 {
            self.gflops = Some(flops / self.min_s / 1e9);
        }
        self
    }

    pub fn factory(mut self, f: &str) -> Stage {
        self.factory = Some(f.into());
        self
    }

    pub fn info(mut self, key: &str, v: impl serde::Serialize) -> Stage {
        self.info.insert(
            key.into(),
            serde_json::to_value(v).unwrap_or(serde_json::Value::Null),
        );
        self
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct DataInfo {
    /// The path, or "synthetic".
    pub source: String,
    pub files: usize,
    /// Rows loaded, then rows after holding the queries out.
    pub n_raw: usize,
    pub n_raw_after_holdout: usize,
    /// Rows indexed (the centres when compressed).
    pub n_db: usize,
    pub d: usize,
    pub n_queries: usize,
    pub queries_source: String,
    pub compressed: bool,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub version: &'static str,
    pub date_unix_s: u64,
    pub backend: BackendInfo,
    /// The GPU adapter's details (driver, kernel shapes); absent on the CPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adapter: Option<crate::compute::gpu::AdapterReport>,
    /// Processor model (`/proc/cpuinfo`) and logical CPUs.
    pub cpu: String,
    pub threads: usize,
    pub config: BenchConfig,
    pub data: Option<DataInfo>,
    pub stages: Vec<Stage>,
    /// The largest stage peak.
    pub peak_rss_bytes: Option<u64>,
    pub total_s: f64,
    pub loadavg_start: String,
    pub loadavg_end: String,
}

pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn opt(v: Option<f64>, prec: usize) -> String {
    v.filter(|x| x.is_finite())
        .map_or_else(|| "-".into(), |x| format!("{x:.prec$}"))
}

fn secs(s: f64) -> String {
    if s >= 100.0 {
        format!("{s:.1}")
    } else if s >= 1.0 {
        format!("{s:.3}")
    } else {
        format!("{s:.4}")
    }
}

/// The table: one line per stage.
pub fn print_table(r: &Report, out: &mut dyn Write) -> std::io::Result<()> {
    let b = &r.backend;
    if b.kind == "gpu" {
        writeln!(
            out,
            "device: gpu ({}, {}, {})",
            b.name, b.device_type, b.api
        )?;
    } else {
        writeln!(out, "device: cpu ({})", b.name)?;
    }
    writeln!(out, "cpu: {} ({} threads)", r.cpu, r.threads)?;
    if let Some(d) = &r.data {
        writeln!(
            out,
            "data: {} ({} files): {} rows x {}, {} queries ({}); {} rows indexed{}",
            d.source,
            d.files,
            d.n_raw,
            d.d,
            d.n_queries,
            d.queries_source,
            d.n_db,
            if d.compressed {
                " (compressed to centres)"
            } else {
                ""
            }
        )?;
    }
    writeln!(
        out,
        "repeat {}, k {}; times in seconds (GPU stages include the final readback)",
        r.config.repeat, r.config.k
    )?;
    let k = r.config.k;
    let header = [
        "stage".to_string(),
        "factory".into(),
        "nprobe".into(),
        "min s".into(),
        "median s".into(),
        "GFLOP/s".into(),
        "peak MiB".into(),
        "obj/row".into(),
        "R1@1".into(),
        format!("R1@{k}"),
        format!("R{k}@{k}"),
        "QPS".into(),
        "size MiB".into(),
    ];
    let mut rows = vec![header.to_vec()];
    for s in &r.stages {
        rows.push(vec![
            s.name.clone(),
            s.factory.clone().unwrap_or_else(|| "-".into()),
            s.nprobe.map_or_else(|| "-".into(), |p| p.to_string()),
            secs(s.min_s),
            secs(s.median_s),
            opt(s.gflops, 1),
            opt(s.peak_rss_bytes.map(|b| b as f64 / (1u64 << 20) as f64), 0),
            opt(s.objective_per_row, 4),
            opt(s.recall.map(|x| x.r1_at_1), 4),
            opt(s.recall.map(|x| x.r1_at_k), 4),
            opt(s.recall.map(|x| x.rk_at_k), 4),
            opt(s.queries_per_s, 0),
            opt(s.index_bytes.map(|b| b as f64 / (1u64 << 20) as f64), 2),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for (i, row) in rows.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (v, &w))| {
                if c < 2 {
                    format!("{v:<w$}")
                } else {
                    format!("{v:>w$}")
                }
            })
            .collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
        if i == 0 {
            let total: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
            writeln!(out, "{}", "-".repeat(total))?;
        }
    }
    writeln!(
        out,
        "peak memory {} MiB; total {:.2} s; load average {} -> {}",
        opt(r.peak_rss_bytes.map(|b| b as f64 / (1u64 << 20) as f64), 0),
        r.total_s,
        r.loadavg_start,
        r.loadavg_end
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::arr2;

    #[test]
    fn recall_as_the_harness_counts_it() {
        let truth = arr2(&[[1i64, 2, 3], [4, 5, 6]]);
        let found = arr2(&[[1i64, 3, 9], [5, 4, 4]]);
        let r = Recall::of(found.view(), truth.view(), 3);
        assert_eq!(r.r1_at_1, 0.5);
        assert_eq!(r.r1_at_k, 1.0);
        // {1,3} and {4,5}: 4 of 6.
        assert!((r.rk_at_k - 4.0 / 6.0).abs() < 1e-12);
    }
}
