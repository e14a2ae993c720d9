//! Our writer and reader agree with each other for every supported kind (no
//! Python needed; faiss_interop checks the same bytes against real faiss).

mod faiss_support;

use rvc_index::Metric;
use rvc_index::faiss::{
    Index, IndexInfo, SizeTable, index_to_bytes, read_index, read_index_from_bytes, write_index,
    write_ivf_flat,
};

use faiss_support::{IvfSpec, ivf_data, ivf_flat, samples};

#[test]
fn every_sample_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    for (name, index) in samples() {
        index.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        let bytes = index_to_bytes(&index).unwrap();
        let back = read_index_from_bytes(&bytes, &name).unwrap_or_else(|e| panic!("{name}: {e}"));
        // The size table of an `Auto` index is read back as what faiss chose.
        let mut want = index.clone();
        let mut got = back.clone();
        normalise(&mut want);
        normalise(&mut got);
        assert_eq!(got, want, "{name}");
        assert_eq!(index_to_bytes(&back).unwrap(), bytes, "{name}");
        let path = dir.path().join(format!("{name}.index"));
        write_index(&path, &index).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{name}");
        assert_eq!(read_index(&path).unwrap(), back, "{name}");
        let _ = IndexInfo::new(&back, Some(bytes.len() as u64)).to_string();
    }
}

fn normalise(index: &mut Index) {
    match index {
        Index::IvfFlat(i) if i.size_table == SizeTable::Auto => {
            i.size_table = SizeTable::faiss_choice(i.lists.iter().map(|l| l.ids.len()));
        }
        Index::Refine(r) => normalise(&mut r.base),
        _ => {}
    }
}

#[test]
fn streaming_writer_matches_the_general_writer() {
    for metric in [Metric::L2, Metric::InnerProduct] {
        for (n, nlist, used) in [(300, 9, 9), (50, 12, 2), (0, 5, 0)] {
            let mut s = IvfSpec::new(n, 8, nlist, metric);
            s.used_lists = used;
            s.nprobe = 3;
            let (x, cents, lists) = ivf_data(&s);
            let xv = ndarray::ArrayView2::from_shape((n, 8), &x).unwrap();
            let cv = ndarray::ArrayView2::from_shape((nlist, 8), &cents).unwrap();
            let mut streamed = Vec::new();
            write_ivf_flat(&mut streamed, cv, metric, 3, (n > 0).then_some(xv), &lists).unwrap();
            assert_eq!(
                streamed,
                index_to_bytes(&ivf_flat(&s)).unwrap(),
                "{metric:?} n={n}"
            );
        }
    }
}

#[test]
fn size_table_rule_matches_faiss() {
    // faiss: "full" iff non-empty lists > nlist / 2 (integer division)
    assert_eq!(
        SizeTable::faiss_choice([0, 0, 3, 0, 0, 0, 0, 0]),
        SizeTable::Sparse
    );
    assert_eq!(SizeTable::faiss_choice([1, 1, 0, 0]), SizeTable::Sparse);
    assert_eq!(SizeTable::faiss_choice([1, 1, 1, 0]), SizeTable::Full);
    assert_eq!(SizeTable::faiss_choice([1, 1, 0, 0, 1]), SizeTable::Full);
    assert_eq!(SizeTable::faiss_choice([0usize; 0]), SizeTable::Sparse);
}

#[test]
fn writer_refuses_inconsistent_models() {
    let mut index = ivf_flat(&IvfSpec::new(50, 4, 3, Metric::L2));
    if let Index::IvfFlat(i) = &mut index {
        i.lists[0].ids[0] = 999;
    }
    let e = index_to_bytes(&index).unwrap_err().to_string();
    assert!(e.contains("id 999 outside 0..50"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.index");
    assert!(write_index(&path, &index).is_err());
    assert!(!path.exists(), "no file is left behind");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no temporary file is left behind"
    );
}
