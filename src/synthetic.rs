//! Synthetic RVC-like features, generated exactly as the faiss baseline
//! harness (`faiss_baseline.py`) generates them, so that the same (n, d, seed)
//! gives the same matrix in both tools.
//!
//! Placeholder: the generator is not part of this build yet.

use ndarray::Array2;

/// Database rows for (n, d, seed) in file order (the concatenation of the harness's utterance files, before RVC's shuffle).
pub fn database(n: usize, d: usize, seed: u64) -> crate::Result<Array2<f32>> {
    let _ = (n, d, seed);
    Err(crate::Error::Unsupported("synthetic data generator".into()))
}

/// Query rows as the harness draws them for synthetic data (separate stream).
pub fn queries(nq: usize, d: usize, seed: u64) -> crate::Result<Array2<f32>> {
    let _ = (nq, d, seed);
    Err(crate::Error::Unsupported("synthetic data generator".into()))
}

/// Utterance lengths the harness splits the database into.
pub fn utterance_lengths(n: usize, seed: u64) -> Vec<usize> {
    let _ = (n, seed);
    Vec::new()
}
