//! Synthetic "RVC-like" data, the baseline faiss harness's generator
//! (`Mixture`, `utterance_lengths`, `generate_rows`), reproduced from the same
//! NumPy random streams so that figures measured on either side are about the
//! same matrix. `benches/rvc_synthetic.py` is the NumPy reference (the model
//! is described there); tests/synthetic.rs compares the two.
//!
//! Every random draw is bit-identical to NumPy's (see `numpy_random`). What
//! is not: `z @ A.T` is a float32 GEMM whose summation order differs from
//! OpenBLAS's (a few float32 ulps of the row's scale), and NumPy evaluates
//! `np.exp` and `**` on float64 arrays with its own SIMD code (AVX-512 exp,
//! SVML pow) where this uses libm; those differ in the last bit of a few
//! percent of the float64 intermediates, which the float32 casts of the
//! mixture parameters absorb (a flip needs the 1-ulp float64 change to cross
//! a float32 rounding boundary) and which moves the component CDF by ~1e-16.

// Constants are NumPy's, digit for digit.
#[allow(clippy::excessive_precision)]
mod numpy_random;
#[allow(clippy::excessive_precision)]
mod ziggurat;

use std::path::Path;

use ndarray::{Array2, ArrayViewMut2};
use rayon::prelude::*;

pub use numpy_random::{Generator, SeedSequence, pairwise_sum};

use crate::{Error, Result};

/// Rows per generator chunk; every chunk has its own stream.
pub const GEN_CHUNK: usize = 65536;
/// The harness's defaults (`--centers`, `--super-centers`, `--latent`).
pub const CENTERS: usize = 4096;
pub const SUPER_CENTERS: usize = 64;
pub const LATENT: usize = 48;
/// Stream numbers after the seed in `SeedSequence([seed, *stream])`.
pub const STREAM_MIXTURE: u64 = 0;
pub const STREAM_DATABASE: u64 = 1;
pub const STREAM_QUERIES: u64 = 2;
pub const STREAM_LENGTHS: u64 = 9;
/// Rows per block of the `z @ A.T` product (a block's scratch stays in cache).
const GEMM_ROWS: usize = 256;

/// Hierarchical anisotropic Gaussian mixture in a latent subspace, with the
/// harness's parameters (`Mixture.__init__`).
#[derive(Clone, Debug)]
pub struct Mixture {
    pub d: usize,
    /// Latent dimension, `min(latent, d)`.
    pub r: usize,
    /// Mixing matrix, `d × r`.
    pub a: Array2<f32>,
    pub m0: Vec<f32>,
    pub eps_sd: Vec<f32>,
    /// Component centres in latent space, `centers × r`.
    pub u: Array2<f32>,
    /// Per-component diagonal latent noise scales, `centers × r`.
    pub v_sd: Array2<f32>,
    /// Cumulative component weights (Zipf-like, permuted), last entry 1.
    pub cdf: Vec<f64>,
}

fn check_dims(what: &str, v: usize) -> Result<()> {
    if v == 0 {
        return Err(Error::Invalid(format!(
            "synthetic data: {what} must be at least 1"
        )));
    }
    Ok(())
}

impl Mixture {
    /// `Mixture(d, n_centers, n_super, latent, seed)`.
    pub fn new(
        d: usize,
        n_centers: usize,
        n_super: usize,
        latent: usize,
        seed: u64,
    ) -> Result<Self> {
        check_dims("dimension d", d)?;
        check_dims("centers", n_centers)?;
        check_dims("super-centers", n_super)?;
        check_dims("latent dimension", latent)?;
        let mut rng = Generator::new(&[seed, STREAM_MIXTURE]);
        let r = latent.min(d);
        let s: Vec<f64> = (0..d).map(|_| rng.normal(0.0, 0.5).exp()).collect();
        let spec: Vec<f64> = (0..r).map(|k| (k as f64 + 1.0).powf(-0.5)).collect();
        let sqrt_r = (r as f64).sqrt();
        let mut a = Array2::<f32>::zeros((d, r));
        for j in 0..d {
            for k in 0..r {
                let n = rng.standard_normal();
                a[[j, k]] = ((n / sqrt_r * spec[k] * 3.0) * s[j]) as f32;
            }
        }
        let m0: Vec<f32> = s
            .iter()
            .map(|&sj| (rng.normal(0.0, 0.5) * sj) as f32)
            .collect();
        let eps_sd: Vec<f32> = s.iter().map(|&sj| (0.15 * sj) as f32).collect();
        let sup: Vec<f64> = (0..n_super * r)
            .map(|_| rng.standard_normal() * 1.6)
            .collect();
        let g = rng.integers(0, n_super as i64, n_centers);
        let mut u = Array2::<f32>::zeros((n_centers, r));
        for c in 0..n_centers {
            let gc = g[c] as usize;
            for k in 0..r {
                u[[c, k]] = (sup[gc * r + k] + rng.standard_normal() * 0.7) as f32;
            }
        }
        let log06 = 0.6f64.ln();
        let sig_c: Vec<f64> = (0..n_centers)
            .map(|_| rng.normal(log06, 0.25).exp())
            .collect();
        let mut v_sd = Array2::<f32>::zeros((n_centers, r));
        for c in 0..n_centers {
            for k in 0..r {
                let a_cj = rng.normal(0.0, 0.3).exp();
                v_sd[[c, k]] = (sig_c[c] * a_cj) as f32;
            }
        }
        let perm = rng.permutation(n_centers);
        let w: Vec<f64> = perm.iter().map(|&i| (i as f64 + 1.0).powf(-0.8)).collect();
        let total = pairwise_sum(&w);
        let mut cdf = Vec::with_capacity(n_centers);
        let mut acc = 0.0f64;
        for (i, &wi) in w.iter().enumerate() {
            let q = wi / total;
            acc = if i == 0 { q } else { acc + q };
            cdf.push(acc);
        }
        *cdf.last_mut().expect("n_centers >= 1") = 1.0;
        Ok(Mixture {
            d,
            r,
            a,
            m0,
            eps_sd,
            u,
            v_sd,
            cdf,
        })
    }

    /// The harness's default mixture for (d, seed).
    pub fn harness(d: usize, seed: u64) -> Result<Self> {
        Mixture::new(d, CENTERS, SUPER_CENTERS, LATENT, seed)
    }

    /// `Mixture.labels`: runs of geometric length (mean 6) from components
    /// drawn by weight.
    pub fn labels(&self, rng: &mut Generator, n: usize) -> Vec<u32> {
        let mut out: Vec<u32> = Vec::with_capacity(n + 64);
        let mut filled = 0usize;
        let mut runs: Vec<i64> = Vec::new();
        while filled < n {
            let m = ((n - filled) / 4).max(16);
            runs.clear();
            runs.extend((0..m).map(|_| rng.geometric(1.0 / 6.0)));
            for &run in &runs {
                let u = rng.random();
                let comp = self.cdf.partition_point(|&c| c <= u) as u32;
                // Rows past n are dropped; their draws still had to happen.
                let run = run.max(0) as usize;
                out.extend(std::iter::repeat_n(
                    comp,
                    run.min(n.saturating_sub(out.len())),
                ));
                filled = filled.saturating_add(run);
            }
        }
        out.truncate(n);
        out
    }

    /// `Mixture.sample(rng, n)` into `out` (`n × d`, C order).
    pub fn sample_into(&self, rng: &mut Generator, mut out: ArrayViewMut2<f32>) {
        let n = out.nrows();
        let (d, r) = (self.d, self.r);
        assert_eq!(out.ncols(), d);
        let lab = self.labels(rng, n);
        let t: Vec<f32> = (0..n)
            .map(|_| {
                let v = (5.0 / rng.chisquare(5.0)).sqrt();
                (if v > 6.0 { 6.0 } else { v }) as f32
            })
            .collect();
        let mut z = vec![0f32; n * r];
        for i in 0..n {
            let c = lab[i] as usize;
            let (u, v) = (self.u.row(c), self.v_sd.row(c));
            for k in 0..r {
                z[i * r + k] = u[k] + t[i] * v[k] * rng.standard_normal_f32();
            }
        }
        let x = out
            .as_slice_mut()
            .expect("sample_into needs a C-contiguous output");
        rng.fill_standard_normal_f32(x);
        let a = self.a.as_slice().expect("A is C-contiguous");
        x.par_chunks_mut(GEMM_ROWS * d)
            .zip(z.par_chunks(GEMM_ROWS * r))
            .zip(t.par_chunks(GEMM_ROWS))
            .for_each(|((xb, zb), tb)| {
                let m = tb.len();
                let mut prod = vec![0f32; m * d];
                // prod = zb · aᵀ: zb is m×r and a is d×r, both C order.
                crate::compute::cpu::gemm::abt(m, d, r, zb, a, &mut prod);
                for i in 0..m {
                    let ti = tb[i];
                    let row = &mut xb[i * d..(i + 1) * d];
                    let p = &prod[i * d..(i + 1) * d];
                    for j in 0..d {
                        // e *= eps_sd; e *= t; x += e; x += m0 (float32, in
                        // NumPy's order).
                        let e = row[j] * self.eps_sd[j] * ti;
                        row[j] = (p[j] + e) + self.m0[j];
                    }
                }
            });
    }

    /// `Mixture.sample(rng, n)`.
    pub fn sample(&self, rng: &mut Generator, n: usize) -> Array2<f32> {
        let mut out = Array2::<f32>::zeros((n, self.d));
        self.sample_into(rng, out.view_mut());
        out
    }

    /// `generate_rows(mix, n, seed, stream)`: chunks of `GEN_CHUNK` rows,
    /// chunk `ci` drawn from `SeedSequence([seed, stream, ci])`; chunks are
    /// generated in parallel (the result does not depend on the threads).
    pub fn generate_rows(&self, n: usize, seed: u64, stream: u64) -> Result<Array2<f32>> {
        n.checked_mul(self.d)
            .filter(|&c| c <= isize::MAX as usize / 4)
            .ok_or_else(|| {
                Error::Invalid(format!("synthetic data: {n} × {} is too large", self.d))
            })?;
        let mut out = Array2::<f32>::zeros((n, self.d));
        let d = self.d;
        out.as_slice_mut()
            .expect("fresh arrays are C-contiguous")
            .par_chunks_mut(GEN_CHUNK * d)
            .enumerate()
            .for_each(|(ci, block)| {
                let mut rng = Generator::new(&[seed, stream, ci as u64]);
                let rows = block.len() / d;
                let view = ArrayViewMut2::from_shape((rows, d), block).expect("chunk shape");
                self.sample_into(&mut rng, view);
            });
        Ok(out)
    }
}

/// Database rows for (n, d, seed) in file order (the concatenation of the
/// harness's utterance files, before RVC's shuffle).
pub fn database(n: usize, d: usize, seed: u64) -> crate::Result<ndarray::Array2<f32>> {
    check_dims("number of rows n", n)?;
    Mixture::harness(d, seed)?.generate_rows(n, seed, STREAM_DATABASE)
}

/// Query rows as the harness draws them for synthetic data (separate stream).
pub fn queries(nq: usize, d: usize, seed: u64) -> crate::Result<ndarray::Array2<f32>> {
    Mixture::harness(d, seed)?.generate_rows(nq, seed, STREAM_QUERIES)
}

/// Utterance lengths the harness splits the database into.
pub fn utterance_lengths(n: usize, seed: u64) -> Vec<usize> {
    let mut rng = Generator::new(&[seed, STREAM_LENGTHS]);
    let lens = rng.integers(100, 201, n / 100 + 2);
    let mut c = 0usize;
    let mut out = Vec::new();
    for &l in &lens {
        let l = l as usize;
        // searchsorted(cumsum, n) (side left) is the first length that
        // reaches n; it is cut to end exactly at n.
        if c + l >= n {
            out.push(n - c);
            break;
        }
        out.push(l);
        c += l;
    }
    out.retain(|&l| l > 0);
    out
}

/// The harness's cache folder name for its default mixture
/// (`synthetic_key`: `syn_n{n}_d{d}_s{seed}_` + the first 10 hex digits of
/// the SHA-1 of `json.dumps([GEN_VERSION, n, d, seed, centers, super, latent])`),
/// so its cached utterance files can be found and reused.
pub fn cache_key(n: usize, d: usize, seed: u64) -> String {
    let json = format!("[1, {n}, {d}, {seed}, {CENTERS}, {SUPER_CENTERS}, {LATENT}]");
    let h = sha1(json.as_bytes());
    let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
    format!("syn_n{n}_d{d}_s{seed}_{}", &hex[..10])
}

/// SHA-1 (FIPS 180-4), only for `cache_key`'s short inputs.
fn sha1(msg: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut data = msg.to_vec();
    data.push(0x80);
    while data.len() % 64 != 56 {
        data.push(0);
    }
    data.extend_from_slice(&((msg.len() as u64) * 8).to_be_bytes());
    for block in data.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (i, c) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, &wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (i, x) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

/// Write the database as the harness's cache does: one `{i:06d}.npy`
/// (float32) per utterance, in order, then a `_complete` marker. Each file
/// is written atomically; a folder holding other `.npy` files is refused,
/// since they would be read together with these.
pub fn write_experiment(dir: &Path, n: usize, d: usize, seed: u64) -> Result<()> {
    let rows = database(n, d, seed)?;
    let lens = utterance_lengths(n, seed);
    let names: Vec<String> = (0..lens.len()).map(|i| format!("{i:06}.npy")).collect();
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let marker = dir.join("_complete");
    let known: std::collections::HashSet<&str> = names.iter().map(|s| s.as_str()).collect();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".npy") && !known.contains(name.as_str()) {
            return Err(Error::bad_input(
                dir,
                format!(
                    "already holds {name}, which is not part of this data set; use an empty folder"
                ),
            ));
        }
    }
    match std::fs::remove_file(&marker) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&marker, e)),
    }
    let mut offsets = Vec::with_capacity(lens.len());
    let mut off = 0usize;
    for &l in &lens {
        offsets.push(off);
        off += l;
    }
    debug_assert_eq!(off, n);
    names
        .par_iter()
        .zip(lens.par_iter().zip(offsets.par_iter()))
        .try_for_each(|(name, (&l, &o))| {
            let part = rows.slice(ndarray::s![o..o + l, ..]);
            crate::io::features::write_npy_atomic(&dir.join(name), part)
        })?;
    crate::io::write_atomic(&marker, |w| std::io::Write::write_all(w, b"ok\n"))
}
