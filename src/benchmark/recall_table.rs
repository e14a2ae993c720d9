//! The recall-against-nprobe table of `bench` (and the series its `--png`
//! chart draws), from the search stages of a report.

use std::io::Write;

use super::Report;
use super::plot::Series;

/// Per index kind, its searches: (ms per 1 000 queries, Rk@k, nprobe).
pub fn recall_series(r: &Report) -> Vec<Series> {
    let nq = r.data.as_ref().map_or(0, |d| d.n_queries).max(1) as f64;
    let mut out: Vec<Series> = Vec::new();
    for s in r.stages.iter().filter(|s| s.name == "search") {
        let (Some(f), Some(p), Some(rec)) = (&s.factory, s.nprobe, s.recall) else {
            continue;
        };
        let point = (s.min_s * 1e6 / nq, rec.rk_at_k, p);
        match out.iter_mut().find(|x| &x.label == f) {
            Some(x) => x.points.push(point),
            None => out.push(Series {
                label: f.clone(),
                points: vec![point],
            }),
        }
    }
    for x in &mut out {
        x.points.sort_by_key(|p| p.2);
    }
    out
}

/// The in-index estimate of a `recall` stage at nprobe `p`, and its choice.
fn estimate(r: &Report, factory: &str, p: usize) -> (Option<f64>, bool) {
    let Some(st) = r
        .stages
        .iter()
        .find(|s| s.name == "recall" && s.factory.as_deref() == Some(factory))
    else {
        return (None, false);
    };
    let at = st
        .info
        .get("curve")
        .and_then(|c| c.as_array())
        .and_then(|c| {
            c.iter()
                .find(|pt| pt["nprobe"].as_u64() == Some(p as u64))
                .and_then(|pt| pt["recall_at_8"].as_f64())
        });
    (at, st.nprobe == Some(p))
}

/// recall@k against nprobe and search time, one line per search; with
/// `--recall`, the in-index estimate beside it and the chosen nprobe marked.
pub fn print_recall_table(r: &Report, out: &mut dyn Write) -> std::io::Result<()> {
    let series = recall_series(r);
    if series.is_empty() {
        return Ok(());
    }
    let k = r.config.k;
    let source = r.data.as_ref().map_or("", |d| d.queries_source.as_str());
    writeln!(out)?;
    writeln!(out, "recall@{k} against nprobe ({source}):")?;
    let with_estimate = r.stages.iter().any(|s| s.name == "recall");
    let w = series
        .iter()
        .map(|s| s.label.len())
        .max()
        .unwrap_or(7)
        .max(7);
    let mut head = format!(
        "{:w$}  {:>6}  {:>9}  {:>12}",
        "factory",
        "nprobe",
        format!("R{k}@{k}"),
        "ms/1000 q"
    );
    if with_estimate {
        head.push_str(&format!("  {:>9}", "in-index"));
    }
    writeln!(out, "{head}")?;
    writeln!(out, "{}", "-".repeat(head.len()))?;
    for s in &series {
        for &(ms, rec, p) in &s.points {
            let mut line = format!("{:w$}  {p:>6}  {rec:>9.4}  {ms:>12.2}", s.label);
            if with_estimate {
                let (est, chosen) = estimate(r, &s.label, p);
                let est = est.map_or_else(|| "-".into(), |v| format!("{v:.4}"));
                line.push_str(&format!("  {est:>9}"));
                if chosen {
                    line.push_str("  <- --recall");
                }
            }
            writeln!(out, "{}", line.trim_end())?;
        }
    }
    for st in r.stages.iter().filter(|s| s.name == "recall") {
        let get = |k: &str| st.info.get(k).and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
        writeln!(
            out,
            "--recall {}: {} nprobe {} (in-index recall@8 {:.4}; {:.4} at nprobe 1), measured in {:.3} s = {:.1} % of train + add",
            get("target"),
            st.factory.as_deref().unwrap_or("-"),
            st.nprobe.unwrap_or(0),
            get("recall_at_chosen"),
            get("recall_at_nprobe_1"),
            st.min_s,
            100.0 * get("share_of_train_and_add")
        )?;
    }
    Ok(())
}
