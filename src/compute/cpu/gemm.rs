//! The one call into the `gemm` crate: `A·Bᵀ` of two row-major matrices, the
//! shape every GEMM-form kernel (assignment, k-NN tiles, the synthetic
//! generator's mixing) needs.

/// `out[i·cols + j] = Σ_t a[i·d + t] · b[j·d + t]` for `i < rows`, `j < cols`:
/// `a` is `rows × d` and `b` is `cols × d`, both row-major; `out` is
/// overwritten. Single-threaded (callers parallelise over tiles), so the
/// rounding depends on the shapes only.
pub fn abt(rows: usize, cols: usize, d: usize, a: &[f32], b: &[f32], out: &mut [f32]) {
    assert!(
        a.len() >= rows * d && b.len() >= cols * d && out.len() >= rows * cols,
        "gemm::abt: operands shorter than {rows}×{d}, {cols}×{d}, {rows}×{cols}"
    );
    if rows == 0 || cols == 0 {
        return;
    }
    // SAFETY: dst is rows×cols (row stride cols, column stride 1) inside
    // `out`; lhs is rows×d row-major inside `a`; rhs is the d×cols matrix bᵀ
    // (row stride 1, column stride d) inside `b`; all checked above.
    unsafe {
        gemm::gemm(
            rows,
            cols,
            d,
            out.as_mut_ptr(),
            1,
            cols as isize,
            false,
            a.as_ptr(),
            1,
            d as isize,
            b.as_ptr(),
            d as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}
