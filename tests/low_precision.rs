//! Low-precision optimizer state. bf16 with stochastic rounding: state
//! bytes, agreement with the f64 reference, unbiased rounding where
//! round-to-nearest stalls, reproducibility, checkpoints, convergence against
//! f32 state. Blockwise 8-bit: bytes, agreement, determinism, round trips,
//! convergence.

mod common;

use wgpu_optim::device::read_f32;
use wgpu_optim::engine::bf16_round;
use wgpu_optim::surfaces::{trajectory_with, Surface};
use wgpu_optim::validate::{random_params, run_case, run_case_against, Case, Workload};
use wgpu_optim::*;

fn bf16(seed: u32) -> EngineOptions {
    EngineOptions { state_format: StateFormat::Bf16 { seed }, ..EngineOptions::default() }
}

#[test]
fn bf16_state_halves_the_state_bytes() {
    let gpu = require_gpu!();
    let p = common::storage_buffer(gpu, &[0.5; 16]);
    let g = common::storage_buffer(gpu, &[0.5; 16]);
    let cfg: OptimizerConfig = Adam::default().into();
    let f32_opt = Optimizer::new(&gpu.device, &gpu.queue, cfg, &[ParamSlice::whole(&p, &g)]).unwrap();
    let bf16_opt = Optimizer::with_groups(&gpu.device, &gpu.queue, &[cfg], &[ParamSlice::whole(&p, &g)], bf16(1)).unwrap();
    assert_eq!((f32_opt.state_bytes_per_element(), bf16_opt.state_bytes_per_element()), (8, 4));
    assert_eq!((f32_opt.bytes_per_element(), bf16_opt.bytes_per_element()), (28, 20));
}

const WORK: Workload = Workload { n: 20_011, steps: 50, seed: 3 };

/// Low-precision state is judged by the error of every quantity (params and
/// each state tensor) relative to how far the f64 reference moved it,
/// ‖gpu − ref‖ / ‖ref − start‖: a kernel that never moves the params scores
/// 1 and one that takes half the step 0.5, whatever the params' size.
/// Limits are per format, about 2× the worst measured over every option set
/// (lavapipe, 20,011 elements, 50 steps, seed 3): bf16 params 2.4e-2 (Lion;
/// 5e-3 otherwise), bf16 state 1.6e-2; int8 params 0.14 (Lion; 0.09 Adam),
/// int8 state 0.18 (Adadelta's acc_delta).
fn check_moved(report: &wgpu_optim::validate::CaseReport, format: &str, param_limit: f64, state_limit: f64) {
    for (i, q) in report.quantities.iter().enumerate() {
        let limit = if i == 0 { param_limit } else { state_limit };
        eprintln!("{:<36} {format} state: {:<15} error / distance moved {:.2e} (limit {limit})", report.name, q.name, q.rel_moved);
        assert!(q.rel_moved < limit, "{} with {format} state: {} error {:.3e} of the distance moved (limit {limit})", report.name, q.name, q.rel_moved);
    }
}

/// Whether the rule keeps a copy of the params in its state (schedule-free's
/// z), which is f32 only.
fn keeps_an_iterate(c: &wgpu_optim::validate::Case) -> bool {
    c.config.state().used().any(|(_, s)| s.copy_of_param)
}

/// Every option set of every rule with bf16 state tracks the f64 reference
/// (params and every state tensor), and the runs are reproducible per seed.
#[test]
fn bf16_runs_track_the_reference_and_are_reproducible() {
    let gpu = require_gpu!();
    for c in wgpu_optim::validate::all_cases() {
        if keeps_an_iterate(&c) {
            let refused = run_case(&gpu.device, &gpu.queue, &c, WORK, bf16(7));
            assert!(matches!(refused, Err(OptimError::InvalidOptions(_))), "{}: bf16 state for an iterate must be refused", c.name);
            continue;
        }
        let a = run_case(&gpu.device, &gpu.queue, &c, WORK, bf16(7)).unwrap();
        check_moved(&a, "bf16", 5e-2, 4e-2);
        if c.config.state().count() == 0 {
            continue;
        }
        let b = run_case(&gpu.device, &gpu.queue, &c, WORK, bf16(7)).unwrap();
        let other = run_case(&gpu.device, &gpu.queue, &c, WORK, bf16(8)).unwrap();
        assert!(a.gpu_params.iter().zip(&b.gpu_params).all(|(x, y)| x.to_bits() == y.to_bits()), "{}: not reproducible", c.name);
        // (Plain Newton's only state is its input, the Hessian, written as
        // exact bf16 values: nothing is rounded, so the seed cannot matter.
        // ASGD's only state, the average ax, never feeds back into θ.)
        if ![Rule::Newton, Rule::Asgd].contains(&c.config.rule()) {
            assert!(a.gpu_params.iter().zip(&other.gpu_params).any(|(x, y)| x != y), "{}: the seed changed nothing", c.name);
        }
    }
}

/// b ← 0.999·b + 0.001·g with g = 1 from b = 0: b_t = 1 − 0.999ᵗ. The
/// increments fall below half a bf16 ulp once b passes about 0.25, so
/// round-to-nearest stalls there; stochastic rounding keeps the mean on track.
#[test]
fn stochastic_rounding_is_unbiased_where_nearest_rounding_stalls() {
    let gpu = require_gpu!();
    let n = 65_536usize;
    let steps = 1000;
    let p = common::storage_buffer(gpu, &random_params(5, n));
    let g = common::storage_buffer(gpu, &vec![1.0; n]);
    let cfg: OptimizerConfig = Sgd { lr: 0.0, ..Sgd::ema_momentum(0.0, 0.999) }.into();
    let mut opt = Optimizer::with_groups(&gpu.device, &gpu.queue, &[cfg], &[ParamSlice::whole(&p, &g)], bf16(11)).unwrap();
    // Start from b = 0 rather than PyTorch's b₁ = g.
    opt.write_state(0, 0, &vec![0.0; n]).unwrap();
    opt.set_step_count(1);
    for _ in 0..steps / 50 {
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        for _ in 0..50 {
            opt.record_step(&mut enc).unwrap();
        }
        gpu.queue.submit([enc.finish()]);
    }
    let b = opt.read_state(0, 0).unwrap();
    let mean = b.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
    let truth = 1.0 - 0.999f64.powi(steps);
    // round-to-nearest on the host, for contrast
    let mut rn = 0f32;
    for _ in 0..steps {
        rn = f32::from_bits((bf16_round(0.999 * rn + 0.001) as u32) << 16);
    }
    eprintln!("mean b {mean:.5}, exact {truth:.5}, round-to-nearest {rn}");
    assert!(rn < 0.4, "the contrast: round-to-nearest stalls ({rn})");
    assert!((mean - truth).abs() < 2e-3, "stochastic rounding drifted: mean {mean} vs {truth}");
    // params untouched (lr = 0)
    let out = read_f32(&gpu.device, &gpu.queue, &p, 0, n as u64).unwrap();
    assert_eq!(out, random_params(5, n));
}

#[test]
fn bf16_checkpoint_resume_is_bitwise_identical() {
    let gpu = require_gpu!();
    let n = 4099usize;
    let cfg: OptimizerConfig = AdamW { lr: 1e-2, ..AdamW::default() }.into();
    let p0 = random_params(12, n);
    let run = |split: Option<usize>| {
        let p = common::storage_buffer(gpu, &p0);
        let g = common::storage_buffer(gpu, &vec![0.0; n]);
        let mut opt = Optimizer::with_groups(&gpu.device, &gpu.queue, &[cfg], &[ParamSlice::whole(&p, &g)], bf16(3)).unwrap();
        for t in 0..20u64 {
            if split == Some(t as usize) {
                let bytes = opt.checkpoint_bytes().unwrap();
                opt = Optimizer::with_groups(&gpu.device, &gpu.queue, &[cfg], &[ParamSlice::whole(&p, &g)], bf16(3)).unwrap();
                opt.load_checkpoint_bytes(&bytes).unwrap();
            }
            let grads: Vec<f32> = (0..n as u64).map(|i| wgpu_optim::validate::uniform(13, t, i)).collect();
            gpu.queue.write_buffer(&g, 0, bytemuck::cast_slice(&grads));
            opt.step().unwrap();
        }
        let mut bits: Vec<u32> = read_f32(&gpu.device, &gpu.queue, &p, 0, n as u64).unwrap().iter().map(|x| x.to_bits()).collect();
        bits.extend(opt.read_state(1, 0).unwrap().iter().map(|x| x.to_bits()));
        bits
    };
    assert!(run(None) == run(Some(9)), "bf16 resume differs");
}

#[test]
fn bf16_state_converges_like_f32_on_rosenbrock() {
    let gpu = require_gpu!();
    let cfg: OptimizerConfig = Adam { lr: 2e-2, ..Adam::default() }.into();
    let f = |o: EngineOptions| {
        let path = trajectory_with(&gpu.device, &gpu.queue, Surface::Rosenbrock, cfg, [-1.5, 2.0], 6000, o).unwrap();
        let [x, y] = *path.last().unwrap();
        Surface::Rosenbrock.value(x as f64, y as f64)
    };
    let (full, half) = (f(EngineOptions::default()), f(bf16(5)));
    eprintln!("Rosenbrock after 6000 Adam steps: f32 state f = {full:.3e}, bf16 state f = {half:.3e}");
    assert!(full < 1e-4, "f32 reference run did not converge: {full}");
    assert!(half < 1e-3, "bf16 state run did not converge: {half}");
}

fn int8() -> EngineOptions {
    EngineOptions { state_format: StateFormat::Int8Blockwise, ..EngineOptions::default() }
}

#[test]
fn int8_state_takes_one_byte_per_slot() {
    let gpu = require_gpu!();
    let p = common::storage_buffer(gpu, &[0.5; 16]);
    let g = common::storage_buffer(gpu, &[0.5; 16]);
    let opt = Optimizer::with_groups(&gpu.device, &gpu.queue, &[Adam::default().into()], &[ParamSlice::whole(&p, &g)], int8()).unwrap();
    assert_eq!((opt.state_bytes_per_element(), opt.bytes_per_element()), (2, 16));
}

/// Every option set of every rule with 8-bit state tracks the f64
/// reference (params and every state tensor) and is deterministic; state
/// written and read back round-trips through the quantiser exactly once
/// (decode → encode is the identity).
#[test]
fn int8_runs_track_the_reference_and_state_round_trips() {
    let gpu = require_gpu!();
    for c in wgpu_optim::validate::all_cases() {
        if keeps_an_iterate(&c) {
            assert!(matches!(run_case(&gpu.device, &gpu.queue, &c, WORK, int8()), Err(OptimError::InvalidOptions(_))), "{}: 8-bit state for an iterate must be refused", c.name);
            continue;
        }
        let a = run_case(&gpu.device, &gpu.queue, &c, WORK, int8()).unwrap();
        check_moved(&a, "int8", 0.3, 0.4);
        let b = run_case(&gpu.device, &gpu.queue, &c, WORK, int8()).unwrap();
        assert!(a.gpu_params.iter().zip(&b.gpu_params).all(|(x, y)| x.to_bits() == y.to_bits()), "{}: not deterministic", c.name);
    }
    let n = 3000;
    let p = common::storage_buffer(gpu, &random_params(14, n));
    let g = common::storage_buffer(gpu, &vec![0.0; n]);
    let opt = Optimizer::with_groups(&gpu.device, &gpu.queue, &[Adam::default().into()], &[ParamSlice::whole(&p, &g)], int8()).unwrap();
    let values: Vec<f32> = random_params(15, n).iter().map(|v| v * 1e-3).collect();
    opt.write_state(0, 0, &values).unwrap();
    let once = opt.read_state(0, 0).unwrap();
    let rel = (values.iter().zip(&once).map(|(a, b)| (a - b).powi(2)).sum::<f32>() / values.iter().map(|a| a * a).sum::<f32>()).sqrt();
    assert!(rel < 3e-2, "8-bit round trip rel L2 {rel}");
    opt.write_state(0, 0, &once).unwrap();
    assert_eq!(opt.read_state(0, 0).unwrap(), once, "decode → encode is not the identity");
}

#[test]
fn int8_state_converges_on_rosenbrock() {
    let gpu = require_gpu!();
    let cfg: OptimizerConfig = Adam { lr: 2e-2, ..Adam::default() }.into();
    let path = trajectory_with(&gpu.device, &gpu.queue, Surface::Rosenbrock, cfg, [-1.5, 2.0], 6000, int8()).unwrap();
    let [x, y] = *path.last().unwrap();
    let f = Surface::Rosenbrock.value(x as f64, y as f64);
    eprintln!("Rosenbrock after 6000 Adam steps with 8-bit state: f = {f:.3e}");
    assert!(f < 1e-2, "8-bit state run did not converge: {f}");
}

/// The measure can fail: an Adam kernel that takes half the step (the
/// reference doubles the lr) or none at all (lr 0 on the GPU) is rejected
/// under both formats' limits.
#[test]
fn moved_distance_checks_reject_a_short_step() {
    let gpu = require_gpu!();
    let adam = Adam::default();
    let double = Adam { lr: 2.0 * adam.lr, ..adam };
    for (format, options, limit) in [("bf16", bf16(7), 5e-2), ("int8", int8(), 0.3)] {
        let half = run_case_against(&gpu.device, &gpu.queue, &Case::new("adam, half step", adam), WORK, options.clone(), &|t, p, g, s| OptimizerConfig::from(double).reference_step(t, p, g, s)).unwrap();
        let frozen = run_case_against(&gpu.device, &gpu.queue, &Case::new("adam, no step", Adam { lr: 0.0, ..adam }), WORK, options, &|t, p, g, s| OptimizerConfig::from(adam).reference_step(t, p, g, s)).unwrap();
        for r in [half, frozen] {
            eprintln!("{format}: {} params error / distance moved {:.3} (error / norm {:.2e})", r.name, r.quantities[0].rel_moved, r.quantities[0].rel_l2);
            assert!(r.quantities[0].rel_moved > limit, "{format}: {} passed the check", r.name);
        }
    }
}

/// bf16 stores keep the special values: inf stays inf, NaN stays NaN, and
/// finite values next to them round as usual (SGD momentum's first step
/// stores the grad itself as momentum_buffer).
#[test]
fn bf16_state_keeps_inf_and_nan() {
    let gpu = require_gpu!();
    let n = 37;
    let mut grads: Vec<f32> = (0..n).map(|i| (i as f32 - 18.0) * 0.25).collect();
    // NaNs whose low mantissa bits would carry into the sign (or make inf)
    // if rounded like numbers
    grads[5] = f32::from_bits(0x7fff_ffff);
    grads[9] = f32::from_bits(0x7f80_0001);
    grads[6] = f32::INFINITY;
    grads[7] = f32::NEG_INFINITY;
    grads[8] = f32::MAX;
    let p = common::storage_buffer(gpu, &vec![0.0; n]);
    let g = common::storage_buffer(gpu, &grads);
    let cfg: OptimizerConfig = Sgd { momentum: 0.9, ..Sgd::default() }.into();
    let mut opt = Optimizer::with_groups(&gpu.device, &gpu.queue, &[cfg], &[ParamSlice::whole(&p, &g)], bf16(3)).unwrap();
    opt.step().unwrap();
    let buf = opt.read_state(0, 0).unwrap();
    assert!(buf[5].is_nan() && buf[9].is_nan(), "NaN became {} / {}", buf[5], buf[9]);
    assert_eq!((buf[6], buf[7]), (f32::INFINITY, f32::NEG_INFINITY));
    assert!(buf[8] == f32::INFINITY || buf[8] == f32::from_bits(0x7f7f0000), "f32::MAX rounds to the largest bf16 or to inf, got {}", buf[8]);
    for i in (0..n).filter(|i| !(5..=9).contains(i)) {
        assert_eq!(buf[i], grads[i], "element {i}: quarter steps are exact in bf16");
    }
}
