//! Property test over mutated real files: truncations, bit flips, "interesting"
//! integers written over counts and sizes, insertions, deletions and splices
//! of valid index files of every supported kind. Reading must return Ok or
//! Err — never panic — and never allocate a block larger than the file can
//! justify. Whatever reads Ok must also validate, serialise, read back equal,
//! summarise and reconstruct without panicking.
//!
//! Cases: RVC_FAISS_FUZZ_CASES (default 3000, a few seconds). Extra seed
//! files: every *.index in RVC_FAISS_FUZZ_CORPUS (e.g. files faiss wrote).

mod faiss_support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use proptest::prelude::*;
use rvc_index::faiss::{IndexInfo, index_to_bytes, read_index_from_bytes};

struct Counting;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(layout.size())));
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(layout.size())));
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(new_size)));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn corpus() -> &'static [Vec<u8>] {
    static C: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    C.get_or_init(|| {
        let mut files: Vec<Vec<u8>> = faiss_support::samples()
            .iter()
            .map(|(_, index)| index_to_bytes(index).unwrap())
            .collect();
        if let Ok(dir) = std::env::var("RVC_FAISS_FUZZ_CORPUS") {
            let mut extra = 0;
            for e in std::fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                if p.extension().is_some_and(|x| x == "index") {
                    files.push(std::fs::read(p).unwrap());
                    extra += 1;
                }
            }
            eprintln!(
                "fuzz corpus: {} built-in + {extra} files from {dir}",
                files.len() - extra
            );
        }
        files
    })
}

const INTERESTING: [u64; 16] = [
    0,
    1,
    2,
    3,
    4,
    7,
    8,
    16,
    31,
    32,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    1 << 32,
    1 << 60,
    u64::MAX,
];

#[derive(Clone, Debug)]
enum Mutation {
    Truncate(u64),
    FlipBit(u64, u8),
    SetByte(u64, u8),
    /// Write an interesting value (or its negation, or ±1) as u64 or u32.
    Interesting {
        at: u64,
        which: u8,
        tweak: u8,
        wide: bool,
    },
    Insert(u64, Vec<u8>),
    Delete(u64, u16),
    /// Copy a range of another corpus file over this one.
    Splice {
        other: u64,
        from: u64,
        to: u64,
        len: u16,
    },
    /// Duplicate a range (repeats a list, a vector, ...).
    Repeat(u64, u16),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<u64>().prop_map(Mutation::Truncate),
        (any::<u64>(), 0u8..8).prop_map(|(a, b)| Mutation::FlipBit(a, b)),
        (any::<u64>(), any::<u8>()).prop_map(|(a, b)| Mutation::SetByte(a, b)),
        (any::<u64>(), any::<u8>(), 0u8..4, any::<bool>()).prop_map(|(at, which, tweak, wide)| {
            Mutation::Interesting {
                at,
                which,
                tweak,
                wide,
            }
        }),
        (any::<u64>(), proptest::collection::vec(any::<u8>(), 1..24))
            .prop_map(|(a, v)| Mutation::Insert(a, v)),
        (any::<u64>(), 1u16..64).prop_map(|(a, n)| Mutation::Delete(a, n)),
        (any::<u64>(), any::<u64>(), any::<u64>(), 1u16..256).prop_map(|(other, from, to, len)| {
            Mutation::Splice {
                other,
                from,
                to,
                len,
            }
        }),
        (any::<u64>(), 1u16..128).prop_map(|(a, n)| Mutation::Repeat(a, n)),
    ]
}

fn apply(b: &mut Vec<u8>, m: &Mutation) {
    let pos = |x: u64, len: usize| {
        if len == 0 {
            0
        } else {
            (x % len as u64) as usize
        }
    };
    match m {
        Mutation::Truncate(x) => {
            let n = pos(*x, b.len() + 1);
            b.truncate(n)
        }
        Mutation::FlipBit(x, bit) if !b.is_empty() => {
            let i = pos(*x, b.len());
            b[i] ^= 1 << bit
        }
        Mutation::SetByte(x, v) if !b.is_empty() => {
            let i = pos(*x, b.len());
            b[i] = *v
        }
        Mutation::Interesting {
            at,
            which,
            tweak,
            wide,
        } => {
            let mut v = INTERESTING[*which as usize % INTERESTING.len()];
            v = match tweak {
                0 => v,
                1 => v.wrapping_add(1),
                2 => v.wrapping_sub(1),
                _ => v.wrapping_neg(),
            };
            let w = if *wide { 8 } else { 4 };
            if b.len() >= w {
                // counts sit at arbitrary (unaligned) offsets: any position
                let i = pos(*at, b.len() - w + 1);
                b[i..i + w].copy_from_slice(&v.to_le_bytes()[..w]);
            }
        }
        Mutation::Insert(x, v) => {
            let i = pos(*x, b.len() + 1);
            b.splice(i..i, v.iter().copied());
        }
        Mutation::Delete(x, n) if !b.is_empty() => {
            let i = pos(*x, b.len());
            let j = (i + *n as usize).min(b.len());
            b.drain(i..j);
        }
        Mutation::Splice {
            other,
            from,
            to,
            len,
        } => {
            let c = corpus();
            let src = &c[pos(*other, c.len())];
            if !src.is_empty() && !b.is_empty() {
                let f = pos(*from, src.len());
                let t = pos(*to, b.len());
                let n = (*len as usize).min(src.len() - f).min(b.len() - t);
                b[t..t + n].copy_from_slice(&src[f..f + n]);
            }
        }
        Mutation::Repeat(x, n) if !b.is_empty() => {
            let i = pos(*x, b.len());
            let j = (i + *n as usize).min(b.len());
            let seg = b[i..j].to_vec();
            b.splice(j..j, seg);
        }
        _ => {}
    }
}

static OK: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static ERR: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn check(bytes: &[u8]) {
    LARGEST.with(|l| l.set(0));
    let r = read_index_from_bytes(bytes, "fuzz.index");
    let largest = LARGEST.with(|l| l.get());
    assert!(
        largest <= 16 * bytes.len() + (4 << 20),
        "reading {} bytes allocated a block of {largest} bytes",
        bytes.len()
    );
    match r {
        Err(e) => {
            ERR.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let s = e.to_string();
            assert!(!s.is_empty() && !s.contains('\n'), "error message: {s:?}");
        }
        Ok(index) => {
            OK.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // whatever is accepted is consistent: it validates, serialises,
            // reads back equal, and can be summarised and reconstructed
            let again =
                index_to_bytes(&index).unwrap_or_else(|e| panic!("accepted but invalid: {e}"));
            let back = read_index_from_bytes(&again, "again").unwrap();
            // (bytes, not `==`: mutated floats may be NaN)
            assert!(
                index_to_bytes(&back).unwrap() == again,
                "re-read index serialises differently"
            );
            let _ = IndexInfo::new(&index, Some(bytes.len() as u64)).to_string();
            let _ = index.reconstruct_all();
        }
    }
}

fn cases() -> u32 {
    std::env::var("RVC_FAISS_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        max_shrink_iters: 2000,
        .. ProptestConfig::default()
    })]

    fn mutated_files_never_panic(file in any::<u64>(), muts in proptest::collection::vec(mutation(), 1..5)) {
        let c = corpus();
        let mut b = c[(file % c.len() as u64) as usize].clone();
        for m in &muts {
            apply(&mut b, m);
        }
        check(&b);
    }
}

/// Runs the property test itself so the tally can be printed (and checked:
/// a fuzzer whose every case fails at byte 0 would mean nothing).
#[test]
fn fuzz_and_report() {
    let start = std::time::Instant::now();
    mutated_files_never_panic();
    let (ok, err) = (
        OK.load(std::sync::atomic::Ordering::Relaxed),
        ERR.load(std::sync::atomic::Ordering::Relaxed),
    );
    eprintln!(
        "fuzz: {} cases ({ok} read Ok, {err} rejected) in {:.1?}",
        ok + err,
        start.elapsed()
    );
    assert!(ok > 0 && err > 0);
}

#[test]
fn unmutated_corpus_reads() {
    for b in corpus() {
        check(b);
        assert!(read_index_from_bytes(b, "x").is_ok());
    }
}
