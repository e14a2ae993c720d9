//! Exact k-NN (`Backend::knn`) against a brute-force f64 ranking.

mod common;

use rvc_index::Metric;
use rvc_index::compute::Backend;
use rvc_index::compute::cpu::CpuBackend;

fn brute(
    x: &ndarray::Array2<f32>,
    y: &ndarray::Array2<f32>,
    metric: Metric,
) -> Vec<Vec<(f64, usize)>> {
    x.rows()
        .into_iter()
        .map(|q| {
            let mut v: Vec<(f64, usize)> = y
                .rows()
                .into_iter()
                .enumerate()
                .map(|(j, r)| {
                    let s: f64 = match metric {
                        Metric::L2 => q
                            .iter()
                            .zip(r.iter())
                            .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
                            .sum(),
                        Metric::InnerProduct => -q
                            .iter()
                            .zip(r.iter())
                            .map(|(a, b)| *a as f64 * *b as f64)
                            .sum::<f64>(),
                    };
                    (s, j)
                })
                .collect();
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            v
        })
        .collect()
}

#[test]
fn knn_matches_brute_force() {
    // Sizes straddle the 64-query and 1024-row tiles; k above the database size pads.
    for &(nq, nb, d, k) in &[
        (1usize, 1usize, 1usize, 1usize),
        (70, 1500, 13, 8),
        (130, 40, 64, 50),
        (5, 2100, 3, 16),
    ] {
        let x = common::mixture(nq, d, 3, nq as u64);
        let y = common::mixture(nb, d, 7, nb as u64 + 1);
        for metric in [Metric::L2, Metric::InnerProduct] {
            let nn = CpuBackend::new()
                .knn(x.view(), y.view(), k, metric)
                .unwrap();
            let truth = brute(&x, &y, metric);
            for i in 0..nq {
                for r in 0..k {
                    let id = nn.ids[[i, r]];
                    if r >= nb {
                        assert_eq!(id, -1);
                        assert_eq!(nn.scores[[i, r]], metric.worst());
                        continue;
                    }
                    let (s, j) = truth[i][r];
                    let near_tie = (r > 0
                        && (truth[i][r - 1].0 - s).abs() < 1e-4 * s.abs().max(1.0))
                        || (r + 1 < nb && (truth[i][r + 1].0 - s).abs() < 1e-4 * s.abs().max(1.0));
                    if !near_tie {
                        assert_eq!(
                            id as usize, j,
                            "{metric} nq={nq} nb={nb} d={d} query {i} rank {r}"
                        );
                    }
                    let want = if metric == Metric::L2 { s } else { -s };
                    let got = nn.scores[[i, r]] as f64;
                    assert!(
                        (got - want).abs() <= 1e-3 * want.abs().max(1.0),
                        "{got} vs {want}"
                    );
                }
            }
        }
    }
}
