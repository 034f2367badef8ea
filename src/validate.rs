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

use crate::config::{Adadelta, Adagrad, Adam, AdamW, Adamax, Lion, NAdam, Newton, OptimizerConfig, RAdam, RmsProp, Rule, Sgd};
use crate::device::read_f32;
use crate::engine::{EngineOptions, Optimizer, ParamSlice};
use crate::error::Result;
use crate::reference::ReferenceOptimizer;

/// Unit roundoff of f32.
pub const EPS32: f64 = 1.0 / (1u64 << 24) as f64;
/// Absolute slack added to every bound (guards exact-zero scales only).
pub const TINY: f64 = 1e-30;

/// The `k` of the error bound for a config: f32 roundings per step, in units
/// of 2⁻²⁴ of the element's per-step scale.
///
/// | rule | k | reason |
/// |---|---|---|
/// | sgd | 2 | L2 term, product, difference |
/// | momentum, nag | 4 | plus the momentum buffer's two products and sum |
/// | adagrad | 4 | square, sum, root, eps, quotient, product |
/// | rmsprop | 4 | as adagrad, with the EMA |
/// | rmsprop, centered | 24 | v − ḡ² amplifies rounding by v/(v − ḡ²) |
/// | adadelta | 8 | two roots, a quotient and products per step |
/// | adam, adamw | 4 | two EMAs, root, bias correction, quotient |
/// | adamax | 2 | EMA, max, quotient, bias correction |
/// | nadam | 4 | two EMAs, root, two quotients and two products |
/// | radam | 4 | two EMAs, root, sum of the two coefficient terms |
/// | newton | 4 | EMAs, |h| + damping, quotient, clamp |
/// | lion | 2 | decay product, EMA; plus 2·lr for each step whose sign was within rounding of 0 |
///
/// The measured worst cases are in the README; the bound has a margin of
/// about 2× over them.
pub fn tolerance_k(config: &OptimizerConfig) -> f64 {
    match config {
        OptimizerConfig::RmsProp(c) if c.centered => 24.0,
        _ => match config.rule() {
            Rule::Sgd => 2.0,
            Rule::Momentum | Rule::Nag => 4.0,
            Rule::Adagrad => 4.0,
            Rule::RmsProp => 4.0,
            Rule::Adadelta => 8.0,
            Rule::Adam | Rule::AdamW => 4.0,
            Rule::Adamax => 2.0,
            Rule::NAdam => 4.0,
            Rule::RAdam => 4.0,
            Rule::Newton => 4.0,
            Rule::Lion => 2.0,
        },
    }
}

/// A named config to validate.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub config: OptimizerConfig,
}

fn case(name: &str, config: impl Into<OptimizerConfig>) -> Case {
    Case { name: name.to_string(), config: config.into() }
}

/// Every rule under every option set the test suite covers.
pub fn all_cases() -> Vec<Case> {
    vec![
        case("sgd", Sgd { lr: 0.01, ..Sgd::default() }),
        case("sgd wd maximize", Sgd { lr: 0.01, weight_decay: 0.1, maximize: true, ..Sgd::default() }),
        case("momentum", Sgd { lr: 0.01, momentum: 0.9, ..Sgd::default() }),
        case("momentum dampening wd", Sgd { lr: 0.01, momentum: 0.8, dampening: 0.5, weight_decay: 0.05, ..Sgd::default() }),
        case("momentum ema", Sgd::ema_momentum(0.05, 0.9)),
        case("nag", Sgd { lr: 0.01, momentum: 0.9, nesterov: true, ..Sgd::default() }),
        case("nag wd maximize", Sgd { lr: 0.01, momentum: 0.7, nesterov: true, weight_decay: 0.1, maximize: true, ..Sgd::default() }),
        case("adagrad", Adagrad::default()),
        case("adagrad lr_decay init wd", Adagrad { lr_decay: 0.01, initial_accumulator_value: 0.1, weight_decay: 0.05, ..Adagrad::default() }),
        case("adagrad eps_inside_sqrt maximize", Adagrad { eps_inside_sqrt: true, eps: 1e-6, maximize: true, ..Adagrad::default() }),
        case("rmsprop", RmsProp::default()),
        case("rmsprop centered", RmsProp { centered: true, ..RmsProp::default() }),
        case("rmsprop momentum", RmsProp { momentum: 0.9, ..RmsProp::default() }),
        case("rmsprop centered momentum wd", RmsProp { centered: true, momentum: 0.5, weight_decay: 0.1, ..RmsProp::default() }),
        case("rmsprop eps_inside_sqrt maximize", RmsProp { eps_inside_sqrt: true, maximize: true, ..RmsProp::default() }),
        case("adadelta", Adadelta::default()),
        case("adadelta rho wd maximize", Adadelta { rho: 0.95, weight_decay: 0.1, maximize: true, ..Adadelta::default() }),
        case("adam", Adam::default()),
        case("adam amsgrad", Adam { amsgrad: true, ..Adam::default() }),
        case("adam wd", Adam { weight_decay: 0.1, betas: (0.8, 0.99), ..Adam::default() }),
        case("adam eps_inside_sqrt maximize", Adam { eps_inside_sqrt: true, maximize: true, ..Adam::default() }),
        case("adamw", AdamW::default()),
        case("adamw amsgrad", AdamW { amsgrad: true, weight_decay: 0.1, ..AdamW::default() }),
        case("adamw eps_inside_sqrt maximize", AdamW { eps_inside_sqrt: true, maximize: true, lr: 1e-2, ..AdamW::default() }),
        case("adamax", Adamax::default()),
        case("adamax wd maximize", Adamax { weight_decay: 0.1, maximize: true, betas: (0.8, 0.99), ..Adamax::default() }),
        case("nadam", NAdam::default()),
        case("nadam wd momentum_decay", NAdam { weight_decay: 0.05, momentum_decay: 0.01, ..NAdam::default() }),
        case("nadam decoupled wd maximize", NAdam { weight_decay: 0.1, decoupled_weight_decay: true, maximize: true, ..NAdam::default() }),
        case("radam", RAdam::default()),
        case("radam decoupled wd maximize", RAdam { weight_decay: 0.1, decoupled_weight_decay: true, maximize: true, betas: (0.9, 0.99), ..RAdam::default() }),
        case("newton", Newton { lr: 0.1, damping: 1e-3, ..Newton::default() }),
        case("newton hessian ema maximize", Newton { lr: 0.05, beta2: 0.9, maximize: true, ..Newton::default() }),
        case("newton sophia wd", Newton { lr: 0.01, beta1: 0.965, beta2: 0.99, clip: 1.0, damping: 1e-3, weight_decay: 0.1, ..Newton::default() }),
        case("lion", Lion { lr: 1e-3, ..Lion::default() }),
        case("lion wd maximize", Lion { lr: 3e-3, weight_decay: 0.1, maximize: true, betas: (0.95, 0.98) }),
    ]
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

/// Counter-based uniform random number in [-1, 1): splitmix64 of the key.
pub fn uniform(seed: u64, a: u64, b: u64) -> f32 {
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(a.wrapping_mul(0xBF58_476D_1CE4_E5B9))
        .wrapping_add(b.wrapping_mul(0x94D0_49BB_1331_11EB))
        .wrapping_add(0x2545_F491_4F6C_DD1D);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    ((z >> 40) as f32) * (1.0 / (1u64 << 23) as f32) - 1.0
}

/// Random initial params in ±[0.1, 1.1) (never zero).
pub fn random_params(seed: u64, n: usize) -> Vec<f32> {
    (0..n as u64)
        .map(|i| {
            let u = uniform(seed, u64::MAX, i);
            u.signum() * (0.1 + u.abs())
        })
        .collect()
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
    let wd = match config {
        OptimizerConfig::AdamW(_) => 0.0,
        c if c.flags() & crate::config::flags::DECOUPLED != 0 => 0.0,
        c => c.weight_decay(),
    };
    if wd == 0.0 {
        return;
    }
    let sign = if config.flags() & crate::config::flags::MAXIMIZE != 0 { -1.0 } else { 1.0 };
    for (g, &p) in grads.iter_mut().zip(params) {
        if sign * (*g as f64) * p < 0.0 {
            *g = -*g;
        }
    }
}

/// Error of one quantity (params or a state buffer).
#[derive(Clone, Debug)]
pub struct QuantityError {
    pub name: &'static str,
    /// max |gpu − ref|.
    pub max_abs: f64,
    /// max over elements of |gpu − ref| / (2⁻²⁴ · scale): the k actually needed.
    pub k_needed: f64,
    /// ‖gpu − ref‖₂ / ‖ref‖₂.
    pub rel_l2: f64,
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
    pub name: String,
    pub rule: Rule,
    pub n: usize,
    pub steps: u32,
    pub k: f64,
    pub quantities: Vec<QuantityError>,
    /// The final GPU params (for further checks such as determinism).
    pub gpu_params: Vec<f32>,
    /// Whether the elements after the tensor in its buffer kept their value.
    pub padding_untouched: bool,
    /// Whether the vec4 kernel ran (else the scalar-access kernel).
    pub vec4: bool,
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
    /// Extra absolute allowance per element (Lion's undetermined signs).
    extra: Vec<f64>,
}

impl Track {
    fn new(x: &[f64]) -> Self {
        Track { scale: x.iter().map(|v| v.abs()).collect(), prev: x.to_vec(), extra: vec![0.0; x.len()] }
    }
    fn update(&mut self, x: &[f64]) {
        for i in 0..x.len() {
            self.scale[i] += x[i].abs() + (x[i] - self.prev[i]).abs();
            self.prev[i] = x[i];
        }
    }
    fn compare(&self, name: &'static str, gpu: &[f32], reference: &[f64], k: f64) -> QuantityError {
        let (mut max_abs, mut k_needed, mut num, mut den, mut violations, mut worst) = (0f64, 0f64, 0f64, 0f64, 0usize, 0usize);
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
        QuantityError { name, max_abs, k_needed, rel_l2: if den > 0.0 { (num / den).sqrt() } else { num.sqrt() }, violations, worst }
    }
}

/// Runs `config` for `steps` steps on `n` random elements on the GPU and in
/// the f64 reference, and compares params and every state buffer.
///
/// **Errors:** anything the engine or a readback reports.
pub fn run_case(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    name: &str,
    config: OptimizerConfig,
    n: usize,
    steps: u32,
    seed: u64,
    options: EngineOptions,
) -> Result<CaseReport> {
    let rule = config.rule();
    let k = tolerance_k(&config);
    let p0 = random_params(seed, n);
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
    // Buffers are padded to whole vec4s so the vec4 kernel (with its scalar
    // tail) runs; the padding holds a sentinel that must survive untouched.
    let padded = n.next_multiple_of(4) + 4;
    let make = |label| device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size: 4 * padded as u64, usage, mapped_at_creation: false });
    let (param, grad) = (make("params"), make("grads"));
    let mut init = p0.clone();
    init.resize(padded, SENTINEL);
    queue.write_buffer(&param, 0, bytemuck::cast_slice(&init));
    queue.write_buffer(&grad, 4 * n as u64, bytemuck::cast_slice(&vec![SENTINEL; padded - n]));
    let slice = ParamSlice::range(&param, 0, &grad, 0, n as u64);
    let mut opt = Optimizer::with_groups(device, queue, &[config], &[slice], options)?;

    let mut reference = ReferenceOptimizer::new(config, n)?;
    let mut p_ref: Vec<f64> = p0.iter().map(|&v| v as f64).collect();
    let names = config.state_names();
    let mut p_track = Track::new(&p_ref);
    let mut s_track: Vec<Track> = reference.state.iter().map(|s| Track::new(s)).collect();
    let scales = grad_scales(seed, n);
    let mut g = vec![0f32; n];
    let mut g64 = vec![0f64; n];
    for t in 1..=steps as u64 {
        random_grads(seed, t, &scales, &mut g);
        avoid_l2_cancellation(&config, &p_ref, &mut g);
        queue.write_buffer(&grad, 0, bytemuck::cast_slice(&g));
        if let OptimizerConfig::Newton(_) = config {
            // The Hessian diagonal is an input: a fresh positive estimate
            // every step, in the GPU's state slot 0 and the reference's.
            let h: Vec<f32> = (0..n as u64).map(|i| 1.25 + 0.75 * uniform(seed ^ 0x4e45_5754, t, i)).collect();
            opt.write_state(0, 0, &h)?;
            for (r, &x) in reference.state[0].iter_mut().zip(&h) {
                *r = x as f64;
            }
        }
        opt.step()?;
        for (d, s) in g64.iter_mut().zip(&g) {
            *d = *s as f64;
        }
        reference.step(&mut p_ref, &g64)?;
        p_track.update(&p_ref);
        if let OptimizerConfig::Lion(c) = config {
            for (e, &amb) in p_track.extra.iter_mut().zip(&reference.sign_ambiguous) {
                if amb {
                    *e += 2.0 * c.lr;
                }
            }
        }
        for (slot, tr) in s_track.iter_mut().enumerate() {
            if names.get(slot).is_some_and(|nm| !nm.is_empty()) {
                tr.update(&reference.state[slot]);
            }
        }
    }
    let mut gpu_params = read_f32(device, queue, &param, 0, padded as u64)?;
    let padding_untouched = gpu_params[n..].iter().all(|x| x.to_bits() == SENTINEL.to_bits());
    gpu_params.truncate(n);
    let mut quantities = vec![p_track.compare("param", &gpu_params, &p_ref, k)];
    for (slot, nm) in names.iter().enumerate() {
        if nm.is_empty() {
            continue;
        }
        let gpu_state = opt.read_state(slot, 0)?;
        quantities.push(s_track[slot].compare(nm, &gpu_state, &reference.state[slot], k));
    }
    Ok(CaseReport { name: name.to_string(), rule, n, steps, k, quantities, gpu_params, padding_untouched, vec4: opt.uses_vec4(), dispatches: opt.dispatch_count() })
}
