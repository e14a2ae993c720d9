//! Generate the baseline harness's synthetic database and report how long it
//! took; with a folder of the harness's cached utterance files, also how far
//! the rows are from NumPy's.
//!
//!   cargo run --release --example synthetic -- N D SEED [REPEATS] [CACHE_DIR]
//!
//! Prints one JSON line.

use std::path::Path;
use std::time::Instant;

fn main() -> rvc_index::Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: u64| -> u64 {
        a.get(i).and_then(|s| s.parse().ok()).unwrap_or(default)
    };
    let (n, d, seed) = (num(0, 200_000) as usize, num(1, 768) as usize, num(2, 0));
    let repeats = num(3, 1).max(1);
    let mut times = Vec::new();
    let mut rows = None;
    for _ in 0..repeats {
        let t = Instant::now();
        rows = Some(rvc_index::synthetic::database(n, d, seed)?);
        times.push(t.elapsed().as_secs_f64());
    }
    let rows = rows.expect("at least one repeat");
    let mut out = format!(
        "{{\"n\": {n}, \"d\": {d}, \"seed\": {seed}, \"threads\": {}, \"generate_s\": {times:?}",
        rayon::current_num_threads()
    );
    if let Some(dir) = a.get(4) {
        let theirs = rvc_index::io::features::load_file_or_dir(Path::new(dir))?;
        assert_eq!(theirs.dim(), rows.dim(), "cached data has another shape");
        let (mut worst, mut worst_elem, mut exact) = (0f64, 0f64, 0usize);
        for (x, y) in rows.rows().into_iter().zip(theirs.rows()) {
            let scale = y.iter().fold(0f64, |m, &v| m.max(v.abs() as f64));
            for (p, q) in x.iter().zip(y.iter()) {
                let diff = (*p as f64 - *q as f64).abs();
                worst = worst.max(diff / scale);
                if q.abs() > 1e-3 * scale as f32 {
                    worst_elem = worst_elem.max(diff / q.abs() as f64);
                }
                exact += (p.to_bits() == q.to_bits()) as usize;
            }
        }
        out += &format!(
            ", \"max_err_of_row_scale\": {worst:.3e}, \"max_rel_err_elems_above_1e-3_scale\": {worst_elem:.3e}, \"bit_identical\": {exact}, \"values\": {}",
            rows.len()
        );
    }
    println!("{out}}}");
    Ok(())
}
