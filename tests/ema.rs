//! The weight EMA against PyTorch's `AveragedModel` with
//! `get_ema_multi_avg_fn` in f64: tensors at odd offsets of two buffer
//! pairs, both branches of PyTorch's lerp, 30 updates after AdamW steps;
//! the first update is an exact copy; decay 0 and 1; updates recorded with
//! the optimizer's steps in one encoder; bad input.

mod common;

use wgpu_optim::device::read_f32;
use wgpu_optim::ema::reference_update;
use wgpu_optim::validate::uniform;
use wgpu_optim::*;

/// 16,390: more than one row for either row length (4096 or 16,384).
const SIZES: [u64; 6] = [1, 1023, 2053, 5, 16390, 7];
const U: f64 = 1.0 / (1u64 << 24) as f64;

/// Two buffer pairs, two tensors each, at offsets that are not multiples of 4.
fn params(gpu: &device::Gpu) -> Vec<ParamSlice> {
    let mut out = Vec::new();
    for (pair, sizes) in SIZES.chunks(2).enumerate() {
        let total = sizes.iter().map(|n| n + 3).sum::<u64>() + 3;
        let p0: Vec<f32> = (0..total).map(|i| uniform(pair as u64 + 30, 0, i)).collect();
        let (p, g) = (common::storage_buffer(gpu, &p0), common::storage_buffer(gpu, &vec![0.0; total as usize]));
        let mut at = 3;
        for &n in sizes {
            out.push(ParamSlice::range(&p, at, &g, at, n));
            at += n + 3;
        }
    }
    out
}

fn read(gpu: &device::Gpu, s: &ParamSlice) -> Vec<f32> {
    read_f32(&gpu.device, &gpu.queue, &s.param, s.param_offset, s.len()).unwrap()
}

#[test]
fn ema_matches_reference() {
    let gpu = require_gpu!();
    for decay in [0.9, 0.3] {
        let slices = params(gpu);
        let mut opt = Optimizer::new(&gpu.device, &gpu.queue, AdamW { lr: 0.05, ..AdamW::default() }.into(), &slices).unwrap();
        let mut ema = WeightEma::new(&gpu.device, &gpu.queue, decay, &slices).unwrap();
        let mut want: Vec<Vec<f64>> = SIZES.iter().map(|&n| vec![0.0; n as usize]).collect();
        let mut bound: Vec<Vec<f64>> = want.clone();
        let w = 1.0 - decay;
        for t in 0..30u64 {
            for (i, s) in slices.iter().enumerate() {
                let g: Vec<f32> = (0..s.len()).map(|k| uniform(i as u64 + 40, t, k)).collect();
                gpu.queue.write_buffer(&s.grad, 4 * s.grad_offset, bytemuck::cast_slice(&g));
            }
            opt.step().unwrap();
            ema.update().unwrap();
            for (i, s) in slices.iter().enumerate() {
                let theta = read(gpu, s);
                for k in 0..theta.len() {
                    let (a, b) = (want[i][k], theta[k] as f64);
                    want[i][k] = reference_update(a, b, decay, t);
                    // A lerp of a and b: 3u of |a| + |b| for its operations, 2u for the weight's rounding.
                    bound[i][k] = if t == 0 { 0.0 } else { (1.0 - w) * bound[i][k] + 5.0 * U * (a.abs() + b.abs()) };
                }
                if t == 0 {
                    assert_eq!(ema.read(i).unwrap(), theta, "the first update copies θ");
                }
            }
        }
        assert_eq!(ema.n_averaged(), 30);
        for (i, _) in slices.iter().enumerate() {
            let got = ema.read(i).unwrap();
            let worst = (0..got.len()).map(|k| (got[k] as f64 - want[i][k]).abs() / bound[i][k].max(1e-37)).fold(0.0, f64::max);
            eprintln!("decay {decay}, tensor {i} ({} elements): {worst:.3} of the bound", got.len());
            assert!(worst <= 1.0, "decay {decay}, tensor {i}: off by {worst:.2} of the bound");
        }
    }
}

/// decay 0 follows θ exactly; decay 1 keeps the first copy.
#[test]
fn decay_zero_and_one_are_exact() {
    let gpu = require_gpu!();
    let slices = params(gpu);
    let mut opt = Optimizer::new(&gpu.device, &gpu.queue, Sgd { lr: 0.1, ..Sgd::default() }.into(), &slices).unwrap();
    let (mut follow, mut keep) = (WeightEma::new(&gpu.device, &gpu.queue, 0.0, &slices).unwrap(), WeightEma::new(&gpu.device, &gpu.queue, 1.0, &slices).unwrap());
    let first: Vec<Vec<f32>> = slices.iter().map(|s| read(gpu, s)).collect();
    for t in 0..3 {
        for s in &slices {
            gpu.queue.write_buffer(&s.grad, 4 * s.grad_offset, bytemuck::cast_slice(&vec![0.5f32 + t as f32; s.len() as usize]));
        }
        follow.update().unwrap();
        keep.update().unwrap();
        opt.step().unwrap();
    }
    follow.update().unwrap();
    for (i, s) in slices.iter().enumerate() {
        assert_eq!(follow.read(i).unwrap(), read(gpu, s));
        assert_eq!(keep.read(i).unwrap(), first[i]);
        assert_ne!(first[i], read(gpu, s));
    }
}

/// Steps and updates recorded into one encoder give the bits of separate
/// submits; a written average and count resume the same way.
#[test]
fn updates_recorded_with_steps_match_separate_submits() {
    let gpu = require_gpu!();
    let run = |together: bool| {
        let slices = params(gpu);
        for (i, s) in slices.iter().enumerate() {
            let g: Vec<f32> = (0..s.len()).map(|k| uniform(i as u64 + 50, 0, k)).collect();
            gpu.queue.write_buffer(&s.grad, 4 * s.grad_offset, bytemuck::cast_slice(&g));
        }
        let mut opt = Optimizer::new(&gpu.device, &gpu.queue, Adam { lr: 0.01, ..Adam::default() }.into(), &slices).unwrap();
        let mut ema = WeightEma::new(&gpu.device, &gpu.queue, 0.8, &slices).unwrap();
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        for _ in 0..4 {
            if together {
                opt.record_step(&mut encoder).unwrap();
                ema.record_update(&mut encoder).unwrap();
            } else {
                opt.step().unwrap();
                ema.update().unwrap();
            }
        }
        gpu.queue.submit([encoder.finish()]);
        (0..SIZES.len()).map(|i| ema.read(i).unwrap()).collect::<Vec<_>>()
    };
    assert_eq!(run(true), run(false));
}

#[test]
fn bad_input_is_a_typed_error() {
    let gpu = require_gpu!();
    let slices = params(gpu);
    for decay in [-0.1, 1.5, f64::NAN] {
        assert!(matches!(WeightEma::new(&gpu.device, &gpu.queue, decay, &slices), Err(OptimError::InvalidHyperparameter { name: "decay", .. })));
    }
    assert!(matches!(WeightEma::new(&gpu.device, &gpu.queue, 0.9, &[]), Err(OptimError::EmptyParams)));
    let mut ema = WeightEma::new(&gpu.device, &gpu.queue, 0.9, &slices).unwrap();
    assert!(matches!(ema.write(1, &[0.0; 3], 5), Err(OptimError::LengthMismatch { .. })));
    assert!(ema.read(9).is_err());
    assert_eq!(ema.n_averaged(), 0);
}

/// Slices on multiples of 8 (wide access, on a CPU adapter with
/// SHADER_INT64), on whole vec4s (vec4 access) and at odd offsets (scalar
/// access) give the same averages, tails of 1–7 elements included (the
/// params are bound read-only: nothing around a slice can change).
#[test]
fn wide_vec4_and_scalar_access_are_bitwise_identical() {
    let gpu = require_gpu!();
    let sizes = [1029usize, 6, 2047, 13];
    let run = |offset: usize| {
        let (places, total) = common::slice_places(&sizes, offset);
        let (p, g) = (common::storage_buffer(gpu, &vec![7.0; total]), common::storage_buffer(gpu, &vec![0.0; total]));
        let slices: Vec<ParamSlice> = places.iter().zip(&sizes).map(|(&at, &n)| ParamSlice::range(&p, at as u64, &g, at as u64, n as u64)).collect();
        let mut ema = WeightEma::new(&gpu.device, &gpu.queue, 0.7, &slices).unwrap();
        for t in 0..4u64 {
            for (i, s) in slices.iter().enumerate() {
                let theta: Vec<f32> = (0..s.len()).map(|k| uniform(80 + i as u64, t, k)).collect();
                gpu.queue.write_buffer(&s.param, 4 * s.param_offset, bytemuck::cast_slice(&theta));
            }
            ema.update().unwrap();
        }
        let averages: Vec<Vec<u32>> = (0..sizes.len()).map(|i| ema.read(i).unwrap().iter().map(|x| x.to_bits()).collect()).collect();
        (ema.access().form, averages)
    };
    let wide = common::wide_capable(gpu);
    let runs = [run(0), run(4), run(3)];
    assert_eq!(runs.iter().map(|r| r.0).collect::<Vec<_>>(), [if wide { RowForm::Wide } else { RowForm::Vec4 }, RowForm::Vec4, RowForm::Scalar]);
    for (form, averages) in &runs {
        assert_eq!(*averages, runs[0].1, "the {:?} and {form:?} kernels differ", runs[0].0);
    }
}
