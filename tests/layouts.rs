//! `train --layout`: Applio's folders, RVC main's, `--output`,
//! `--skip-existing`, layout detection; files checked with real faiss.

mod common;
mod layouts_support;

use std::path::PathBuf;

use common::*;
use layouts_support::*;
use ndarray_npy::write_npy;

#[test]
fn applio_folder_gives_one_index_that_faiss_reads_as_rvc_does() {
    let dir = tempfile::tempdir().unwrap();
    let x = mixture(1500, 768, 60, 3);
    let exp = applio_folder(dir.path(), "voice", &x, 170);
    // A temporary file a killed run left for the index: ours to remove.
    std::fs::write(exp.join(".voice.index.aB3dE9.tmp"), b"half").unwrap();
    let before: Vec<String> = listing(&exp)
        .into_iter()
        .filter(|n| !n.ends_with(".tmp"))
        .collect();
    let j = train_json(&[exp.to_str().unwrap()]);
    assert_eq!(j["layout"], "applio");
    assert_eq!(j["version"], "v2");
    assert_eq!(j["n"], 1500);
    assert_eq!(j["nlist"], 1500 / 39);
    assert!(j["total_fea"].is_null() && j["trained_index"].is_null());
    // Applio's one index, and the hidden manifest; nothing else.
    added_listing(&exp, &before, &["voice.index", ".rvc-index-manifest.json"]);
    assert_eq!(
        PathBuf::from(j["added_index"].as_str().unwrap()),
        exp.join("voice.index")
    );
    check_with_faiss(&exp.join("voice.index"), &shuffled(&x, 0), dir.path());

    // The same rows in an RVC folder give the same index, byte for byte.
    let rvc = make_experiment(&dir.path().join("rvc"), "voice", &x, 170);
    train_json(&[rvc.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(exp.join("voice.index")).unwrap(),
        std::fs::read(rvc.join("added_IVF38_Flat_nprobe_1_voice_v2.index")).unwrap()
    );
}

#[test]
fn applio_v1_features_and_compression_below_200k_rows() {
    // Applio's own code builds a 768-wide index whatever the features; v1
    // (256-wide) features give a 256-wide index here.
    let dir = tempfile::tempdir().unwrap();
    let x = mixture(3000, 256, 40, 4);
    let exp = applio_folder(dir.path(), "old", &x, 400);
    let j = train_json(&[exp.to_str().unwrap(), "--seed", "5"]);
    assert_eq!(
        (j["version"].as_str(), j["d"].as_u64()),
        (Some("v1"), Some(256))
    );
    check_with_faiss(&exp.join("old.index"), &shuffled(&x, 5), dir.path());

    // Applio's "KMeans" choice compresses at any size (`--compress 10000`);
    // 500 centres of 3000 rows keep this quick.
    let j = train_json(&[exp.to_str().unwrap(), "--compress", "500"]);
    assert_eq!(j["indexed_rows"], 500);
    assert_eq!(j["nlist"], 500 / 39);
    assert!(j["compression"].is_object());
    if let Some(out) = python(
        "import sys, faiss\nix = faiss.read_index(sys.argv[1])\n\
         assert ix.ntotal == 500 and ix.d == 256 and faiss.extract_index_ivf(ix).nlist == 12\n\
         print('OK')",
        &[exp.join("old.index").to_str().unwrap()],
    ) {
        assert_eq!(out.trim(), "OK");
    }
    // 10 000 centres need 10 000 rows: a clear error, the index kept.
    let before = std::fs::read(exp.join("old.index")).unwrap();
    let line = error_line(&train(&[exp.to_str().unwrap(), "--compress", "10000"]));
    assert!(line.contains("fewer than the 10000 centres"), "{line}");
    assert_eq!(std::fs::read(exp.join("old.index")).unwrap(), before);
}

#[test]
fn skip_existing_leaves_the_index_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let x = mixture(800, 256, 20, 5);
    let exp = applio_folder(dir.path(), "m", &x, 100);
    let arg = exp.to_str().unwrap();
    // No index yet: --skip-existing builds it.
    let j = train_json(&[arg, "--skip-existing"]);
    assert_eq!(j["skipped"], false);
    let index = exp.join("m.index");
    let (bytes, mtime) = (
        std::fs::read(&index).unwrap(),
        std::fs::metadata(&index).unwrap().modified().unwrap(),
    );
    // Features that would now fail to load: the skip comes first.
    std::fs::write(exp.join("extracted/0_0_0.npy"), b"garbage").unwrap();
    let o = run(&["train", arg, "--device", "cpu", "--skip-existing"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("m.index: the index exists; skipped (--skip-existing)"),
        "{}",
        stderr(&o)
    );
    let j = train_json(&[arg, "--skip-existing"]);
    assert_eq!(j["skipped"], true);
    assert_eq!(PathBuf::from(j["added_index"].as_str().unwrap()), index);
    assert_eq!(std::fs::read(&index).unwrap(), bytes);
    assert_eq!(
        std::fs::metadata(&index).unwrap().modified().unwrap(),
        mtime
    );
    // Without the flag the bad file is found.
    let line = error_line(&train(&[arg]));
    assert!(line.contains("0_0_0.npy"), "{line}");
    assert_eq!(std::fs::read(&index).unwrap(), bytes);

    // RVC: any added_…_<exp>_<ver>.index of the folder counts.
    let rvc = make_experiment(dir.path(), "r", &x, 100);
    let other = rvc.join("added_IVF7_Flat_nprobe_1_r_v1.index");
    std::fs::write(&other, b"someone else's").unwrap();
    let j = train_json(&[rvc.to_str().unwrap(), "--skip-existing"]);
    assert_eq!(j["skipped"], true);
    assert_eq!(PathBuf::from(j["added_index"].as_str().unwrap()), other);
    assert!(!rvc.join("total_fea.npy").exists());
}

#[test]
fn rvc_main_layout_writes_its_files_and_log() {
    let dir = tempfile::tempdir().unwrap();
    let x = mixture(1200, 768, 30, 6);
    let exp = make_experiment(dir.path(), "v", &x, 150);
    let before = listing(&exp);
    let j = train_json(&[exp.to_str().unwrap(), "--layout", "rvc-main"]);
    assert_eq!(j["layout"], "rvc-main");
    assert!(j["total_fea"].is_null());
    added_listing(
        &exp,
        &before,
        &[
            ".rvc-index-manifest.json",
            "added_IVF30_Flat_nprobe_1_v_v2.index",
            "trained_IVF30_Flat_nprobe_1_v_v2.index",
            "train_index.log",
        ],
    );
    let log = std::fs::read_to_string(exp.join("train_index.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert!(
        lines[0].contains("indexing v (v2, layout rvc-main)"),
        "{log}"
    );
    assert!(
        log.contains(
            "features: 1200 rows × 768 from 8 files; indexed rows: (1200, 768); IVF lists: 30"
        ),
        "{log}"
    );
    assert_eq!(
        lines.last(),
        Some(&"built the index: added_IVF30_Flat_nprobe_1_v_v2.index"),
        "{log}"
    );
    check_with_faiss(
        &exp.join("added_IVF30_Flat_nprobe_1_v_v2.index"),
        &shuffled(&x, 0),
        dir.path(),
    );

    // RVC main's WebUI empties train_index.log before the step: that marks
    // the folder as RVC main's; a failure is logged and changes nothing else.
    let y = mixture(1000, 768, 30, 7);
    let exp2 = make_experiment(&dir.path().join("b"), "w", &y, 1000);
    std::fs::write(exp2.join("train_index.log"), "").unwrap();
    let mut bad = y.clone();
    bad[[999, 3]] = f32::NAN;
    write_npy(exp2.join("3_feature768/0_1.npy"), &bad).unwrap();
    let before = listing(&exp2);
    let line = error_line(&train(&[exp2.to_str().unwrap()]));
    assert!(line.contains("0_1.npy"), "{line}");
    assert_eq!(listing(&exp2), before);
    let log = std::fs::read_to_string(exp2.join("train_index.log")).unwrap();
    assert!(log.contains("layout rvc-main"), "{log}");
    assert_eq!(
        log.lines().last().unwrap(),
        line.replace("rvc-index: error: ", "failed: ")
    );
    std::fs::remove_file(exp2.join("3_feature768/0_1.npy")).unwrap();
    let j = train_json(&[exp2.to_str().unwrap()]);
    assert_eq!(j["layout"], "rvc-main");
    assert!(!exp2.join("total_fea.npy").exists());
}

#[test]
fn output_names_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let x = mixture(800, 256, 20, 8);
    let exp = make_experiment(dir.path(), "o", &x, 100);
    let arg = exp.to_str().unwrap();
    let j = train_json(&[arg, "--output", "mine.index"]);
    assert_eq!(
        PathBuf::from(j["added_index"].as_str().unwrap()),
        exp.join("mine.index")
    );
    let mut want = vec![
        ".rvc-index-manifest.json",
        "3_feature256",
        "mine.index",
        "total_fea.npy",
        "trained_IVF20_Flat_nprobe_1_o_v1.index",
    ];
    assert_eq!(listing(&exp), want);
    check_with_faiss(&exp.join("mine.index"), &shuffled(&x, 0), dir.path());
    // Another name: the previous one, unchanged since, goes with the commit.
    train_json(&[arg, "--output", "other.index"]);
    want[2] = "other.index";
    assert_eq!(listing(&exp), want);

    for (bad, why) in [
        ("../x.index", "takes a file name"),
        ("sub/x.index", "takes a file name"),
        (".x.index", "starting with a dot"),
        ("x.npy", "must end in .index"),
        ("trained_IVF20_Flat_nprobe_1_o_v1.index", "trained index"),
    ] {
        let before = listing(&exp);
        let line = error_line(&train(&[arg, "--output", bad]));
        assert!(line.contains(why), "{bad}: {line}");
        assert_eq!(listing(&exp), before, "{bad}");
    }
}

#[test]
fn layout_detection_and_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let x = mixture(800, 768, 20, 9);
    // Both Applio's and RVC's feature folders: ambiguous.
    let both = applio_folder(dir.path(), "both", &x, 200);
    make_experiment(dir.path(), "both", &x, 200);
    let before = listing(&both);
    let line = error_line(&train(&[both.to_str().unwrap()]));
    assert!(
        line.contains("both extracted/ (Applio) and 3_feature768/"),
        "{line}"
    );
    assert!(line.contains("--layout applio|rvc|rvc-main"), "{line}");
    assert_eq!(listing(&both), before);
    // --layout settles it.
    let j = train_json(&[both.to_str().unwrap(), "--layout", "rvc"]);
    assert_eq!(j["layout"], "rvc");
    assert!(both.join("total_fea.npy").exists() && !both.join("both.index").exists());

    // No features at all, or an empty extracted/.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(empty.join("extracted")).unwrap();
    let line = error_line(&train(&[empty.to_str().unwrap()]));
    assert!(
        line.contains("no features: neither extracted/ (Applio) nor 3_feature768/"),
        "{line}"
    );
    let line = error_line(&train(&[empty.to_str().unwrap(), "--layout", "applio"]));
    assert!(line.contains("no .npy feature files"), "{line}");
    assert_eq!(listing(&empty), vec!["extracted".to_string()]);
    // Applio's layout asked of an RVC folder.
    let rvc = make_experiment(&dir.path().join("r"), "r", &x, 200);
    let line = error_line(&train(&[rvc.to_str().unwrap(), "--layout", "applio"]));
    assert!(
        line.contains("extracted") && line.contains("not found"),
        "{line}"
    );
    // --feature-dir naming a folder `extracted` means Applio.
    let ap = applio_folder(&dir.path().join("f"), "f", &x, 200);
    let j = train_json(&[
        dir.path().join("r/r").to_str().unwrap(),
        "--feature-dir",
        ap.join("extracted").to_str().unwrap(),
    ]);
    assert_eq!(j["layout"], "applio");
    assert!(rvc.join("r.index").exists());
}

#[test]
fn batch_finds_applio_and_rvc_experiments() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let x = mixture(600, 256, 15, 10);
    applio_folder(&logs, "ap", &x, 100);
    make_experiment(&logs, "rv", &x, 100);
    let go = |extra: &[&str]| {
        let mut a = vec![
            "batch",
            logs.to_str().unwrap(),
            "--device",
            "cpu",
            "--json",
            "-q",
        ];
        a.extend_from_slice(extra);
        let o = run(&a);
        assert!(o.status.success(), "{}", stderr(&o));
        let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        j.as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["experiment"].as_str().unwrap().to_string(),
                    e["status"].as_str().unwrap().to_string(),
                )
            })
            .collect::<Vec<_>>()
    };
    let built = |n: &str| (n.to_string(), "built".to_string());
    assert_eq!(go(&["--layout", "applio"]), vec![built("ap")]);
    assert!(logs.join("ap/ap.index").exists());
    assert_eq!(
        go(&[]),
        vec![("ap".into(), "up_to_date".into()), built("rv")]
    );
    assert!(
        logs.join("rv/added_IVF15_Flat_nprobe_1_rv_v1.index")
            .exists()
    );
    assert!(!logs.join("ap/total_fea.npy").exists());
    // Another layout for the RVC folder is a change of settings; Applio's
    // folder is no RVC main experiment.
    assert_eq!(
        go(&["--layout", "rvc-main", "--dry-run"]),
        vec![("rv".to_string(), "would_build".to_string())]
    );
}
