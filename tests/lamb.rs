//! LAMB on the GPU: burn-optim's reference numbers; the f64 reference over
//! 50 steps for tensors of many sizes (1 element to several rows, not
//! multiples of 4 or of a row, a tensor starting at θ = 0, two buffer
//! pairs) under the bound the reference derives; steps recorded together;
//! bad input; convergence.

mod common;

use wgpu_optim::device::read_f32;
use wgpu_optim::matrix::lamb::LambReference;
use wgpu_optim::validate::uniform;
use wgpu_optim::*;

/// 16,390: more than one row for either row length (4096 or 16,384).
const SIZES: [usize; 7] = [1, 7, 1023, 2053, 3, 4100, 16390];
const STEPS: u32 = 50;

fn cases() -> Vec<(&'static str, Lamb)> {
    vec![
        ("lamb", Lamb { lr: 1e-2, weight_decay: 0.01, ..Lamb::default() }),
        ("lamb no bias correction, when decayed (wd 0: Adam)", Lamb { lr: 3e-3, betas: (0.8, 0.99), bias_correction: false, trust_ratio: TrustRatio::WhenDecayed, ..Lamb::default() }),
        ("lamb never, eps 1e-3, wd 0.1", Lamb { lr: 1e-2, eps: 1e-3, weight_decay: 0.1, trust_ratio: TrustRatio::Never, ..Lamb::default() }),
    ]
}

/// One tensor (a whole buffer pair) stepped with the given grads; the
/// params after each step.
fn run_one(gpu: &device::Gpu, config: Lamb, theta: &[f32], grads: &[&[f32]]) -> Vec<Vec<f32>> {
    let p = common::storage_buffer(gpu, theta);
    let g = common::storage_buffer(gpu, &vec![0.0; theta.len()]);
    let mut opt = LambOptimizer::new(&gpu.device, &gpu.queue, config, &[ParamSlice::whole(&p, &g)]).unwrap();
    grads
        .iter()
        .map(|grad| {
            gpu.queue.write_buffer(&g, 0, bytemuck::cast_slice(grad));
            opt.step().unwrap();
            read_f32(&gpu.device, &gpu.queue, &p, 0, theta.len() as u64).unwrap()
        })
        .collect()
}

/// burn-optim 0.22.1's `lamb.rs` tests (θ = [1, −2, 3], lr 0.01, wd 0.1),
/// which burn says match a PyTorch reference: two steps with the trust
/// ratio, one without.
#[test]
fn lamb_matches_burns_numbers() {
    let gpu = require_gpu!();
    let config = Lamb { lr: 0.01, weight_decay: 0.1, ..Lamb::default() };
    let theta = [1.0, -2.0, 3.0];
    let got = run_one(gpu, config, &theta, &[&[0.1, -0.2, 0.3], &[-0.4, 0.5, -0.6]]);
    let plain = run_one(gpu, Lamb { trust_ratio: TrustRatio::Never, ..config }, &theta, &[&[0.1, -0.2, 0.3]]);
    let want: [[f32; 3]; 3] = [[0.9802435, -1.9784473, 2.9766512], [1.0127187, -1.9956441, 2.9814672], [0.9890001, -1.988, 2.987]];
    for (got, want) in got.iter().chain(&plain).zip(want) {
        for (a, b) in got.iter().zip(want) {
            assert!((a - b).abs() <= 2e-6 * b.abs(), "{got:?} vs burn's {want:?}");
        }
    }
}

struct Tensor {
    slice: ParamSlice,
    p: Vec<f64>,
    state: LambReference,
}

/// The tensors of `SIZES` in two buffer pairs, at offsets that are not
/// multiples of 4; tensor 1 starts at θ = 0 (its first ratio is 1).
fn tensors(gpu: &device::Gpu) -> Vec<Tensor> {
    let mut out = Vec::new();
    for (pair, sizes) in [&SIZES[..3], &SIZES[3..]].into_iter().enumerate() {
        let total: usize = sizes.iter().map(|n| n + 3).sum::<usize>() + 3;
        let mut p0: Vec<f32> = (0..total).map(|i| uniform(pair as u64 + 1, 99, i as u64) * 0.5).collect();
        let g = common::storage_buffer(gpu, &vec![0.0; total]);
        let mut at = 3;
        let mut slices = Vec::new();
        for (k, &n) in sizes.iter().enumerate() {
            if pair == 0 && k == 1 {
                p0[at..at + n].fill(0.0);
            }
            slices.push((at, n));
            at += n + 3;
        }
        let p = common::storage_buffer(gpu, &p0);
        for (at, n) in slices {
            let start = p0[at..at + n].iter().map(|&x| x as f64).collect();
            out.push(Tensor { slice: ParamSlice::range(&p, at as u64, &g, at as u64, n as u64), p: start, state: LambReference::new(n) });
        }
    }
    out
}

#[test]
fn lamb_matches_reference() {
    let gpu = require_gpu!();
    for (name, config) in cases() {
        let mut ts = tensors(gpu);
        let slices: Vec<ParamSlice> = ts.iter().map(|t| t.slice.clone()).collect();
        let mut opt = LambOptimizer::new(&gpu.device, &gpu.queue, config, &slices).unwrap();
        for t in 1..=STEPS {
            for (i, x) in ts.iter_mut().enumerate() {
                let g: Vec<f32> = (0..x.p.len()).map(|k| uniform(i as u64 + 10, t as u64, k as u64) * (1.0 + (k % 3) as f32)).collect();
                gpu.queue.write_buffer(&x.slice.grad, 4 * x.slice.grad_offset, bytemuck::cast_slice(&g));
                let g64: Vec<f64> = g.iter().map(|&v| v as f64).collect();
                config.reference_step(t, &mut x.p, &g64, &mut x.state);
            }
            opt.step().unwrap();
        }
        for (i, x) in ts.iter().enumerate() {
            let got = read_f32(&gpu.device, &gpu.queue, &x.slice.param, x.slice.param_offset, x.slice.len()).unwrap();
            let (m, v) = opt.read_state(i).unwrap();
            let p_err = got.iter().zip(&x.p).map(|(a, b)| (*a as f64 - b).powi(2)).sum::<f64>().sqrt();
            let worst = |gpu: &[f32], want: &[f64], bound: &[f64]| (0..gpu.len()).map(|k| (gpu[k] as f64 - want[k]).abs() / bound[k].max(1e-37)).fold(0.0, f64::max);
            let (worst_m, worst_v) = (worst(&m, &x.state.exp_avg, &x.state.exp_avg_err), worst(&v, &x.state.exp_avg_sq, &x.state.exp_avg_sq_err));
            let worst_p = p_err / x.state.param_err;
            eprintln!("{name:<52} {:>5}: params {worst_p:.4} of the bound ({p_err:.2e}), exp_avg {worst_m:.3}, exp_avg_sq {worst_v:.3}", x.p.len());
            assert!(worst_p <= 1.0 && worst_m <= 1.0 && worst_v <= 1.0, "{name}, tensor {i}: off by {worst_p:.2} / {worst_m:.2} / {worst_v:.2} of the bounds");
        }
    }
}

/// Steps recorded into one encoder (each in its own uniform slot) give the
/// same bits as steps submitted one by one.
#[test]
fn steps_recorded_together_match_steps_submitted_alone() {
    let gpu = require_gpu!();
    let n = 1500;
    let theta: Vec<f32> = (0..n).map(|i| uniform(4, 0, i as u64)).collect();
    let grad: Vec<f32> = (0..n).map(|i| uniform(5, 0, i as u64)).collect();
    let config = Lamb { lr: 1e-2, weight_decay: 0.02, ..Lamb::default() };
    let alone = run_one(gpu, config, &theta, &[&grad, &grad, &grad]).pop().unwrap();
    let p = common::storage_buffer(gpu, &theta);
    let g = common::storage_buffer(gpu, &grad);
    let mut opt = LambOptimizer::new(&gpu.device, &gpu.queue, config, &[ParamSlice::whole(&p, &g)]).unwrap();
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    for _ in 0..3 {
        opt.record_step(&mut encoder).unwrap();
    }
    gpu.queue.submit([encoder.finish()]);
    assert_eq!(opt.step_count(), 3);
    assert_eq!(read_f32(&gpu.device, &gpu.queue, &p, 0, n as u64).unwrap(), alone);
}

#[test]
fn bad_input_is_a_typed_error() {
    let gpu = require_gpu!();
    let p = common::storage_buffer(gpu, &[0.5; 12]);
    let g = common::storage_buffer(gpu, &[0.5; 12]);
    let err = |config: Lamb, slices: &[ParamSlice]| LambOptimizer::new(&gpu.device, &gpu.queue, config, slices).err();
    let whole = ParamSlice::whole(&p, &g);
    assert!(matches!(err(Lamb::default(), &[]), Some(OptimError::EmptyParams)));
    assert!(matches!(err(Lamb { betas: (0.9, 1.0), ..Lamb::default() }, std::slice::from_ref(&whole)), Some(OptimError::InvalidHyperparameter { .. })));
    assert!(matches!(err(Lamb { lr: f64::NAN, ..Lamb::default() }, std::slice::from_ref(&whole)), Some(OptimError::InvalidHyperparameter { name: "lr", .. })));
    assert!(matches!(err(Lamb::default(), &[ParamSlice::range(&p, 8, &g, 8, 5)]), Some(OptimError::OutOfBounds { .. })));
    assert!(matches!(err(Lamb::default(), &[whole.clone().with_shape(&[5, 3])]), Some(OptimError::ShapeMismatch { .. })));
    let mut opt = LambOptimizer::new(&gpu.device, &gpu.queue, Lamb::default(), &[whole]).unwrap();
    assert!(matches!(opt.write_state(0, &[0.0; 11], &[0.0; 12], 1), Err(OptimError::LengthMismatch { .. })));
    assert_eq!(opt.step_count(), 0);
    assert!(opt.read_state(1).is_err() && opt.set_lr(-1.0).is_err());
    // nothing changed
    assert_eq!(read_f32(&gpu.device, &gpu.queue, &p, 0, 12).unwrap(), vec![0.5; 12]);
}

/// Least squares: W towards W* from the gradient of ½‖W − W*‖², computed
/// on the host each step; LAMB's steps of about lr·‖θ‖ per step close most
/// of the distance.
#[test]
fn lamb_converges_on_a_least_squares() {
    let gpu = require_gpu!();
    let n = 300;
    let target: Vec<f32> = (0..n).map(|i| uniform(8, 0, i as u64)).collect();
    let start: Vec<f32> = (0..n).map(|i| uniform(9, 0, i as u64)).collect();
    let p = common::storage_buffer(gpu, &start);
    let g = common::storage_buffer(gpu, &vec![0.0; n]);
    let mut opt = LambOptimizer::new(&gpu.device, &gpu.queue, Lamb { lr: 0.02, ..Lamb::default() }, &[ParamSlice::whole(&p, &g)]).unwrap();
    let distance = |w: &[f32]| w.iter().zip(&target).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>().sqrt();
    for step in 0..300 {
        if step == 200 {
            opt.set_lr(0.004).unwrap();
        }
        let w = read_f32(&gpu.device, &gpu.queue, &p, 0, n as u64).unwrap();
        let grad: Vec<f32> = w.iter().zip(&target).map(|(a, b)| a - b).collect();
        gpu.queue.write_buffer(&g, 0, bytemuck::cast_slice(&grad));
        opt.step().unwrap();
    }
    let (before, after) = (distance(&start), distance(&read_f32(&gpu.device, &gpu.queue, &p, 0, n as u64).unwrap()));
    eprintln!("distance to W*: {before:.3} -> {after:.4}");
    assert!(after < 0.05 * before, "LAMB did not converge: {before} -> {after}");
}

/// The wide kernels (every slice on a multiple of 8, on a CPU adapter
/// with SHADER_INT64), the vec4 ones (every slice on a whole vec4) and the
/// scalar ones (a slice at an odd offset) give the same bits, tails of 1–7
/// elements included, and leave the elements around each slice untouched.
#[test]
fn wide_vec4_and_scalar_access_are_bitwise_identical() {
    let gpu = require_gpu!();
    let sizes = [1029usize, 6, 2047, 13];
    let run = |offset: usize| {
        let (places, total) = common::slice_places(&sizes, offset);
        let mut p0: Vec<f32> = vec![7.0; total];
        for (i, (&at, &n)) in places.iter().zip(&sizes).enumerate() {
            (0..n).for_each(|k| p0[at + k] = uniform(60, i as u64, k as u64));
        }
        let (p, g) = (common::storage_buffer(gpu, &p0), common::storage_buffer(gpu, &vec![0.0; total]));
        let slices: Vec<ParamSlice> = places.iter().zip(&sizes).map(|(&at, &n)| ParamSlice::range(&p, at as u64, &g, at as u64, n as u64)).collect();
        let mut opt = LambOptimizer::new(&gpu.device, &gpu.queue, Lamb { lr: 0.01, weight_decay: 0.05, ..Lamb::default() }, &slices).unwrap();
        for t in 0..5u64 {
            for (i, s) in slices.iter().enumerate() {
                let grad: Vec<f32> = (0..s.len()).map(|k| uniform(61 + i as u64, t, k)).collect();
                gpu.queue.write_buffer(&s.grad, 4 * s.grad_offset, bytemuck::cast_slice(&grad));
            }
            opt.step().unwrap();
        }
        let all = read_f32(&gpu.device, &gpu.queue, &p, 0, total as u64).unwrap();
        let outside = (0..total).filter(|&k| !slices.iter().any(|s| (s.param_offset as usize..(s.param_offset + s.len()) as usize).contains(&k))).all(|k| all[k] == p0[k]);
        let got: Vec<Vec<u32>> = slices.iter().map(|s| read_f32(&gpu.device, &gpu.queue, &p, s.param_offset, s.len()).unwrap().iter().map(|x| x.to_bits()).collect()).collect();
        let state: Vec<Vec<u32>> = (0..sizes.len()).map(|i| { let (m, v) = opt.read_state(i).unwrap(); m.iter().chain(&v).map(|x| x.to_bits()).collect() }).collect();
        (opt.access().form, got, state, outside)
    };
    let wide = common::wide_capable(gpu);
    let runs = [run(0), run(4), run(3)];
    let forms: Vec<_> = runs.iter().map(|r| r.0).collect();
    assert_eq!(forms, [if wide { RowForm::Wide } else { RowForm::Vec4 }, RowForm::Vec4, RowForm::Scalar]);
    for (form, got, state, outside) in &runs[1..] {
        assert!(*outside, "{form:?}: elements outside the slices changed");
        assert_eq!(*state, runs[0].2, "state differs between the {:?} and {form:?} kernels", runs[0].0);
        assert_eq!(*got, runs[0].1, "params differ between the {:?} and {form:?} kernels", runs[0].0);
    }
    assert!(runs[0].3, "{:?}: elements outside the slices changed", runs[0].0);
}
