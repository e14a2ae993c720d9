//! Hostile input: every malformed file is a clear error naming the offset and
//! the field (or "unsupported: <fourcc>"), never a panic, and never an
//! allocation larger than the file can justify (checked with a counting
//! allocator).

mod faiss_support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use rvc_index::faiss::{Index, index_to_bytes, read_index, read_index_from_bytes};
use rvc_index::{Error, Metric};

use faiss_support::{IvfSpec, PqSpec, ivf_flat, ivf_pqfs, samples};

// ---------------------------------------------------------------------------
// largest single allocation made by this thread while reading
// ---------------------------------------------------------------------------

struct Counting;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// What the reader may allocate at most for one block of memory: the lists
/// table costs up to 48 bytes per list, each list backed by at least 4 bytes
/// of the file (a centroid float), plus a fixed allowance for an untrained
/// index's unbacked lists (65536 × 48 bytes).
fn alloc_budget(len: usize) -> usize {
    16 * len + (4 << 20)
}

/// Read `bytes`, checking the allocation bound; never panics (a panic fails the test).
fn read(bytes: &[u8]) -> rvc_index::Result<Index> {
    LARGEST.with(|l| l.set(0));
    let r = read_index_from_bytes(bytes, "hostile.index");
    let largest = LARGEST.with(|l| l.get());
    assert!(
        largest <= alloc_budget(bytes.len()),
        "reading {} bytes allocated a block of {largest} bytes",
        bytes.len()
    );
    r
}

/// Expect a format error at `offset` whose field contains `field` and whose
/// message contains `msg`.
#[track_caller]
fn expect_format(bytes: &[u8], offset: usize, field: &str, msg: &str) {
    match read(bytes) {
        Err(Error::Format {
            offset: o,
            field: f,
            msg: m,
            path,
        }) => {
            let shown = format!(
                "{}",
                Error::Format {
                    path,
                    offset: o,
                    field: f.clone(),
                    msg: m.clone()
                }
            );
            assert_eq!(o, offset as u64, "offset; error: {shown}");
            assert!(
                f.contains(field),
                "field {f:?} should contain {field:?}; error: {shown}"
            );
            assert!(
                m.contains(msg),
                "message {m:?} should contain {msg:?}; error: {shown}"
            );
            assert!(
                shown.starts_with(&format!("hostile.index: at byte {offset}, ")),
                "{shown}"
            );
        }
        other => panic!("expected a format error at {offset} ({field}: {msg}), got {other:?}"),
    }
}

#[track_caller]
fn expect_unsupported(bytes: &[u8], what: &str) {
    match read(bytes) {
        Err(e @ Error::Unsupported(_)) => {
            let s = e.to_string();
            assert!(
                s.starts_with("unsupported: ") && s.contains(what),
                "{s} should name {what}"
            );
        }
        other => panic!("expected unsupported {what}, got {other:?}"),
    }
}

fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}
fn put_i64(b: &mut [u8], off: usize, v: i64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}
fn put_i32(b: &mut [u8], off: usize, v: i32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_f32(b: &mut [u8], off: usize, v: f32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
fn get_u64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

// Layout of the IVF common part: fourcc, the index header (d, ntotal, two
// dummies, is_trained, metric), then nlist and nprobe; little-endian, packed.
const NTOTAL: usize = 8;
const IS_TRAINED: usize = 32;
const METRIC: usize = 33;
const NLIST: usize = 37;
const NPROBE: usize = 45;
const QUANT: usize = 53;

/// Offset just after the direct map of an IVF file with `nlist` centroids of `d` floats.
fn after_dm(b: &[u8], nlist: usize, d: usize) -> (usize, usize) {
    let dm = QUANT + 45 + 4 * nlist * d;
    let count = get_u64(b, dm + 1) as usize;
    (dm, dm + 9 + 8 * count)
}

struct FlatIvf {
    bytes: Vec<u8>,
    nlist: usize,
    d: usize,
    il: usize,
}

fn ivf_flat_file(table: rvc_index::faiss::SizeTable, direct_map: bool) -> FlatIvf {
    let mut s = IvfSpec::new(60, 4, 5, Metric::L2);
    s.table = table;
    s.direct_map = direct_map;
    let bytes = index_to_bytes(&ivf_flat(&s)).unwrap();
    let (_, il) = after_dm(&bytes, 5, 4);
    assert_eq!(&bytes[il..il + 4], b"ilar");
    FlatIvf {
        bytes,
        nlist: 5,
        d: 4,
        il,
    }
}

#[test]
fn truncated_anywhere_is_an_error_at_or_before_the_cut() {
    for (name, index) in samples() {
        let bytes = index_to_bytes(&index).unwrap();
        for cut in 0..bytes.len() {
            match read(&bytes[..cut]) {
                Err(Error::Format { offset, msg, .. }) => {
                    assert!(
                        offset as usize <= cut,
                        "{name} cut at {cut}: offset {offset}"
                    );
                    assert!(!msg.is_empty());
                }
                other => panic!("{name} cut at {cut}: {other:?}"),
            }
        }
    }
    // the message says what was needed and where the file ends
    let bytes = index_to_bytes(&faiss_support::flat(3, 4, Metric::L2, 1)).unwrap();
    expect_format(
        &bytes[..40],
        37,
        "IxF2.xb count",
        "needs 8 bytes but the file ends 3 bytes later, at byte 40",
    );
    expect_format(&bytes[..2], 0, "fourcc", "needs 4 bytes");
}

#[test]
fn trailing_bytes() {
    for (name, index) in samples() {
        let mut bytes = index_to_bytes(&index).unwrap();
        let len = bytes.len();
        bytes.push(0);
        expect_format(
            &bytes,
            len,
            "end of index",
            "1 trailing byte after the index",
        );
        bytes.extend_from_slice(&[7; 99]);
        let _ = name;
        expect_format(&bytes, len, "end of index", "100 trailing bytes");
    }
}

#[test]
fn wrong_fourccs() {
    let f = ivf_flat_file(rvc_index::faiss::SizeTable::Auto, false);
    let mut b = f.bytes.clone();
    b[..4].copy_from_slice(b"\0\x01\xff ");
    expect_format(&b, 0, "fourcc", "not a faiss index");
    b[..4].copy_from_slice(b"IwXY");
    expect_unsupported(&b, "IwXY");
    b[..4].copy_from_slice(b"IwPQ");
    expect_unsupported(&b, "IwPQ (IndexIVFPQ)");
    let mut b = f.bytes.clone();
    b[QUANT..QUANT + 4].copy_from_slice(b"IwFl");
    expect_unsupported(&b, "IwFl (IndexIVFFlat) as an IVF quantizer");
    b[QUANT..QUANT + 4].copy_from_slice(b"null");
    expect_unsupported(&b, "null");
    b[QUANT..QUANT + 4].copy_from_slice(b"IxFI"); // fourcc says IP, header says L2
    expect_format(
        &b,
        QUANT + 4 + 29,
        "quantizer(IxFI).metric_type",
        "means metric inner product",
    );
    let mut b = f.bytes.clone();
    b[f.il..f.il + 4].copy_from_slice(b"ilbl");
    expect_unsupported(&b, "ilbl (BlockInvertedLists) (IwFl needs ilar lists)");
    b[f.il..f.il + 4].copy_from_slice(b"il00");
    expect_unsupported(&b, "il00");
    b[f.il..f.il + 4].copy_from_slice(b"\0\0\0\0");
    expect_format(&b, f.il, "invlists fourcc", "expected inverted lists");
    let mut b = f.bytes.clone();
    b[f.il + 20..f.il + 24].copy_from_slice(b"half");
    expect_format(
        &b,
        f.il + 20,
        "invlists(ilar).list_type",
        "unknown size-table type half",
    );
    // IxRF may not nest, and its refine index must be flat
    let r = pq_file(Some(2.0));
    let mut b = r.clone();
    b[37..41].copy_from_slice(b"IxRF");
    expect_unsupported(&b, "IxRF (IndexRefineFlat) as the base of a refine index");
}

#[test]
fn absurd_counts_in_a_small_file() {
    // a 2^60-element vector header in a ~1 KB file
    let bytes = index_to_bytes(&faiss_support::flat(40, 6, Metric::L2, 1)).unwrap();
    assert!(bytes.len() < 1100);
    let mut b = bytes.clone();
    put_i64(&mut b, NTOTAL, 1 << 60);
    put_u64(&mut b, 37, (1u64 << 60) * 6);
    expect_format(&b, 37, "IxF2.xb", "exceeds the 960 bytes left in the file");
    let mut b = bytes.clone();
    put_u64(&mut b, 37, 1 << 60);
    expect_format(
        &b,
        37,
        "IxF2.xb count",
        "1152921504606846976 floats stored, but ntotal × d = 40 × 6 = 240",
    );
    let mut b = bytes.clone();
    put_i64(&mut b, NTOTAL, i64::MAX);
    expect_format(&b, 37, "xb count", "overflows");

    let f = ivf_flat_file(rvc_index::faiss::SizeTable::Full, false);
    let table = f.il + 24;
    let mut b = f.bytes.clone();
    put_u64(&mut b, table, 1 << 60);
    expect_format(
        &b,
        table,
        "invlists(ilar).sizes",
        "full size table has 1152921504606846976 entries for nlist = 5",
    );
    let mut b = f.bytes.clone();
    put_u64(&mut b, table + 8, 1 << 60); // size of list 0
    expect_format(&b, table, "invlists(ilar).sizes", "only");
    let mut b = f.bytes.clone();
    put_u64(&mut b, NLIST, 1 << 60);
    expect_format(
        &b,
        QUANT + 8,
        "quantizer(IxF2).ntotal",
        "the quantizer holds 5 centroids but nlist = 1152921504606846976",
    );
    let (dm, _) = after_dm(&f.bytes, f.nlist, f.d);
    let mut b = f.bytes.clone();
    put_u64(&mut b, dm + 1, 1 << 60);
    expect_format(&b, dm + 1, "direct_map.array", "exceeds");

    // fast-scan: ids and codes vectors, PQ centroids
    let b0 = pq_file(None);
    let p = pq_layout(&b0);
    let mut b = b0.clone();
    put_u64(&mut b, p.lists, 1 << 60);
    expect_format(&b, p.lists, "invlists(ilbl).list[0].ids", "exceeds");
    let mut b = b0.clone();
    put_u64(&mut b, p.pq + 24, 1 << 60);
    expect_format(&b, p.pq + 24, "pq.centroids count", "expected d × 2^nbits");

    // an untrained index claiming 2^40 lists with nothing stored for them
    let mut s = IvfSpec::new(0, 4, 3, Metric::L2);
    s.used_lists = 0;
    let mut index = ivf_flat(&s);
    if let Index::IvfFlat(i) = &mut index {
        i.ivf.is_trained = false;
        i.ivf.quantizer.xb.clear();
    }
    let mut b = index_to_bytes(&index).unwrap();
    put_u64(&mut b, NLIST, 1 << 40);
    let il = QUANT + 45 + 9;
    put_u64(&mut b, il + 4, 1 << 40);
    expect_format(&b, NLIST, "nlist", "with no centroids stored");
    // ... while a modest one is fine (faiss writes such files)
    put_u64(&mut b, NLIST, 1000);
    put_u64(&mut b, il + 4, 1000);
    let back = read(&b).unwrap();
    assert_eq!(back.list_sizes().unwrap().len(), 1000);
    assert_eq!(index_to_bytes(&back).unwrap(), b);
}

#[test]
fn ntotal_inconsistent_with_the_lists() {
    let f = ivf_flat_file(rvc_index::faiss::SizeTable::Auto, false);
    let mut b = f.bytes.clone();
    put_i64(&mut b, NTOTAL, 59);
    expect_format(
        &b,
        f.il + 24,
        "invlists(ilar).sizes",
        "the list sizes add up to 60 but ntotal = 59",
    );
    put_i64(&mut b, NTOTAL, -3);
    expect_format(&b, NTOTAL, "IwFl.ntotal", "negative");

    let b0 = pq_file(None);
    let p = pq_layout(&b0);
    let mut b = b0.clone();
    put_i64(&mut b, NTOTAL, 139);
    expect_format(
        &b,
        p.lists_end_of_first_overflow(139),
        "ids count",
        "more than ntotal = 139",
    );
    let mut b = b0.clone();
    put_i64(&mut b, NTOTAL, 141);
    expect_format(
        &b,
        NTOTAL,
        "IwPf.ntotal",
        "ntotal = 141 but the inverted lists hold 140 entries",
    );

    // IxRF: the wrapper, base and refine index must agree
    let r = pq_file(Some(2.0));
    let mut b = r.clone();
    put_i64(&mut b, NTOTAL, 141);
    expect_format(
        &b,
        37 + 8,
        "base.header",
        "base index ntotal = 140 but the refine wrapper has ntotal = 141",
    );
}

#[test]
fn ids_out_of_range_or_repeated() {
    let f = ivf_flat_file(rvc_index::faiss::SizeTable::Full, false);
    let sizes: Vec<usize> = (0..f.nlist)
        .map(|i| get_u64(&f.bytes, f.il + 32 + 8 * i) as usize)
        .collect();
    let list0_ids = f.il + 32 + 8 * f.nlist + sizes[0] * 4 * f.d;
    let mut b = f.bytes.clone();
    put_i64(&mut b, list0_ids + 8, 60);
    expect_format(
        &b,
        list0_ids + 8,
        "invlists.list[0].ids[1]",
        "id 60 outside 0..60",
    );
    put_i64(&mut b, list0_ids + 8, -1);
    expect_format(
        &b,
        list0_ids + 8,
        "invlists.list[0].ids[1]",
        "id -1 outside 0..60",
    );
    let first = get_u64(&f.bytes, list0_ids);
    put_i64(&mut b, list0_ids + 8, first as i64);
    expect_format(
        &b,
        list0_ids + 8,
        "invlists.list[0].ids[1]",
        &format!("id {first} appears more than once"),
    );

    let b0 = pq_file(None);
    let p = pq_layout(&b0);
    let mut b = b0.clone();
    put_i64(&mut b, p.lists + 8, 1000);
    expect_format(&b, p.lists + 8, "list[0].ids[0]", "id 1000 outside 0..140");

    // an Array direct map must locate every id
    let f = ivf_flat_file(rvc_index::faiss::SizeTable::Auto, true);
    let (dm, _) = after_dm(&f.bytes, f.nlist, f.d);
    let mut b = f.bytes.clone();
    put_i64(&mut b, dm + 9 + 8 * 7, (3i64 << 32) | 1000);
    expect_format(
        &b,
        dm + 9 + 8 * 7,
        "direct_map.array[7]",
        "does not locate id 7",
    );
    let mut b = f.bytes.clone();
    b[dm] = 2;
    expect_unsupported(&b, "Hashtable direct map");
    b[dm] = 9;
    expect_format(&b, dm, "direct_map.type", "unknown direct map type 9");
}

#[test]
fn codes_of_the_wrong_size() {
    let f = ivf_flat_file(rvc_index::faiss::SizeTable::Auto, false);
    let mut b = f.bytes.clone();
    put_u64(&mut b, f.il + 12, 4 * f.d as u64 + 4);
    expect_format(
        &b,
        f.il + 12,
        "invlists(ilar).code_size",
        "code_size = 20, but IVF-Flat stores 4 × d = 16",
    );
    let mut b = f.bytes.clone();
    put_u64(&mut b, f.il + 4, 6);
    expect_format(
        &b,
        f.il + 4,
        "invlists(ilar).nlist",
        "6 lists but the IVF index has nlist = 5",
    );

    let b0 = pq_file(None);
    let p = pq_layout(&b0);
    let n0 = get_u64(&b0, p.lists) as usize;
    let codes = p.lists + 8 + 8 * n0;
    let mut b = b0.clone();
    put_u64(&mut b, codes, get_u64(&b0, codes) + 1);
    expect_format(
        &b,
        codes,
        "invlists(ilbl).list[0].codes count",
        "code bytes for",
    );
    let mut b = b0.clone();
    put_u64(&mut b, p.il + 28, 4096);
    expect_format(
        &b,
        p.il + 28,
        "invlists(ilbl).block_size",
        "expected bbs × M2 / 2 = 64",
    );
    let mut b = b0.clone();
    put_u64(&mut b, p.il + 20, 64);
    expect_format(
        &b,
        p.il + 20,
        "n_per_block",
        "n_per_block = 64 but bbs = 32",
    );
    // PQ parameters
    let mut b = b0.clone();
    put_u64(&mut b, p.pq + 16, 8);
    expect_format(&b, p.pq + 16, "pq.nbits", "nbits = 8; fast-scan needs 4");
    let mut b = b0.clone();
    put_u64(&mut b, p.pq + 8, 5);
    expect_format(&b, p.pq + 8, "pq.M", "M = 5 does not divide d = 12");
    let mut b = b0.clone();
    put_u64(&mut b, p.m2, 5);
    expect_format(&b, p.m2, "M2", "M2 = 5 but M = 4");
    let mut b = b0.clone();
    put_i32(&mut b, p.m2 - 4, 48);
    expect_format(
        &b,
        p.m2 - 4,
        "bbs",
        "bbs = 48 is not a positive multiple of 32",
    );
    let mut b = b0.clone();
    b[p.m2 - 13] = 2;
    expect_format(&b, p.m2 - 13, "by_residual", "boolean byte is 2");
}

#[test]
fn bad_header_fields() {
    let f = ivf_flat_file(rvc_index::faiss::SizeTable::Auto, false);
    let mut b = f.bytes.clone();
    put_i32(&mut b, 4, -1);
    expect_format(&b, 4, "IwFl.d", "d = -1 outside 1..=1048576");
    put_i32(&mut b, 4, 1 << 21);
    expect_format(&b, 4, "IwFl.d", "outside");
    let mut b = f.bytes.clone();
    put_i32(&mut b, 4, 5);
    expect_format(
        &b,
        QUANT + 4,
        "quantizer(IxF2).d",
        "quantizer d = 4 but the IVF index has d = 5",
    );
    let mut b = f.bytes.clone();
    b[IS_TRAINED] = 7;
    expect_format(&b, IS_TRAINED, "IwFl.is_trained", "boolean byte is 7");
    b[IS_TRAINED] = 0;
    expect_format(
        &b,
        IS_TRAINED,
        "IwFl.is_trained",
        "60 vectors stored in an untrained index",
    );
    let mut b = f.bytes.clone();
    put_i32(&mut b, METRIC, 7);
    expect_format(&b, METRIC, "IwFl.metric_type", "unknown metric type 7");
    put_i32(&mut b, METRIC, 2);
    expect_unsupported(
        &b,
        "metric L1 (2) in IwFl (only L2 and inner product are supported), at byte 33",
    );
    put_i32(&mut b, METRIC, 0);
    expect_unsupported(
        &b,
        "quantizer metric L2 differs from the IVF metric inner product",
    );
    let mut b = f.bytes.clone();
    put_u64(&mut b, NPROBE, 0);
    expect_format(
        &b,
        NPROBE,
        "IwFl.nprobe",
        "nprobe = 0; it must be in 1..2^63",
    );
    let mut b = f.bytes.clone();
    put_u64(&mut b, NLIST, 0);
    expect_format(&b, NLIST, "IwFl.nlist", "nlist must be at least 1");

    // sparse size tables
    let f = ivf_flat_file(rvc_index::faiss::SizeTable::Sparse, false);
    let t = f.il + 24;
    let mut b = f.bytes.clone();
    put_u64(&mut b, t + 8, 5);
    expect_format(
        &b,
        t + 8,
        "invlists(ilar).sizes[0]",
        "list number 5 >= nlist = 5",
    );
    let mut b = f.bytes.clone();
    put_u64(&mut b, t + 24, 0);
    expect_format(&b, t + 24, "sizes[2]", "list number 0 is not after 0");
    let mut b = f.bytes.clone();
    put_u64(&mut b, t, 3);
    expect_format(&b, t, "sizes", "odd length 3");

    // IxRF k_factor
    let r = pq_file(Some(2.0));
    let k = r.len() - 4;
    for bad in [0.5f32, f32::NAN, f32::INFINITY, 1001.0] {
        let mut b = r.clone();
        put_f32(&mut b, k, bad);
        expect_format(&b, k, "IxRF.k_factor", "outside [1, 1000]");
    }
}

#[test]
fn file_based_reader_reports_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.index");
    let f = ivf_flat_file(rvc_index::faiss::SizeTable::Auto, false);
    std::fs::write(&p, &f.bytes[..f.bytes.len() - 3]).unwrap();
    match read_index(&p) {
        Err(Error::Format { offset, field, .. }) => {
            // the size table already promises more than the file holds
            assert!(field.contains("invlists(ilar).sizes"), "{field}");
            assert!(offset as usize <= f.bytes.len() - 3);
        }
        other => panic!("{other:?}"),
    }
    std::fs::write(&p, &f.bytes).unwrap();
    assert!(read_index(&p).is_ok());
    assert!(matches!(
        read_index(dir.path()),
        Err(Error::BadInput { .. })
    ));
    assert!(matches!(
        read_index(dir.path().join("nope")),
        Err(Error::Io { .. })
    ));
}

// ---------------------------------------------------------------------------
// an IwPf file and where its fields are
// ---------------------------------------------------------------------------

fn pq_file(refine: Option<f32>) -> Vec<u8> {
    let mut ivf = IvfSpec::new(140, 12, 4, Metric::L2);
    ivf.seed = 3;
    index_to_bytes(&ivf_pqfs(&PqSpec {
        ivf,
        m: 4,
        by_residual: false,
        bbs: 32,
        refine,
    }))
    .unwrap()
}

struct PqLayout {
    m2: usize,
    pq: usize,
    il: usize,
    lists: usize,
    sizes: Vec<usize>,
}

impl PqLayout {
    /// Offset of the ids count of the first list that takes the running total past `ntotal`.
    fn lists_end_of_first_overflow(&self, ntotal: usize) -> usize {
        let (mut off, mut total) = (self.lists, 0);
        for &n in &self.sizes {
            total += n;
            if total > ntotal {
                return off;
            }
            off += 8 + 8 * n + 8 + n.div_ceil(32) * 64;
        }
        unreachable!()
    }
}

fn pq_layout(b: &[u8]) -> PqLayout {
    let (nlist, d) = (4, 12);
    let (_, a) = after_dm(b, nlist, d);
    // by_residual u8, code_size u64, bbs i32, M2 u64, implem i32, qbs2 u64
    let m2 = a + 1 + 8 + 4;
    let pq = a + 33;
    let il = pq + 32 + 4 * d * 16;
    assert_eq!(&b[il..il + 4], b"ilbl");
    let lists = il + 36;
    let mut sizes = Vec::new();
    let mut off = lists;
    for _ in 0..nlist {
        let n = get_u64(b, off) as usize;
        sizes.push(n);
        off += 8 + 8 * n;
        off += 8 + get_u64(b, off) as usize;
    }
    assert_eq!(off, b.len());
    PqLayout {
        m2,
        pq,
        il,
        lists,
        sizes,
    }
}
