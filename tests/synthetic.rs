//! The synthetic data generator against NumPy: raw draws and distributions
//! against `numpy.random` itself, the mixture and its rows against the
//! project's NumPy reference (`benches/rvc_synthetic.py`, run through
//! `python3`), and a few values recorded once from the baseline harness
//! whose data both reproduce. Random draws must be bit-identical; generated
//! rows agree to float32 rounding of the `z @ A.T` product.

mod common;

use std::path::Path;

use ndarray::{Array1, Array2};
use ndarray_npy::read_npy;
use rvc_index::synthetic::{self, Generator, Mixture, pairwise_sum};

const PRELUDE: &str = r#"
import os, sys
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(sys.argv[1], "benches"))
import numpy as np
import rvc_synthetic as ref
out = sys.argv[2]
"#;

fn manifest() -> &'static str {
    env!("CARGO_MANIFEST_DIR")
}

/// Run `body` after the reference import; `out` is the folder it writes to.
fn py(body: &str, out: &Path) -> bool {
    let script = format!("{PRELUDE}\n{body}");
    common::python(&script, &[manifest(), out.to_str().unwrap()]).is_some()
}

fn load1<T: ndarray_npy::ReadableElement + Clone>(dir: &Path, name: &str) -> Vec<T> {
    let a: Array1<T> = read_npy(dir.join(format!("{name}.npy"))).unwrap();
    a.to_vec()
}

fn load2(dir: &Path, name: &str) -> Array2<f32> {
    read_npy(dir.join(format!("{name}.npy"))).unwrap()
}

const SEEDS: &[(u64, &[u64])] = &[
    (0, &[]),
    (0, &[1, 0]),
    (1, &[2, 3]),
    (12345, &[9]),
    ((1 << 40) + 7, &[0]),
    (7, &[1, 2, 3, 4, 5]),
];

#[test]
fn raw_draws_are_bit_identical_to_numpy() {
    let tmp = tempfile::tempdir().unwrap();
    let body = r#"
cases = [(0, []), (0, [1, 0]), (1, [2, 3]), (12345, [9]), ((1 << 40) + 7, [0]), (7, [1, 2, 3, 4, 5])]
for ci, (seed, stream) in enumerate(cases):
    g = np.random.default_rng(np.random.SeedSequence([seed, *stream]))
    p = lambda name, a: np.save(os.path.join(out, f"{ci}_{name}.npy"), np.ascontiguousarray(a))
    p("raw", g.bit_generator.random_raw(7))
    p("random", g.random(1000))
    p("normal", g.standard_normal(100_000))
    p("normal_f32", g.standard_normal(200_001, dtype=np.float32))
    p("loc_scale", g.normal(0.3, 2.5, size=1000))
    p("int_100_201", g.integers(100, 201, size=1001))
    p("int_0_64", g.integers(0, 64, size=999))
    p("int_big", g.integers(-5, 2**40, size=100))
    p("perm", g.permutation(4096))
    p("geometric", g.geometric(1.0 / 6.0, size=20_000))
    p("geometric_search", g.geometric(0.5, size=1000))
    p("chisquare", g.chisquare(5.0, size=20_000))
    p("gamma_small", g.standard_gamma(0.5, size=1000))
    p("exponential", g.standard_exponential(20_000))
    p("f32_after", g.standard_normal(3, dtype=np.float32))
    p("raw_end", g.bit_generator.random_raw(3))
"#;
    if !py(body, tmp.path()) {
        return;
    }
    for (ci, &(seed, stream)) in SEEDS.iter().enumerate() {
        let mut entropy = vec![seed];
        entropy.extend_from_slice(stream);
        let mut g = Generator::new(&entropy);
        let d = tmp.path();
        let name = |n: &str| format!("{ci}_{n}");
        let check_u64 = |n: &str, ours: Vec<u64>| {
            let theirs: Vec<u64> = load1(d, &name(n));
            assert_eq!(ours, theirs, "case {ci} {n}");
        };
        let check_f64 = |n: &str, ours: Vec<f64>| {
            let theirs: Vec<f64> = load1(d, &name(n));
            assert_eq!(ours.len(), theirs.len());
            let bad = ours
                .iter()
                .zip(&theirs)
                .position(|(a, b)| a.to_bits() != b.to_bits());
            assert!(bad.is_none(), "case {ci} {n}: first difference at {bad:?}");
        };
        let check_i64 = |n: &str, ours: Vec<i64>| {
            let theirs: Vec<i64> = load1(d, &name(n));
            assert_eq!(ours, theirs, "case {ci} {n}");
        };
        check_u64("raw", (0..7).map(|_| g.next_u64()).collect());
        check_f64("random", (0..1000).map(|_| g.random()).collect());
        check_f64(
            "normal",
            (0..100_000).map(|_| g.standard_normal()).collect(),
        );
        let mut ours = vec![0f32; 200_001];
        g.fill_standard_normal_f32(&mut ours);
        let theirs: Vec<f32> = load1(d, &name("normal_f32"));
        let bad = ours
            .iter()
            .zip(&theirs)
            .position(|(a, b)| a.to_bits() != b.to_bits());
        assert!(
            bad.is_none(),
            "case {ci} normal_f32: first difference at {bad:?}"
        );
        check_f64("loc_scale", (0..1000).map(|_| g.normal(0.3, 2.5)).collect());
        check_i64("int_100_201", g.integers(100, 201, 1001));
        check_i64("int_0_64", g.integers(0, 64, 999));
        check_i64("int_big", g.integers(-5, 1 << 40, 100));
        check_i64(
            "perm",
            g.permutation(4096).into_iter().map(|v| v as i64).collect(),
        );
        check_i64(
            "geometric",
            (0..20_000).map(|_| g.geometric(1.0 / 6.0)).collect(),
        );
        check_i64(
            "geometric_search",
            (0..1000).map(|_| g.geometric(0.5)).collect(),
        );
        check_f64("chisquare", (0..20_000).map(|_| g.chisquare(5.0)).collect());
        check_f64(
            "gamma_small",
            (0..1000).map(|_| g.standard_gamma(0.5)).collect(),
        );
        check_f64(
            "exponential",
            (0..20_000).map(|_| g.standard_exponential()).collect(),
        );
        let ours: Vec<f32> = (0..3).map(|_| g.standard_normal_f32()).collect();
        let theirs: Vec<f32> = load1(d, &name("f32_after"));
        assert_eq!(ours, theirs, "case {ci} f32_after");
        check_u64("raw_end", (0..3).map(|_| g.next_u64()).collect());
    }
}

#[test]
fn pairwise_sum_matches_numpy_sum() {
    let tmp = tempfile::tempdir().unwrap();
    let body = r#"
g = np.random.default_rng(5)
lens = [1, 7, 8, 9, 100, 128, 129, 255, 256, 1000, 4096, 10007]
for n in lens:
    a = g.random(n) * 10.0 ** g.integers(-3, 4, size=n)
    np.save(os.path.join(out, f"a{n}.npy"), a)
    np.save(os.path.join(out, f"s{n}.npy"), np.array([a.sum()]))
"#;
    if !py(body, tmp.path()) {
        return;
    }
    for n in [1, 7, 8, 9, 100, 128, 129, 255, 256, 1000, 4096, 10007] {
        let a: Vec<f64> = load1(tmp.path(), &format!("a{n}"));
        let s: Vec<f64> = load1(tmp.path(), &format!("s{n}"));
        assert_eq!(pairwise_sum(&a).to_bits(), s[0].to_bits(), "length {n}");
    }
}

#[test]
fn utterance_lengths_match_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let ns = [0usize, 1, 99, 100, 150, 201, 12_345, 200_000];
    let seeds = [0u64, 3];
    let body = r#"
for seed in [0, 3]:
    for n in [0, 1, 99, 100, 150, 201, 12345, 200000]:
        np.save(os.path.join(out, f"l{seed}_{n}.npy"), ref.utterance_lengths(n, seed).astype(np.int64))
"#;
    if !py(body, tmp.path()) {
        return;
    }
    for seed in seeds {
        for n in ns {
            let theirs: Vec<i64> = load1(tmp.path(), &format!("l{seed}_{n}"));
            let ours: Vec<i64> = synthetic::utterance_lengths(n, seed)
                .into_iter()
                .map(|v| v as i64)
                .collect();
            assert_eq!(ours, theirs, "n {n} seed {seed}");
            assert_eq!(ours.iter().sum::<i64>(), n as i64);
        }
    }
}

/// Cases (d, centers, super, latent, seed) for the mixture parameters.
const MIXTURES: &[(usize, usize, usize, usize, u64)] = &[
    (16, 4096, 64, 48, 0),
    (768, 4096, 64, 48, 1),
    (256, 300, 7, 20, 42),
];

#[test]
fn mixture_parameters_match_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let body = r#"
for i, (d, c, s, l, seed) in enumerate([(16, 4096, 64, 48, 0), (768, 4096, 64, 48, 1), (256, 300, 7, 20, 42)]):
    m = ref.Mixture(d, c, s, l, seed)
    for k in ["A", "m0", "eps_sd", "u", "v_sd", "cdf"]:
        np.save(os.path.join(out, f"{i}_{k}.npy"), getattr(m, k))
"#;
    if !py(body, tmp.path()) {
        return;
    }
    let d = tmp.path();
    for (i, &(dim, c, s, l, seed)) in MIXTURES.iter().enumerate() {
        let m = Mixture::new(dim, c, s, l, seed).unwrap();
        let same = |name: &str, ours: &[f32], theirs: &[f32]| {
            assert_eq!(ours.len(), theirs.len(), "case {i} {name}");
            // float64 exp/pow inside NumPy are SIMD code that can differ from
            // libm in the last bit, which the float32 cast nearly always
            // hides; allow a 1e-6 relative slack for the rare exception.
            let mut exact = 0;
            for (a, b) in ours.iter().zip(theirs) {
                assert!(
                    (a - b).abs() <= 1e-6 * b.abs(),
                    "case {i} {name}: {a} vs {b}"
                );
                exact += (a.to_bits() == b.to_bits()) as usize;
            }
            eprintln!("case {i} {name}: {exact}/{} bit-identical", ours.len());
        };
        let a2 = load2(d, &format!("{i}_A"));
        same("A", m.a.as_slice().unwrap(), a2.as_slice().unwrap());
        same("m0", &m.m0, &load1::<f32>(d, &format!("{i}_m0")));
        same(
            "eps_sd",
            &m.eps_sd,
            &load1::<f32>(d, &format!("{i}_eps_sd")),
        );
        same(
            "u",
            m.u.as_slice().unwrap(),
            load2(d, &format!("{i}_u")).as_slice().unwrap(),
        );
        same(
            "v_sd",
            m.v_sd.as_slice().unwrap(),
            load2(d, &format!("{i}_v_sd")).as_slice().unwrap(),
        );
        let cdf: Vec<f64> = load1(d, &format!("{i}_cdf"));
        assert_eq!(cdf.len(), m.cdf.len());
        for (a, b) in m.cdf.iter().zip(&cdf) {
            assert!((a - b).abs() <= 1e-13 * b, "case {i} cdf: {a} vs {b}");
        }
    }
}

/// Largest |ours − numpy| relative to the row's largest |value| (the GEMM
/// rounding scale), over all rows.
fn max_rel_err(ours: &Array2<f32>, theirs: &Array2<f32>) -> f64 {
    assert_eq!(ours.dim(), theirs.dim());
    let mut worst = 0f64;
    for (a, b) in ours.rows().into_iter().zip(theirs.rows()) {
        let scale = b
            .iter()
            .fold(0f64, |m, &v| m.max(v.abs() as f64))
            .max(1e-30);
        for (x, y) in a.iter().zip(b.iter()) {
            worst = worst.max((*x as f64 - *y as f64).abs() / scale);
        }
    }
    worst
}

#[test]
fn database_and_queries_match_reference() {
    let tmp = tempfile::tempdir().unwrap();
    // 70 000 rows cross a GEN_CHUNK boundary; d = 16 < latent exercises r = d.
    let body = r#"
for name, n, d, seed, stream in [("db_16", 70000, 16, 0, 1), ("db_768", 3000, 768, 1, 1),
                                 ("q_768", 700, 768, 0, 2), ("q_16", 70000, 16, 2, 2)]:
    rows = ref.database(n, d, seed) if stream == 1 else ref.queries(n, d, seed)
    np.save(os.path.join(out, name + ".npy"), rows)
"#;
    if !py(body, tmp.path()) {
        return;
    }
    let cases: [(&str, usize, usize, u64, bool); 4] = [
        ("db_16", 70_000, 16, 0, true),
        ("db_768", 3000, 768, 1, true),
        ("q_768", 700, 768, 0, false),
        ("q_16", 70_000, 16, 2, false),
    ];
    for (name, n, d, seed, db) in cases {
        let ours = if db {
            synthetic::database(n, d, seed).unwrap()
        } else {
            synthetic::queries(n, d, seed).unwrap()
        };
        let theirs = load2(tmp.path(), name);
        let err = max_rel_err(&ours, &theirs);
        let exact = ours
            .iter()
            .zip(theirs.iter())
            .filter(|(a, b)| a.to_bits() == b.to_bits())
            .count();
        eprintln!(
            "{name}: max error {err:.3e} of the row scale, {exact}/{} bit-identical",
            ours.len()
        );
        assert!(err <= 1e-5, "{name}: max relative error {err:e}");
    }
}

#[test]
fn written_experiment_loads_as_features() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("syn");
    let (n, d, seed) = (1234, 8, 5);
    synthetic::write_experiment(&dir, n, d, seed).unwrap();
    let lens = synthetic::utterance_lengths(n, seed);
    let files: Vec<String> = common::listing(&dir)
        .into_iter()
        .filter(|f| f.ends_with(".npy"))
        .collect();
    assert_eq!(files.len(), lens.len());
    assert_eq!(files[0], "000000.npy");
    assert!(dir.join("_complete").exists());
    let loaded = rvc_index::io::features::load_file_or_dir(&dir).unwrap();
    assert_eq!(loaded, synthetic::database(n, d, seed).unwrap());
    let first = rvc_index::io::features::load_matrix(&dir.join("000000.npy")).unwrap();
    assert_eq!(first.nrows(), lens[0]);
    // Rewriting in place is fine; a foreign .npy in the folder is refused.
    synthetic::write_experiment(&dir, n, d, seed).unwrap();
    std::fs::write(dir.join("other.npy"), b"x").unwrap();
    let e = synthetic::write_experiment(&dir, n, d, seed)
        .unwrap_err()
        .to_string();
    assert!(e.contains("other.npy"), "{e}");
}

#[test]
fn bad_sizes_are_errors() {
    assert!(synthetic::database(0, 16, 0).is_err());
    assert!(synthetic::database(10, 0, 0).is_err());
    assert!(synthetic::queries(10, 0, 0).is_err());
    assert!(Mixture::new(8, 0, 4, 4, 0).is_err());
    assert_eq!(synthetic::queries(0, 8, 0).unwrap().dim(), (0, 8));
    assert!(synthetic::utterance_lengths(0, 0).is_empty());
    let e = synthetic::database(usize::MAX / 2, 768, 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("too large"), "{e}");
}

#[test]
fn chunks_do_not_depend_on_threads() {
    let all = synthetic::database(GEN + 100, 4, 3).unwrap();
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| synthetic::database(GEN + 100, 4, 3).unwrap());
    assert_eq!(all, one);
}

const GEN: usize = synthetic::GEN_CHUNK;

#[test]
fn cache_key_matches_harness_and_reference() {
    // Folder names the harness itself created (its cache listing).
    assert_eq!(
        synthetic::cache_key(200_000, 768, 0),
        "syn_n200000_d768_s0_a2e0e02b6f"
    );
    assert_eq!(
        synthetic::cache_key(50_000, 768, 0),
        "syn_n50000_d768_s0_b6a7a688f3"
    );
    let tmp = tempfile::tempdir().unwrap();
    let body = r#"
assert ref.cache_key(200000, 768, 0) == "syn_n200000_d768_s0_a2e0e02b6f"
with open(os.path.join(out, "keys.txt"), "w") as f:
    for n, d, seed in [(1, 1, 0), (123456, 256, 7), (10**7, 768, 2**40)]:
        f.write(ref.cache_key(n, d, seed) + "\n")
"#;
    if !py(body, tmp.path()) {
        return;
    }
    let keys = std::fs::read_to_string(tmp.path().join("keys.txt")).unwrap();
    let ours: Vec<String> = [(1, 1, 0), (123_456, 256, 7), (10_000_000, 768, 1u64 << 40)]
        .iter()
        .map(|&(n, d, s)| synthetic::cache_key(n, d, s))
        .collect();
    assert_eq!(keys.lines().collect::<Vec<_>>(), ours);
}

#[test]
fn normal_f32_fill_equals_single_draws() {
    for seed in 0..4u64 {
        for skip in 0..3 {
            for len in [0usize, 1, 2, 3, 1000, 100_001] {
                let mut a = Generator::new(&[seed, 77]);
                let mut b = a.clone();
                for _ in 0..skip {
                    assert_eq!(a.next_u32(), b.next_u32());
                }
                let mut fill = vec![0f32; len];
                a.fill_standard_normal_f32(&mut fill);
                let single: Vec<f32> = (0..len).map(|_| b.standard_normal_f32()).collect();
                assert_eq!(fill, single, "seed {seed} skip {skip} len {len}");
                assert_eq!(a.next_u32(), b.next_u32());
                assert_eq!(a.next_u64(), b.next_u64());
            }
        }
    }
}

/// (n, d, seed, stream, first three values of rows 0, n/2 and n−1, sum of
/// |x| over the whole matrix, labels of the first 40 rows of chunk 0), as
/// the baseline harness's NumPy generator printed them (faiss-cpu 1.15.1,
/// NumPy 2.4); no Python needed here.
type Recorded = (usize, usize, u64, u64, [[f32; 3]; 3], f64, [u32; 40]);
const RECORDED: &[Recorded] = &[
    (
        2000,
        16,
        0,
        1,
        [
            [1.180_309_5, 0.161_459_57, -4.090_948],
            [-0.884_107_1, 0.985_208_9, -1.673_035_6],
            [-2.726_821_7, 0.546_789_7, -0.739_89],
        ],
        59196.0673709549,
        [
            1507, 1507, 1507, 1507, 1507, 1507, 1507, 1507, 1507, 1507, 1507, 1507, 1507, 1507,
            147, 147, 147, 147, 147, 1618, 1618, 1618, 1618, 1265, 1265, 1265, 1265, 1265, 2954,
            1976, 1976, 1976, 1976, 1976, 833, 833, 833, 833, 833, 833,
        ],
    ),
    (
        300,
        768,
        1,
        1,
        [
            [0.346_632_2, 2.909_660_6, -4.375_899_3],
            [4.663_518_4, 1.192_460_4, -1.384_314_5],
            [-0.524_398_3, 1.327_351_6, 0.645_444_9],
        ],
        384147.61216265033,
        [
            3079, 3079, 3079, 3079, 3518, 3518, 3518, 3518, 4029, 4029, 4029, 4029, 4029, 4029,
            4029, 4029, 4029, 4029, 1796, 1796, 1796, 1287, 1287, 114, 3068, 547, 2962, 2962, 2962,
            2962, 2962, 2962, 2937, 2937, 2937, 2937, 2937, 2937, 2937, 2937,
        ],
    ),
    (
        500,
        256,
        7,
        2,
        [
            [-0.224_785_37, -1.235_549_4, -0.689_166_6],
            [-0.747_157_4, -0.683_253_2, -0.127_580_99],
            [1.414_401, -3.828_531_5, 0.322_417_77],
        ],
        192735.51667360356,
        [
            4055, 4055, 3166, 3166, 3166, 3166, 3166, 3166, 3166, 3166, 3166, 3166, 2934, 2934,
            2934, 2934, 2934, 2934, 2934, 2934, 2934, 2934, 2934, 2934, 2934, 2934, 2934, 2934,
            2934, 2934, 2934, 2934, 2934, 2934, 2934, 2934, 2934, 2934, 2934, 2934,
        ],
    ),
];

#[test]
fn rows_match_values_recorded_from_the_harness() {
    for &(n, d, seed, stream, values, abs_sum, labels) in RECORDED {
        let m = Mixture::harness(d, seed).unwrap();
        let mut g = Generator::new(&[seed, stream, 0]);
        assert_eq!(
            m.labels(&mut g, 40),
            labels,
            "labels n {n} d {d} seed {seed}"
        );
        let x = if stream == synthetic::STREAM_DATABASE {
            synthetic::database(n, d, seed).unwrap()
        } else {
            synthetic::queries(n, d, seed).unwrap()
        };
        assert_eq!(x.dim(), (n, d));
        for (row, want) in [0, n / 2, n - 1].into_iter().zip(values) {
            for (j, w) in want.into_iter().enumerate() {
                let v = x[[row, j]];
                // float32 GEMM rounding: a few ulps of the row's scale (< 10).
                assert!(
                    (v - w).abs() <= 1e-5,
                    "n {n} d {d} seed {seed} row {row} col {j}: {v} vs harness {w}"
                );
            }
        }
        let ours: f64 = x.iter().map(|&v| (v as f64).abs()).sum();
        assert!(
            (ours - abs_sum).abs() <= 1e-7 * abs_sum,
            "n {n} d {d} seed {seed}: sum |x| {ours} vs harness {abs_sum}"
        );
    }
}
