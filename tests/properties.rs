//! Behavioural properties: zero gradients, determinism, chunking, several
//! tensors in one dispatch, convergence, and the textbook NAG equivalence.

mod common;

use wgpu_optim::device::read_f32;
use wgpu_optim::reference::ReferenceOptimizer;
use wgpu_optim::surfaces::{trajectory, Surface};
use wgpu_optim::validate::{all_cases, random_params, run_case, uniform, Case, Workload};
use wgpu_optim::*;

#[test]
fn zero_grads_leave_params_unchanged_without_weight_decay() {
    let gpu = require_gpu!();
    let n = 1001;
    let p0 = random_params(11, n);
    for c in all_cases() {
        let mut config = c.config;
        config.set_weight_decay(0.0);
        // ASGD's `lambd` is a second decay, θ·(1 − lambd·η), on every step.
        if let OptimizerConfig::Asgd(a) = config {
            config = Asgd { lambd: 0.0, ..a }.into();
        }
        let p = common::storage_buffer(gpu, &p0);
        let g = common::storage_buffer(gpu, &vec![0.0; n]);
        let mut opt = Optimizer::new(&gpu.device, &gpu.queue, config, &[ParamSlice::whole(&p, &g)]).unwrap();
        for _ in 0..10 {
            opt.step().unwrap();
        }
        let out = read_f32(&gpu.device, &gpu.queue, &p, 0, n as u64).unwrap();
        let same = out.iter().zip(&p0).all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "{}: zero grads changed params", c.name);
    }
}

#[test]
fn runs_are_bitwise_identical() {
    let gpu = require_gpu!();
    for c in all_cases() {
        let a = run_case(&gpu.device, &gpu.queue, &c, Workload { n: 4099, steps: 20, seed: 5 }, EngineOptions::default()).unwrap();
        let b = run_case(&gpu.device, &gpu.queue, &c, Workload { n: 4099, steps: 20, seed: 5 }, EngineOptions::default()).unwrap();
        let same = a.gpu_params.iter().zip(&b.gpu_params).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{}: two runs differ", c.name);
    }
}

#[test]
fn forced_chunking_is_bitwise_identical_and_correct() {
    let gpu = require_gpu!();
    let n = 100_003;
    // 16 KiB per binding: the vector is split into many dispatches.
    let small = EngineOptions { max_binding_bytes: Some(16 * 1024), ..EngineOptions::default() };
    for c in all_cases() {
        let chunked = run_case(&gpu.device, &gpu.queue, &c, Workload { n, steps: 10, seed: 9 }, small.clone()).unwrap();
        let whole = run_case(&gpu.device, &gpu.queue, &c, Workload { n, steps: 10, seed: 9 }, EngineOptions::default()).unwrap();
        assert!(chunked.passed(), "{}: chunked run out of bound", c.name);
        let same = chunked.gpu_params.iter().zip(&whole.gpu_params).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{}: chunked and unchunked differ", c.name);
    }
}

/// Several tensors as ranges of one buffer, in two param groups, stepped in
/// one dispatch, against per-tensor references. `align` 1 with a start of 3
/// puts tensors at odd element offsets (scalar-access kernel); `align` 4 puts
/// them on whole vec4s (vec4 kernel with scalar tails).
fn many_tensors_in_one_buffer(first: usize, align: usize, expect_vec4: bool) {
    let gpu = require_gpu!();
    let lens = [1usize, 3, 255, 257, 1000, 17];
    let gap = 5usize;
    let mut starts = Vec::new();
    let mut at = first;
    for &len in &lens {
        starts.push(at);
        at = (at + len + gap).next_multiple_of(align);
    }
    let total = at + 3;
    let p0 = random_params(21, total);
    let p = common::storage_buffer(gpu, &p0);
    let g = common::storage_buffer(gpu, &vec![0.0; total]);
    let decay = AdamW { lr: 1e-2, weight_decay: 0.1, ..AdamW::default() };
    let no_decay = AdamW { lr: 1e-2, weight_decay: 0.0, ..AdamW::default() };
    let slices: Vec<ParamSlice> = starts
        .iter()
        .zip(&lens)
        .enumerate()
        .map(|(i, (&at, &len))| ParamSlice::range(&p, at as u64, &g, at as u64, len as u64).in_group((i % 2) as u32))
        .collect();
    let mut opt = Optimizer::with_groups(&gpu.device, &gpu.queue, &[decay.into(), no_decay.into()], &slices, EngineOptions::default()).unwrap();
    assert_eq!(opt.dispatch_count(), 1);
    assert_eq!(opt.uses_vec4(), expect_vec4);
    let mut refs: Vec<(ReferenceOptimizer, Vec<f64>)> = slices
        .iter()
        .map(|s| {
            let cfg: OptimizerConfig = if s.group == 0 { decay.into() } else { no_decay.into() };
            let start = s.param_offset as usize;
            (ReferenceOptimizer::new(cfg, s.len() as usize).unwrap(), p0[start..start + s.len() as usize].iter().map(|&x| x as f64).collect())
        })
        .collect();
    for t in 0..30u64 {
        let grads: Vec<f32> = (0..total).map(|i| uniform(21, t, i as u64)).collect();
        gpu.queue.write_buffer(&g, 0, bytemuck::cast_slice(&grads));
        opt.step().unwrap();
        for (s, (r, pr)) in slices.iter().zip(refs.iter_mut()) {
            let start = s.param_offset as usize;
            let gs: Vec<f64> = grads[start..start + s.len() as usize].iter().map(|&x| x as f64).collect();
            r.step(pr, &gs).unwrap();
        }
    }
    let out = read_f32(&gpu.device, &gpu.queue, &p, 0, total as u64).unwrap();
    let mut inside = vec![false; total];
    for (s, (_, pr)) in slices.iter().zip(&refs) {
        let start = s.param_offset as usize;
        for (j, want) in pr.iter().enumerate() {
            let got = out[start + j] as f64;
            assert!((got - want).abs() < 1e-5 * (1.0 + want.abs()), "slice at {start} elem {j}: {got} vs {want}");
            inside[start + j] = true;
        }
    }
    // Everything between and around the tensors is untouched.
    for k in (0..total).filter(|&k| !inside[k]) {
        assert_eq!(out[k].to_bits(), p0[k].to_bits(), "element {k} outside every tensor changed");
    }
}

#[test]
fn many_tensors_at_odd_offsets_match_reference() {
    many_tensors_in_one_buffer(3, 1, false);
}

#[test]
fn many_tensors_on_vec4_boundaries_match_reference() {
    many_tensors_in_one_buffer(4, 4, true);
}

/// The scalar, vec4 and wide (64-bit packed, where the device has
/// `SHADER_INT64`) access forms give bitwise the same params, for every
/// validation case (every rule and option set), with f32 and bf16 state,
/// with and without global-norm clipping (scalar access: without; its
/// shorter rows sum the norm in another order).
#[test]
fn access_forms_are_bitwise_identical() {
    let gpu = require_gpu!();
    let has_wide = gpu.device.features().contains(wgpu::Features::SHADER_INT64);
    let forms = [
        (Access::Wide, EngineOptions { wide: WideAccess::Always, ..EngineOptions::default() }),
        (Access::Vec4, EngineOptions { wide: WideAccess::Never, ..EngineOptions::default() }),
        (Access::Scalar, EngineOptions { vec4: false, ..EngineOptions::default() }),
    ];
    let variants = [(StateFormat::F32, None), (StateFormat::F32, Some(0.5)), (StateFormat::Bf16 { seed: 7 }, None)];
    let work = Workload { n: 4099, steps: 10, seed: 3 };
    for c in all_cases() {
        for (state_format, max_norm) in variants {
            if state_format != StateFormat::F32 && c.config.state().used().any(|(_, s)| s.copy_of_param) {
                continue; // an iterate in the state is f32 only (tests/low_precision.rs checks the refusal)
            }
            let mut runs = Vec::new();
            for (want, options) in &forms {
                // The scalar kernel's rows are shorter (1 unit per
                // invocation), so its norm sums in another order.
                if max_norm.is_some() && *want == Access::Scalar {
                    continue;
                }
                let options = EngineOptions { state_format, grad_control: GradControl { max_norm, ..GradControl::default() }, ..options.clone() };
                let r = run_case(&gpu.device, &gpu.queue, &c, work, options).unwrap();
                let expected = if *want == Access::Wide && !has_wide { Access::Vec4 } else { *want };
                assert_eq!(r.access, expected, "{}: the run did not use the {want:?} kernel", c.name);
                runs.push(r);
            }
            for (r, (form, _)) in runs.iter().zip(&forms).skip(1) {
                let same = r.gpu_params.iter().zip(&runs[0].gpu_params).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "{} ({state_format:?}, max_norm {max_norm:?}): {form:?} and wide kernels differ", c.name);
            }
        }
    }
}

fn distance(a: [f32; 2], b: [f64; 2]) -> f64 {
    ((a[0] as f64 - b[0]).powi(2) + (a[1] as f64 - b[1]).powi(2)).sqrt()
}

/// Each rule, with hyperparameters suited to the surface, gets close to the
/// minimum. The whole loop (gradient kernel + fused step) runs on the GPU.
#[test]
fn every_rule_converges_on_quadratic_and_rosenbrock() {
    let gpu = require_gpu!();
    let configs: Vec<(Rule, OptimizerConfig)> = vec![
        (Rule::Sgd, Sgd { lr: 2e-3, ..Sgd::default() }.into()),
        (Rule::Momentum, Sgd { lr: 1e-3, momentum: 0.9, ..Sgd::default() }.into()),
        (Rule::Nag, Sgd { lr: 1e-3, momentum: 0.9, nesterov: true, ..Sgd::default() }.into()),
        (Rule::Adagrad, Adagrad { lr: 0.5, ..Adagrad::default() }.into()),
        (Rule::RmsProp, RmsProp { lr: 1e-3, ..RmsProp::default() }.into()),
        (Rule::Adadelta, Adadelta { rho: 0.999, eps: 1e-5, ..Adadelta::default() }.into()),
        (Rule::Adam, Adam { lr: 2e-2, ..Adam::default() }.into()),
        (Rule::AdamW, AdamW { lr: 2e-2, weight_decay: 0.0, ..AdamW::default() }.into()),
        (Rule::Asgd, Asgd { lr: 2e-3, lambd: 0.0, t0: 100.0, ..Asgd::default() }.into()),
        (Rule::Rprop, Rprop::default().into()),
    ];
    for (rule, config) in configs {
        let q = trajectory(&gpu.device, &gpu.queue, Surface::Quadratic, config, [1.5, -1.0], 4000).unwrap();
        let d = distance(*q.last().unwrap(), [0.0, 0.0]);
        assert!(d < 1e-3, "{rule:?} on the quadratic ends {d} from the minimum");

        let r = trajectory(&gpu.device, &gpu.queue, Surface::Rosenbrock, config, [-1.5, 2.0], 12_000).unwrap();
        let last = *r.last().unwrap();
        let (d, f) = (distance(last, [1.0, 1.0]), Surface::Rosenbrock.value(last[0] as f64, last[1] as f64));
        if rule == Rule::Adadelta {
            // Adadelta crawls along the Rosenbrock valley: require a 95 % drop
            // of f from its start value 12.5 rather than the optimum itself.
            assert!(f < 0.05 * 12.5, "Adadelta on Rosenbrock: f = {f}");
        } else {
            assert!(d < 2e-2, "{rule:?} on Rosenbrock ends {d} from (1, 1), f = {f}");
        }
    }
}

/// Sutskever's NAG, v ← μv − lr·∇f(θ + μv), θ ← θ + v, with the gradient
/// taken at the look-ahead point, equals PyTorch's nesterov iterate p after
/// the change of variables p = θ + μv, and θ = p + lr·μ·b recovers it from
/// the GPU's momentum buffer b.
#[test]
fn textbook_nag_matches_nesterov_option() {
    let gpu = require_gpu!();
    let n = 257;
    let a: Vec<f64> = (0..n).map(|i| 0.5 + 1.5 * (uniform(4, 0, i as u64) as f64 + 1.0)).collect();
    // f(x) = Σ a_i x_i²/2 + 0.05 x_i⁴, gradient computed here.
    let grad = |x: &[f64]| -> Vec<f64> { x.iter().zip(&a).map(|(x, a)| a * x + 0.2 * x.powi(3)).collect() };
    let cfg = Sgd { lr: 0.05, momentum: 0.9, nesterov: true, ..Sgd::default() };
    let theta0 = random_params(4, n);
    let p = common::storage_buffer(gpu, &theta0);
    let g = common::storage_buffer(gpu, &vec![0.0; n]);
    let mut opt = Optimizer::new(&gpu.device, &gpu.queue, cfg.into(), &[ParamSlice::whole(&p, &g)]).unwrap();
    let mut theta: Vec<f64> = theta0.iter().map(|&x| x as f64).collect();
    let mut v = vec![0.0; n];
    for _ in 0..60 {
        // textbook step, f64
        let look: Vec<f64> = theta.iter().zip(&v).map(|(t, v)| t + cfg.momentum * v).collect();
        let gl = grad(&look);
        for i in 0..n {
            v[i] = cfg.momentum * v[i] - cfg.lr * gl[i];
            theta[i] += v[i];
        }
        // GPU step with the gradient at the GPU's current iterate
        let pg = read_f32(&gpu.device, &gpu.queue, &p, 0, n as u64).unwrap();
        let gg: Vec<f32> = grad(&pg.iter().map(|&x| x as f64).collect::<Vec<_>>()).iter().map(|&x| x as f32).collect();
        gpu.queue.write_buffer(&g, 0, bytemuck::cast_slice(&gg));
        opt.step().unwrap();
    }
    let pg = read_f32(&gpu.device, &gpu.queue, &p, 0, n as u64).unwrap();
    let b = opt.read_state(0, 0).unwrap();
    let mut worst = 0f64;
    for i in 0..n {
        let look = theta[i] + cfg.momentum * v[i];
        worst = worst.max((pg[i] as f64 - look).abs());
        let recovered = cfg.textbook_nag_point(pg[i] as f64, b[i] as f64);
        worst = worst.max((recovered - theta[i]).abs());
    }
    assert!(worst < 1e-5, "textbook NAG and nesterov differ by {worst}");
    // The check has teeth: the textbook iterate θ itself (not the look-ahead
    // point) is measurably far from the GPU's p.
    let apart = (0..n).map(|i| (pg[i] as f64 - theta[i]).abs()).fold(0.0, f64::max);
    assert!(apart > 1e-3, "θ and the look-ahead point coincide ({apart}); the test would be vacuous");
}

/// A logical vector larger than a buffer (forced here by a 64 KiB buffer cap,
/// as `max_buffer_size` would on a device) is split across several arena
/// buffers and stepped bitwise-identically to the same tensors in one buffer.
#[test]
fn tensors_split_across_buffers_match_one_buffer_bitwise() {
    let gpu = require_gpu!();
    let lens = [100_003u64, 5, 4099, 1];
    let config: OptimizerConfig = AdamW { lr: 1e-2, amsgrad: true, ..AdamW::default() }.into();
    let run = |max_bytes: u64| {
        let arena = ParamArena::with_max_buffer_bytes(&gpu.device, &lens, max_bytes).unwrap();
        for (i, &len) in lens.iter().enumerate() {
            arena.write_params(&gpu.queue, i, &random_params(30 + i as u64, len as usize)).unwrap();
        }
        let mut opt = Optimizer::new(&gpu.device, &gpu.queue, config, &arena.slices()).unwrap();
        for t in 0..10u64 {
            for (i, &len) in lens.iter().enumerate() {
                let g: Vec<f32> = (0..len).map(|j| uniform(40 + i as u64, t, j)).collect();
                arena.write_grads(&gpu.queue, i, &g).unwrap();
                if t == 9 {
                    // read_grads gives back what was written, across the split pieces too
                    assert_eq!(arena.read_grads(&gpu.device, &gpu.queue, i).unwrap(), g, "tensor {i}'s grads");
                }
            }
            opt.step().unwrap();
        }
        let out: Vec<Vec<f32>> = (0..lens.len()).map(|i| arena.read_params(&gpu.device, &gpu.queue, i).unwrap()).collect();
        (out, arena.param_buffers().len(), arena.tensor(0).len(), opt.uses_vec4())
    };
    let (split, buffers, pieces, vec4) = run(64 * 1024);
    assert!(buffers >= 7 && pieces >= 7, "expected a split: {buffers} buffers, {pieces} pieces of tensor 0");
    assert!(vec4, "arena tensors start on whole vec4s");
    let (whole, one, _, _) = run(u64::MAX);
    assert_eq!(one, 1);
    for (i, (a, b)) in split.iter().zip(&whole).enumerate() {
        assert_eq!(a.len(), lens[i] as usize);
        assert!(a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()), "tensor {i} differs between split and whole");
    }
    // ... and the whole run is the reference's result.
    let mut r = wgpu_optim::reference::ReferenceOptimizer::new(config, lens[2] as usize).unwrap();
    let mut p: Vec<f64> = random_params(32, lens[2] as usize).iter().map(|&x| x as f64).collect();
    for t in 0..10u64 {
        let g: Vec<f64> = (0..lens[2]).map(|j| uniform(42, t, j) as f64).collect();
        r.step(&mut p, &g).unwrap();
    }
    let worst = p.iter().zip(&whole[2]).map(|(a, b)| (a - *b as f64).abs() / (1.0 + a.abs())).fold(0.0, f64::max);
    assert!(worst < 1e-5, "arena tensor vs reference: {worst}");
}

/// The workgroup size is a pipeline override; results do not depend on it,
/// including when a vector needs several launches of 1023 workgroups
/// (300,007 elements at 64 invocations × 4 lanes is 1,172 workgroups).
#[test]
fn workgroup_sizes_and_multiple_launches_are_bitwise_identical() {
    let gpu = require_gpu!();
    let config: OptimizerConfig = Adam { lr: 1e-2, weight_decay: 0.05, ..Adam::default() }.into();
    let runs: Vec<_> = [64u32, 256, 32]
        .iter()
        .map(|&wg| run_case(&gpu.device, &gpu.queue, &Case::new("adam", config), Workload { n: 300_007, steps: 5, seed: 13 }, EngineOptions { workgroup_size: wg, ..EngineOptions::default() }).unwrap())
        .collect();
    for r in &runs {
        assert!(r.passed(), "out of bound: worst k {}", r.worst_k());
    }
    for r in &runs[1..] {
        assert!(r.gpu_params.iter().zip(&runs[0].gpu_params).all(|(a, b)| a.to_bits() == b.to_bits()), "workgroup size changed the result");
    }
}

/// PyTorch fills each param's state from its own group's options: Adagrad's
/// `sum` starts at each group's `initial_accumulator_value`. Three tensors
/// in two groups with different values start from them and then follow
/// per-tensor references of their own group.
#[test]
fn each_group_starts_from_its_own_initial_state() {
    let gpu = require_gpu!();
    let a: OptimizerConfig = Adagrad { initial_accumulator_value: 0.1, ..Adagrad::default() }.into();
    let b: OptimizerConfig = Adagrad { initial_accumulator_value: 2.5, lr: 0.05, ..Adagrad::default() }.into();
    let lens = [1001usize, 37, 500];
    let total: usize = lens.iter().sum();
    let p0 = random_params(61, total);
    let p = common::storage_buffer(gpu, &p0);
    let g = common::storage_buffer(gpu, &vec![0.0; total]);
    let starts: Vec<usize> = lens.iter().scan(0, |at, &l| { let s = *at; *at += l; Some(s) }).collect();
    let slices: Vec<_> = lens.iter().zip(&starts).enumerate().map(|(i, (&l, &s))| ParamSlice::range(&p, s as u64, &g, s as u64, l as u64).in_group((i % 2) as u32)).collect();
    let mut opt = Optimizer::with_groups(&gpu.device, &gpu.queue, &[a, b], &slices, EngineOptions::default()).unwrap();
    for (i, &l) in lens.iter().enumerate() {
        let want = if i % 2 == 0 { 0.1f32 } else { 2.5 };
        assert_eq!(opt.read_state(0, i).unwrap(), vec![want; l], "tensor {i} (group {}) did not start from its group's value", i % 2);
    }
    let mut refs: Vec<(ReferenceOptimizer, Vec<f64>)> = lens.iter().zip(&starts).enumerate().map(|(i, (&l, &s))| (ReferenceOptimizer::new(if i % 2 == 0 { a } else { b }, l).unwrap(), p0[s..s + l].iter().map(|&x| x as f64).collect())).collect();
    for t in 0..10u64 {
        let grads: Vec<f32> = (0..total as u64).map(|i| uniform(62, t, i)).collect();
        gpu.queue.write_buffer(&g, 0, bytemuck::cast_slice(&grads));
        opt.step().unwrap();
        for ((r, pr), (&s, &l)) in refs.iter_mut().zip(starts.iter().zip(&lens)) {
            r.step(pr, &grads[s..s + l].iter().map(|&x| x as f64).collect::<Vec<_>>()).unwrap();
        }
    }
    let out = read_f32(&gpu.device, &gpu.queue, &p, 0, total as u64).unwrap();
    for (i, ((r, pr), &s)) in refs.iter().zip(&starts).enumerate() {
        let sum = opt.read_state(0, i).unwrap();
        for j in 0..pr.len() {
            assert!((out[s + j] as f64 - pr[j]).abs() <= 1e-6 * (1.0 + pr[j].abs()), "tensor {i} elem {j}: {} vs {}", out[s + j], pr[j]);
            assert!((sum[j] as f64 - r.state.slots[0][j]).abs() <= 1e-6 * r.state.slots[0][j], "tensor {i} sum {j}");
        }
    }
}

/// A tensor marked inactive (PyTorch: its grad is None) is left untouched,
/// params and state bitwise, while the others step as usual; marking it
/// active again resumes it. Its grads are garbage meanwhile, and must not
/// leak into clipping either.
#[test]
fn inactive_tensors_are_skipped() {
    let gpu = require_gpu!();
    let cfg: OptimizerConfig = Adam { lr: 1e-2, ..Adam::default() }.into();
    let lens = [1001usize, 37, 500];
    let total: usize = lens.iter().sum();
    let p0 = random_params(63, total);
    let p = common::storage_buffer(gpu, &p0);
    let g = common::storage_buffer(gpu, &vec![0.0; total]);
    let starts = [0usize, 1001, 1038];
    let slices: Vec<_> = lens.iter().zip(starts).map(|(&l, s)| ParamSlice::range(&p, s as u64, &g, s as u64, l as u64)).collect();
    let options = EngineOptions { grad_control: GradControl { max_norm: Some(1.0), ..GradControl::default() }, ..EngineOptions::default() };
    let mut opt = Optimizer::with_groups(&gpu.device, &gpu.queue, &[cfg], &slices, options).unwrap();
    assert!(opt.set_active(&[true, false]).is_err(), "one flag per tensor");
    opt.set_active(&[true, false, true]).unwrap();
    for t in 0..6u64 {
        let mut grads: Vec<f32> = (0..total as u64).map(|i| uniform(64, t, i)).collect();
        // the inactive tensor's grads are huge: they must not enter the norm
        grads[starts[1]..starts[1] + lens[1]].iter_mut().for_each(|x| *x = 1e30);
        gpu.queue.write_buffer(&g, 0, bytemuck::cast_slice(&grads));
        let before = (read_f32(&gpu.device, &gpu.queue, &p, 0, total as u64).unwrap(), opt.read_state(0, 1).unwrap());
        opt.step().unwrap();
        let after = read_f32(&gpu.device, &gpu.queue, &p, 0, total as u64).unwrap();
        assert_eq!(after[starts[1]..starts[1] + lens[1]], before.0[starts[1]..starts[1] + lens[1]], "step {t}: an inactive tensor moved");
        assert_eq!(opt.read_state(0, 1).unwrap(), before.1, "step {t}: an inactive tensor's state changed");
        assert_ne!(after[..lens[0]], before.0[..lens[0]], "step {t}: an active tensor did not move");
        let norm = opt.read_grad_norms().unwrap()[0];
        assert!(norm.is_finite() && norm < 100.0, "step {t}: the inactive tensor's grads entered the norm ({norm})");
    }
    opt.set_active(&[true, true, true]).unwrap();
    gpu.queue.write_buffer(&g, 0, bytemuck::cast_slice(&vec![0.5f32; total]));
    let before = read_f32(&gpu.device, &gpu.queue, &p, 0, total as u64).unwrap();
    opt.step().unwrap();
    let after = read_f32(&gpu.device, &gpu.queue, &p, 0, total as u64).unwrap();
    assert_ne!(after[starts[1]..starts[1] + lens[1]], before[starts[1]..starts[1] + lens[1]], "reactivated tensor did not move");
}
