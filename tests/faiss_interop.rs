//! Round trips against real faiss (pip faiss-cpu), in both directions:
//! files faiss writes are read correctly and written back byte for byte, and
//! files we write load in faiss, hold what we meant, and faiss writes them back
//! byte for byte. Needs `python3 -c 'import faiss'`; set
//! RVC_INDEX_SKIP_FAISS_TESTS=1 to skip. RVC_INDEX_EXTRA_PYTHONS adds more
//! interpreters (e.g. a venv with faiss-cpu 1.7.3).

mod faiss_support;

use std::fs;
use std::path::Path;

use ndarray::Array2;
use rvc_index::faiss::{Index, IndexInfo, index_to_bytes, read_index, write_index, write_ivf_flat};
use rvc_index::{Error, Metric};
use serde_json::Value;

use faiss_support::{pythons, run_helper, samples};

fn read_npy(path: &str) -> Array2<f32> {
    ndarray_npy::read_npy(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn list_sizes(index: &Index) -> Vec<usize> {
    index.list_sizes().unwrap_or_default()
}

fn check_expect(name: &str, index: &Index, e: &Value) {
    let info = IndexInfo::new(index, None);
    let u = |k: &str| e[k].as_u64().unwrap_or_else(|| panic!("{name}: no {k}")) as usize;
    assert_eq!(index.d(), u("d"), "{name}: d");
    assert_eq!(index.ntotal(), u("ntotal"), "{name}: ntotal");
    let metric = match e["metric"].as_str().unwrap() {
        "L2" => Metric::L2,
        "InnerProduct" => Metric::InnerProduct,
        m => panic!("{name}: metric {m}"),
    };
    assert_eq!(index.metric(), metric, "{name}: metric");
    assert_eq!(
        index.is_trained(),
        e["is_trained"].as_bool().unwrap(),
        "{name}: is_trained"
    );
    let chain: Vec<String> = serde_json::from_value(e["type_chain"].clone()).unwrap();
    assert_eq!(info.type_chain, chain, "{name}: type chain");
    if let Some(nlist) = e.get("nlist") {
        let ivf = index.ivf().expect("an IVF index");
        assert_eq!(
            list_sizes(index).len() as u64,
            nlist.as_u64().unwrap(),
            "{name}: nlist"
        );
        assert_eq!(ivf.nprobe, u("nprobe"), "{name}: nprobe");
        let sizes: Vec<usize> = serde_json::from_value(e["list_sizes"].clone()).unwrap();
        assert_eq!(list_sizes(index), sizes, "{name}: list sizes");
        let dm = info.ivf.as_ref().unwrap().direct_map.as_str();
        assert_eq!(dm, e["direct_map"].as_str().unwrap(), "{name}: direct map");
    }
    if let Some(m) = e.get("M") {
        let pq = info.pq.as_ref().expect("PQ info");
        assert_eq!(pq.m as u64, m.as_u64().unwrap(), "{name}: M");
        assert_eq!(pq.nbits, u("nbits"), "{name}: nbits");
        assert_eq!(pq.bbs, u("bbs"), "{name}: bbs");
        assert_eq!(
            pq.by_residual,
            e["by_residual"].as_bool().unwrap(),
            "{name}: by_residual"
        );
    }
    if let Some(k) = e.get("k_factor") {
        assert_eq!(
            info.refine.as_ref().unwrap().k_factor as f64,
            k.as_f64().unwrap(),
            "{name}: k_factor"
        );
    }
}

#[test]
fn files_faiss_wrote_are_read_and_written_back_identically() {
    for (py, version) in pythons() {
        let dir = faiss_support::test_dir();
        run_helper(py, &["gen", dir.path().to_str().unwrap()]);
        let manifest: Value =
            serde_json::from_str(&fs::read_to_string(dir.path().join("manifest.json")).unwrap())
                .unwrap();
        let cases = manifest["cases"].as_array().unwrap();
        let (mut supported, mut unsupported) = (0, 0);
        for case in cases {
            let name = format!("{} ({version})", case["name"].as_str().unwrap());
            let file = case["file"].as_str().unwrap();
            if let Some(fourcc) = case.get("unsupported") {
                let fourcc = fourcc.as_str().unwrap();
                match read_index(file) {
                    Err(Error::Unsupported(msg)) => {
                        assert!(
                            msg.contains(fourcc),
                            "{name}: message {msg:?} should name {fourcc}"
                        );
                        let shown = Error::Unsupported(msg).to_string();
                        assert!(shown.starts_with("unsupported: "), "{shown}");
                    }
                    other => panic!("{name}: expected unsupported {fourcc}, got {other:?}"),
                }
                unsupported += 1;
                continue;
            }
            let bytes = fs::read(file).unwrap();
            let index = read_index(file).unwrap_or_else(|e| panic!("{name}: {e}"));
            check_expect(&name, &index, &case["expect"]);
            if let Some(recon) = case.get("recon").and_then(Value::as_str) {
                let want = read_npy(recon);
                assert_eq!(want.ncols(), index.d(), "{name}");
                let got = index.reconstruct_all();
                assert_eq!(got.len(), want.len(), "{name}: reconstruct size");
                let bad = got
                    .iter()
                    .zip(want.iter())
                    .filter(|(a, b)| a.to_bits() != b.to_bits())
                    .count();
                assert_eq!(
                    bad, 0,
                    "{name}: {bad} floats differ from faiss' reconstruct_n"
                );
            }
            if let Index::Refine(r) = &index
                && let Index::IvfPqFastScan(ivf) = &r.base
            {
                check_fastscan_codes(&name, ivf, &r.refine.xb);
            }
            let again = index_to_bytes(&index).unwrap();
            assert!(
                again == bytes,
                "{name}: re-serialised bytes differ ({} vs {} bytes)",
                again.len(),
                bytes.len()
            );
            let out = dir.path().join("rewritten.index");
            write_index(&out, &index).unwrap();
            assert!(
                fs::read(&out).unwrap() == bytes,
                "{name}: write_index output differs"
            );
            supported += 1;
        }
        eprintln!(
            "{version}: {supported} files read and rewritten identically, {unsupported} refused as unsupported"
        );
        assert!(
            supported >= 40 && unsupported >= 6,
            "too few cases: {supported} / {unsupported}"
        );
    }
}

/// The 4-bit codes we unpack from a file faiss wrote are the PQ encodings of
/// the raw vectors (kept by the refine index): this pins our reading of the
/// block layout (bbs 32 and 64, odd M) to what faiss' `add` packs. A code may
/// differ on a floating-point near-tie, so allow a few.
fn check_fastscan_codes(name: &str, ivf: &rvc_index::faiss::IvfPqFs, xb: &[f32]) {
    let (d, m) = (ivf.ivf.d, ivf.pq.m);
    let (mut total, mut differ) = (0usize, 0usize);
    for (list_no, l) in ivf.lists.iter().enumerate() {
        let codes = ivf.list_codes(list_no);
        for (j, &id) in l.ids.iter().enumerate() {
            let mut x = xb[id as usize * d..(id as usize + 1) * d].to_vec();
            if ivf.by_residual {
                for (a, c) in x.iter_mut().zip(ivf.ivf.quantizer.vector(list_no)) {
                    *a -= c;
                }
            }
            let want = ivf.pq.encode(&x);
            total += m;
            differ += want
                .iter()
                .zip(&codes[j * m..(j + 1) * m])
                .filter(|(a, b)| a != b)
                .count();
        }
    }
    assert!(
        differ * 200 <= total,
        "{name}: {differ} of {total} unpacked codes differ from the PQ encoding"
    );
}

struct Job {
    name: String,
    file: String,
    bytes: Vec<u8>,
    ours: Vec<u8>,
}

fn set_auto(index: &mut Index) {
    match index {
        Index::IvfFlat(i) => i.size_table = rvc_index::faiss::SizeTable::Auto,
        Index::Refine(r) => set_auto(&mut r.base),
        _ => {}
    }
}

fn save_npy(path: &Path, data: Vec<f32>, d: usize) {
    let n = data.len() / d;
    ndarray_npy::write_npy(path, &Array2::from_shape_vec((n, d), data).unwrap()).unwrap();
}

#[test]
fn files_we_write_load_in_faiss_and_come_back_identical() {
    for (py, version) in pythons() {
        let dir = faiss_support::test_dir();
        let mut jobs = Vec::new();
        let mut job_json = Vec::new();
        let mut add = |name: &str, bytes: Vec<u8>, index: &Index| {
            let file = dir.path().join(format!("{name}.index"));
            fs::write(&file, &bytes).unwrap();
            let recon = dir.path().join(format!("{name}.recon.npy"));
            let out = dir.path().join(format!("{name}.faiss.index"));
            save_npy(&recon, index.reconstruct_all(), index.d());
            let mut j = serde_json::json!({"in": file, "out": out, "recon": recon});
            if let Index::Refine(r) = index {
                let base_recon = dir.path().join(format!("{name}.base.npy"));
                save_npy(&base_recon, r.base.reconstruct_all(), index.d());
                j["base_recon"] = Value::String(base_recon.display().to_string());
            }
            job_json.push(j);
            // faiss writes the size table its own way; our non-default
            // choices ("full" for a sparse index, "sprs" for a full one) come
            // back in faiss' choice, which is our `Auto`.
            let mut canonical = index.clone();
            set_auto(&mut canonical);
            jobs.push(Job {
                name: name.to_string(),
                file: out.display().to_string(),
                bytes: index_to_bytes(&canonical).unwrap(),
                ours: bytes,
            });
        };
        for (name, index) in samples() {
            add(&name, index_to_bytes(&index).unwrap(), &index);
        }
        // The streaming writer the train pipeline uses.
        for metric in [Metric::L2, Metric::InnerProduct] {
            let s = faiss_support::IvfSpec::new(200, 16, 7, metric);
            let (x, cents, lists) = faiss_support::ivf_data(&s);
            let x = ndarray::ArrayView2::from_shape((200, 16), &x).unwrap();
            let c = ndarray::ArrayView2::from_shape((7, 16), &cents).unwrap();
            let mut bytes = Vec::new();
            write_ivf_flat(&mut bytes, c, metric, 1, Some(x), &lists).unwrap();
            let index = rvc_index::faiss::read_index_from_bytes(&bytes, "stream").unwrap();
            add(&format!("write_ivf_flat_{metric:?}"), bytes, &index);
            let mut bytes = Vec::new();
            let empty = vec![Vec::new(); 7];
            write_ivf_flat(&mut bytes, c, metric, 1, None, &empty).unwrap();
            let index = rvc_index::faiss::read_index_from_bytes(&bytes, "stream").unwrap();
            add(&format!("write_ivf_flat_trained_{metric:?}"), bytes, &index);
        }
        let jobs_file = dir.path().join("jobs.json");
        fs::write(&jobs_file, serde_json::to_string(&job_json).unwrap()).unwrap();
        let results: Vec<Value> =
            serde_json::from_str(&run_helper(py, &["rewrite", jobs_file.to_str().unwrap()]))
                .unwrap();
        assert_eq!(results.len(), jobs.len());
        for (job, r) in jobs.iter().zip(&results) {
            let problems: Vec<String> = serde_json::from_value(r["problems"].clone()).unwrap();
            assert!(
                problems.is_empty(),
                "{} ({version}): {problems:?}",
                job.name
            );
            let back = fs::read(&job.file).unwrap();
            assert!(
                back == job.bytes,
                "{} ({version}): faiss wrote back {} bytes that differ from our {} bytes",
                job.name,
                back.len(),
                job.bytes.len()
            );
            // and what faiss saw is what we meant
            let ours = rvc_index::faiss::read_index_from_bytes(&job.ours, &job.name).unwrap();
            check_expect(&job.name, &ours, &r["describe"]);
        }
        eprintln!(
            "{version}: {} files we wrote loaded in faiss and came back identical",
            jobs.len()
        );
    }
}

/// `faiss_helper.py verify` (the file check the train tests run on what
/// `train` writes) passes a faithful file and names each kind of defect.
#[test]
fn verify_passes_faithful_files_and_names_defects() {
    use faiss_support::{IvfSpec, ivf_flat, ivf_pqfs};
    for (py, version) in pythons() {
        let dir = faiss_support::test_dir();
        let good = ivf_flat(&IvfSpec::new(120, 8, 6, Metric::L2));
        let Index::IvfFlat(flat) = &good else {
            unreachable!()
        };
        let long = flat.lists.iter().position(|l| l.ids.len() >= 2).unwrap();
        let other = (0..flat.lists.len())
            .find(|&l| l != long && !flat.lists[l].ids.is_empty())
            .unwrap();
        let edit = |f: &dyn Fn(&mut rvc_index::faiss::IvfFlat)| {
            let mut i = flat.clone();
            f(&mut i);
            index_to_bytes(&Index::IvfFlat(i)).unwrap()
        };
        // Our writer refuses a repeated id, so patch one into the bytes: the
        // ids of a list are stored together, as little-endian i64.
        let mut duplicate = index_to_bytes(&good).unwrap();
        let ids: Vec<u8> = flat.lists[long]
            .ids
            .iter()
            .flat_map(|i| i.to_le_bytes())
            .collect();
        let at = duplicate
            .windows(ids.len())
            .position(|w| w == ids.as_slice())
            .unwrap();
        duplicate[at..at + 8].copy_from_slice(&flat.lists[other].ids[0].to_le_bytes());
        let mut dummy = index_to_bytes(&good).unwrap();
        // fourcc, d (i32), ntotal (i64), then the first dummy field (i64).
        dummy[16] ^= 1;
        // After the header (fourcc, d, ntotal, two dummies, is_trained,
        // metric: 37 bytes) come nlist and nprobe (i64 each); ours refuses 0.
        let mut nprobe0 = index_to_bytes(&good).unwrap();
        assert_eq!(nprobe0[45..53], 1i64.to_le_bytes());
        nprobe0[45..53].copy_from_slice(&0i64.to_le_bytes());
        let pq = faiss_support::PqSpec {
            ivf: IvfSpec::new(300, 8, 4, Metric::L2),
            m: 4,
            by_residual: true,
            bbs: 64,
            refine: Some(2.0),
        };
        let cases: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
            ("good_flat", index_to_bytes(&good).unwrap(), None),
            ("good_pqfs", index_to_bytes(&ivf_pqfs(&pq)).unwrap(), None),
            (
                "descending",
                edit(&|i| i.lists[long].ids.swap(0, 1)),
                Some("ascending id order"),
            ),
            ("duplicate", duplicate, Some("not a permutation")),
            (
                "sparse_table",
                edit(&|i| i.size_table = rvc_index::faiss::SizeTable::Sparse),
                Some("writes it back differently"),
            ),
            ("dummy", dummy, Some("writes it back differently")),
            ("nprobe0", nprobe0, Some("nprobe 0 < 1")),
        ];
        for (name, bytes, want) in cases {
            let file = dir.path().join(format!("{name}.index"));
            fs::write(&file, bytes).unwrap();
            let o = std::process::Command::new(py)
                .arg(faiss_support::helper_script())
                .arg("verify")
                .arg(&file)
                .output()
                .unwrap();
            let out = String::from_utf8_lossy(&o.stdout);
            match want {
                None => assert!(
                    o.status.success() && out.trim_end().ends_with(": OK"),
                    "{name} ({version}): {out}"
                ),
                Some(msg) => assert!(
                    o.status.code() == Some(1) && out.contains(msg),
                    "{name} ({version}) should report {msg:?}: {out}"
                ),
            }
        }
    }
}
