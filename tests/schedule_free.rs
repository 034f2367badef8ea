//! Schedule-free AdamW's train and eval modes: `eval()` gives the average
//! x the f64 reference gives, `train()` restores y, a step in eval mode is
//! refused without changing anything, checkpoints keep the mode and the
//! host scalars, and what the rule cannot take is refused.

mod common;

use wgpu_optim::device::read_f32;
use wgpu_optim::reference::ReferenceOptimizer;
use wgpu_optim::validate::{random_params, uniform};
use wgpu_optim::*;

const N: usize = 1003;
const STEPS: u64 = 12;

fn config() -> AdamWScheduleFree {
    AdamWScheduleFree { lr: 1e-2, warmup_steps: 4, weight_decay: 0.05, betas: (0.9, 0.99), ..AdamWScheduleFree::default() }
}

fn grads(t: u64) -> Vec<f32> {
    (0..N as u64).map(|j| uniform(91, t, j) * 2.0).collect()
}

/// An optimizer over one tensor after `STEPS` steps, with its buffers.
fn stepped(gpu: &device::Gpu) -> (Optimizer, wgpu::Buffer, wgpu::Buffer) {
    let p = common::storage_buffer(gpu, &random_params(90, N));
    let g = common::storage_buffer(gpu, &vec![0.0; N]);
    let mut opt = Optimizer::new(&gpu.device, &gpu.queue, config().into(), &[ParamSlice::whole(&p, &g)]).unwrap();
    for t in 0..STEPS {
        gpu.queue.write_buffer(&g, 0, bytemuck::cast_slice(&grads(t)));
        opt.step().unwrap();
    }
    (opt, p, g)
}

fn params(gpu: &device::Gpu, p: &wgpu::Buffer) -> Vec<f32> {
    read_f32(&gpu.device, &gpu.queue, p, 0, N as u64).unwrap()
}

fn switch(gpu: &device::Gpu, opt: &mut Optimizer, to_eval: bool) {
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    if to_eval { opt.eval(&mut enc) } else { opt.train(&mut enc) }.unwrap();
    gpu.queue.submit([enc.finish()]);
}

/// Largest |a − b| relative to the largest |b|.
fn rel_err(a: &[f32], b: &[f64]) -> f64 {
    let scale = b.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    a.iter().zip(b).map(|(x, y)| (*x as f64 - y).abs()).fold(0.0, f64::max) / scale
}

#[test]
fn eval_gives_the_average_and_train_restores_y() {
    let gpu = require_gpu!();
    let (mut opt, p, _g) = stepped(gpu);
    let mut reference = ReferenceOptimizer::new(config().into(), N).unwrap();
    let mut y: Vec<f64> = random_params(90, N).iter().map(|&v| v as f64).collect();
    for t in 0..STEPS {
        let g: Vec<f64> = grads(t).iter().map(|&v| v as f64).collect();
        reference.step(&mut y, &g).unwrap();
    }
    let z = &reference.state.slots[0];
    let b1 = config().betas.0;
    let x: Vec<f64> = y.iter().zip(z).map(|(y, z)| y + (1.0 - 1.0 / b1) * (z - y)).collect();
    let train_params = params(gpu, &p);
    assert!(rel_err(&train_params, &y) < 1e-5, "y: {}", rel_err(&train_params, &y));
    switch(gpu, &mut opt, true);
    assert!(!opt.is_train_mode());
    let eval_params = params(gpu, &p);
    // x differs from y by much more than the bound: the switch did move them
    assert!(rel_err(&eval_params, &y) > 1e-3 && rel_err(&eval_params, &x) < 1e-5, "x: {}", rel_err(&eval_params, &x));
    switch(gpu, &mut opt, true); // again: nothing happens
    assert_eq!(params(gpu, &p), eval_params);
    switch(gpu, &mut opt, false);
    assert!(rel_err(&params(gpu, &p), &y) < 1e-5, "train() must restore y");
}

#[test]
fn a_step_in_eval_mode_is_refused_and_changes_nothing() {
    let gpu = require_gpu!();
    let (mut opt, p, _g) = stepped(gpu);
    switch(gpu, &mut opt, true);
    let before = (params(gpu, &p), opt.read_state(0, 0).unwrap(), opt.step_count(), opt.host_scalars().to_vec());
    assert!(matches!(opt.step(), Err(OptimError::NotInTrainMode)));
    assert_eq!(before, (params(gpu, &p), opt.read_state(0, 0).unwrap(), opt.step_count(), opt.host_scalars().to_vec()));
}

/// Saved in eval mode, loaded into a fresh optimizer: the mode and the
/// host scalars come back, and training resumes bitwise.
#[test]
fn checkpoints_keep_the_mode_and_resume_bitwise() {
    let gpu = require_gpu!();
    let (mut opt, p, g) = stepped(gpu);
    switch(gpu, &mut opt, true);
    let bytes = opt.checkpoint_bytes().unwrap();
    let p2 = common::storage_buffer(gpu, &params(gpu, &p));
    let mut resumed = Optimizer::new(&gpu.device, &gpu.queue, config().into(), &[ParamSlice::whole(&p2, &g)]).unwrap();
    resumed.load_checkpoint_bytes(&bytes).unwrap();
    assert!(!resumed.is_train_mode());
    assert_eq!(resumed.host_scalars(), opt.host_scalars());
    for o in [&mut opt, &mut resumed] {
        switch(gpu, o, false);
        for t in STEPS..STEPS + 3 {
            gpu.queue.write_buffer(&g, 0, bytemuck::cast_slice(&grads(t)));
            o.step().unwrap();
        }
    }
    assert!(params(gpu, &p).iter().zip(&params(gpu, &p2)).all(|(a, b)| a.to_bits() == b.to_bits()));
}

#[test]
fn what_the_rule_cannot_take_is_refused() {
    let gpu = require_gpu!();
    let p = common::storage_buffer(gpu, &[1.0; 8]);
    let g = common::storage_buffer(gpu, &[1.0; 8]);
    let slices = [ParamSlice::whole(&p, &g)];
    let cfg: OptimizerConfig = config().into();
    let scaler = GradControl { scaler: Some(GradScaler::default()), ..GradControl::default() };
    for options in [EngineOptions { grad_control: scaler, ..EngineOptions::default() }, EngineOptions { state_format: StateFormat::Bf16 { seed: 1 }, ..EngineOptions::default() }] {
        let refused = Optimizer::with_groups(&gpu.device, &gpu.queue, &[cfg], &slices, options);
        assert!(matches!(refused, Err(OptimError::InvalidOptions(_))));
    }
    let storage_only = gpu.device.create_buffer(&wgpu::BufferDescriptor { label: None, size: 32, usage: wgpu::BufferUsages::STORAGE, mapped_at_creation: false });
    let refused = Optimizer::new(&gpu.device, &gpu.queue, cfg, &[ParamSlice::whole(&storage_only, &g)]);
    assert!(matches!(refused, Err(OptimError::MissingUsage { which: "param", .. })));
    let mut adam = Optimizer::new(&gpu.device, &gpu.queue, Adam::default().into(), &slices).unwrap();
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    assert!(matches!(adam.eval(&mut enc), Err(OptimError::InvalidOptions(_))));
}

/// z starts as the params the optimizer was built with, so a switch before
/// any step, or for a tensor first stepped later, is the identity.
#[test]
fn z_starts_as_the_params() {
    let gpu = require_gpu!();
    let p0 = random_params(93, N);
    let p = common::storage_buffer(gpu, &p0);
    let g = common::storage_buffer(gpu, &vec![0.0; N]);
    let opt = Optimizer::new(&gpu.device, &gpu.queue, config().into(), &[ParamSlice::whole(&p, &g)]).unwrap();
    assert_eq!(opt.read_state(0, 0).unwrap(), p0);
}

/// `run` writes `eval_params` beside the train-form params, on the GPU and
/// in the f64 reference alike.
#[test]
fn run_writes_the_eval_params() {
    let gpu = require_gpu!();
    let steps = STEPS as usize;
    let input = run::RunInput { params: random_params(94, N), shape: vec![N], grads: (0..STEPS).flat_map(grads).collect(), rows: steps, hessians: None };
    let out = run::run_gpu(&gpu.device, &gpu.queue, config().into(), &input, STEPS as u32).unwrap();
    let reference = run::run_reference(config().into(), &input, STEPS as u32).unwrap();
    let eval = |o: &run::RunOutput| o.state.iter().find(|s| s.name == run::EVAL_PARAMS).expect("eval_params").values.clone();
    let gpu_x: Vec<f32> = eval(&out).iter().map(|&v| v as f32).collect();
    assert!(rel_err(&gpu_x, &eval(&reference)) < 1e-5);
    assert!(rel_err(&gpu_x, &reference.params) > 1e-3, "eval_params must differ from the train-form params");
}
