//! The tensor-wise rules against their f64 references (the tour and
//! `wgpu-optim validate`): a few tensors of odd shapes in one buffer pair,
//! random grads, T steps; the GPU's params normwise and its state element by
//! element against the bounds each reference derives.

use super::uniform;
use crate::engine::ParamSlice;
use crate::error::Result;
use crate::matrix::adafactor::AdafactorReference;
use crate::matrix::lamb::LambReference;
use crate::matrix::{Adafactor, AdafactorOptimizer, AdjustLr, Lamb, LambOptimizer, Muon, MuonOptimizer, TensorRule, TrustRatio};

/// u = 2⁻²⁴.
const U: f64 = 1.0 / (1u64 << 24) as f64;

/// One validation case's outcome.
#[derive(Clone, Debug)]
pub struct TensorCaseReport {
    /// The case's name (as in [`cases`]).
    pub name: String,
    /// The tensors' shapes, e.g. "33x17 40x30 1x37".
    pub shapes: String,
    /// Steps run.
    pub steps: u32,
    /// ‖θ_GPU − θ_ref‖ over its bound, worst tensor.
    pub params: f64,
    /// |state_GPU − state_ref| over its bound, worst element.
    pub state: f64,
}

impl TensorCaseReport {
    /// Whether both the params and the state are within their bounds (ratios ≤ 1).
    pub fn passed(&self) -> bool {
        self.params <= 1.0 && self.state <= 1.0
    }
}

/// The named option sets: one per rule, or (`all`) three per rule that
/// together switch every option.
pub fn cases(all: bool) -> Vec<(String, TensorRule)> {
    let mut out = vec![
        ("muon".to_string(), TensorRule::Muon(Muon { lr: 2e-2, ..Muon::default() })),
        ("lamb wd 0.01".to_string(), TensorRule::Lamb(Lamb { lr: 1e-2, weight_decay: 0.01, ..Lamb::default() })),
        ("adafactor".to_string(), TensorRule::Adafactor(Adafactor::default())),
    ];
    if all {
        out.extend([
            ("muon plain, match_rms_adamw".to_string(), TensorRule::Muon(Muon { lr: 1e-2, momentum: 0.9, nesterov: false, weight_decay: 0.0, adjust_lr_fn: AdjustLr::MatchRmsAdamw, ..Muon::default() })),
            ("muon 4 steps, spectral_unclamped".to_string(), TensorRule::Muon(Muon { lr: 3e-2, ns_steps: 4, ns_coefficients: (2.0, -1.5, 0.5), adjust_lr_fn: AdjustLr::SpectralUnclamped, ..Muon::default() })),
            ("lamb no bias corr., when decayed".to_string(), TensorRule::Lamb(Lamb { lr: 3e-3, betas: (0.8, 0.99), bias_correction: false, trust_ratio: TrustRatio::WhenDecayed, ..Lamb::default() })),
            ("lamb never, eps 1e-3, wd 0.1".to_string(), TensorRule::Lamb(Lamb { lr: 1e-2, eps: 1e-3, weight_decay: 0.1, trust_ratio: TrustRatio::Never, ..Lamb::default() })),
            ("adafactor wd 0.1, eps1 1e-3, d 2".to_string(), TensorRule::Adafactor(Adafactor { lr: 2e-2, weight_decay: 0.1, eps: (Some(1e-3), 1e-3), d: 2.0, ..Adafactor::default() })),
            ("adafactor maximize, decay -0.5".to_string(), TensorRule::Adafactor(Adafactor { beta2_decay: -0.5, eps: (None, 0.5), maximize: true, ..Adafactor::default() })),
        ]);
    }
    out
}

/// The shapes a rule is validated on (Muon: matrices only).
pub fn shapes(rule: &TensorRule) -> Vec<Vec<u64>> {
    let mut s = vec![vec![33, 17], vec![40, 30], vec![1, 37]];
    if !matches!(rule, TensorRule::Muon(_)) {
        s.extend([vec![1025], vec![3, 4, 6]]);
    }
    s
}

/// What one case needs on the GPU: the slices, and each tensor's start.
struct Setup {
    slices: Vec<ParamSlice>,
    start: Vec<Vec<f64>>,
}

/// The factor of element k of n: 1 + ramp·(k/n)².
fn ramped(ramp: f32, k: u64, n: u64) -> f32 {
    1.0 + ramp * (k as f32 / n as f32).powi(2)
}

fn setup(device: &wgpu::Device, queue: &wgpu::Queue, shapes: &[Vec<u64>], seed: u64, ramp: f32) -> Result<Setup> {
    let lens: Vec<u64> = shapes.iter().map(|s| s.iter().product()).collect();
    let total: u64 = lens.iter().map(|n| n + 3).sum::<u64>() + 3;
    let mut p0: Vec<f32> = (0..total).map(|i| 0.5 * uniform(seed, 99, i)).collect();
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
    let (p, g) = crate::error::scoped(device, || {
        let make = |label| device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size: 4 * total, usage, mapped_at_creation: false });
        (make("validate params"), make("validate grads"))
    })?;
    let (mut slices, mut start, mut at) = (Vec::new(), Vec::new(), 3u64);
    for (shape, &n) in shapes.iter().zip(&lens) {
        (0..n).for_each(|k| p0[(at + k) as usize] *= ramped(ramp, k, n));
        slices.push(ParamSlice::range(&p, at, &g, at, n).with_shape(shape));
        start.push(p0[at as usize..(at + n) as usize].iter().map(|&x| x as f64).collect());
        at += n + 3;
    }
    queue.write_buffer(&p, 0, bytemuck::cast_slice(&p0));
    Ok(Setup { slices, start })
}

/// Writes step t's grads (uniform(−1, 1) times a per-element class, and
/// the ramp) and returns them in f64.
fn write_grads(queue: &wgpu::Queue, slices: &[ParamSlice], seed: u64, ramp: f32, t: u64) -> Vec<Vec<f64>> {
    slices
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let g: Vec<f32> = (0..s.len()).map(|k| uniform(seed + 10 + i as u64, t, k) * (0.2 + (k % 5) as f32 * 0.4) * ramped(ramp, k, s.len())).collect();
            queue.write_buffer(&s.grad, 4 * s.grad_offset, bytemuck::cast_slice(&g));
            g.iter().map(|&x| x as f64).collect()
        })
        .collect()
}

/// Worst |gpu − want| / bound over the elements.
fn worst(gpu: &[f32], want: &[f64], bound: impl Fn(usize) -> f64) -> f64 {
    (0..gpu.len()).map(|k| (gpu[k] as f64 - want[k]).abs() / bound(k).max(1e-37)).fold(0.0, f64::max)
}

fn frobenius(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// What a case runs on: tensors of `shapes` (Muon: 2-D), `steps` steps of
/// random data from `seed`; element k of a tensor of n has its start and
/// grads scaled by 1 + ramp·(k/n)², so that a sum missing part of a tensor
/// misses more of θ (or G) than of the rest.
#[derive(Clone, Debug)]
pub struct TensorWorkload {
    /// The tensors' shapes, all in one buffer pair (Muon: 2-D only).
    pub shapes: Vec<Vec<u64>>,
    /// Steps to run.
    pub steps: u32,
    /// Seed of the random start params and grads.
    pub seed: u64,
    /// The ramp of the per-element scale 1 + ramp·(k/n)²; 0: no ramp.
    pub ramp: f32,
}

/// Runs one case for `steps` steps on the rule's validation shapes.
///
/// **Errors:** anything the optimizer or a read-back reports.
#[cfg(not(target_arch = "wasm32"))]
pub fn run_case(device: &wgpu::Device, queue: &wgpu::Queue, name: &str, rule: TensorRule, steps: u32, seed: u64) -> Result<TensorCaseReport> {
    run_case_on(device, queue, name, rule, &TensorWorkload { shapes: shapes(&rule), steps, seed, ramp: 0.0 })
}

/// Runs one case on `work`.
///
/// **Errors:** as [`run_case`].
#[cfg(not(target_arch = "wasm32"))]
pub fn run_case_on(device: &wgpu::Device, queue: &wgpu::Queue, name: &str, rule: TensorRule, work: &TensorWorkload) -> Result<TensorCaseReport> {
    pollster::block_on(run_case_on_async(device, queue, name, rule, work))
}

/// [`run_case_on`] without blocking: how the browser runs it.
///
/// **Errors:** as [`run_case`].
pub async fn run_case_on_async(device: &wgpu::Device, queue: &wgpu::Queue, name: &str, rule: TensorRule, work: &TensorWorkload) -> Result<TensorCaseReport> {
    let TensorWorkload { ref shapes, steps, seed, ramp } = *work;
    let Setup { slices, mut start } = setup(device, queue, shapes, seed, ramp)?;
    let p = &mut start;
    let (params, state) = match rule {
        TensorRule::Muon(c) => {
            let mut opt = MuonOptimizer::new(device, queue, c, &slices)?;
            let zeros = || p.iter().map(|x| vec![0.0; x.len()]).collect::<Vec<Vec<f64>>>();
            let (mut m, mut p_bound, mut m_bound) = (zeros(), vec![0.0; p.len()], zeros());
            for t in 0..steps as u64 {
                let g = write_grads(queue, &slices, seed, ramp, t);
                for i in 0..p.len() {
                    let (r, cols) = (shapes[i][0] as usize, shapes[i][1] as usize);
                    let prev = m[i].clone();
                    let o = c.reference_step((r, cols), &mut p[i], &g[i], &mut m[i]);
                    p_bound[i] += c.lr * c.adjust_lr_fn.ratio(r as u64, cols as u64) * c.o_tolerance(r, cols) * frobenius(&o) + 4.0 * U * frobenius(&p[i]);
                    (0..prev.len()).for_each(|k| m_bound[i][k] += c.momentum_tolerance(prev[k], g[i][k], m[i][k]));
                }
                opt.step()?;
            }
            let mut state = Vec::new();
            for i in 0..p.len() {
                state.push(worst(&opt.read_state_async(i).await?, &m[i], |k| m_bound[i][k]));
            }
            (param_fractions(device, queue, &slices, p, &p_bound).await?, state)
        }
        TensorRule::Lamb(c) => {
            let mut opt = LambOptimizer::new(device, queue, c, &slices)?;
            let mut refs: Vec<LambReference> = p.iter().map(|x| LambReference::new(x.len())).collect();
            for t in 1..=steps {
                let g = write_grads(queue, &slices, seed, ramp, t as u64);
                (0..p.len()).for_each(|i| c.reference_step(t, &mut p[i], &g[i], &mut refs[i]));
                opt.step()?;
            }
            let mut state = Vec::new();
            for (i, r) in refs.iter().enumerate() {
                let (m, v) = opt.read_state_async(i).await?;
                state.push(worst(&m, &r.exp_avg, |k| r.exp_avg_err[k]).max(worst(&v, &r.exp_avg_sq, |k| r.exp_avg_sq_err[k])));
            }
            let bounds: Vec<f64> = refs.iter().map(|r| r.param_err).collect();
            (param_fractions(device, queue, &slices, p, &bounds).await?, state)
        }
        TensorRule::Adafactor(c) => {
            let mut opt = AdafactorOptimizer::new(device, queue, c, &slices)?;
            let mut refs: Vec<AdafactorReference> = p.iter().zip(shapes).map(|(x, s)| AdafactorReference::new(x.len() as u64, Some(s))).collect();
            for t in 1..=steps {
                let g = write_grads(queue, &slices, seed, ramp, t as u64);
                (0..p.len()).for_each(|i| c.reference_step(t, &mut p[i], &g[i], &mut refs[i]));
                opt.step()?;
            }
            let mut state = Vec::new();
            for (i, r) in refs.iter().enumerate() {
                let got: Vec<f32> = opt.read_state_async(i).await?.into_iter().flat_map(|s| s.values).collect();
                state.push(worst(&got, &r.state, |k| r.state_rel_err * r.state[k]));
            }
            let bounds: Vec<f64> = refs.iter().map(|r| r.param_err).collect();
            (param_fractions(device, queue, &slices, p, &bounds).await?, state)
        }
    };
    let shapes = shapes.iter().map(|s| s.iter().map(u64::to_string).collect::<Vec<_>>().join("x")).collect::<Vec<_>>().join(" ");
    Ok(TensorCaseReport { name: name.to_string(), shapes, steps, params: params.into_iter().fold(0.0, f64::max), state: state.into_iter().fold(0.0, f64::max) })
}

/// Each tensor's ‖θ_GPU − θ_ref‖ over its bound.
async fn param_fractions(device: &wgpu::Device, queue: &wgpu::Queue, slices: &[ParamSlice], want: &[Vec<f64>], bounds: &[f64]) -> Result<Vec<f64>> {
    let mut out = Vec::new();
    for ((s, w), b) in slices.iter().zip(want).zip(bounds) {
        let got = crate::device::read_f32_async(device, queue, &s.param, s.param_offset, s.len()).await?;
        let err: Vec<f64> = got.iter().zip(w).map(|(a, b)| *a as f64 - b).collect();
        out.push(frobenius(&err) / b);
    }
    Ok(out)
}
