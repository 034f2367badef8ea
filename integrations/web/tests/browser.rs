//! The engine in a real browser: headless Chromium's WebGPU (Dawn, Tint and
//! SwiftShader on CI), every check against the f64 reference with the same
//! bounds as on native, through the async readbacks. Run with
//! `wasm-bindgen-test-runner` (`.ci/run` sets it up).
#![cfg(target_arch = "wasm32")]

use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};
use wgpu_optim::device::{headless_async, read_f32_async, Gpu};
use wgpu_optim::ema::reference_update;
use wgpu_optim::matrix::TensorRule;
use wgpu_optim::reference::ReferenceOptimizer;
use wgpu_optim::validate::tensor::{cases, run_case_on_async, shapes, TensorWorkload};
use wgpu_optim::validate::{all_cases, random_params, run_case_async, uniform, Workload};
use wgpu_optim::*;

wasm_bindgen_test_configure!(run_in_browser);

const U: f64 = 1.0 / (1u64 << 24) as f64;

async fn gpu() -> Gpu {
    let gpu = headless_async().await.expect("WebGPU: no adapter (Chromium needs --enable-unsafe-webgpu)");
    web_sys::console::log_1(&format!("adapter: {}", gpu.describe()).into());
    gpu
}

fn buffer(gpu: &Gpu, values: &[f32]) -> wgpu::Buffer {
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
    let b = gpu.device.create_buffer(&wgpu::BufferDescriptor { label: None, size: 4 * values.len() as u64, usage, mapped_at_creation: false });
    gpu.queue.write_buffer(&b, 0, bytemuck::cast_slice(values));
    b
}

async fn read(gpu: &Gpu, s: &ParamSlice) -> Vec<f32> {
    read_f32_async(&gpu.device, &gpu.queue, &s.param, s.param_offset, s.len()).await.unwrap()
}

/// Tensors at odd offsets of one buffer pair.
fn slices(gpu: &Gpu, lens: &[u64], seed: u64) -> Vec<ParamSlice> {
    let total = lens.iter().map(|n| n + 3).sum::<u64>() + 3;
    let (p, g) = (buffer(gpu, &random_params(seed, total as usize)), buffer(gpu, &vec![0.0; total as usize]));
    let mut at = 3;
    lens.iter()
        .map(|&n| {
            let s = ParamSlice::range(&p, at, &g, at, n);
            at += n + 3;
            s
        })
        .collect()
}

fn write_grads(gpu: &Gpu, slices: &[ParamSlice], seed: u64, t: u64, scale: f64) -> Vec<Vec<f64>> {
    slices
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let g: Vec<f32> = (0..s.len()).map(|k| (3.0 * uniform(seed + i as u64, t, k) as f64 * scale) as f32).collect();
            gpu.queue.write_buffer(&s.grad, 4 * s.grad_offset, bytemuck::cast_slice(&g));
            g.iter().map(|&x| x as f64 / scale).collect()
        })
        .collect()
}

/// `validate --all` in the browser: every rule under every option set, 20
/// steps on 1003 elements (not a multiple of 4), params and every state slot
/// within the rule's derived bound, the padding untouched. WebGPU has no
/// `SHADER_INT64`, so every case runs the standard access path.
#[wasm_bindgen_test]
async fn every_option_set_matches_the_reference() {
    let gpu = gpu().await;
    let mut failed = Vec::new();
    for c in all_cases() {
        let r = run_case_async(&gpu.device, &gpu.queue, &c, Workload { n: 1003, steps: 20, seed: 7 }, EngineOptions::default()).await.unwrap();
        assert_ne!(r.access, Access::Wide, "{}: the wide path needs SHADER_INT64", r.name);
        if !r.passed() || !r.padding_untouched {
            failed.push(format!("{} ({:.2} of the bound)", r.name, r.worst_k() / r.k));
        }
    }
    assert!(failed.is_empty(), "failed in the browser: {failed:?}");
}

/// Muon, LAMB and Adafactor (every case `validate --all` runs) on their
/// validation shapes, within the bounds their references derive.
#[wasm_bindgen_test]
async fn tensor_wise_rules_match_the_reference() {
    let gpu = gpu().await;
    for (name, rule) in cases(true) {
        let work = TensorWorkload { shapes: shapes(&rule), steps: 5, seed: 11, ramp: 0.0 };
        let r = run_case_on_async(&gpu.device, &gpu.queue, &name, rule, &work).await.unwrap();
        assert!(r.passed(), "{name}: params {:.3}, state {:.3} of the bound", r.params, r.state);
        if matches!(rule, TensorRule::Muon(_)) {
            assert!(r.params > 0.0, "{name}: Muon must move the params");
        }
    }
}

/// The weight EMA after AdamW steps against PyTorch's lerp in f64, under
/// the native test's bound (5u of |a| + |b| per update, decayed).
#[wasm_bindgen_test]
async fn weight_ema_matches_the_reference() {
    let gpu = gpu().await;
    let decay = 0.9;
    let s = slices(&gpu, &[1023, 5, 2053], 30);
    let mut opt = Optimizer::new(&gpu.device, &gpu.queue, AdamW { lr: 0.05, ..AdamW::default() }.into(), &s).unwrap();
    let mut ema = WeightEma::new(&gpu.device, &gpu.queue, decay, &s).unwrap();
    let mut want: Vec<Vec<f64>> = s.iter().map(|x| vec![0.0; x.len() as usize]).collect();
    let mut bound = want.clone();
    for t in 0..12u64 {
        write_grads(&gpu, &s, 40, t, 1.0);
        opt.step().unwrap();
        ema.update().unwrap();
        for (i, x) in s.iter().enumerate() {
            let theta = read(&gpu, x).await;
            for k in 0..theta.len() {
                let (a, b) = (want[i][k], theta[k] as f64);
                want[i][k] = reference_update(a, b, decay, t);
                bound[i][k] = if t == 0 { 0.0 } else { decay * bound[i][k] + 5.0 * U * (a.abs() + b.abs()) };
            }
        }
    }
    for i in 0..s.len() {
        let got = ema.read_async(i).await.unwrap();
        let worst = (0..got.len()).map(|k| (got[k] as f64 - want[i][k]).abs() / bound[i][k].max(1e-37)).fold(0.0, f64::max);
        assert!(worst <= 1.0, "tensor {i}: off by {worst:.2} of the bound");
    }
}

/// Global clipping with a GradScaler: a poisoned step is skipped with params
/// and state bitwise unchanged; the clean ones match the f64 reference's
/// clipped steps, and the norms match the f64 norm of the grads.
#[wasm_bindgen_test]
async fn clipping_with_a_grad_scaler_skip() {
    let gpu = gpu().await;
    let cfg: OptimizerConfig = AdamW { lr: 1e-2, weight_decay: 0.1, ..AdamW::default() }.into();
    let (max_norm, scale) = (5.0, 1024.0);
    let control = GradControl { max_norm: Some(max_norm), scaler: Some(GradScaler { init_scale: scale, growth_interval: 1000, ..GradScaler::default() }), ..GradControl::default() };
    let s = slices(&gpu, &[3001, 17, 1000], 60);
    let mut opt = Optimizer::with_groups(&gpu.device, &gpu.queue, &[cfg], &s, EngineOptions { grad_control: control, ..EngineOptions::default() }).unwrap();
    let mut refs = Vec::new();
    for x in &s {
        refs.push((ReferenceOptimizer::new(cfg, x.len() as usize).unwrap(), read(&gpu, x).await.iter().map(|&v| v as f64).collect::<Vec<f64>>()));
    }
    let mut scale = scale;
    for t in 0..8u64 {
        let grads = write_grads(&gpu, &s, 61, t, scale);
        if t == 3 {
            gpu.queue.write_buffer(&s[2].grad, 4 * (s[2].grad_offset + 10), bytemuck::bytes_of(&f32::NAN));
        }
        let before = read(&gpu, &s[0]).await;
        let m_before = opt.read_state_async(0, 0).await.unwrap();
        opt.step().unwrap();
        let control = opt.read_grad_control_async().await.unwrap();
        if t == 3 {
            assert_eq!(control.found_inf, 1, "the NaN was not found");
            assert_eq!(read(&gpu, &s[0]).await, before, "params changed on a skipped step");
            assert_eq!(opt.read_state_async(0, 0).await.unwrap(), m_before, "state changed on a skipped step");
            scale *= 0.5;
            continue;
        }
        assert_eq!(control.found_inf, 0, "step {t}: a clean step was flagged");
        let norm = grads.iter().flatten().map(|x| x * x).sum::<f64>().sqrt();
        let gpu_norm = opt.read_grad_norms_async().await.unwrap()[0] as f64;
        assert!((gpu_norm - norm).abs() < 1e-5 * norm, "step {t}: norm {gpu_norm} against {norm}");
        let clip = (max_norm / (norm + 1e-6)).min(1.0);
        assert!(clip < 1.0, "the test must clip");
        for ((r, p), g) in refs.iter_mut().zip(&grads) {
            r.step(p, &g.iter().map(|x| x * clip).collect::<Vec<_>>()).unwrap();
        }
    }
    assert_eq!(opt.skipped_steps_async().await.unwrap(), 1);
    for ((_, want), x) in refs.iter().zip(&s) {
        let got = read(&gpu, x).await;
        for (k, (a, b)) in got.iter().zip(want).enumerate() {
            assert!((*a as f64 - b).abs() < 2e-5 * (1.0 + b.abs()), "elem {k}: {a} against {b}");
        }
    }
}

/// A checkpoint as bytes (the web has no files): saved after 5 steps,
/// loaded into a fresh optimizer over the saved params, 5 more steps on
/// each are bitwise the same.
#[wasm_bindgen_test]
async fn checkpoint_bytes_resume_bitwise() {
    let gpu = gpu().await;
    let cfg: OptimizerConfig = AdamW { amsgrad: true, weight_decay: 0.1, ..AdamW::default() }.into();
    let options = || EngineOptions { grad_control: GradControl { max_norm: Some(2.0), ..GradControl::default() }, ..EngineOptions::default() };
    let a = slices(&gpu, &[517, 33], 80);
    let mut straight = Optimizer::with_groups(&gpu.device, &gpu.queue, &[cfg], &a, options()).unwrap();
    for t in 0..5 {
        write_grads(&gpu, &a, 81, t, 1.0);
        straight.step().unwrap();
    }
    let bytes = straight.checkpoint_bytes_async().await.unwrap();
    let b = slices(&gpu, &[517, 33], 80);
    for (x, y) in a.iter().zip(&b) {
        let saved = read(&gpu, x).await;
        gpu.queue.write_buffer(&y.param, 4 * y.param_offset, bytemuck::cast_slice(&saved));
    }
    let fresh: OptimizerConfig = AdamW { amsgrad: true, ..AdamW::default() }.into();
    let mut resumed = Optimizer::with_groups(&gpu.device, &gpu.queue, &[fresh], &b, options()).unwrap();
    assert!(resumed.load_checkpoint_bytes(&bytes[..bytes.len() / 2]).is_err(), "a truncated checkpoint must be refused");
    resumed.load_checkpoint_bytes(&bytes).unwrap();
    for t in 5..10 {
        write_grads(&gpu, &a, 81, t, 1.0);
        write_grads(&gpu, &b, 81, t, 1.0);
        straight.step().unwrap();
        resumed.step().unwrap();
    }
    for (x, y) in a.iter().zip(&b) {
        let (p, q) = (read(&gpu, x).await, read(&gpu, y).await);
        assert!(p.iter().zip(&q).all(|(u, v)| u.to_bits() == v.to_bits()), "the resumed params differ");
    }
    for slot in 0..3 {
        for i in 0..a.len() {
            let (m, n) = (straight.read_state_async(slot, i).await.unwrap(), resumed.read_state_async(slot, i).await.unwrap());
            assert!(m.iter().zip(&n).all(|(u, v)| u.to_bits() == v.to_bits()), "the resumed state differs (slot {slot}, tensor {i})");
        }
    }
}

/// WebGPU answers error scopes asynchronously: a wgpu validation error (a
/// readback from a buffer without `COPY_SRC`) comes back typed from the
/// async readback, not as a panic or as zeros.
#[wasm_bindgen_test]
async fn wgpu_errors_come_back_typed() {
    let gpu = gpu().await;
    let b = gpu.device.create_buffer(&wgpu::BufferDescriptor { label: None, size: 64, usage: wgpu::BufferUsages::STORAGE, mapped_at_creation: false });
    let r = read_f32_async(&gpu.device, &gpu.queue, &b, 0, 16).await;
    assert!(matches!(r, Err(OptimError::Wgpu(_))), "{r:?}");
    wgpu_optim::error::settle().await.unwrap();
}
