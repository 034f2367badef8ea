//! GPU-versus-reference validation: runs a config for many steps on random
//! data on the GPU and in the f64 reference, and measures the error of the
//! params and of every state buffer against a per-rule bound
//!
//! ```text
//! |gpu − ref| ≤ k · 2⁻²⁴ · Σ_t (|x_t| + |x_{t+1} − x_t|) + tiny
//! ```
//!
//! per element, where x is the f64 reference trajectory of the quantity
//! (param or state): the `|p| + |Δp|` of each step, summed over the steps,
//! because every step rounds once more in f32. `k` is then the number of
//! f32 roundings a step may contribute, stated per rule by [`tolerance_k`],
//! independent of the number of steps.

#[cfg(not(target_arch = "wasm32"))]
pub mod lbfgs;
pub mod tensor;

use crate::device::read_f32_async;
use crate::engine::{EngineOptions, Optimizer, ParamSlice};
use crate::error::Result;
use crate::reference::ReferenceOptimizer;
use crate::rules::{flags, OptimizerConfig, RefState, Rule};

pub use crate::random::{random_params, uniform};
pub use crate::rules::Case;

/// Unit roundoff of f32.
pub const EPS32: f64 = 1.0 / (1u64 << 24) as f64;
/// Absolute slack added to every bound (guards exact-zero scales only).
pub const TINY: f64 = 1e-30;

/// The `k` of the error bound for a config: f32 roundings per step, in units
/// of 2⁻²⁴ of the element's per-step scale, stated and derived in each
/// rule's docs ([`RuleConfig::tolerance_k`](crate::rules::RuleConfig::tolerance_k)).
pub fn tolerance_k(config: &OptimizerConfig) -> f64 {
    config.tolerance_k()
}

/// Every rule under every option set the test suite covers (each rule's
/// [`RuleConfig::cases`](crate::rules::RuleConfig::cases), in registry order).
pub fn all_cases() -> Vec<Case> {
    OptimizerConfig::all_cases()
}

/// The cases of one kernel.
pub fn cases_of(rule: Rule) -> Vec<Case> {
    all_cases().into_iter().filter(|c| c.config.rule() == rule).collect()
}

/// One representative case per rule (the CLI's table).
pub fn one_case_per_rule() -> Vec<Case> {
    let mut out: Vec<Case> = Vec::new();
    for c in all_cases() {
        if !out.iter().any(|o| o.config.rule() == c.config.rule()) {
            out.push(c);
        }
    }
    out
}

/// Per-element gradient scales, log-uniform over [10⁻², 10¹], so that
/// adaptive rules see denominators of very different sizes.
pub fn grad_scales(seed: u64, n: usize) -> Vec<f32> {
    (0..n as u64).map(|i| 10f32.powf(uniform(seed, u64::MAX - 1, i) * 1.5 - 0.5)).collect()
}

/// Random gradients of step `t`: `uniform(-1, 1) · scales[i]`.
pub fn random_grads(seed: u64, t: u64, scales: &[f32], out: &mut [f32]) {
    for (i, (g, s)) in out.iter_mut().zip(scales).enumerate() {
        *g = uniform(seed, t, i as u64) * s;
    }
}

/// Flips the sign of any gradient that its L2 weight-decay term would
/// partly cancel, so that `g + weight_decay·θ` is a sum of like-signed terms.
/// Where the two cancel, the sum loses digits to f32 rounding relative to its
/// own size, and the state (momentum, moments) that starts from it inherits
/// that relative error: an ill-conditioned input rather than an
/// implementation error, which a bound in units of the result cannot cover.
/// Magnitudes stay random; only signs are chosen. Cases without an L2 term
/// keep fully random signs.
pub fn avoid_l2_cancellation(config: &OptimizerConfig, params: &[f64], grads: &mut [f32]) {
    let wd = if config.flags() & flags::DECOUPLED != 0 { 0.0 } else { config.weight_decay() };
    if wd == 0.0 {
        return;
    }
    let sign = if config.flags() & flags::MAXIMIZE != 0 { -1.0 } else { 1.0 };
    for (g, &p) in grads.iter_mut().zip(params) {
        if sign * (*g as f64) * p < 0.0 {
            *g = -*g;
        }
    }
}

/// Error of one quantity (params or a state buffer).
#[derive(Clone, Debug)]
pub struct QuantityError {
    /// "param", or the state slot's name.
    pub name: &'static str,
    /// max |gpu − ref|.
    pub max_abs: f64,
    /// max over elements of |gpu − ref| / (2⁻²⁴ · scale): the k actually needed.
    pub k_needed: f64,
    /// ‖gpu − ref‖₂ / ‖ref‖₂.
    pub rel_l2: f64,
    /// ‖gpu − ref‖₂ / ‖ref − x₀‖₂: the error relative to how far the
    /// reference moved the quantity from its start x₀ (a kernel that never
    /// moves it scores 1; one that moves it half as far, 0.5).
    pub rel_moved: f64,
    /// Elements over the bound.
    pub violations: usize,
    /// Index of the element with the largest `k_needed`.
    pub worst: usize,
}

/// Written after each test tensor; any change means a write out of range.
const SENTINEL: f32 = 12345.678;

/// Result of validating one case at one size.
#[derive(Clone, Debug)]
pub struct CaseReport {
    /// The case's name.
    pub name: String,
    /// The rule the case configures.
    pub rule: Rule,
    /// Elements of the tensor.
    pub n: usize,
    /// Steps run.
    pub steps: u32,
    /// The bound's `k` for the config ([`tolerance_k`]).
    pub k: f64,
    /// Errors of the params, then of each state buffer the rule uses.
    pub quantities: Vec<QuantityError>,
    /// The final GPU params (for further checks such as determinism).
    pub gpu_params: Vec<f32>,
    /// Whether the elements after the tensor in its buffer kept their value.
    pub padding_untouched: bool,
    /// The access form the kernel ran with.
    pub access: crate::engine::Access,
    /// Dispatches per step (more than one when the vector was chunked).
    pub dispatches: usize,
}

impl CaseReport {
    /// Whether every element of every quantity is within the bound.
    pub fn passed(&self) -> bool {
        self.padding_untouched && self.quantities.iter().all(|q| q.violations == 0)
    }

    /// Largest `k_needed` over all quantities.
    pub fn worst_k(&self) -> f64 {
        self.quantities.iter().map(|q| q.k_needed).fold(0.0, f64::max)
    }

    /// Largest absolute error over all quantities.
    pub fn max_abs(&self) -> f64 {
        self.quantities.iter().map(|q| q.max_abs).fold(0.0, f64::max)
    }
}

/// Per-element scale of a reference trajectory: Σ_t |x_t| + |x_{t+1} − x_t|.
struct Track {
    scale: Vec<f64>,
    prev: Vec<f64>,
    start: Vec<f64>,
    /// Extra absolute allowance per element (the reference's
    /// [`RefState::allowance`], e.g. Lion's undetermined signs).
    extra: Vec<f64>,
}

impl Track {
    fn new(x: &[f64]) -> Self {
        Track { scale: x.iter().map(|v| v.abs()).collect(), prev: x.to_vec(), start: x.to_vec(), extra: vec![0.0; x.len()] }
    }

    fn update(&mut self, x: &[f64]) {
        for ((s, p), &v) in self.scale.iter_mut().zip(&mut self.prev).zip(x) {
            *s += v.abs() + (v - *p).abs();
            *p = v;
        }
    }

    fn compare(&self, name: &'static str, gpu: &[f32], reference: &[f64], k: f64) -> QuantityError {
        let (mut max_abs, mut k_needed, mut num, mut den, mut violations, mut worst) = (0f64, 0f64, 0f64, 0f64, 0usize, 0usize);
        let moved: f64 = reference.iter().zip(&self.start).map(|(r, s)| (r - s) * (r - s)).sum::<f64>().sqrt();
        for i in 0..reference.len() {
            let raw = (gpu[i] as f64 - reference[i]).abs();
            let err = (raw - self.extra[i]).max(0.0);
            let scale = EPS32 * self.scale[i];
            if raw.is_nan() || err > k * scale + TINY {
                violations += 1;
            }
            max_abs = max_abs.max(raw);
            if scale > 0.0 && err / scale > k_needed {
                k_needed = err / scale;
                worst = i;
            }
            num += raw * raw;
            den += reference[i] * reference[i];
        }
        if max_abs.is_nan() {
            k_needed = f64::INFINITY;
        }
        let rel_moved = if moved > 0.0 { num.sqrt() / moved } else if num > 0.0 { f64::INFINITY } else { 0.0 };
        QuantityError { name, max_abs, k_needed, rel_l2: if den > 0.0 { (num / den).sqrt() } else { num.sqrt() }, rel_moved, violations, worst }
    }
}

/// The size of a validation run: elements, steps, and the seed of the
/// random params and grads.
#[derive(Clone, Copy, Debug)]
pub struct Workload {
    /// Elements of the tensor.
    pub n: usize,
    /// Steps to run.
    pub steps: u32,
    /// Seed of the random params and grads.
    pub seed: u64,
}

/// A reference step `(t, params, grads, state)`, updating in place.
pub type ReferenceStep<'a> = &'a dyn Fn(u32, &mut [f64], &[f64], &mut RefState);

/// The GPU side of a validation run: one tensor in padded buffers whose
/// padding holds a sentinel that must survive untouched.
struct GpuRun {
    opt: Optimizer,
    param: wgpu::Buffer,
    grad: wgpu::Buffer,
    padded: usize,
}

impl GpuRun {
    fn new(device: &wgpu::Device, queue: &wgpu::Queue, config: OptimizerConfig, p0: &[f32], options: EngineOptions) -> Result<Self> {
        let n = p0.len();
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        // Padded so the bound range rounds up to whole vec4s (and wide units
        // of 8) inside the buffer: the vector kernels run.
        let padded = n.next_multiple_of(4) + 4;
        let make = |label| device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size: 4 * padded as u64, usage, mapped_at_creation: false });
        let (param, grad) = (make("params"), make("grads"));
        let mut init = p0.to_vec();
        init.resize(padded, SENTINEL);
        queue.write_buffer(&param, 0, bytemuck::cast_slice(&init));
        queue.write_buffer(&grad, 4 * n as u64, bytemuck::cast_slice(&vec![SENTINEL; padded - n]));
        let slice = ParamSlice::range(&param, 0, &grad, 0, n as u64);
        let opt = Optimizer::with_groups(device, queue, &[config], &[slice], options)?;
        Ok(GpuRun { opt, param, grad, padded })
    }

    /// The final params, and whether the padding kept its sentinel.
    async fn params(&self, device: &wgpu::Device, queue: &wgpu::Queue, n: usize) -> Result<(Vec<f32>, bool)> {
        let mut all = read_f32_async(device, queue, &self.param, 0, self.padded as u64).await?;
        let untouched = all[n..].iter().all(|x| x.to_bits() == SENTINEL.to_bits());
        all.truncate(n);
        Ok((all, untouched))
    }
}

/// The reference side: f64 params and state, and their error scales.
struct RefRun {
    p: Vec<f64>,
    state: RefState,
    p_track: Track,
    s_track: Vec<Track>,
}

impl RefRun {
    fn new(config: &OptimizerConfig, p0: &[f32]) -> Result<Self> {
        let state = ReferenceOptimizer::new(*config, p0.len())?.state;
        let p: Vec<f64> = p0.iter().map(|&v| v as f64).collect();
        Ok(RefRun { p_track: Track::new(&p), s_track: state.slots.iter().map(|s| Track::new(s)).collect(), p, state })
    }

    fn step(&mut self, config: &OptimizerConfig, t: u32, g: &[f64], reference: ReferenceStep) {
        self.state.allowance.fill(0.0);
        reference(t, &mut self.p, g, &mut self.state);
        self.p_track.update(&self.p);
        for (e, a) in self.p_track.extra.iter_mut().zip(&self.state.allowance) {
            *e += a;
        }
        for (slot, _) in config.state().used() {
            self.s_track[slot].update(&self.state.slots[slot]);
        }
    }
}

/// An input slot's values for step `t` (Newton's Hessian diagonal): a fresh
/// estimate, |h| in [0.5, 2), negative for about half the elements
/// (curvature away from a minimum). Each element keeps its sign over the
/// steps, so an EMA of h stays away from 0, where `m/(|h̄| + damping)` would
/// be ill-conditioned.
fn input_values(seed: u64, t: u64, n: usize) -> Vec<f32> {
    (0..n as u64).map(|i| (1.25 + 0.75 * uniform(seed ^ 0x4e45_5754, t, i)) * uniform(seed ^ 0x5349_474e, 0, i).signum()).collect()
}

/// Runs `case` for `work.steps` steps on `work.n` random elements on the GPU
/// and in the f64 reference, and compares params and every state buffer.
///
/// **Errors:** anything the engine or a readback reports.
#[cfg(not(target_arch = "wasm32"))]
pub fn run_case(device: &wgpu::Device, queue: &wgpu::Queue, case: &Case, work: Workload, options: EngineOptions) -> Result<CaseReport> {
    pollster::block_on(run_case_async(device, queue, case, work, options))
}

/// [`run_case`] without blocking: how the browser runs it.
///
/// **Errors:** as [`run_case`].
pub async fn run_case_async(device: &wgpu::Device, queue: &wgpu::Queue, case: &Case, work: Workload, options: EngineOptions) -> Result<CaseReport> {
    let config = case.config;
    run_case_against_async(device, queue, case, work, options, &|t, p, g, s| config.reference_step(t, p, g, s)).await
}

/// As [`run_case`], with the GPU running `case` and the reference running
/// `reference` instead of the case's own reference step: how the tests show
/// that the harness rejects a wrong rule.
///
/// **Errors:** anything the engine or a readback reports.
#[cfg(not(target_arch = "wasm32"))]
pub fn run_case_against(device: &wgpu::Device, queue: &wgpu::Queue, case: &Case, work: Workload, options: EngineOptions, reference: ReferenceStep) -> Result<CaseReport> {
    pollster::block_on(run_case_against_async(device, queue, case, work, options, reference))
}

/// [`run_case_against`] without blocking.
///
/// **Errors:** as [`run_case`].
pub async fn run_case_against_async(device: &wgpu::Device, queue: &wgpu::Queue, case: &Case, work: Workload, options: EngineOptions, reference: ReferenceStep<'_>) -> Result<CaseReport> {
    let (config, Workload { n, steps, seed }) = (case.config, work);
    let p0 = random_params(seed, n);
    let mut gpu = GpuRun::new(device, queue, config, &p0, options)?;
    let mut r = RefRun::new(&config, &p0)?;
    let input = config.state().input();
    let scales = grad_scales(seed, n);
    let (mut g, mut g64) = (vec![0f32; n], vec![0f64; n]);
    for t in 1..=steps {
        random_grads(seed, t as u64, &scales, &mut g);
        avoid_l2_cancellation(&config, &r.p, &mut g);
        queue.write_buffer(&gpu.grad, 0, bytemuck::cast_slice(&g));
        if let Some(slot) = input {
            let h = input_values(seed, t as u64, n);
            gpu.opt.write_state(slot, 0, &h)?;
            r.state.slots[slot].iter_mut().zip(&h).for_each(|(x, &v)| *x = v as f64);
        }
        gpu.opt.step()?;
        g64.iter_mut().zip(&g).for_each(|(d, &s)| *d = s as f64);
        r.step(&config, t, &g64, reference);
    }
    let k = config.tolerance_k();
    let (gpu_params, padding_untouched) = gpu.params(device, queue, n).await?;
    let mut quantities = vec![r.p_track.compare("param", &gpu_params, &r.p, k)];
    for (slot, s) in config.state().used() {
        let gpu_state = gpu.opt.read_state_async(slot, 0).await?;
        quantities.push(r.s_track[slot].compare(s.name, &gpu_state, &r.state.slots[slot], k));
    }
    Ok(CaseReport { name: case.name.clone(), rule: config.rule(), n, steps, k, quantities, gpu_params, padding_untouched, access: gpu.opt.access(), dispatches: gpu.opt.dispatch_count() })
}
