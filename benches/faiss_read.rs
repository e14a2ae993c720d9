//! Reading and writing IVF-Flat index files.
//!
//! By default a ~64 MB IVF-Flat file (d = 768) is generated in a temporary
//! folder. `RVC_FAISS_BENCH_FILE=PATH` benches that file instead; if it does
//! not exist it is generated there (size `RVC_FAISS_BENCH_MB`, default 64) and
//! kept, so `python3 tests/faiss_helper.py time-read PATH` can time
//! `faiss.read_index` on the very same bytes.
//!
//! "read bytes" (std::fs::read of the whole file) is the floor to compare
//! `read_index` against.

use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rvc_index::Metric;
use rvc_index::faiss::{read_index, write_index, write_ivf_flat};

fn generate(path: &Path, mb: usize) {
    let d = 768;
    let row = 4 * d + 8;
    let n = (mb << 20) / row;
    let nlist = ((16.0 * (n as f64).sqrt()) as usize)
        .clamp(1, n / 39)
        .max(1);
    eprintln!(
        "generating {} ({n} vectors, d = {d}, nlist = {nlist})",
        path.display()
    );
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let x: Vec<f32> = (0..n * d).map(|_| next()).collect();
    let cents: Vec<f32> = x[..nlist * d].to_vec();
    // Spread the rows over the lists without a full assignment (it is the
    // file layout being timed, not k-means).
    let mut lists = vec![Vec::new(); nlist];
    for i in 0..n {
        lists[(i * 7919) % nlist].push(i as i64);
    }
    let xv = ndarray::ArrayView2::from_shape((n, d), &x).unwrap();
    let cv = ndarray::ArrayView2::from_shape((nlist, d), &cents).unwrap();
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    write_ivf_flat(&mut f, cv, Metric::L2, 1, Some(xv), &lists).unwrap();
    f.flush().unwrap();
}

fn bench(c: &mut Criterion) {
    let _tmp;
    let path: PathBuf = match std::env::var("RVC_FAISS_BENCH_FILE") {
        Ok(p) => PathBuf::from(p),
        Err(_) => {
            let t = tempfile::tempdir().unwrap();
            let p = t.path().join("bench.index");
            _tmp = t;
            p
        }
    };
    if !path.exists() {
        let mb = std::env::var("RVC_FAISS_BENCH_MB")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(64);
        generate(&path, mb);
    }
    let len = std::fs::metadata(&path).unwrap().len();
    let index = read_index(&path).unwrap();
    eprintln!("{}: {len} bytes, ntotal {}", path.display(), index.ntotal());
    let out = path.with_extension("bench-out.index");

    if let Some(reps) = std::env::var("RVC_FAISS_BENCH_QUICK")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
    {
        // Plain timing, to interleave with `faiss_helper.py time-read` runs.
        let mut times: Vec<f64> = (0..reps)
            .map(|_| {
                let t = std::time::Instant::now();
                black_box(read_index(&path).unwrap());
                t.elapsed().as_secs_f64()
            })
            .collect();
        times.sort_by(f64::total_cmp);
        println!(
            "{{\"rvc_index\": \"read_index\", \"bytes\": {len}, \"reps\": {reps}, \"min_s\": {}, \"median_s\": {}, \"GBps_min\": {}}}",
            times[0],
            times[reps / 2],
            len as f64 / times[0] / 1e9
        );
        return;
    }
    let mut g = c.benchmark_group("faiss_file");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(len));
    g.bench_function("read bytes (std::fs::read)", |b| {
        b.iter(|| black_box(std::fs::read(&path).unwrap()))
    });
    g.bench_function("read_index", |b| {
        b.iter(|| black_box(read_index(&path).unwrap()))
    });
    g.bench_function("write_index", |b| {
        b.iter(|| write_index(&out, &index).unwrap())
    });
    g.finish();
    let _ = std::fs::remove_file(&out);
}

criterion_group!(benches, bench);
criterion_main!(benches);
