//! 4-bit PQ training and encoding against real faiss.

mod common;

use common::*;
use ndarray::Array2;
use ndarray_npy::{read_npy, write_npy};
use rvc_index::compute::cpu::CpuBackend;
use rvc_index::index::pq;

const FAISS_PQ: &str = r#"
import sys, numpy as np, faiss
x = np.load(sys.argv[1]); m = int(sys.argv[2])
ix = faiss.index_factory(x.shape[1], f"IVF4,PQ{m}x4fs")
ix.train(x)
pq = faiss.downcast_index(faiss.extract_index_ivf(ix)).pq
np.save(sys.argv[3], faiss.vector_to_array(pq.centroids).reshape(-1, x.shape[1] // m))
np.save(sys.argv[4], pq.compute_codes(x[:500]))
"#;

#[test]
fn codebook_and_codes_follow_faiss() {
    let dir = tempfile::tempdir().unwrap();
    // More than 4096 rows, so the seeded training subsample is exercised.
    let x = mixture(5000, 32, 40, 12);
    let xp = dir.path().join("x.npy");
    write_npy(&xp, &x).unwrap();
    let cp = dir.path().join("c.npy");
    let codes_p = dir.path().join("codes.npy");
    let pq = pq::train(&CpuBackend::new(), x.view(), 8).unwrap();
    let Some(_) = python(
        FAISS_PQ,
        &[
            xp.to_str().unwrap(),
            "8",
            cp.to_str().unwrap(),
            codes_p.to_str().unwrap(),
        ],
    ) else {
        return;
    };
    let fc: Array2<f32> = read_npy(&cp).unwrap();
    let scale = fc.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = fc
        .iter()
        .zip(&pq.centroids)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        diff <= 1e-4 * scale,
        "codebooks differ by {diff} (scale {scale})"
    );
    // faiss packs two 4-bit codes per byte, low nibble first.
    let fcodes: Array2<u8> = read_npy(&codes_p).unwrap();
    let ours = pq::encode(&pq, x.slice(ndarray::s![..500, ..]));
    let mut mismatches = 0;
    for (r, row) in ours.rows().into_iter().enumerate() {
        for (sq, &c) in row.iter().enumerate() {
            let byte = fcodes[[r, sq / 2]];
            let theirs = if sq % 2 == 0 { byte & 15 } else { byte >> 4 };
            mismatches += (theirs != c) as usize;
        }
    }
    // Only exact ties between two sub-centroids could differ.
    assert!(mismatches <= 2, "{mismatches} codes differ");
}
