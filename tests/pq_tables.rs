//! The `pq_tables` primitive (`compute/cpu/pq_tables.rs`; the GPU backend
//! uses the same CPU kernel) on every backend against the scalar quantised
//! look-up table, and that table's arithmetic checked by hand.

#[macro_use]
mod device;

use ndarray::Array2;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rvc_index::Metric;
use rvc_index::compute::Backend;
use rvc_index::compute::cpu::reference;

fn random(rng: &mut ChaCha8Rng, rows: usize, cols: usize) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |_| rng.random_range(-1.0f32..1.0))
}

fn equal_the_scalar_quantised_lut(b: &dyn Backend, what: &str) {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for &(d, m) in &[(8usize, 8usize), (15, 5), (12, 3), (64, 32), (6, 1)] {
        let books = random(&mut rng, m * 16, d / m);
        let q = random(&mut rng, 9, d);
        for metric in [Metric::L2, Metric::InnerProduct] {
            let t = b.pq_tables(q.view(), books.view(), m, metric).unwrap();
            assert_eq!((t.m, t.m2, t.len()), (m, m + (m & 1), 9), "{what}");
            for (i, qi) in q.rows().into_iter().enumerate() {
                let want = reference::query_table(books.view(), m, qi.as_slice().unwrap(), metric);
                let got: Vec<u16> = t.lut(i)[..m * 16].iter().map(|&v| v as u16).collect();
                assert_eq!(got, want.table, "{what} d={d} m={m} {metric:?}");
                assert!(
                    t.lut(i)[m * 16..].iter().all(|&v| v == 0),
                    "{what}: padding"
                );
                assert_eq!((t.a[i], t.b[i]), (want.a, want.b), "{what}");
            }
        }
    }
}
test_device!(equal_the_scalar_quantised_lut);

fn rejects_bad_shapes(b: &dyn Backend, what: &str) {
    let q = Array2::<f32>::zeros((2, 10));
    let e = b
        .pq_tables(q.view(), Array2::zeros((48, 3)).view(), 3, Metric::L2)
        .unwrap_err();
    assert!(e.to_string().contains("sub-spaces"), "{what}: {e}");
    let e = b
        .pq_tables(q.view(), Array2::zeros((80, 3)).view(), 5, Metric::L2)
        .unwrap_err();
    assert!(e.to_string().contains("codebooks"), "{what}: {e}");
}
test_device!(rejects_bad_shapes);

/// One sub-space of one dimension, sub-centroids 0..16, query 0: the L2
/// scores are c², span 225, so a = 255/225 (the 255 bound binds before the
/// 65535 one), b = 0 and entry c = ⌊c²·a + ½⌋; a distance is b + sum / a.
#[test]
fn quantisation_by_hand() {
    let books = Array2::from_shape_fn((16, 1), |(c, _)| c as f32);
    let q = Array2::<f32>::zeros((1, 1));
    let t = reference::pq_tables(q.view(), books.view(), 1, Metric::L2).unwrap();
    let a = 255.0f32 / 225.0;
    assert_eq!(t.a[0], a);
    assert_eq!(t.b[0], 0.0);
    let want: Vec<u8> = (0..16)
        .map(|c| ((c * c) as f32 * a + 0.5).floor() as u8)
        .collect();
    assert_eq!(&t.lut(0)[..16], &want[..]);
    assert_eq!(want[15], 255);
    assert!(
        t.lut(0)[16..].iter().all(|&v| v == 0),
        "odd M pads a zero table"
    );
    assert!((t.distance(0, 255) - 225.0).abs() < 1e-4);
    // 300 sub-spaces of span 225 each: the sum bound 65535 / (300·225) is
    // tighter than 255 / 225, so it sets a.
    let wide = Array2::from_shape_fn((300 * 16, 1), |(r, _)| (r % 16) as f32);
    let t =
        reference::pq_tables(Array2::zeros((1, 300)).view(), wide.view(), 300, Metric::L2).unwrap();
    assert_eq!(t.a[0], 65535.0f32 / (225.0 * 300.0));
    assert!(t.a[0] < 255.0 / 225.0);
}
