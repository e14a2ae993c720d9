//! Shared by the faiss_* integration tests: deterministic index builders (our
//! writer's output is byte-identical to faiss', which faiss_interop checks),
//! and the bridge to Python faiss (tests/faiss_helper.py).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use rvc_index::Metric;
use rvc_index::faiss::{
    BlockList, DirectMap, Flat, FlatList, Index, Ivf, IvfFlat, IvfPqFs, ProductQuantizer,
    RefineFlat, SizeTable, fastscan,
};

/// splitmix64: small, seedable, good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    /// Uniform in [-1, 1).
    pub fn f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    pub fn vecs(&mut self, n: usize, d: usize) -> Vec<f32> {
        (0..n * d).map(|_| self.f32()).collect()
    }
}

fn score(metric: Metric, x: &[f32], c: &[f32]) -> f32 {
    match metric {
        Metric::L2 => x.iter().zip(c).map(|(a, b)| (a - b) * (a - b)).sum(),
        Metric::InnerProduct => x.iter().zip(c).map(|(a, b)| a * b).sum(),
    }
}

/// Nearest centroid (L2) or largest inner product, lowest index on ties.
pub fn assign(metric: Metric, x: &[f32], centroids: &[f32], d: usize) -> Vec<usize> {
    x.chunks_exact(d)
        .map(|v| {
            let mut best = 0;
            let mut bs = score(metric, v, &centroids[..d]);
            for (c, cent) in centroids.chunks_exact(d).enumerate().skip(1) {
                let s = score(metric, v, cent);
                if metric.better(s, bs) {
                    best = c;
                    bs = s;
                }
            }
            best
        })
        .collect()
}

/// Ids of each list, ascending (what faiss `add` without ids produces).
pub fn group(labels: &[usize], nlist: usize) -> Vec<Vec<i64>> {
    let mut lists = vec![Vec::new(); nlist];
    for (i, &l) in labels.iter().enumerate() {
        lists[l].push(i as i64);
    }
    lists
}

pub fn direct_map_for(lists: &[Vec<i64>], ntotal: usize) -> DirectMap {
    let mut a = vec![0i64; ntotal];
    for (l, ids) in lists.iter().enumerate() {
        for (off, &id) in ids.iter().enumerate() {
            a[id as usize] = ((l as i64) << 32) | off as i64;
        }
    }
    DirectMap::Array(a)
}

pub struct IvfSpec {
    pub n: usize,
    pub d: usize,
    pub nlist: usize,
    pub metric: Metric,
    pub nprobe: usize,
    pub table: SizeTable,
    pub direct_map: bool,
    /// Centroids beyond this many are put far away, so their lists stay empty.
    pub used_lists: usize,
    pub seed: u64,
}

impl IvfSpec {
    pub fn new(n: usize, d: usize, nlist: usize, metric: Metric) -> IvfSpec {
        IvfSpec {
            n,
            d,
            nlist,
            metric,
            nprobe: 1,
            table: SizeTable::Auto,
            direct_map: false,
            used_lists: nlist,
            seed: 7,
        }
    }
}

/// Raw vectors and centroids for an IVF index; returns (x, centroids, lists).
pub fn ivf_data(s: &IvfSpec) -> (Vec<f32>, Vec<f32>, Vec<Vec<i64>>) {
    let mut rng = Rng::new(s.seed);
    let x = rng.vecs(s.n, s.d);
    let mut cents = Vec::with_capacity(s.nlist * s.d);
    for c in 0..s.nlist {
        if c < s.used_lists && c < s.n {
            cents.extend_from_slice(&x[c * s.d..(c + 1) * s.d]);
        } else {
            // far away (L2) / pointing nowhere useful (IP)
            let sign = if s.metric == Metric::L2 { 1.0 } else { -1.0 };
            cents.extend((0..s.d).map(|j| sign * (100.0 + (c * s.d + j) as f32)));
        }
    }
    // Only the used centroids take vectors (for IP "far away" means nothing).
    let used = s.used_lists.min(s.n).min(s.nlist);
    let labels = if used == 0 {
        Vec::new()
    } else {
        assign(s.metric, &x, &cents[..used * s.d], s.d)
    };
    let lists = group(&labels, s.nlist);
    (x, cents, lists)
}

pub fn ivf_flat(s: &IvfSpec) -> Index {
    let (x, cents, lists) = ivf_data(s);
    let d = s.d;
    let direct_map = if s.direct_map {
        direct_map_for(&lists, s.n)
    } else {
        DirectMap::NoMap
    };
    let flat_lists = lists
        .iter()
        .map(|ids| FlatList {
            ids: ids.clone(),
            codes: ids
                .iter()
                .flat_map(|&i| x[i as usize * d..(i as usize + 1) * d].iter().copied())
                .collect(),
        })
        .collect();
    Index::IvfFlat(IvfFlat {
        ivf: Ivf {
            d,
            metric: s.metric,
            is_trained: true,
            nprobe: s.nprobe,
            quantizer: Flat::new(d, s.metric, cents),
            direct_map,
        },
        size_table: s.table,
        lists: flat_lists,
    })
}

pub struct PqSpec {
    pub ivf: IvfSpec,
    pub m: usize,
    pub by_residual: bool,
    pub bbs: usize,
    /// Wrap in IxRF with this k_factor.
    pub refine: Option<f32>,
}

pub fn ivf_pqfs(s: &PqSpec) -> Index {
    let (x, cents, lists) = ivf_data(&s.ivf);
    let d = s.ivf.d;
    let mut rng = Rng::new(s.ivf.seed ^ 0x55);
    let pq = ProductQuantizer {
        d,
        m: s.m,
        nbits: 4,
        centroids: rng.vecs(16 * d, 1),
    };
    let mut block_lists = Vec::new();
    for (list_no, ids) in lists.iter().enumerate() {
        let mut codes = Vec::with_capacity(ids.len() * s.m);
        for &id in ids {
            let mut v = x[id as usize * d..(id as usize + 1) * d].to_vec();
            if s.by_residual {
                for (a, c) in v.iter_mut().zip(&cents[list_no * d..(list_no + 1) * d]) {
                    *a -= c;
                }
            }
            codes.extend(pq.encode(&v));
        }
        block_lists.push(BlockList {
            ids: ids.clone(),
            codes: fastscan::pq4_pack(&codes, s.m, s.bbs),
        });
    }
    let direct_map = if s.ivf.direct_map {
        direct_map_for(&lists, s.ivf.n)
    } else {
        DirectMap::NoMap
    };
    let base = Index::IvfPqFastScan(IvfPqFs {
        ivf: Ivf {
            d,
            metric: s.ivf.metric,
            is_trained: true,
            nprobe: s.ivf.nprobe,
            quantizer: Flat::new(d, s.ivf.metric, cents),
            direct_map,
        },
        by_residual: s.by_residual,
        bbs: s.bbs,
        implem: 0,
        qbs2: 0,
        pq,
        lists: block_lists,
    });
    match s.refine {
        None => base,
        Some(k_factor) => Index::Refine(Box::new(RefineFlat {
            is_trained: true,
            base,
            refine: Flat::new(d, s.ivf.metric, x),
            k_factor,
        })),
    }
}

pub fn flat(n: usize, d: usize, metric: Metric, seed: u64) -> Index {
    Index::Flat(Flat::new(d, metric, Rng::new(seed).vecs(n, d)))
}

/// A set of indexes of every supported kind, built by our code.
pub fn samples() -> Vec<(String, Index)> {
    let mut out = Vec::new();
    for metric in [Metric::L2, Metric::InnerProduct] {
        let m = if metric == Metric::L2 { "L2" } else { "IP" };
        out.push((format!("flat_{m}"), flat(7, 5, metric, 1)));
        out.push((format!("flat_{m}_empty"), flat(0, 12, metric, 1)));
        out.push((
            format!("ivfflat_{m}"),
            ivf_flat(&IvfSpec::new(150, 6, 5, metric)),
        ));
        let mut s = IvfSpec::new(90, 4, 9, metric);
        s.used_lists = 3;
        s.nprobe = 4;
        out.push((format!("ivfflat_{m}_sparse"), ivf_flat(&s)));
        s.table = SizeTable::Full;
        out.push((format!("ivfflat_{m}_sparse_as_full"), ivf_flat(&s)));
        let mut s = IvfSpec::new(120, 8, 6, metric);
        s.table = SizeTable::Sparse;
        s.direct_map = true;
        out.push((format!("ivfflat_{m}_full_as_sprs_dmap"), ivf_flat(&s)));
        let mut s = IvfSpec::new(0, 8, 6, metric);
        s.used_lists = 0;
        out.push((format!("ivfflat_{m}_trained_empty"), ivf_flat(&s)));
        for (m_, by_residual, bbs, refine) in [
            (4, false, 32, None),
            (4, true, 32, Some(1.0)),
            (5, false, 32, Some(3.5)),
            (3, true, 64, None),
        ] {
            let d = if m_ == 5 { 10 } else { 12 };
            let mut ivf = IvfSpec::new(140, d, 4, metric);
            ivf.seed = 11 + m_ as u64;
            ivf.direct_map = m_ == 3;
            let spec = PqSpec {
                ivf,
                m: m_,
                by_residual,
                bbs,
                refine,
            };
            let name = format!(
                "pq{m_}x4fs{}{}{}_{m}",
                if by_residual { "r" } else { "" },
                if bbs != 32 {
                    format!("_{bbs}")
                } else {
                    String::new()
                },
                if refine.is_some() { "_rflat" } else { "" }
            );
            out.push((name, ivf_pqfs(&spec)));
        }
        // IxRF around an IVF-Flat and around a flat index
        let base = ivf_flat(&IvfSpec::new(40, 4, 3, metric));
        let x = base.reconstruct_all();
        out.push((
            format!("ivfflat_rflat_{m}"),
            Index::Refine(Box::new(RefineFlat {
                is_trained: true,
                base,
                refine: Flat::new(4, metric, x),
                k_factor: 2.0,
            })),
        ));
        let base = flat(9, 3, metric, 5);
        let x = base.reconstruct_all();
        out.push((
            format!("flat_rflat_{m}"),
            Index::Refine(Box::new(RefineFlat {
                is_trained: true,
                base,
                refine: Flat::new(3, metric, x),
                k_factor: 1.0,
            })),
        ));
    }
    out
}

// ---------------------------------------------------------------------------
// Python faiss
// ---------------------------------------------------------------------------

pub fn helper_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/faiss_helper.py")
}

/// The Python interpreters to test against: `RVC_INDEX_PYTHON` (default
/// `python3`) plus any in `RVC_INDEX_EXTRA_PYTHONS` (space-separated, e.g. a
/// venv with faiss-cpu 1.7.3). Empty when `RVC_INDEX_SKIP_FAISS_TESTS=1`;
/// panics with instructions when faiss is missing otherwise.
pub fn pythons() -> &'static [(String, String)] {
    static P: OnceLock<Vec<(String, String)>> = OnceLock::new();
    P.get_or_init(|| {
        if std::env::var("RVC_INDEX_SKIP_FAISS_TESTS").as_deref() == Ok("1") {
            eprintln!("RVC_INDEX_SKIP_FAISS_TESTS=1: skipping the tests against Python faiss");
            return Vec::new();
        }
        let mut list = vec![std::env::var("RVC_INDEX_PYTHON").unwrap_or_else(|_| "python3".into())];
        if let Ok(extra) = std::env::var("RVC_INDEX_EXTRA_PYTHONS") {
            list.extend(extra.split_whitespace().map(String::from));
        }
        list.into_iter()
            .map(|py| {
                let out = Command::new(&py).arg(helper_script()).arg("check").output();
                match out {
                    Ok(o) if o.status.success() => {
                        let v = String::from_utf8_lossy(&o.stdout).trim().to_string();
                        eprintln!("testing against {py}: {v}");
                        (py, v)
                    }
                    Ok(o) => panic!(
                        "Python faiss is needed for the faiss interop tests, but `{py} {} check` failed:\n{}\n\
                         Install it with `{py} -m pip install faiss-cpu numpy`, or set \
                         RVC_INDEX_SKIP_FAISS_TESTS=1 to skip these tests.",
                        helper_script().display(),
                        String::from_utf8_lossy(&o.stderr)
                    ),
                    Err(e) => panic!(
                        "Python faiss is needed for the faiss interop tests, but `{py}` could not be run: {e}. \
                         Install Python 3 with `pip install faiss-cpu numpy`, or set \
                         RVC_INDEX_SKIP_FAISS_TESTS=1 to skip these tests."
                    ),
                }
            })
            .collect()
    })
}

/// Run the helper with `args`; panics (with its stderr) if it fails.
pub fn run_helper(py: &str, args: &[&str]) -> String {
    let out = Command::new(py)
        .arg(helper_script())
        .args(args)
        .env("OMP_NUM_THREADS", "1")
        .output()
        .unwrap_or_else(|e| panic!("running {py}: {e}"));
    assert!(
        out.status.success(),
        "{py} faiss_helper.py {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A temporary folder, kept (and its path printed) when RVC_INDEX_KEEP_TEST_FILES=1.
pub struct TestDir {
    _tmp: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl TestDir {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

pub fn test_dir() -> TestDir {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    if std::env::var("RVC_INDEX_KEEP_TEST_FILES").as_deref() == Ok("1") {
        eprintln!("keeping test files in {}", path.display());
        std::mem::forget(dir);
        return TestDir { _tmp: None, path };
    }
    TestDir {
        _tmp: Some(dir),
        path,
    }
}
