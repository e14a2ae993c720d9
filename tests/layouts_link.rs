//! `train --link DIR` (RVC's `outside_index_root`): the link each layout
//! names, hard or relative symbolic, valid afterwards and read by faiss.

mod common;
mod layouts_support;

use std::path::{Path, PathBuf};

use common::*;
use layouts_support::*;

fn path_of(j: &serde_json::Value, key: &str) -> PathBuf {
    PathBuf::from(j[key].as_str().unwrap_or_else(|| panic!("{key} in {j}")))
}

#[cfg(unix)]
fn inode(p: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).unwrap();
    (m.dev(), m.ino())
}

/// `train` with the hard link made impossible (as across file systems).
fn train_without_hard_links(args: &[&str]) -> serde_json::Value {
    let mut a = vec!["train", "--device", "cpu", "--json", "--quiet"];
    a.extend_from_slice(args);
    let o = bin()
        .args(&a)
        .env("RVC_INDEX_FAIL_AT", "link-hard")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[cfg(unix)]
#[test]
fn hard_link_then_relative_symbolic_link_both_read_by_faiss() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rvc");
    let x = mixture(1200, 256, 30, 11);
    let exp = make_experiment(&root.join("logs"), "v", &x, 150);
    let indices = root.join("assets/indices");
    let link_arg = indices.to_str().unwrap().to_string();

    // RVC main names the link <exp>_<added name>; a hard link where possible.
    let j = train_json(&[
        exp.to_str().unwrap(),
        "--layout",
        "rvc-main",
        "--link",
        &link_arg,
    ]);
    assert_eq!(j["link_kind"], "hard");
    let link = indices.join("v_added_IVF30_Flat_nprobe_1_v_v1.index");
    assert_eq!(path_of(&j, "link"), link);
    let added = exp.join("added_IVF30_Flat_nprobe_1_v_v1.index");
    assert_eq!(inode(&link), inode(&added));
    check_with_faiss(&link, &shuffled(&x, 0), dir.path());
    let log = std::fs::read_to_string(exp.join("train_index.log")).unwrap();
    assert!(
        log.ends_with(&format!(
            "linked the index (hard link): {}\n",
            link.display()
        )),
        "{log}"
    );

    // Where no hard link can be made: a relative symbolic link. Another
    // nlist renames the index: the previous link, which led to the removed
    // index, goes too.
    let j = train_without_hard_links(&[
        exp.to_str().unwrap(),
        "--layout",
        "rvc-main",
        "--nlist",
        "20",
        "--link",
        &link_arg,
    ]);
    assert_eq!(j["link_kind"], "symbolic");
    let link = indices.join("v_added_IVF20_Flat_nprobe_1_v_v1.index");
    assert_eq!(path_of(&j, "link"), link);
    assert_eq!(
        listing(&indices),
        vec!["v_added_IVF20_Flat_nprobe_1_v_v1.index".to_string()]
    );
    let target = std::fs::read_link(&link).unwrap();
    assert_eq!(
        target,
        PathBuf::from("../../logs/v/added_IVF20_Flat_nprobe_1_v_v1.index")
    );

    // Relative: still valid once the whole tree has moved.
    let moved = dir.path().join("moved");
    std::fs::rename(&root, &moved).unwrap();
    let link = moved.join("assets/indices/v_added_IVF20_Flat_nprobe_1_v_v1.index");
    assert_eq!(
        std::fs::canonicalize(&link).unwrap(),
        std::fs::canonicalize(moved.join("logs/v/added_IVF20_Flat_nprobe_1_v_v1.index")).unwrap()
    );
    let py = "import sys, faiss\nix = faiss.read_index(sys.argv[1])\n\
              assert ix.ntotal == 1200 and faiss.extract_index_ivf(ix).nlist == 20\nprint('OK')";
    if let Some(out) = python(py, &[link.to_str().unwrap()]) {
        assert_eq!(out.trim(), "OK");
    }
}

#[test]
fn each_layout_names_its_link() {
    let dir = tempfile::tempdir().unwrap();
    let x = mixture(800, 256, 20, 12);
    let out = dir.path().join("out");
    let out_arg = out.to_str().unwrap();
    // RVC 20240604: <exp>_IVF<n>_Flat_nprobe_1_<exp>_<ver>.index.
    let rvc = make_experiment(&dir.path().join("logs"), "r", &x, 100);
    let j = train_json(&[rvc.to_str().unwrap(), "--link", out_arg]);
    assert_eq!(
        path_of(&j, "link"),
        out.join("r_IVF20_Flat_nprobe_1_r_v1.index")
    );
    // Applio (which links nothing itself): <model>.index.
    let ap = applio_folder(&dir.path().join("logs"), "a", &x, 100);
    let j = train_json(&[ap.to_str().unwrap(), "--link", out_arg]);
    assert_eq!(path_of(&j, "link"), out.join("a.index"));
    check_with_faiss(&out.join("a.index"), &shuffled(&x, 0), dir.path());
    // An index inside the link folder needs no link (as RVC main decides).
    let j = train_json(&[ap.to_str().unwrap(), "--link", ap.to_str().unwrap()]);
    assert_eq!(j["link_kind"], "inside");
    assert!(j["link"].is_null());
    // A link folder that is a file is refused before anything is written.
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let before = listing(&rvc);
    let line = error_line(&train(&[
        rvc.to_str().unwrap(),
        "--nlist",
        "10",
        "--link",
        file.to_str().unwrap(),
    ]));
    assert!(line.contains("--link needs a folder"), "{line}");
    assert_eq!(listing(&rvc), before);
}

#[test]
fn a_failed_link_leaves_the_index_committed_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let x = mixture(800, 256, 20, 13);
    let exp = make_experiment(&dir.path().join("logs"), "f", &x, 100);
    let out = dir.path().join("out");
    // A folder in the way of the link, where neither link can replace it.
    std::fs::create_dir_all(out.join("f_added_IVF20_Flat_nprobe_1_f_v1.index/keep")).unwrap();
    let o = train(&[
        exp.to_str().unwrap(),
        "--layout",
        "rvc-main",
        "--link",
        out.to_str().unwrap(),
    ]);
    let line = error_line(&o);
    let added = exp.join("added_IVF20_Flat_nprobe_1_f_v1.index");
    assert!(
        line.contains(&format!(
            "the index itself is in place: {}",
            added.display()
        )),
        "{line}"
    );
    check_with_faiss(&added, &shuffled(&x, 0), dir.path());
    assert!(exp.join(".rvc-index-manifest.json").exists());
    let log = std::fs::read_to_string(exp.join("train_index.log")).unwrap();
    assert!(log.contains("built the index: added_IVF20"), "{log}");
    assert!(log.lines().last().unwrap().starts_with("failed: "), "{log}");
    // No temporary link left behind.
    assert_eq!(
        listing(&out),
        vec!["f_added_IVF20_Flat_nprobe_1_f_v1.index".to_string()]
    );
}

#[test]
fn rvc_main_skips_on_its_link_and_links_a_found_index() {
    let dir = tempfile::tempdir().unwrap();
    let x = mixture(800, 256, 20, 14);
    let exp = make_experiment(&dir.path().join("logs"), "s", &x, 100);
    let out = dir.path().join("out");
    let (e, o) = (exp.to_str().unwrap(), out.to_str().unwrap());
    train_json(&[e, "--layout", "rvc-main"]);
    // --skip-existing with --link links the index it found, as RVC main does.
    let j = train_json(&[e, "--layout", "rvc-main", "--skip-existing", "--link", o]);
    assert_eq!(j["skipped"], true);
    let link = out.join("s_added_IVF20_Flat_nprobe_1_s_v1.index");
    assert_eq!(path_of(&j, "link"), link);
    let log = std::fs::read_to_string(exp.join("train_index.log")).unwrap();
    assert!(
        log.starts_with("skipped: the index exists: added_IVF20"),
        "{log}"
    );
    check_with_faiss(&link, &shuffled(&x, 0), dir.path());
    // Only the link left in outside_index_root: RVC main skips on it too.
    std::fs::remove_file(exp.join("added_IVF20_Flat_nprobe_1_s_v1.index")).unwrap();
    let j = train_json(&[e, "--layout", "rvc-main", "--skip-existing", "--link", o]);
    assert_eq!(j["skipped"], true);
    assert_eq!(path_of(&j, "added_index"), link);
    assert_eq!(j["link_kind"], "inside");
    // Without --link the folder has no index: it is built.
    let j = train_json(&[e, "--layout", "rvc-main", "--skip-existing"]);
    assert_eq!(j["skipped"], false);
}

#[cfg(unix)]
#[test]
fn a_later_run_without_link_keeps_the_link_valid() {
    let dir = tempfile::tempdir().unwrap();
    let x = mixture(800, 256, 20, 15);
    let logs = dir.path().join("logs");
    let exp = make_experiment(&logs, "k", &x, 100);
    std::fs::write(exp.join("train_index.log"), "").unwrap();
    let out = dir.path().join("out");
    let e = exp.to_str().unwrap();
    train_json(&[e, "--link", out.to_str().unwrap()]);
    let link = out.join("k_added_IVF20_Flat_nprobe_1_k_v1.index");
    let added = exp.join("added_IVF20_Flat_nprobe_1_k_v1.index");
    let first = inode(&added);
    assert_eq!(inode(&link), first);
    // `batch` (which takes no --link) rebuilds: the hard link follows the
    // new index instead of holding the old one.
    let o = run(&[
        "batch",
        logs.to_str().unwrap(),
        "--device",
        "cpu",
        "--force",
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_ne!(inode(&added), first);
    assert_eq!(inode(&link), inode(&added));
    // Another nlist renames the index and its link; the old link goes.
    let j = train_json(&[e, "--nlist", "10"]);
    let link = out.join("k_added_IVF10_Flat_nprobe_1_k_v1.index");
    assert_eq!(path_of(&j, "link"), link);
    assert_eq!(
        listing(&out),
        vec!["k_added_IVF10_Flat_nprobe_1_k_v1.index".to_string()]
    );
    assert_eq!(
        inode(&link),
        inode(&exp.join("added_IVF10_Flat_nprobe_1_k_v1.index"))
    );
    // A link removed by hand is not made again.
    std::fs::remove_file(&link).unwrap();
    let j = train_json(&[e, "--nlist", "12"]);
    assert!(j["link"].is_null());
    assert!(listing(&out).is_empty());
}
