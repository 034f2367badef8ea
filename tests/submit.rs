//! Steps per submit: any number of steps recorded before one submit gives
//! bitwise the params and state of one submit per step, for every stepper
//! with per-step scalars (the element-wise engine, LAMB, Adafactor, Muon,
//! the weight EMA). The lr changes before every step, as a scheduler's
//! does, so a step that read another step's scalars would show.

mod common;

use wgpu_optim::device::{read_f32, Gpu};
use wgpu_optim::validate::{random_params, uniform};
use wgpu_optim::*;

/// Steps in every run.
const TOTAL: u32 = 300;

/// Records `TOTAL` steps, `per_submit` into each encoder; `record(encoder, t)`
/// records step `t` (0-based).
fn submit_in_batches(gpu: &Gpu, per_submit: u32, mut record: impl FnMut(&mut wgpu::CommandEncoder, u32)) {
    let mut t = 0;
    while t < TOTAL {
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        for _ in 0..per_submit.min(TOTAL - t) {
            record(&mut encoder, t);
            t += 1;
        }
        gpu.queue.submit([encoder.finish()]);
    }
}

/// The lr of step `t`: falls from `base` to a tenth of it.
fn lr(base: f64, t: u32) -> f64 {
    base * (1.0 - 0.9 * t as f64 / TOTAL as f64)
}

/// `run(per_submit)` gives the same bits for 64, 65 and 300 steps per
/// submit as for one.
fn assert_any_batching_is_bitwise(name: &str, run: impl Fn(u32) -> Vec<u32>) {
    let one = run(1);
    for per_submit in [64, 65, TOTAL] {
        let got = run(per_submit);
        let differ = got.iter().zip(&one).filter(|(a, b)| a != b).count();
        assert!(differ == 0 && got.len() == one.len(), "{name}: {per_submit} steps per submit differ from one per submit in {differ} of {} words", one.len());
    }
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|x| x.to_bits()).collect()
}

/// Three tensors at odd offsets of one buffer pair, with fixed random
/// params and grads.
fn buffers(gpu: &Gpu, seed: u64) -> (wgpu::Buffer, wgpu::Buffer) {
    let n = 1600;
    let grads: Vec<f32> = (0..n as u64).map(|i| uniform(seed + 1, 0, i)).collect();
    (common::storage_buffer(gpu, &random_params(seed, n)), common::storage_buffer(gpu, &grads))
}

fn ranges(p: &wgpu::Buffer, g: &wgpu::Buffer) -> Vec<ParamSlice> {
    vec![ParamSlice::range(p, 1, g, 1, 1000), ParamSlice::range(p, 1003, g, 1003, 37).in_group(1), ParamSlice::range(p, 1045, g, 1045, 513)]
}

/// AdamW in two groups under a GradScaler, with tensor 1 frozen for steps
/// 100–199 (`set_active` takes effect in encoder order too): params, state
/// and the scaler's state.
#[test]
fn engine_steps_any_number_per_submit() {
    let gpu = require_gpu!();
    assert_any_batching_is_bitwise("AdamW", |per_submit| {
        let (p, g) = buffers(gpu, 70);
        let cfg = |weight_decay| OptimizerConfig::from(AdamW { lr: 1e-2, weight_decay, ..AdamW::default() });
        let options = EngineOptions { grad_control: GradControl { max_norm: Some(1.0), scaler: Some(GradScaler { init_scale: 4.0, growth_interval: 7, ..GradScaler::default() }), ..GradControl::default() }, ..EngineOptions::default() };
        let mut opt = Optimizer::with_groups(&gpu.device, &gpu.queue, &[cfg(0.1), cfg(0.0)], &ranges(&p, &g), options).unwrap();
        submit_in_batches(gpu, per_submit, |encoder, t| {
            opt.set_lr(0, lr(1e-2, t)).unwrap();
            opt.set_lr(1, lr(3e-2, t)).unwrap();
            if t == 100 || t == 200 {
                opt.set_active(&[true, t == 200, true]).unwrap();
            }
            opt.record_step(encoder).unwrap();
        });
        let mut out = bits(&read_f32(&gpu.device, &gpu.queue, &p, 0, 1600).unwrap());
        for (slot, _) in opt.state_names().iter().enumerate().filter(|(_, name)| !name.is_empty()) {
            (0..3).for_each(|i| out.extend(bits(&opt.read_state(slot, i).unwrap())));
        }
        let scaler = opt.read_grad_control().unwrap();
        out.extend([scaler.scale.to_bits(), scaler.growth_tracker, scaler.skipped]);
        out
    });
}

#[test]
fn lamb_steps_any_number_per_submit() {
    let gpu = require_gpu!();
    assert_any_batching_is_bitwise("LAMB", |per_submit| {
        let (p, g) = buffers(gpu, 72);
        let params: Vec<_> = ranges(&p, &g).into_iter().map(|s| s.in_group(0)).collect();
        let mut opt = LambOptimizer::new(&gpu.device, &gpu.queue, Lamb { lr: 1e-2, weight_decay: 0.1, ..Lamb::default() }, &params).unwrap();
        submit_in_batches(gpu, per_submit, |encoder, t| {
            opt.set_lr(lr(1e-2, t)).unwrap();
            opt.record_step(encoder).unwrap();
        });
        let mut out = bits(&read_f32(&gpu.device, &gpu.queue, &p, 0, 1600).unwrap());
        for i in 0..params.len() {
            let (m, v) = opt.read_state(i).unwrap();
            out.extend(bits(&m).into_iter().chain(bits(&v)));
        }
        out
    });
}

#[test]
fn adafactor_steps_any_number_per_submit() {
    let gpu = require_gpu!();
    assert_any_batching_is_bitwise("Adafactor", |per_submit| {
        let (p, g) = buffers(gpu, 74);
        let params = [ParamSlice::range(&p, 1, &g, 1, 1200).with_shape(&[2, 30, 20]), ParamSlice::range(&p, 1203, &g, 1203, 37)];
        let mut opt = AdafactorOptimizer::new(&gpu.device, &gpu.queue, Adafactor { lr: 1e-2, ..Adafactor::default() }, &params).unwrap();
        submit_in_batches(gpu, per_submit, |encoder, t| {
            opt.set_lr(lr(1e-2, t)).unwrap();
            opt.record_step(encoder).unwrap();
        });
        let mut out = bits(&read_f32(&gpu.device, &gpu.queue, &p, 0, 1600).unwrap());
        for i in 0..params.len() {
            out.extend(opt.read_state(i).unwrap().iter().flat_map(|s| bits(&s.values)));
        }
        out
    });
}

#[test]
fn muon_steps_any_number_per_submit() {
    let gpu = require_gpu!();
    assert_any_batching_is_bitwise("Muon", |per_submit| {
        let (p, g) = buffers(gpu, 76);
        let params = [ParamSlice::range(&p, 1, &g, 1, 960).with_shape(&[24, 40]), ParamSlice::range(&p, 963, &g, 963, 153).with_shape(&[17, 9])];
        let mut opt = MuonOptimizer::new(&gpu.device, &gpu.queue, Muon { lr: 1e-2, weight_decay: 0.1, ..Muon::default() }, &params).unwrap();
        submit_in_batches(gpu, per_submit, |encoder, t| {
            opt.set_lr(lr(1e-2, t)).unwrap();
            opt.record_step(encoder).unwrap();
        });
        let mut out = bits(&read_f32(&gpu.device, &gpu.queue, &p, 0, 1600).unwrap());
        for i in 0..params.len() {
            out.extend(bits(&opt.read_state(i).unwrap()));
        }
        out
    });
}

/// The EMA of params that SGD steps in the same encoder: its first update
/// copies, the others average.
#[test]
fn weight_ema_updates_any_number_per_submit() {
    let gpu = require_gpu!();
    assert_any_batching_is_bitwise("weight EMA", |per_submit| {
        let (p, g) = buffers(gpu, 78);
        let params = ranges(&p, &g);
        let sgd = OptimizerConfig::from(Sgd { lr: 1e-2, momentum: 0.9, ..Sgd::default() });
        let mut opt = Optimizer::with_groups(&gpu.device, &gpu.queue, &[sgd, sgd], &params, EngineOptions::default()).unwrap();
        let mut ema = WeightEma::new(&gpu.device, &gpu.queue, 0.99, &params).unwrap();
        submit_in_batches(gpu, per_submit, |encoder, _| {
            opt.record_step(encoder).unwrap();
            ema.record_update(encoder).unwrap();
        });
        (0..params.len()).flat_map(|i| bits(&ema.read(i).unwrap())).collect()
    });
}
