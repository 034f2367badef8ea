//! Short tensors share workgroup rows ([`EngineOptions::pack_rows`],
//! `src/engine/table.rs`): a model of many small tensors against the same
//! model with one row per tensor piece. Element-wise, results are bitwise
//! the same; the grad norm of clipping sums its partials in another order,
//! within the bound derived below.

mod common;

use std::sync::Arc;

use wgpu_optim::reference::ReferenceOptimizer;
use wgpu_optim::validate::{all_cases, grad_scales, random_grads, random_params};
use wgpu_optim::*;

/// Tensor lengths of a small model: mostly short (biases, norm scales), a
/// few longer than a row, none a multiple of 8 by design.
fn model_lens() -> Vec<u64> {
    (0..160u64).map(|i| [1, 46, 7, 33, 130, 5000, 700, 2049, 95, 3, 4097, 511][(i * 7 % 12) as usize] + i % 5).collect()
}

struct Run {
    params: Vec<Vec<f32>>,
    state: Vec<Vec<Vec<f32>>>,
    workgroups: u32,
    norms: Vec<f32>,
}

/// `steps` steps of `configs` (tensor i in group i % groups) over the
/// model, with tensors i % 9 == 4 inactive from step 3 on; every tensor's
/// params and used state slots, and the last grad norms (with clipping).
fn run(gpu: &wgpu_optim::device::Gpu, configs: &[OptimizerConfig], options: EngineOptions, steps: u64) -> Run {
    let lens = model_lens();
    let mut arena = ParamArena::new(&gpu.device, &lens).unwrap();
    for (i, &len) in lens.iter().enumerate() {
        arena.write_params(&gpu.queue, i, &random_params(70 + i as u64, len as usize)).unwrap();
        arena.set_group(i, (i % configs.len()) as u32);
    }
    let clipping = options.grad_control.max_norm.is_some();
    let mut opt = Optimizer::with_groups(&gpu.device, &gpu.queue, configs, &arena.slices(), options).unwrap();
    let mut norms = Vec::new();
    for t in 0..steps {
        for (i, &len) in lens.iter().enumerate() {
            let mut g = vec![0.0; len as usize];
            random_grads(80 + i as u64, t, &grad_scales(90 + i as u64, len as usize), &mut g);
            arena.write_grads(&gpu.queue, i, &g).unwrap();
        }
        if t == 3 {
            opt.set_active(&(0..lens.len()).map(|i| i % 9 != 4).collect::<Vec<_>>()).unwrap();
        }
        opt.step().unwrap();
        if clipping {
            norms = opt.read_grad_norms().unwrap();
        }
    }
    let params = (0..lens.len()).map(|i| arena.read_params(&gpu.device, &gpu.queue, i).unwrap()).collect();
    let slots: Vec<usize> = configs[0].state().used().map(|(k, _)| k).collect();
    let state = (0..lens.len()).map(|i| slots.iter().map(|&k| opt.read_state(k, i).unwrap()).collect()).collect();
    Run { params, state, workgroups: opt.workgroups(), norms }
}

fn bitwise(a: &[Vec<f32>], b: &[Vec<f32>]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits()))
}

/// Two groups of a case: its config, and the same with a third of its lr.
fn groups_of(config: OptimizerConfig) -> [OptimizerConfig; 2] {
    let mut other = config;
    other.set_lr(config.lr() / 3.0);
    [config, other]
}

/// Every rule and option set without clipping, on the vec4, wide and scalar access forms
/// (and bf16 state for AdamW): packed rows step every element exactly as
/// one row per piece does, params and state bitwise, including tensors
/// made inactive mid-run; and packing takes under two thirds of the
/// workgroups (the scalar form's rows are a quarter as long, so fewer
/// pieces share one).
#[test]
fn packed_rows_are_bitwise_one_row_per_piece() {
    let gpu = require_gpu!();
    let cache = Arc::new(PipelineCache::new(&gpu.device));
    let forms = [
        EngineOptions { wide: WideAccess::Always, ..EngineOptions::default() },
        EngineOptions { wide: WideAccess::Never, ..EngineOptions::default() },
        EngineOptions { vec4: false, ..EngineOptions::default() },
    ];
    let bf16 = EngineOptions { state_format: StateFormat::Bf16 { seed: 3 }, ..EngineOptions::default() };
    let adamw = all_cases().into_iter().find(|c| c.config.rule() == Rule::AdamW).unwrap();
    let runs = all_cases().into_iter().flat_map(|c| forms.iter().map(move |f| (c.clone(), f.clone()))).chain([(adamw, bf16)]);
    for (case, form) in runs {
        let configs = groups_of(case.config);
        if GradControl::default().with_rule(&configs).unwrap().active() {
            continue; // a rule's own clipping (Adan's max_grad_norm): the norm's order changes (see below)
        }
        let options = EngineOptions { cache: Some(cache.clone()), ..form };
        let packed = run(gpu, &configs, options.clone(), 6);
        let plain = run(gpu, &configs, EngineOptions { pack_rows: false, ..options }, 6);
        let what = format!("{} (vec4 {}, wide {:?}, {:?})", case.name, form.vec4, form.wide, form.state_format);
        assert!(bitwise(&packed.params, &plain.params), "{what}: packed rows changed the params");
        let states = packed.state.iter().zip(&plain.state).all(|(a, b)| bitwise(a, b));
        assert!(states, "{what}: packed rows changed the state");
        assert!(packed.workgroups * 3 < plain.workgroups * 2, "{what}: {} workgroups packed against {} unpacked", packed.workgroups, plain.workgroups);
    }
}

/// Packed rows against per-tensor f64 references (AdamW, two groups, no
/// inactive tensors before step 3), within the bound of
/// `tests/properties.rs`'s many-tensor check.
#[test]
fn packed_rows_match_the_reference() {
    let gpu = require_gpu!();
    let configs = groups_of(AdamW { lr: 1e-2, weight_decay: 0.1, ..AdamW::default() }.into());
    let got = run(gpu, &configs, EngineOptions::default(), 3);
    for (i, &len) in model_lens().iter().enumerate() {
        let mut r = ReferenceOptimizer::new(configs[i % 2], len as usize).unwrap();
        let mut p: Vec<f64> = random_params(70 + i as u64, len as usize).iter().map(|&x| x as f64).collect();
        for t in 0..3 {
            let mut g = vec![0.0; len as usize];
            random_grads(80 + i as u64, t, &grad_scales(90 + i as u64, len as usize), &mut g);
            r.step(&mut p, &g.iter().map(|&x| x as f64).collect::<Vec<_>>()).unwrap();
        }
        for (j, (&a, &want)) in got.params[i].iter().zip(&p).enumerate() {
            assert!((a as f64 - want).abs() < 1e-5 * (1.0 + want.abs()), "tensor {i} elem {j}: {a} vs {want}");
        }
    }
}

/// With clipping, the step is the same function of the grad norm, whose
/// per-workgroup partials now sum in another order. Each norm² is a sum of
/// N positive f32 terms with at most D = 4 + log2(WG) + ⌈partials/256⌉ +
/// log2(256) + groups additions on any path, so each order is within
/// D·2⁻²⁴ of the exact sum (relative), and the two norms within D·2⁻²⁴ of
/// each other; both are checked against the f64 norm of the last step.
#[test]
fn clipped_norms_over_packed_rows_stay_within_the_summation_bound() {
    let gpu = require_gpu!();
    let configs = groups_of(Adam { lr: 1e-2, ..Adam::default() }.into());
    let clip = |pack_rows| EngineOptions { pack_rows, grad_control: GradControl { max_norm: Some(1.0), clip_scope: ClipScope::PerGroup, ..GradControl::default() }, ..EngineOptions::default() };
    let packed = run(gpu, &configs, clip(true), 5);
    let plain = run(gpu, &configs, clip(false), 5);
    let partials = plain.workgroups as f64;
    let depth = 4.0 + 8.0 + (partials / 256.0).ceil() + 8.0 + 8.0;
    let bound = depth * 2f64.powi(-24);
    let lens = model_lens();
    for g in 0..2 {
        let exact: f64 = (0..lens.len()).filter(|i| i % 2 == g && i % 9 != 4).map(|i| {
            let mut x = vec![0.0; lens[i] as usize];
            random_grads(80 + i as u64, 4, &grad_scales(90 + i as u64, lens[i] as usize), &mut x);
            x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>()
        }).sum::<f64>().sqrt();
        for (name, n) in [("packed", packed.norms[g]), ("unpacked", plain.norms[g])] {
            assert!((n as f64 - exact).abs() <= (bound + 2f64.powi(-24)) * exact, "group {g} {name}: {n} vs {exact}");
        }
        let apart = (packed.norms[g] as f64 - plain.norms[g] as f64).abs();
        assert!(apart <= 2.0 * bound * exact, "group {g}: packed {} and unpacked {} norms {apart} apart", packed.norms[g], plain.norms[g]);
    }
}
