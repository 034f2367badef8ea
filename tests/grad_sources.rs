//! Grads read in place (`Optimizer::record_step_with_grads`): bitwise the
//! step of grads copied into the registered buffer, with the sources moving
//! every step as a framework's fresh allocations do; and every source that
//! cannot be bound is a typed error that records and changes nothing.

mod common;

use wgpu_optim::device::{read_f32, Gpu};
use wgpu_optim::validate::{random_params, uniform};
use wgpu_optim::*;

/// Tensors 0 and 1 share one buffer pair (one window), tensor 2 has its own.
const SIZES: [u64; 3] = [1000, 517, 300];
const STEPS: u32 = 40;
/// Room in the source buffer for any offset the test uses.
const SOURCE_LEN: u64 = 4096;

struct Setup {
    p: [wgpu::Buffer; 2],
    g: [wgpu::Buffer; 2],
    opt: Optimizer,
}

/// AdamW with clipping and a GradScaler (so the norm pass reads the grads
/// too) over the three tensors; the registered grads hold `fill`.
fn setup(gpu: &Gpu, fill: f32) -> Setup {
    let p = [common::storage_buffer(gpu, &random_params(5, 1600)), common::storage_buffer(gpu, &random_params(6, 400))];
    let g = [common::storage_buffer(gpu, &[fill; 1600]), common::storage_buffer(gpu, &[fill; 400])];
    let slices = [ParamSlice::range(&p[0], 0, &g[0], 0, SIZES[0]), ParamSlice::range(&p[0], 1024, &g[0], 1024, SIZES[1]), ParamSlice::range(&p[1], 0, &g[1], 0, SIZES[2])];
    let scaler = GradScaler { init_scale: 4.0, growth_interval: 7, ..GradScaler::default() };
    let options = EngineOptions { grad_control: GradControl { max_norm: Some(0.5), scaler: Some(scaler), ..GradControl::default() }, ..EngineOptions::default() };
    let cfg = AdamW { lr: 1e-2, weight_decay: 0.1, ..AdamW::default() };
    let opt = Optimizer::with_groups(&gpu.device, &gpu.queue, &[cfg.into()], &slices, options).unwrap();
    Setup { p, g, opt }
}

/// Step `t`'s grad of tensor `i`.
fn grad(t: u32, i: usize) -> Vec<f32> {
    (0..SIZES[i]).map(|e| uniform(100 + t as u64, i as u64, e)).collect()
}

fn write(gpu: &Gpu, buffer: &wgpu::Buffer, at: u64, data: &[f32]) {
    gpu.queue.write_buffer(buffer, 4 * at, bytemuck::cast_slice(data));
}

fn params_and_state(gpu: &Gpu, s: &Setup) -> Vec<u32> {
    let mut out: Vec<f32> = read_f32(&gpu.device, &gpu.queue, &s.p[0], 0, 1600).unwrap();
    out.extend(read_f32(&gpu.device, &gpu.queue, &s.p[1], 0, 400).unwrap());
    for (slot, _) in s.opt.state_names().iter().enumerate().filter(|(_, name)| !name.is_empty()) {
        (0..3).for_each(|i| out.extend(s.opt.read_state(slot, i).unwrap()));
    }
    out.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn grads_read_in_place_step_bitwise_as_copied() {
    let gpu = require_gpu!();
    let mut copied = setup(gpu, 0.0);
    let mut in_place = setup(gpu, f32::NAN);
    let source = common::storage_buffer(gpu, &[f32::NAN; SOURCE_LEN as usize]);
    for t in 0..STEPS {
        // The window of tensors 0 and 1 moves every step, by whole
        // 256-byte units; tensor 2 stays in its registered buffer.
        let shift = 64 * (1 + u64::from(t % 3));
        write(gpu, &copied.g[0], 0, &grad(t, 0));
        write(gpu, &copied.g[0], 1024, &grad(t, 1));
        write(gpu, &source, shift, &grad(t, 0));
        write(gpu, &source, shift + 1024, &grad(t, 1));
        for s in [&copied, &in_place] {
            write(gpu, &s.g[1], 0, &grad(t, 2));
        }
        // Tensor 1 has no grad for a few steps: its source may be None.
        let active = !(10..15).contains(&t);
        for s in [&mut copied, &mut in_place] {
            s.opt.set_active(&[true, active, true]).unwrap();
        }
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        copied.opt.record_step(&mut encoder).unwrap();
        let sources = [Some(GradSource { buffer: &source, offset: shift }), Some(GradSource { buffer: &source, offset: shift + 1024 }).filter(|_| active), None];
        in_place.opt.record_step_with_grads(&mut encoder, &sources).unwrap();
        gpu.queue.submit([encoder.finish()]);
    }
    let (a, b) = (params_and_state(gpu, &copied), params_and_state(gpu, &in_place));
    let differ = a.iter().zip(&b).filter(|(x, y)| x != y).count();
    assert_eq!(differ, 0, "grads read in place differ from copied grads in {differ} of {} words", a.len());
}

#[test]
fn sources_that_cannot_be_bound_are_errors_that_change_nothing() {
    let gpu = require_gpu!();
    let mut s = setup(gpu, 0.5);
    let source = common::storage_buffer(gpu, &[0.25; SOURCE_LEN as usize]);
    let no_storage = gpu.device.create_buffer(&wgpu::BufferDescriptor { label: None, size: 4 * SOURCE_LEN, usage: wgpu::BufferUsages::COPY_DST, mapped_at_creation: false });
    let control = s.opt.grad_control_buffer().clone();
    let at = |buffer, offset| Some(GradSource { buffer, offset });
    let mut cases: Vec<(&str, Vec<Option<GradSource>>)> = vec![
        ("one entry short", vec![at(&source, 64), at(&source, 1088)]),
        ("past the buffer's end", vec![at(&source, SOURCE_LEN - 1024), at(&source, SOURCE_LEN), None]),
        ("apart within one window", vec![at(&source, 64), at(&source, 1024), None]),
        ("half of one window", vec![at(&source, 64), None, None]),
        ("without STORAGE", vec![at(&no_storage, 64), at(&no_storage, 1088), None]),
        ("the window's own params", vec![None, None, at(&s.p[1], 0)]),
        ("the optimizer's own buffer", vec![None, None, at(&control, 0)]),
    ];
    // One element past an aligned start, where the device's alignment is
    // more than one element.
    if gpu.device.limits().min_storage_buffer_offset_alignment > 4 {
        cases.push(("off the offset alignment", vec![at(&source, 65), at(&source, 1089), None]));
    }
    let before = params_and_state(gpu, &s);
    for (name, sources) in &cases {
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        let err = s.opt.record_step_with_grads(&mut encoder, sources).expect_err(name);
        assert!(matches!(err, OptimError::GradSource { .. } | OptimError::LengthMismatch { .. }), "{name}: {err}");
        gpu.queue.submit([encoder.finish()]);
        assert_eq!(s.opt.step_count(), 0, "{name}: the step was counted");
    }
    assert_eq!(params_and_state(gpu, &s), before, "a rejected source changed params or state");
    // The same optimizer still steps from good sources.
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    s.opt.record_step_with_grads(&mut encoder, &[at(&source, 64), at(&source, 1088), None]).unwrap();
    gpu.queue.submit([encoder.finish()]);
    assert_eq!(s.opt.step_count(), 1);
    assert_ne!(params_and_state(gpu, &s), before);
}
