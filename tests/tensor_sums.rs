//! The tensor-wise rules' per-tensor sums over more rows than a workgroup
//! of the per-tensor passes has lanes (`rows::TOTAL_WG`, 64):
//! tensor_total.wgsl's `tensor_total` gives each lane every 64th row of the
//! table, and Adafactor's slab means every 64th row_var (one slab of many
//! rows) or every 64th slab (many slabs of few rows). A tensor of 4,159 ×
//! 257 elements is 66 rows of 16,384 (CPU adapters) or 261 of 4,096
//! (GPUs), so lanes take two or more rows; checked against the f64
//! references under their derived bounds, a few steps. (With the same
//! distribution in every row a sum missing rows would leave LAMB's ratio
//! ‖θ‖/‖u‖ as it was: θ and G grow along the tensor.)

mod common;

use wgpu_optim::matrix::TensorRule;
use wgpu_optim::validate::tensor::{TensorWorkload, run_case_on};
use wgpu_optim::matrix::{AdafactorOptimizer, LambOptimizer, MuonOptimizer};
use wgpu_optim::*;

/// 4,159 × 257 = 1,068,863 elements: past 64 rows of either length, and a
/// slab of 4,159 rows (a tree: lanes take 64 or 65 row_var each).
const BIG: [u64; 2] = [4159, 257];

/// Columns of 16,390: two line segments of Adafactor's line passes with
/// the CPU shape (16,384 each), 65 with the GPU shape (256).
const LONG: [u64; 2] = [16390, 3];

/// The same for Adafactor's `lined` tensors (C a multiple of the unit):
/// columns of 16,390 in strips of 8 (or 4) columns, and rows of 16,392
/// summed a unit at a time, each of several segments.
const LINED_TALL: [u64; 2] = [16390, 8];
const LINED_WIDE: [u64; 2] = [2, 16392];

/// θ and G of element k of n scaled by 1 + 9(k/n)²: the last rows weigh
/// most, so a sum that misses rows misses more of ‖θ‖ (or ‖U‖) than of the
/// other norm, and the trust ratio, ‖U‖ or RMS(θ) moves.
const RAMP: f32 = 9.0;

fn check(rule: TensorRule, shapes: &[Vec<u64>]) {
    let gpu = require_gpu!();
    let work = TensorWorkload {
        shapes: shapes.to_vec(),
        steps: 3,
        seed: 5,
        ramp: RAMP,
    };
    let r = run_case_on(&gpu.device, &gpu.queue, rule.pytorch_name(), rule, &work).unwrap();
    eprintln!(
        "{} on {}: params {:.3} of the bound, state {:.3}",
        r.name, r.shapes, r.params, r.state
    );
    assert!(
        r.passed(),
        "{} on {}: {:.2} / {:.2} of the bounds",
        r.name,
        r.shapes,
        r.params,
        r.state
    );
}

#[test]
fn lamb_trust_ratio_over_more_rows_than_lanes() {
    check(
        TensorRule::Lamb(Lamb {
            lr: 1e-2,
            weight_decay: 0.01,
            ..Lamb::default()
        }),
        &[BIG.to_vec(), vec![5]],
    );
}

/// Newton–Schulz off (O = U/‖U‖), so a wrong norm is not damped, and a
/// large lr, so that O's error is not lost under θ's own rounding.
#[test]
fn muon_norm_over_more_rows_than_lanes() {
    check(
        TensorRule::Muon(Muon {
            lr: 0.5,
            ns_steps: 0,
            ..Muon::default()
        }),
        &[BIG.to_vec(), vec![3, 5]],
    );
}

/// The step's two RMS values over the rows, one slab's mean over 4,159
/// row_var (a tree), 300 slabs of 2 rows (a lane per slab, lanes taking
/// four or five), and columns of several line segments (`LONG`'s, and
/// `BIG`'s on GPUs), for `general` and `lined` tensors (`LINED_TALL`,
/// `LINED_WIDE`).
#[test]
fn adafactor_sums_over_more_rows_and_slabs_than_lanes() {
    check(
        TensorRule::Adafactor(Adafactor::default()),
        &[BIG.to_vec(), vec![300, 2, 3], vec![7], LONG.to_vec(), LINED_TALL.to_vec(), LINED_WIDE.to_vec()],
    );
}

/// Past what one dispatch takes (a device asking for 2 workgroups per
/// dimension): more rows in a buffer pair than that (3 rows of one
/// tensor, or 3 tensors of a row each), or more tensors than that for the
/// rules with per-tensor passes, or more line segments than 2 workgroups
/// of 64 for Adafactor, is `ExceedsLimits` from `new`, and the params are
/// untouched; 2 rows are fine.
#[test]
fn more_rows_or_tensors_than_a_dispatch_takes_is_a_typed_error() {
    let gpu = require_gpu!();
    let limits = wgpu::Limits {
        max_compute_workgroups_per_dimension: 2,
        ..gpu.adapter.limits()
    };
    let desc = wgpu::DeviceDescriptor {
        label: Some("2 workgroups"),
        required_features: gpu.device.features(),
        required_limits: limits,
        ..Default::default()
    };
    let (device, queue) = pollster::block_on(gpu.adapter.request_device(&desc)).unwrap();
    // 3 rows of either length (16,384 or 4,096 elements), and 3 tensors.
    let n = 3 * 16384 + 1;
    let start = vec![0.5f32; n];
    let p = common::storage_buffer_on(&device, &queue, &start);
    let g = common::storage_buffer_on(&device, &queue, &vec![0.25f32; n]);
    let long = [ParamSlice::whole(&p, &g).with_shape(&[n as u64, 1])];
    let three: Vec<ParamSlice> = (0..3)
        .map(|i| ParamSlice::range(&p, 8 * i, &g, 8 * i, 8).with_shape(&[2, 4]))
        .collect();
    let exceeds =
        |r: std::result::Result<(), OptimError>| matches!(r, Err(OptimError::ExceedsLimits(_)));
    for slices in [&long[..], &three[..]] {
        assert!(exceeds(
            LambOptimizer::new(&device, &queue, Lamb::default(), slices).map(drop)
        ));
        assert!(exceeds(
            MuonOptimizer::new(&device, &queue, Muon::default(), slices).map(drop)
        ));
        assert!(exceeds(
            AdafactorOptimizer::new(&device, &queue, Adafactor::default(), slices).map(drop)
        ));
        assert!(exceeds(
            WeightEma::new(&device, &queue, 0.9, slices).map(drop)
        ));
    }
    // 3 tensors in 3 buffer pairs: a row per dispatch, but 3 workgroups
    // for the per-tensor passes (the EMA has none).
    let pairs: Vec<(wgpu::Buffer, wgpu::Buffer)> = (0..3)
        .map(|_| {
            (
                common::storage_buffer_on(&device, &queue, &[0.5; 8]),
                common::storage_buffer_on(&device, &queue, &[0.25; 8]),
            )
        })
        .collect();
    let apart: Vec<ParamSlice> = pairs
        .iter()
        .map(|(p, g)| ParamSlice::whole(p, g).with_shape(&[2, 4]))
        .collect();
    assert!(exceeds(
        LambOptimizer::new(&device, &queue, Lamb::default(), &apart).map(drop)
    ));
    assert!(exceeds(
        MuonOptimizer::new(&device, &queue, Muon::default(), &apart).map(drop)
    ));
    assert!(exceeds(
        AdafactorOptimizer::new(&device, &queue, Adafactor::default(), &apart).map(drop)
    ));
    assert!(WeightEma::new(&device, &queue, 0.9, &apart).is_ok());
    // One row, but 202 line segments (200 rows and 2 columns): 4 workgroups
    // of Adafactor's line passes.
    let tall = [ParamSlice::range(&p, 0, &g, 0, 400).with_shape(&[200, 2])];
    assert!(exceeds(AdafactorOptimizer::new(&device, &queue, Adafactor::default(), &tall).map(drop)));
    assert!(LambOptimizer::new(&device, &queue, Lamb::default(), &tall).is_ok());
    let two = &three[..2];
    assert!(
        LambOptimizer::new(&device, &queue, Lamb::default(), two).is_ok()
            && WeightEma::new(&device, &queue, 0.9, two).is_ok()
    );
    assert_eq!(
        wgpu_optim::device::read_f32(&device, &queue, &p, 0, n as u64).unwrap(),
        start
    );
}
