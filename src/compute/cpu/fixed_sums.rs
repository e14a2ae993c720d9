//! Dot products and squared distances in f32 with a fixed summation order
//! (64 partial sums, folded pairwise, then the remainder in order) and no
//! fused multiply-adds, built for the widest vectors the CPU has: the same
//! bits on every instruction set, so results are reproducible across
//! machines. Used for the exact scores of the pruned assignment.

// The partial sums read best with explicit indices.
#![allow(clippy::needless_range_loop)]

use super::Isa;

/// Exact f32 dot product with a fixed summation order (64 partial sums,
/// folded pairwise, then the remainder in order), so every build and
/// every instruction set gives the same value.
#[inline(always)]
fn dot_fixed(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 64];
    let mut ca = a.chunks_exact(64);
    let mut cb = b.chunks_exact(64);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..64 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut w = 64;
    while w > 1 {
        w /= 2;
        for l in 0..w {
            acc[l] += acc[l + w];
        }
    }
    let mut s = acc[0];
    for (&x, &y) in ca.remainder().iter().zip(cb.remainder()) {
        s += x * y;
    }
    s
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
    dot_fixed(a, b)
}

/// `‖a − b‖²` in f32 with a fixed summation order (as [`dot_fixed`]).
#[inline(always)]
fn sq_distance_fixed(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 64];
    let mut ca = a.chunks_exact(64);
    let mut cb = b.chunks_exact(64);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..64 {
            let t = x[l] - y[l];
            acc[l] += t * t;
        }
    }
    let mut w = 64;
    while w > 1 {
        w /= 2;
        for l in 0..w {
            acc[l] += acc[l + w];
        }
    }
    let mut s = acc[0];
    for (&x, &y) in ca.remainder().iter().zip(cb.remainder()) {
        s += (x - y) * (x - y);
    }
    s
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn sq_distance_avx512(a: &[f32], b: &[f32]) -> f32 {
    sq_distance_fixed(a, b)
}

/// Squared L2 distance of two rows in f32, vectorised, with a summation
/// order that does not depend on the CPU (so results are reproducible).
pub fn sq_distance(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F.
        return unsafe { sq_distance_avx512(a, b) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        return unsafe { sq_distance_avx2(a, b) };
    }
    sq_distance_fixed(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sq_distance_avx2(a: &[f32], b: &[f32]) -> f32 {
    sq_distance_fixed(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_fixed(a, b)
}

/// [`dot_fixed`] compiled for the widest vectors the CPU has (the same
/// operations in the same order: no fused multiply-adds, so the value does
/// not depend on the instruction set).
pub(crate) fn dot(kernel: Isa, a: &[f32], b: &[f32]) -> f32 {
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the AVX-512 kernel is only selected where the CPU has it.
        Isa::Avx512 => unsafe { dot_avx512(a, b) },
        #[cfg(target_arch = "x86_64")]
        _ if std::arch::is_x86_feature_detected!("avx2") => {
            // SAFETY: the CPU has AVX2.
            unsafe { dot_avx2(a, b) }
        }
        _ => dot_fixed(a, b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectorised builds of the fixed-order sums give the scalar
    /// build's bits, on every length (remainders included).
    #[test]
    fn fixed_order_sums_do_not_depend_on_the_instruction_set() {
        let mut state = 1u32;
        let mut rnd = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as f32 / u32::MAX as f32 - 0.5
        };
        for len in [0, 1, 15, 63, 64, 65, 200, 768, 1001] {
            let a: Vec<f32> = (0..len).map(|_| rnd() * 10.0).collect();
            let b: Vec<f32> = (0..len).map(|_| rnd()).collect();
            let (d0, s0) = (dot_fixed(&a, &b), sq_distance_fixed(&a, &b));
            assert_eq!(dot(Isa::Portable, &a, &b).to_bits(), d0.to_bits(), "{len}");
            assert_eq!(sq_distance(&a, &b).to_bits(), s0.to_bits(), "{len}");
            #[cfg(target_arch = "x86_64")]
            if Isa::Avx512.is_available() {
                assert_eq!(dot(Isa::Avx512, &a, &b).to_bits(), d0.to_bits(), "{len}");
            }
            let want: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
            assert!(
                (d0 as f64 - want).abs() <= 1e-4 * (1.0 + want.abs()),
                "{len}"
            );
        }
    }
}
