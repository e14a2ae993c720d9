//! `index::build`'s stages: the streamed files equal the filled index byte
//! for byte, the trained file holds no vectors, the k-means settings are
//! honoured and the objective is what its documentation says.

mod common;

use common::{latent, mixture};
use ndarray::{Array2, ArrayView2};
use rvc_index::Metric;
use rvc_index::compute::cpu::CpuBackend;
use rvc_index::faiss::{self, Index};
use rvc_index::index::Factory;
use rvc_index::index::build::{self, BuildParams, BuildTimes};
use rvc_index::progress::Progress;

/// Σ over rows of the smallest squared L2 distance to a centroid, in f64.
fn brute_force_objective(x: ArrayView2<f32>, c: ArrayView2<f32>) -> f64 {
    x.rows()
        .into_iter()
        .map(|r| {
            c.rows()
                .into_iter()
                .map(|cr| {
                    r.iter()
                        .zip(cr.iter())
                        .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
                        .sum::<f64>()
                })
                .fold(f64::INFINITY, f64::min)
        })
        .sum()
}

fn stages(
    x: &Array2<f32>,
    factory: &str,
    params: &BuildParams,
) -> (build::Trained, build::Added, BuildTimes) {
    let b = CpuBackend::new();
    let mut t = BuildTimes::default();
    let f: Factory = factory.parse().unwrap();
    let hidden = Progress::hidden();
    let trained = build::train(&b, x.view(), f, params, &hidden, &mut t).unwrap();
    let added = build::add(&b, x.view(), &trained, &hidden, &mut t).unwrap();
    (trained, added, t)
}

#[test]
fn written_files_equal_the_filled_index() {
    let dir = tempfile::tempdir().unwrap();
    let x = latent(1500, 32, 6, 3);
    for (factory, metric) in [
        ("Flat", Metric::L2),
        ("IVF12,Flat", Metric::L2),
        ("IVF12,Flat", Metric::InnerProduct),
        ("IVF12,Flat,RFlat", Metric::L2),
        ("IVF12,PQ8x4fs", Metric::L2),
        ("IVF12,PQ8x4fs,RFlat", Metric::InnerProduct),
    ] {
        let params = BuildParams::new(metric, 3);
        let path = dir.path().join("a.index");
        let (trained, added, mut t) = stages(&x, factory, &params);
        build::write_added(
            &mut rvc_index::io::Target::Direct,
            &path,
            &trained,
            added,
            x.view(),
            &mut t,
        )
        .unwrap();
        let written = std::fs::read(&path).unwrap();

        // The same stages laid out in memory, written by the general writer.
        let (trained, added, mut t) = stages(&x, factory, &params);
        let index = build::fill(&trained, added, x.view(), &mut t);
        assert_eq!(
            written,
            faiss::index_to_bytes(&index).unwrap(),
            "{factory} {metric:?}"
        );
        // And build_with runs the very same stages.
        let built = build::build_with(
            &CpuBackend::new(),
            x.view(),
            factory.parse().unwrap(),
            &params,
            &Progress::hidden(),
        )
        .unwrap();
        assert_eq!(built.index, index, "{factory} {metric:?}");

        let back = faiss::read_index_from_bytes(&written, &path).unwrap();
        assert_eq!(back.ntotal(), x.nrows(), "{factory}");
        assert_eq!(back.metric(), metric, "{factory}");
        if let Some(ivf) = back.ivf() {
            assert_eq!(ivf.nprobe, 3, "{factory}");
        }

        // The trained file: the same trained parts, no vectors.
        build::write_trained(&mut rvc_index::io::Target::Direct, &path, &trained).unwrap();
        let t = faiss::read_index(&path).unwrap();
        assert_eq!(t.ntotal(), 0, "{factory}");
        assert!(t.is_trained());
        match (&t, &index) {
            (Index::Refine(a), Index::Refine(b)) => {
                assert_eq!(
                    a.base.ivf().unwrap().quantizer,
                    b.base.ivf().unwrap().quantizer
                )
            }
            (a, b) => assert_eq!(a.ivf().map(|i| &i.quantizer), b.ivf().map(|i| &i.quantizer)),
        }
    }
}

#[test]
fn kmeans_settings_are_honoured_and_the_objective_is_the_final_one() {
    // 40 lists × 256 < 12 000 rows: k-means trains on a subsample and the
    // rows are assigned in a pass of their own.
    let x = mixture(12_000, 16, 60, 8);
    let mut params = BuildParams::new(Metric::L2, 1);
    params.niter = 3;
    let (trained, added, t) = stages(&x, "IVF40,Flat", &params);
    let km = trained.kmeans.as_ref().unwrap();
    assert_eq!(km.iterations.len(), 3);
    assert_eq!(km.train_rows, 40 * 256);
    assert!(!added.labels_from_training);
    assert!(t.kmeans > 0.0 && t.assign > 0.0);
    let want = brute_force_objective(x.view(), km.centroids.view());
    let rel = (added.objective - want).abs() / want;
    assert!(rel < 1e-4, "objective {} vs {want}", added.objective);
    assert_eq!(added.lists.iter().map(Vec::len).sum::<usize>(), x.nrows());

    // Another k-means seed starts from other rows, so other centroids.
    params.kmeans_seed = 7;
    let (other, _, _) = stages(&x, "IVF40,Flat", &params);
    assert_ne!(other.kmeans.unwrap().centroids, km.centroids);

    // All rows train when they fit: the labels are k-means' own, and the
    // objective is still the one at the final centroids.
    params.max_points_per_centroid = 1000;
    let (trained, added, _) = stages(&x, "IVF40,PQ4x4fs", &params);
    let km = trained.kmeans.as_ref().unwrap();
    assert_eq!(km.train_rows, x.nrows());
    assert!(added.labels_from_training);
    let want = brute_force_objective(x.view(), km.centroids.view());
    assert!((added.objective - want).abs() / want < 1e-4);
    assert_eq!(added.codes.as_ref().unwrap().len(), x.nrows() * 4);
}

#[test]
fn check_names_the_factory_and_what_is_wrong() {
    let f = |s: &str| s.parse::<Factory>().unwrap();
    assert_eq!(
        build::check(f("IVF{auto},Flat"), 3000, 8).unwrap(),
        f("IVF76,Flat")
    );
    assert_eq!(build::check(f("Flat"), 0, 8).unwrap(), f("Flat"));
    let e = build::check(f("IVF100,Flat"), 99, 8)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("IVF100,Flat") && e.contains("fewer than the 100 lists"),
        "{e}"
    );
    let e = build::check(f("IVF4,PQ3x4fs"), 99, 8)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a multiple of M = 3"), "{e}");
}

/// `--json` on stdout, `--json=OUT` to a file, the same way on every command.
#[test]
fn json_goes_to_stdout_or_to_the_named_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("x.npy");
    ndarray_npy::write_npy(&input, &mixture(600, 8, 6, 2)).unwrap();
    let index = dir.path().join("x.index");
    let summary = dir.path().join("build.json");
    let (i, ix, s) = (
        input.to_str().unwrap(),
        index.to_str().unwrap(),
        summary.to_str().unwrap(),
    );
    let o = common::run(&[
        "build",
        i,
        "--factory",
        "IVF6,Flat",
        "--niter",
        "2",
        "-o",
        ix,
        "-q",
        "--device",
        "cpu",
        &format!("--json={s}"),
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert!(o.stdout.is_empty());
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(j["kmeans_iterations"].as_array().unwrap().len(), 2);
    assert!(j["objective_per_row"].as_f64().unwrap() > 0.0);

    // `--json` right before the file: the file is the positional argument.
    let o = common::run(&["info", "--json", ix]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ntotal"], 600);
    let info_json = dir.path().join("info.json");
    let o = common::run(&["info", ix, &format!("--json={}", info_json.display())]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("file "));
    let w: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&info_json).unwrap()).unwrap();
    assert_eq!(w, v);
    // A JSON file that cannot be written stops the command before any work.
    let other = dir.path().join("other.index");
    let bad = dir.path().join("no/such/folder/s.json");
    let o = common::run(&[
        "build",
        i,
        "--factory",
        "Flat",
        "-o",
        other.to_str().unwrap(),
        "-q",
        "--device",
        "cpu",
        &format!("--json={}", bad.display()),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = common::stderr(&o);
    assert!(err.contains("s.json") && err.contains("folder"), "{err}");
    assert!(!other.exists());

    // A missing file is one error line and exit code 1.
    let o = common::run(&["info", "--json", "nope.index"]);
    assert_eq!(o.status.code(), Some(1));
    let err = common::stderr(&o);
    assert!(err.starts_with("rvc-index: error: nope.index"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}
