//! LR schedules: each formula against hand-computed values, and a scheduled
//! GPU run against the f64 reference fed the same lrs, with no pipeline
//! rebuilt.

mod common;

use std::sync::Arc;
use wgpu_optim::reference::ReferenceOptimizer;
use wgpu_optim::schedule::{Schedule, Scheduler};
use wgpu_optim::validate::{random_params, uniform};
use wgpu_optim::*;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * (1.0 + b.abs())
}

#[test]
fn formulas_match_hand_computed_values() {
    let step = Schedule::Step { step_size: 3, gamma: 0.1 };
    assert_eq!([0, 2, 3, 5, 6, 9].map(|t| step.factor(t)), [1.0, 1.0, 0.1, 0.1, 0.1f64.powi(2), 0.1f64.powi(3)]);
    let exp = Schedule::Exponential { gamma: 0.9 };
    assert!(close(exp.factor(0), 1.0) && close(exp.factor(3), 0.729));
    let warm = Schedule::LinearWarmup { start_factor: 0.25, total_iters: 4 };
    assert_eq!([0, 1, 2, 4, 100].map(|t| warm.factor(t)), [0.25, 0.4375, 0.625, 1.0, 1.0]);
    let cos = Schedule::CosineWithWarmup { warmup_steps: 10, total_steps: 110, min_factor: 0.1 };
    assert!(close(cos.factor(0), 0.0) && close(cos.factor(5), 0.5) && close(cos.factor(10), 1.0));
    assert!(close(cos.factor(60), 0.1 + 0.9 * 0.5)); // halfway: cos(π/2) = 0
    assert!(close(cos.factor(110), 0.1) && close(cos.factor(500), 0.1));
    let chain = Schedule::Chain(vec![warm.clone(), exp.clone()]);
    assert!(close(chain.factor(2), 0.625 * 0.81));
    let seq = Schedule::Sequential { schedules: vec![warm.clone(), exp.clone()], milestones: vec![4] };
    assert!(close(seq.factor(3), 0.8125) && close(seq.factor(4), 1.0) && close(seq.factor(6), 0.81));
    assert_eq!(Schedule::Constant.factor(12345), 1.0);
}

#[test]
fn invalid_schedules_are_typed_errors() {
    for bad in [
        Schedule::Step { step_size: 0, gamma: 0.5 },
        Schedule::Exponential { gamma: f64::NAN },
        Schedule::LinearWarmup { start_factor: 0.0, total_iters: 5 },
        Schedule::CosineWithWarmup { warmup_steps: 10, total_steps: 10, min_factor: 0.0 },
        Schedule::Sequential { schedules: vec![Schedule::Constant], milestones: vec![3] },
    ] {
        assert!(bad.validate().is_err(), "{bad:?} accepted");
    }
}

#[test]
fn scheduled_gpu_run_matches_reference_without_rebuilding_pipelines() {
    let gpu = require_gpu!();
    let n = 3001;
    let cache = Arc::new(PipelineCache::new(&gpu.device));
    let p0 = random_params(50, n);
    let p = common::storage_buffer(gpu, &p0);
    let g = common::storage_buffer(gpu, &vec![0.0; n]);
    let cfg = AdamW { lr: 1e-2, weight_decay: 0.1, ..AdamW::default() };
    let options = EngineOptions { cache: Some(cache.clone()), ..EngineOptions::default() };
    let mut opt = Optimizer::with_groups(&gpu.device, &gpu.queue, &[cfg.into()], &[ParamSlice::whole(&p, &g)], options).unwrap();
    let schedule = Schedule::Sequential {
        schedules: vec![Schedule::LinearWarmup { start_factor: 0.1, total_iters: 5 }, Schedule::CosineWithWarmup { warmup_steps: 0, total_steps: 20, min_factor: 0.0 }],
        milestones: vec![5],
    };
    let scheduler = Scheduler::new(schedule, &mut opt).unwrap();
    let pipelines = cache.len();
    let mut reference = ReferenceOptimizer::new(cfg.into(), n).unwrap();
    let mut pr: Vec<f64> = p0.iter().map(|&x| x as f64).collect();
    for t in 0..25u64 {
        scheduler.apply(&mut opt).unwrap();
        let lr = scheduler.lr(0, t);
        assert_eq!(opt.config(0).unwrap().lr(), lr);
        let grads: Vec<f32> = (0..n as u64).map(|i| uniform(51, t, i)).collect();
        gpu.queue.write_buffer(&g, 0, bytemuck::cast_slice(&grads));
        opt.step().unwrap();
        reference.config.set_lr(lr);
        reference.step(&mut pr, &grads.iter().map(|&x| x as f64).collect::<Vec<_>>()).unwrap();
    }
    assert_eq!(cache.len(), pipelines, "a schedule rebuilt a pipeline");
    let out = device::read_f32(&gpu.device, &gpu.queue, &p, 0, n as u64).unwrap();
    let worst = out.iter().zip(&pr).map(|(a, b)| (*a as f64 - b).abs() / (1e-3 + b.abs())).fold(0.0, f64::max);
    assert!(worst < 1e-5, "scheduled run differs from the reference by {worst}");
}

/// The natural order (build the optimizer as at the start, load the
/// checkpoint, then make the scheduler) resumes bitwise for every schedule
/// kind: the checkpoint keeps each group's `initial_lr` and the step count
/// that is the scheduler's position.
#[test]
fn scheduler_made_after_loading_a_checkpoint_resumes_bitwise() {
    let gpu = require_gpu!();
    let n = 700;
    let warm = Schedule::LinearWarmup { start_factor: 0.2, total_iters: 8 };
    let kinds = [
        Schedule::Constant,
        Schedule::Step { step_size: 5, gamma: 0.5 },
        Schedule::Exponential { gamma: 0.95 },
        warm.clone(),
        Schedule::CosineWithWarmup { warmup_steps: 4, total_steps: 30, min_factor: 0.05 },
        Schedule::Chain(vec![warm.clone(), Schedule::Exponential { gamma: 0.97 }]),
        Schedule::Sequential { schedules: vec![warm, Schedule::Step { step_size: 3, gamma: 0.7 }], milestones: vec![10] },
    ];
    let build = |params: &[f32]| {
        let p = common::storage_buffer(gpu, params);
        let g = common::storage_buffer(gpu, &vec![0.0; n]);
        let cfg = |lr, weight_decay| OptimizerConfig::from(AdamW { lr, weight_decay, ..AdamW::default() });
        let slices = [ParamSlice::range(&p, 0, &g, 0, 500), ParamSlice::range(&p, 504, &g, 504, 196).in_group(1)];
        (Optimizer::with_groups(&gpu.device, &gpu.queue, &[cfg(1e-2, 0.1), cfg(3e-2, 0.0)], &slices, EngineOptions::default()).unwrap(), p, g)
    };
    let train = |opt: &mut Optimizer, g: &wgpu::Buffer, scheduler: &Scheduler, steps: std::ops::Range<u64>| {
        for t in steps {
            let grads: Vec<f32> = (0..n as u64).map(|i| uniform(52, t, i)).collect();
            gpu.queue.write_buffer(g, 0, bytemuck::cast_slice(&grads));
            scheduler.apply(opt).unwrap();
            opt.step().unwrap();
        }
    };
    let p0 = random_params(53, n);
    for schedule in kinds {
        let (mut whole, p, g) = build(&p0);
        let scheduler = Scheduler::new(schedule.clone(), &mut whole).unwrap();
        train(&mut whole, &g, &scheduler, 0..30);
        let want = device::read_f32(&gpu.device, &gpu.queue, &p, 0, n as u64).unwrap();

        let (mut first, p, g) = build(&p0);
        let scheduler = Scheduler::new(schedule.clone(), &mut first).unwrap();
        train(&mut first, &g, &scheduler, 0..12);
        let saved = first.checkpoint_bytes().unwrap();
        let (mut resumed, p, g) = build(&device::read_f32(&gpu.device, &gpu.queue, &p, 0, n as u64).unwrap());
        resumed.load_checkpoint_bytes(&saved).unwrap();
        let scheduler = Scheduler::new(schedule.clone(), &mut resumed).unwrap();
        assert_eq!(scheduler.base_lrs(), [1e-2, 3e-2], "{schedule:?}");
        train(&mut resumed, &g, &scheduler, 12..30);
        let got = device::read_f32(&gpu.device, &gpu.queue, &p, 0, n as u64).unwrap();
        assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{schedule:?}: the resumed run differs");
    }
}
