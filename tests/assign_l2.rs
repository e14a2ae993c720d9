//! `compute::assign_l2`: the pruned kernel where it pays, `Backend::assign`
//! elsewhere; the same labels either way on data without near-ties.

mod common;

use common::*;
use rvc_index::Metric;
use rvc_index::compute::cpu::{CpuBackend, pruned, reference::ReferenceBackend};
use rvc_index::compute::{Backend, assign_l2};

#[test]
fn pruned_where_it_pays_with_the_labels_of_a_full_scan() {
    let x = latent(6000, 96, 8, 3);
    let c = latent(700, 96, 8, 4);
    let cpu = CpuBackend::new();
    assert!(
        pruned::assign_top2(cpu.isa(), x.view(), c.view()).is_some(),
        "the pruned kernel takes this case"
    );
    let full = cpu.assign(x.view(), c.view(), Metric::L2).unwrap();
    let fast = assign_l2(&cpu, x.view(), c.view()).unwrap();
    assert_eq!(fast.labels, full.labels);
    for (a, b) in fast.distances.iter().zip(&full.distances) {
        assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{a} vs {b}");
    }
}

#[test]
fn small_problems_and_other_backends_run_assign_itself() {
    let x = latent(3000, 32, 6, 5);
    let cpu = CpuBackend::new();
    let few = latent(100, 32, 6, 6);
    let a = assign_l2(&cpu, x.view(), few.view()).unwrap();
    assert_eq!(a, cpu.assign(x.view(), few.view(), Metric::L2).unwrap());
    let many = latent(800, 32, 6, 7);
    let r = ReferenceBackend;
    let a = assign_l2(&r, x.view(), many.view()).unwrap();
    assert_eq!(a, r.assign(x.view(), many.view(), Metric::L2).unwrap());
}

#[test]
fn a_dimension_mismatch_is_an_error() {
    let x = latent(2000, 32, 6, 5);
    let c = latent(600, 31, 6, 6);
    assert!(assign_l2(&CpuBackend::new(), x.view(), c.view()).is_err());
}
