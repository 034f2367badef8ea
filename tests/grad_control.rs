//! Global-norm clipping and AMP loss scaling on the GPU, against the f64
//! reference: norms, clipped steps, skipped steps (bitwise unchanged), and
//! the GradScaler's scale schedule.

mod common;

use wgpu_optim::device::read_f32;
use wgpu_optim::reference::ReferenceOptimizer;
use wgpu_optim::validate::{random_params, uniform};
use wgpu_optim::*;

const LENS: [usize; 4] = [3001, 17, 1000, 5];

/// Tensors at odd offsets of one buffer pair; tensors 1 and 3 in group 1.
fn setup(gpu: &device::Gpu, options: EngineOptions, configs: &[OptimizerConfig]) -> (Optimizer, wgpu::Buffer, wgpu::Buffer, Vec<usize>, Vec<f32>) {
    let mut starts = Vec::new();
    let mut at = 1;
    for len in LENS {
        starts.push(at);
        at += len + 3;
    }
    let p0 = random_params(60, at);
    let p = common::storage_buffer(gpu, &p0);
    let g = common::storage_buffer(gpu, &vec![0.0; at]);
    let slices: Vec<_> = starts.iter().zip(LENS).enumerate().map(|(i, (&s, len))| ParamSlice::range(&p, s as u64, &g, s as u64, len as u64).in_group(if configs.len() > 1 { (i % 2) as u32 } else { 0 })).collect();
    let opt = Optimizer::with_groups(&gpu.device, &gpu.queue, configs, &slices, options).unwrap();
    (opt, p, g, starts, p0)
}

fn tensor_grads(t: u64) -> Vec<Vec<f64>> {
    LENS.iter().enumerate().map(|(i, &len)| (0..len as u64).map(|j| 3.0 * uniform(61 + i as u64, t, j) as f64).collect()).collect()
}

fn upload(gpu: &device::Gpu, g: &wgpu::Buffer, starts: &[usize], grads: &[Vec<f64>], factor: f64) {
    for (s, gr) in starts.iter().zip(grads) {
        let v: Vec<f32> = gr.iter().map(|x| (x * factor) as f32).collect();
        gpu.queue.write_buffer(g, (*s * 4) as u64, bytemuck::cast_slice(&v));
    }
}

#[test]
fn clipping_matches_reference_and_norms_are_deterministic() {
    let gpu = require_gpu!();
    let decay: OptimizerConfig = AdamW { lr: 1e-2, weight_decay: 0.1, ..AdamW::default() }.into();
    let no_decay: OptimizerConfig = AdamW { lr: 1e-2, weight_decay: 0.0, ..AdamW::default() }.into();
    let max_norm = 5.0;
    // 8 KiB bindings: several windows, so partial sums span several launches.
    let options = EngineOptions { max_binding_bytes: Some(8192), grad_control: GradControl { max_norm: Some(max_norm), scaler: None }, ..EngineOptions::default() };
    let run = || {
        let (mut opt, p, g, starts, p0) = setup(gpu, options.clone(), &[decay, no_decay]);
        assert!(opt.dispatch_count() > 1);
        let mut refs: Vec<(ReferenceOptimizer, Vec<f64>)> = starts
            .iter()
            .zip(LENS)
            .enumerate()
            .map(|(i, (&s, len))| (ReferenceOptimizer::new(if i % 2 == 0 { decay } else { no_decay }, len).unwrap(), p0[s..s + len].iter().map(|&x| x as f64).collect()))
            .collect();
        let mut norms = Vec::new();
        for t in 0..15u64 {
            let grads = tensor_grads(t);
            upload(gpu, &g, &starts, &grads, 1.0);
            opt.step().unwrap();
            let gpu_norms = opt.read_grad_norms().unwrap();
            for (group, &gpu_norm) in gpu_norms.iter().enumerate().take(2) {
                // f64 norm of the f32 grads the GPU saw
                let sq: f64 = grads.iter().enumerate().filter(|(i, _)| i % 2 == group).flat_map(|(_, v)| v.iter().map(|x| (*x as f32 as f64).powi(2))).sum();
                let norm = sq.sqrt();
                assert!((gpu_norm as f64 - norm).abs() < 1e-5 * norm, "group {group}: norm {gpu_norm} vs {norm}");
                let clip = (max_norm / (norm + 1e-6)).min(1.0);
                assert!(clip < 1.0, "the test must actually clip");
                for (i, (r, pr)) in refs.iter_mut().enumerate().filter(|(i, _)| i % 2 == group) {
                    let gs: Vec<f64> = grads[i].iter().map(|x| (*x as f32 as f64) * clip).collect();
                    r.step(pr, &gs).unwrap();
                }
            }
            norms.push(gpu_norms);
        }
        let out = read_f32(&gpu.device, &gpu.queue, &p, 0, p.size() / 4).unwrap();
        for ((_, pr), &s) in refs.iter().zip(&starts) {
            for (j, want) in pr.iter().enumerate() {
                let got = out[s + j] as f64;
                assert!((got - want).abs() < 2e-5 * (1.0 + want.abs()), "tensor at {s} elem {j}: {got} vs {want}");
            }
        }
        norms
    };
    let a = run();
    let b = run();
    let bits = |v: &Vec<Vec<f32>>| v.iter().flatten().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a), bits(&b), "norms differ between runs");
}

/// Host model of torch.amp.GradScaler.update.
struct HostScaler {
    scale: f64,
    tracker: u32,
}

/// With a GradScaler the optimizer's step lives on the GPU: skipped steps
/// (including the very first) do not advance it, for every rule whose
/// scalars depend on t.
fn check_scaled(cfg: OptimizerConfig, poisoned: &[u64]) {
    let gpu = require_gpu!();
    let scaler = GradScaler { init_scale: 1024.0, growth_factor: 2.0, backoff_factor: 0.5, growth_interval: 3 };
    let options = EngineOptions { grad_control: GradControl { max_norm: None, scaler: Some(scaler) }, ..EngineOptions::default() };
    let (mut opt, p, g, starts, p0) = setup(gpu, options, &[cfg]);
    let mut refs: Vec<(ReferenceOptimizer, Vec<f64>)> = starts.iter().zip(LENS).map(|(&s, len)| (ReferenceOptimizer::new(cfg, len).unwrap(), p0[s..s + len].iter().map(|&x| x as f64).collect())).collect();
    let mut host = HostScaler { scale: 1024.0, tracker: 0 };
    let mut skipped = 0;
    let slot = opt.state_names().iter().position(|n| !n.is_empty());
    for t in 0..14u64 {
        let grads = tensor_grads(t);
        // The backward pass of a scaled loss: grads × scale (power of two, exact).
        upload(gpu, &g, &starts, &grads, host.scale);
        if poisoned.contains(&t) {
            let bad = if t % 2 == 1 { f32::NAN } else { f32::INFINITY };
            gpu.queue.write_buffer(&g, (starts[2] * 4 + 40) as u64, bytemuck::bytes_of(&bad));
        }
        let before = read_f32(&gpu.device, &gpu.queue, &p, 0, p.size() / 4).unwrap();
        let state_before = slot.map(|s| opt.read_state(s, 0).unwrap());
        opt.step().unwrap();
        let after = read_f32(&gpu.device, &gpu.queue, &p, 0, p.size() / 4).unwrap();
        let st = opt.read_grad_control().unwrap();
        if poisoned.contains(&t) {
            skipped += 1;
            assert_eq!(st.found_inf, 1, "step {t}: non-finite grad not found");
            assert!(before.iter().zip(&after).all(|(a, b)| a.to_bits() == b.to_bits()), "step {t}: params changed on a skipped step");
            if let (Some(s), Some(sb)) = (slot, &state_before) {
                let state_after = opt.read_state(s, 0).unwrap();
                assert!(sb.iter().zip(&state_after).all(|(a, b)| a.to_bits() == b.to_bits()), "step {t}: state changed on a skipped step");
            }
            host.scale *= 0.5;
            host.tracker = 0;
        } else {
            assert_eq!(st.found_inf, 0, "step {t}: clean step flagged");
            for ((r, pr), gr) in refs.iter_mut().zip(&grads) {
                let gs: Vec<f64> = gr.iter().map(|x| ((x * host.scale) as f32 as f64) / host.scale).collect();
                r.step(pr, &gs).unwrap();
            }
            host.tracker += 1;
            if host.tracker == scaler.growth_interval {
                host.scale *= 2.0;
                host.tracker = 0;
            }
        }
        assert_eq!(st.skipped, skipped, "step {t}");
        assert_eq!(st.scale as f64, host.scale, "step {t}: scale");
        assert_eq!(st.growth_tracker, host.tracker, "step {t}: growth tracker");
    }
    assert_eq!(opt.step_count() - skipped, refs[0].0.step, "device step = host step − skipped");
    let out = read_f32(&gpu.device, &gpu.queue, &p, 0, p.size() / 4).unwrap();
    for ((_, pr), &s) in refs.iter().zip(&starts) {
        for (j, want) in pr.iter().enumerate() {
            let got = out[s + j] as f64;
            assert!((got - want).abs() < 2e-5 * (1.0 + want.abs()), "{cfg:?}: tensor at {s} elem {j}: {got} vs {want}");
        }
    }
}

#[test]
fn loss_scaling_skips_non_finite_steps_bitwise_and_matches_reference() {
    check_scaled(Adam { lr: 1e-2, weight_decay: 0.05, ..Adam::default() }.into(), &[4, 5, 9]);
}

#[test]
fn loss_scaling_keeps_the_device_step_for_every_step_dependent_rule() {
    let configs: [OptimizerConfig; 5] = [
        Sgd { lr: 1e-2, momentum: 0.9, ..Sgd::default() }.into(),
        Adagrad { lr: 1e-2, lr_decay: 0.05, ..Adagrad::default() }.into(),
        Adamax { lr: 1e-2, ..Adamax::default() }.into(),
        NAdam { lr: 1e-2, ..NAdam::default() }.into(),
        RAdam { lr: 1e-2, betas: (0.9, 0.99), ..RAdam::default() }.into(),
    ];
    for cfg in configs {
        // the very first step skipped, and two later ones
        check_scaled(cfg, &[0, 6, 7]);
    }
}

/// Large finite grads are not "non-finite": the check tests the exponent
/// bits of each element, not the (overflowing) sum of squares.
#[test]
fn huge_finite_grads_are_not_skipped() {
    let gpu = require_gpu!();
    let scaler = GradScaler { init_scale: 1.0, ..GradScaler::default() };
    let options = EngineOptions { grad_control: GradControl { max_norm: None, scaler: Some(scaler) }, ..EngineOptions::default() };
    let (mut opt, p, g, starts, _) = setup(gpu, options, &[Sgd { lr: 0.1, ..Sgd::default() }.into()]);
    upload(gpu, &g, &starts, &tensor_grads(0), 1.0);
    gpu.queue.write_buffer(&g, (starts[0] * 4) as u64, bytemuck::bytes_of(&3.0e38f32));
    let before = read_f32(&gpu.device, &gpu.queue, &p, 0, p.size() / 4).unwrap();
    opt.step().unwrap();
    let st = opt.read_grad_control().unwrap();
    assert_eq!(st.found_inf, 0);
    assert!(opt.read_grad_norms().unwrap()[0].is_infinite(), "the sum of squares overflows");
    let after = read_f32(&gpu.device, &gpu.queue, &p, 0, p.size() / 4).unwrap();
    assert!(before.iter().zip(&after).any(|(a, b)| a != b), "the step was not applied");
}

#[test]
fn invalid_grad_control_is_a_typed_error() {
    let gpu = require_gpu!();
    let p = common::storage_buffer(gpu, &[1.0; 8]);
    let g = common::storage_buffer(gpu, &[1.0; 8]);
    for control in [
        GradControl { max_norm: Some(-1.0), scaler: None },
        GradControl { max_norm: Some(f64::NAN), scaler: None },
        GradControl { max_norm: None, scaler: Some(GradScaler { backoff_factor: 1.5, ..GradScaler::default() }) },
        GradControl { max_norm: None, scaler: Some(GradScaler { growth_interval: 0, ..GradScaler::default() }) },
    ] {
        let options = EngineOptions { grad_control: control, ..EngineOptions::default() };
        let r = Optimizer::with_groups(&gpu.device, &gpu.queue, &[Sgd::default().into()], &[ParamSlice::whole(&p, &g)], options);
        assert!(matches!(r, Err(OptimError::InvalidHyperparameter { .. })), "{control:?}: {:?}", r.err());
    }
}

/// Past 1024 steps the device-step factor table grows (and every bind group
/// is rebuilt) without changing the trajectory.
#[test]
fn loss_scaling_runs_past_the_factor_table_growth() {
    let gpu = require_gpu!();
    let n = 61usize;
    let cfg: OptimizerConfig = Adam { lr: 1e-3, ..Adam::default() }.into();
    let p0 = random_params(70, n);
    let p = common::storage_buffer(gpu, &p0);
    let g = common::storage_buffer(gpu, &vec![0.0; n]);
    let options = EngineOptions { grad_control: GradControl { max_norm: None, scaler: Some(GradScaler { init_scale: 1.0, growth_interval: 1 << 30, ..GradScaler::default() }) }, ..EngineOptions::default() };
    let mut opt = Optimizer::with_groups(&gpu.device, &gpu.queue, &[cfg], &[ParamSlice::whole(&p, &g)], options).unwrap();
    let mut r = ReferenceOptimizer::new(cfg, n).unwrap();
    let mut pr: Vec<f64> = p0.iter().map(|&x| x as f64).collect();
    let grads: Vec<f32> = (0..n as u64).map(|j| uniform(71, 0, j)).collect();
    gpu.queue.write_buffer(&g, 0, bytemuck::cast_slice(&grads));
    let g64: Vec<f64> = grads.iter().map(|&x| x as f64).collect();
    for _ in 0..(1100 / 50) {
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        for _ in 0..50 {
            opt.record_step(&mut enc).unwrap();
            r.step(&mut pr, &g64).unwrap();
        }
        gpu.queue.submit([enc.finish()]);
    }
    assert_eq!(opt.step_count(), 1100);
    let out = read_f32(&gpu.device, &gpu.queue, &p, 0, n as u64).unwrap();
    // 1100 steps of about lr each: the f32 rounding of every step adds up to
    // about 1100 · 2⁻²⁴ · (|p| + |Δp|); a wrong bias correction after the
    // table growth (step 1024) would be off by orders of magnitude more.
    let worst = out.iter().zip(&pr).map(|(a, b)| (*a as f64 - b).abs() / (1.0 + b.abs())).fold(0.0, f64::max);
    assert!(worst < 1100.0 * 4.0 * 2f64.powi(-24), "after 1100 scaled steps: {worst}");
}
