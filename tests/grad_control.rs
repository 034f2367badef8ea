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

/// Two tensors, one per group: grads (3, 0) and (4): the global norm is 5,
/// the groups' 3 and 4. SGD with lr 1 moves each param by its clipped grad.
#[test]
fn clipping_takes_one_norm_over_every_group_by_default() {
    let gpu = require_gpu!();
    let sgd = |lr| OptimizerConfig::from(Sgd { lr, ..Sgd::default() });
    for (scope, norms, clips) in [(ClipScope::Global, vec![5.0f32], [1.0 / (5.0 + 1e-6); 2]), (ClipScope::PerGroup, vec![3.0, 4.0], [1.0 / (3.0 + 1e-6), 1.0 / (4.0 + 1e-6)])] {
        let p = common::storage_buffer(gpu, &[0.0; 8]);
        let g = common::storage_buffer(gpu, &[3.0, 0.0, 0.0, 0.0, 4.0, 0.0, 0.0, 0.0]);
        let slices = [ParamSlice::range(&p, 0, &g, 0, 2), ParamSlice::range(&p, 4, &g, 4, 1).in_group(1)];
        let options = EngineOptions { grad_control: GradControl { max_norm: Some(1.0), clip_scope: scope, ..GradControl::default() }, ..EngineOptions::default() };
        let mut opt = Optimizer::with_groups(&gpu.device, &gpu.queue, &[sgd(1.0), sgd(1.0)], &slices, options).unwrap();
        opt.step().unwrap();
        assert_eq!(opt.read_grad_norms().unwrap(), norms, "{scope:?}");
        let got = read_f32(&gpu.device, &gpu.queue, &p, 0, 8).unwrap();
        let want = [-3.0 * clips[0], 0.0, -4.0 * clips[1]];
        for (got, want) in [got[0], got[1], got[4]].into_iter().zip(want) {
            assert!((got as f64 - want).abs() < 1e-6, "{scope:?}: {got} vs {want}");
        }
    }
}

#[test]
fn global_clipping_matches_reference_and_norms_are_deterministic() {
    clipping_matches_reference(ClipScope::Global);
}

#[test]
fn per_group_clipping_matches_reference_and_norms_are_deterministic() {
    clipping_matches_reference(ClipScope::PerGroup);
}

/// 15 clipped AdamW steps of two groups against the f64 reference; the
/// norms of two runs are bitwise equal.
fn clipping_matches_reference(scope: ClipScope) {
    let gpu = require_gpu!();
    let decay: OptimizerConfig = AdamW { lr: 1e-2, weight_decay: 0.1, ..AdamW::default() }.into();
    let no_decay: OptimizerConfig = AdamW { lr: 1e-2, weight_decay: 0.0, ..AdamW::default() }.into();
    let max_norm = 5.0;
    // 8 KiB bindings: several windows, so partial sums span several launches.
    let options = EngineOptions { max_binding_bytes: Some(8192), grad_control: GradControl { max_norm: Some(max_norm), clip_scope: scope, ..GradControl::default() }, ..EngineOptions::default() };
    // The groups each norm covers.
    let covers: Vec<Vec<usize>> = match scope {
        ClipScope::Global => vec![vec![0, 1]],
        ClipScope::PerGroup => vec![vec![0], vec![1]],
    };
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
            assert_eq!(gpu_norms.len(), covers.len());
            for (&gpu_norm, groups) in gpu_norms.iter().zip(&covers) {
                // f64 norm of the f32 grads the GPU saw
                let sq: f64 = grads.iter().enumerate().filter(|(i, _)| groups.contains(&(i % 2))).flat_map(|(_, v)| v.iter().map(|x| (*x as f32 as f64).powi(2))).sum();
                let norm = sq.sqrt();
                assert!((gpu_norm as f64 - norm).abs() < 1e-5 * norm, "groups {groups:?}: norm {gpu_norm} vs {norm}");
                let clip = (max_norm / (norm + 1e-6)).min(1.0);
                assert!(clip < 1.0, "the test must actually clip");
                for (i, (r, pr)) in refs.iter_mut().enumerate().filter(|(i, _)| groups.contains(&(i % 2))) {
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
    let options = EngineOptions { grad_control: GradControl { max_norm: None, scaler: Some(scaler), ..GradControl::default() }, ..EngineOptions::default() };
    let (mut opt, p, g, starts, p0) = setup(gpu, options, &[cfg]);
    let mut refs: Vec<(ReferenceOptimizer, Vec<f64>)> = starts.iter().zip(LENS).map(|(&s, len)| (ReferenceOptimizer::new(cfg, len).unwrap(), p0[s..s + len].iter().map(|&x| x as f64).collect())).collect();
    let mut host = HostScaler { scale: 1024.0, tracker: 0 };
    let mut skipped = 0;
    let state_of = |opt: &Optimizer| -> Vec<Vec<f32>> {
        let slots: Vec<usize> = opt.state_names().iter().enumerate().filter(|(_, n)| !n.is_empty()).map(|(s, _)| s).collect();
        slots.iter().flat_map(|&s| (0..LENS.len()).map(move |i| (s, i))).map(|(s, i)| opt.read_state(s, i).unwrap()).collect()
    };
    for t in 0..14u64 {
        let grads = tensor_grads(t);
        // The backward pass of a scaled loss: grads × scale (power of two, exact).
        upload(gpu, &g, &starts, &grads, host.scale);
        if poisoned.contains(&t) {
            let bad = if t % 2 == 1 { f32::NAN } else { f32::INFINITY };
            gpu.queue.write_buffer(&g, (starts[2] * 4 + 40) as u64, bytemuck::bytes_of(&bad));
        }
        let before = read_f32(&gpu.device, &gpu.queue, &p, 0, p.size() / 4).unwrap();
        let state_before = state_of(&opt);
        opt.step().unwrap();
        let after = read_f32(&gpu.device, &gpu.queue, &p, 0, p.size() / 4).unwrap();
        let st = opt.read_grad_control().unwrap();
        if poisoned.contains(&t) {
            skipped += 1;
            assert_eq!(st.found_inf, 1, "step {t}: non-finite grad not found");
            assert!(before.iter().zip(&after).all(|(a, b)| a.to_bits() == b.to_bits()), "step {t}: params changed on a skipped step");
            // every state slot of every tensor, not only the poisoned one's
            let state_after = state_of(&opt);
            assert_eq!(state_before.len(), state_after.len());
            for (sb, sa) in state_before.iter().zip(&state_after) {
                assert!(sb.iter().zip(sa).all(|(a, b)| a.to_bits() == b.to_bits()), "step {t}: state changed on a skipped step");
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
    let configs: [OptimizerConfig; 6] = [
        Sgd { lr: 1e-2, momentum: 0.9, ..Sgd::default() }.into(),
        Adagrad { lr: 1e-2, lr_decay: 0.05, ..Adagrad::default() }.into(),
        Adamax { lr: 1e-2, ..Adamax::default() }.into(),
        NAdam { lr: 1e-2, ..NAdam::default() }.into(),
        RAdam { lr: 1e-2, betas: (0.9, 0.99), ..RAdam::default() }.into(),
        // the first difference is zero at the first step that runs
        Adan { lr: 1e-2, ..Adan::default() }.into(),
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
    let options = EngineOptions { grad_control: GradControl { max_norm: None, scaler: Some(scaler), ..GradControl::default() }, ..EngineOptions::default() };
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
        GradControl { max_norm: Some(-1.0), scaler: None, ..GradControl::default() },
        GradControl { max_norm: Some(f64::NAN), scaler: None, ..GradControl::default() },
        GradControl { max_norm: None, scaler: Some(GradScaler { backoff_factor: 1.5, ..GradScaler::default() }), ..GradControl::default() },
        GradControl { max_norm: None, scaler: Some(GradScaler { growth_interval: 0, ..GradScaler::default() }), ..GradControl::default() },
    ] {
        let options = EngineOptions { grad_control: control, ..EngineOptions::default() };
        let r = Optimizer::with_groups(&gpu.device, &gpu.queue, &[Sgd::default().into()], &[ParamSlice::whole(&p, &g)], options);
        assert!(matches!(r, Err(OptimError::InvalidHyperparameter { .. })), "{control:?}: {:?}", r.err());
    }
}

/// Past 1024 steps the device-step factor table grows (and every bind group
/// is rebuilt) without changing the trajectory: 1100 steps with a GradScaler
/// (scale 1, no skips) agree with the same steps without one to within the
/// one extra f32 rounding per step the device-side step costs (`lr·(1/(1−β₁ᵗ))`
/// formed in f32), ≤ 2·2⁻²⁴·Σₜ|Δθₜ|, and both match the reference. The
/// grads vary every step: with constant grads Adam's bias-corrected step does
/// not depend on t at all. A table row off by one after the growth changes
/// the bias correction by about 1/t, hundreds of those roundings.
#[test]
fn loss_scaling_runs_past_the_factor_table_growth() {
    let gpu = require_gpu!();
    let n = 61usize;
    let cfg: OptimizerConfig = Adam { lr: 5e-2, betas: (0.9, 0.99999), ..Adam::default() }.into();
    let p0 = random_params(70, n);
    let scaler = GradControl { scaler: Some(GradScaler { init_scale: 1.0, growth_interval: 1 << 30, ..GradScaler::default() }), ..GradControl::default() };
    let mut runs: Vec<(Optimizer, wgpu::Buffer, wgpu::Buffer)> = [scaler, GradControl::default()]
        .into_iter()
        .map(|control| {
            let (p, g) = (common::storage_buffer(gpu, &p0), common::storage_buffer(gpu, &vec![0.0; n]));
            let options = EngineOptions { grad_control: control, ..EngineOptions::default() };
            (Optimizer::with_groups(&gpu.device, &gpu.queue, &[cfg], &[ParamSlice::whole(&p, &g)], options).unwrap(), p, g)
        })
        .collect();
    let mut r = ReferenceOptimizer::new(cfg, n).unwrap();
    let mut pr: Vec<f64> = p0.iter().map(|&x| x as f64).collect();
    let (mut scale, mut moved) = (pr.iter().map(|x| x.abs()).collect::<Vec<f64>>(), vec![0f64; n]);
    for t in 0..1100u64 {
        let grads: Vec<f32> = (0..n as u64).map(|j| uniform(71, t, j)).collect();
        for (opt, _, g) in &mut runs {
            gpu.queue.write_buffer(g, 0, bytemuck::cast_slice(&grads));
            opt.step().unwrap();
        }
        let before = pr.clone();
        r.step(&mut pr, &grads.iter().map(|&x| x as f64).collect::<Vec<_>>()).unwrap();
        for j in 0..n {
            scale[j] += pr[j].abs() + (pr[j] - before[j]).abs();
            moved[j] += (pr[j] - before[j]).abs();
        }
    }
    assert_eq!(runs[0].0.step_count(), 1100);
    let u = 2f64.powi(-24);
    let [device, host] = [&runs[0].1, &runs[1].1].map(|p| read_f32(&gpu.device, &gpu.queue, p, 0, n as u64).unwrap());
    let extra = (0..n).map(|j| (device[j] as f64 - host[j] as f64).abs() / (u * moved[j])).fold(0.0, f64::max);
    let k_needed = (0..n).map(|j| (device[j] as f64 - pr[j]).abs() / (u * scale[j])).fold(0.0, f64::max);
    eprintln!("after 1100 scaled steps: device-step vs host-step {extra:.3} roundings of Σ|Δθ| (bound 2); k needed {k_needed:.2} (bound {})", cfg.tolerance_k());
    assert!(extra <= 2.0, "the device-side step drifted from the host's: {extra}");
    assert!(k_needed <= cfg.tolerance_k(), "after 1100 scaled steps: k needed {k_needed}");
}

/// `skip_nonfinite` without a scaler: a step whose grads hold a NaN or an
/// infinity (in any tensor) is skipped for every tensor — params and every
/// state slot bitwise unchanged — and counted; the optimizer's step does
/// not advance, so Adam's bias corrections match a reference that never
/// saw those steps. Off by default: PyTorch steps into the NaN, and so does
/// the engine.
#[test]
fn skip_nonfinite_skips_and_counts_bad_steps() {
    let gpu = require_gpu!();
    let cfg: OptimizerConfig = Adam { lr: 1e-2, ..Adam::default() }.into();
    let options = EngineOptions { grad_control: GradControl { skip_nonfinite: true, ..GradControl::default() }, ..EngineOptions::default() };
    let (mut opt, p, g, starts, p0) = setup(gpu, options, &[cfg]);
    let mut refs: Vec<(ReferenceOptimizer, Vec<f64>)> = starts.iter().zip(LENS).map(|(&s, len)| (ReferenceOptimizer::new(cfg, len).unwrap(), p0[s..s + len].iter().map(|&x| x as f64).collect())).collect();
    let bad_steps = [0u64, 5, 6];
    for t in 0..12u64 {
        let grads = tensor_grads(t);
        upload(gpu, &g, &starts, &grads, 1.0);
        if bad_steps.contains(&t) {
            let bad = if t == 5 { f32::NAN } else { f32::NEG_INFINITY };
            gpu.queue.write_buffer(&g, (starts[3] * 4 + 8) as u64, bytemuck::bytes_of(&bad));
        }
        let before: Vec<Vec<f32>> = std::iter::once(read_f32(&gpu.device, &gpu.queue, &p, 0, p.size() / 4).unwrap()).chain((0..LENS.len()).flat_map(|i| [0, 1].map(|s| opt.read_state(s, i).unwrap()))).collect();
        opt.step().unwrap();
        let after: Vec<Vec<f32>> = std::iter::once(read_f32(&gpu.device, &gpu.queue, &p, 0, p.size() / 4).unwrap()).chain((0..LENS.len()).flat_map(|i| [0, 1].map(|s| opt.read_state(s, i).unwrap()))).collect();
        let unchanged = before.iter().zip(&after).all(|(a, b)| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()));
        if bad_steps.contains(&t) {
            assert!(unchanged, "step {t}: a non-finite step changed params or state");
        } else {
            assert!(!unchanged, "step {t}: a clean step was skipped");
            for ((r, pr), gr) in refs.iter_mut().zip(&grads) {
                r.step(pr, &gr.iter().map(|&x| x as f32 as f64).collect::<Vec<_>>()).unwrap();
            }
        }
    }
    assert_eq!(opt.skipped_steps().unwrap(), 3);
    assert_eq!(opt.device_step_count().unwrap(), 9);
    let out = read_f32(&gpu.device, &gpu.queue, &p, 0, p.size() / 4).unwrap();
    for ((_, pr), &s) in refs.iter().zip(&starts) {
        for (j, want) in pr.iter().enumerate() {
            assert!((out[s + j] as f64 - want).abs() < 2e-5 * (1.0 + want.abs()), "tensor at {s} elem {j}: {} vs {want}", out[s + j]);
        }
    }

    // off by default: the NaN reaches the params, as in PyTorch
    let (mut plain, p, g, starts, _) = setup(gpu, EngineOptions::default(), &[cfg]);
    upload(gpu, &g, &starts, &tensor_grads(0), 1.0);
    gpu.queue.write_buffer(&g, (starts[3] * 4 + 8) as u64, bytemuck::bytes_of(&f32::NAN));
    plain.step().unwrap();
    assert!(read_f32(&gpu.device, &gpu.queue, &p, 0, p.size() / 4).unwrap()[starts[3] + 2].is_nan());
    assert_eq!(plain.skipped_steps().unwrap(), 0);
}

/// Adan's `max_grad_norm` is the engine's global-norm clipping with Adan's
/// eps in the clip factor: bitwise the same steps as setting it there, and
/// a different setting there, or a per-group scope, is refused.
#[test]
fn adan_max_grad_norm_is_the_engines_global_clipping() {
    let gpu = require_gpu!();
    let own: OptimizerConfig = Adan { max_grad_norm: 2.0, lr: 1e-2, ..Adan::default() }.into();
    let plain: OptimizerConfig = Adan { lr: 1e-2, ..Adan::default() }.into();
    let explicit = EngineOptions { grad_control: GradControl { max_norm: Some(2.0), norm_eps: Some(1e-8), ..GradControl::default() }, ..EngineOptions::default() };
    let run = |config: OptimizerConfig, options: EngineOptions| {
        let (mut opt, p, g, starts, _) = setup(gpu, options, &[config, config]);
        for t in 0..5 {
            upload(gpu, &g, &starts, &tensor_grads(t), 1.0);
            opt.step().unwrap();
        }
        read_f32(&gpu.device, &gpu.queue, &p, 0, p.size() / 4).unwrap()
    };
    let (folded, set, unclipped) = (run(own, EngineOptions::default()), run(plain, explicit.clone()), run(plain, EngineOptions::default()));
    assert!(folded.iter().zip(&set).all(|(a, b)| a.to_bits() == b.to_bits()), "max_grad_norm differs from GradControl::max_norm");
    assert!(folded != unclipped, "the grads' norm is past 2: max_grad_norm must clip");
    let (p, g) = (common::storage_buffer(gpu, &[1.0; 8]), common::storage_buffer(gpu, &[1.0; 8]));
    for control in [GradControl { max_norm: Some(1.0), ..GradControl::default() }, GradControl { clip_scope: ClipScope::PerGroup, ..GradControl::default() }] {
        let options = EngineOptions { grad_control: control, ..EngineOptions::default() };
        let refused = Optimizer::with_groups(&gpu.device, &gpu.queue, &[own], &[ParamSlice::whole(&p, &g)], options);
        assert!(matches!(refused, Err(OptimError::InvalidOptions(_))), "{control:?}");
    }
    // the clipping is built in: a checkpoint that clips otherwise does not load
    let bytes = Optimizer::new(&gpu.device, &gpu.queue, own, &[ParamSlice::whole(&p, &g)]).unwrap().checkpoint_bytes().unwrap();
    let other: OptimizerConfig = Adan { max_grad_norm: 1.0, lr: 1e-2, ..Adan::default() }.into();
    let mut opt = Optimizer::new(&gpu.device, &gpu.queue, other, &[ParamSlice::whole(&p, &g)]).unwrap();
    assert!(matches!(opt.load_checkpoint_bytes(&bytes), Err(OptimError::Checkpoint(_))));
}
