//! LAMB (You et al. 2019): its options, validation, f64 reference with its
//! error bound, and the GPU optimizer [`LambOptimizer`].

use serde::{Deserialize, Serialize};

use super::rows::{self, Kernels};
use super::shared_rows::{self, SharedRows};
use crate::engine::uniforms::{gpu_struct, StepUniform};
use crate::engine::ParamSlice;
use crate::error::{scoped, OptimError, Result};
use crate::rules::pieces::{bias_correction, budget, check_adam_like};

const LAMB_WGSL: &str = include_str!("../../shaders/matrix/lamb.wgsl");

/// When the trust ratio scales the update.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrustRatio {
    /// Every step (burn-optim's `use_trust_ratio = true`, the paper).
    #[default]
    Always,
    /// Only when `weight_decay ≠ 0` (NVIDIA Apex `FusedLAMB` with
    /// `use_nvlamb = False`): without decay the step is Adam's.
    WhenDecayed,
    /// Never: Adam with the decay term in the update (burn's
    /// `use_trust_ratio = false`).
    Never,
}

/// LAMB: Adam's bias-corrected update plus decoupled weight decay, scaled
/// per tensor by the trust ratio ‖θ‖/‖u‖. `torch.optim` has no LAMB; this
/// is burn-optim 0.22's `Lamb` and Apex's `FusedLAMB` (`adam_w_mode`,
/// `grad_averaging`; no global grad-norm clipping: clip the grads before the step).
///
/// ```text
/// m ← β₁·m + (1 − β₁)·g                         exp_avg
/// v ← β₂·v + (1 − β₂)·g²                        exp_avg_sq
/// u = (m/bc₁)/(√(v/bc₂) + eps) + weight_decay·θ  bcᵢ = 1 − βᵢᵗ (1 without bias_correction)
/// r = ‖θ‖/‖u‖ per tensor (1 if either norm is 0, or per trust_ratio)
/// θ ← θ − lr·r·u
/// ```
///
/// Defaults: `lr = 1e-3`, `betas = (0.9, 0.999)`, `eps = 1e-6`,
/// `weight_decay = 0` (burn's; Apex uses 0.01), `bias_correction = true`,
/// `trust_ratio = always`. State: `exp_avg`, `exp_avg_sq` and a step count
/// shared by all tensors (Apex's per-group `step`).
///
/// **Errors.** `lr`, `eps`, `weight_decay` finite and ≥ 0, `betas` in
/// [0, 1) (burn checks nothing; Apex only rejects AMSGrad).
///
/// **Tolerance** ([`Lamb::reference_step`] carries it): the moments are
/// element-wise EMAs (4u and 5u per step on their inputs, decaying with
/// β); u adds the bias corrections, the root (9u), the quotient (5u) and
/// the decay term; each norm is a sum of non-negative squares in a fixed
/// order ([`rows::shared_sum_depth`], for either row length: per lane,
/// log₂ WG levels, then the tensor's rows in order; or, in a row shared
/// with other tensors, runs of its lanes in order), so
/// its relative error is at most that depth in u, halved by the root; the
/// ratio adds 5u; the update lr·r·u and the subtraction 3u. The bound is
/// normwise per tensor and includes the previous steps' error of θ.
///
/// ```
/// let l = wgpu_optim::Lamb { betas: (1.0, 0.999), ..Default::default() };
/// assert!(l.validate().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lamb {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Decay rates (β₁, β₂) of the first and second moment EMAs (default (0.9, 0.999)).
    pub betas: (f64, f64),
    /// Term added to the denominator √(v/bc₂) (default 1e-6).
    pub eps: f64,
    /// Decoupled weight decay: weight_decay·θ is added to the update u (default 0.0).
    pub weight_decay: f64,
    /// Divide the moments by bcᵢ = 1 − βᵢᵗ (default true).
    pub bias_correction: bool,
    /// When the trust ratio scales the update (default [`TrustRatio::Always`]).
    pub trust_ratio: TrustRatio,
}

impl Default for Lamb {
    fn default() -> Self {
        Lamb { lr: 1e-3, betas: (0.9, 0.999), eps: 1e-6, weight_decay: 0.0, bias_correction: true, trust_ratio: TrustRatio::Always }
    }
}

/// u = 2⁻²⁴.
const U: f64 = 1.0 / (1u64 << 24) as f64;

/// One tensor's f64 reference state, with the bounds of the GPU's error.
#[derive(Clone, Debug, Default)]
pub struct LambReference {
    /// First moment m, one per element.
    pub exp_avg: Vec<f64>,
    /// Second moment v, one per element.
    pub exp_avg_sq: Vec<f64>,
    /// Per element: bounds of |exp_avg_GPU − exp_avg|, |exp_avg_sq_GPU − exp_avg_sq|.
    pub exp_avg_err: Vec<f64>,
    /// Per element: bound of |exp_avg_sq_GPU − exp_avg_sq|.
    pub exp_avg_sq_err: Vec<f64>,
    /// Bound of ‖θ_GPU − θ‖₂ over the tensor.
    pub param_err: f64,
}

impl LambReference {
    /// Zero state for a tensor of `numel` elements.
    pub fn new(numel: usize) -> Self {
        let zeros = vec![0.0; numel];
        LambReference { exp_avg: zeros.clone(), exp_avg_sq: zeros.clone(), exp_avg_err: zeros.clone(), exp_avg_sq_err: zeros, param_err: 0.0 }
    }
}

impl Lamb {
    /// Checks every option; see the type's **Errors** section.
    pub fn validate(&self) -> Result<()> {
        check_adam_like(self.lr, self.betas, self.eps, self.weight_decay)
    }

    /// Whether step updates are scaled by the trust ratio.
    pub fn adapts(&self) -> bool {
        match self.trust_ratio {
            TrustRatio::Always => true,
            TrustRatio::WhenDecayed => self.weight_decay != 0.0,
            TrustRatio::Never => false,
        }
    }

    /// The bias corrections of step `t` (1-based).
    fn corrections(&self, t: u32) -> (f64, f64) {
        if self.bias_correction { (bias_correction(self.betas.0, t), bias_correction(self.betas.1, t)) } else { (1.0, 1.0) }
    }

    /// Step `t` (1-based) of one tensor in f64, from the equations; also
    /// advances the error bounds of `state` (see **Tolerance**). `rows` is
    /// the number of rows of the GPU's reduction for this tensor.
    pub fn reference_step(&self, t: u32, p: &mut [f64], g: &[f64], state: &mut LambReference) {
        let (beta1, beta2) = self.betas;
        let (bc1, bc2) = self.corrections(t);
        let n = p.len();
        let mut upd = vec![0.0; n];
        let mut upd_err = vec![0.0; n];
        for i in 0..n {
            let (m0, v0) = (state.exp_avg[i], state.exp_avg_sq[i]);
            let m = beta1 * m0 + (1.0 - beta1) * g[i];
            let v = beta2 * v0 + (1.0 - beta2) * g[i] * g[i];
            state.exp_avg_err[i] = beta1 * state.exp_avg_err[i] + budget::ema(0.0) * U * (beta1 * m0.abs() + (1.0 - beta1) * g[i].abs());
            state.exp_avg_sq_err[i] = beta2 * state.exp_avg_sq_err[i] + budget::ema(1.0) * U * (beta2 * v0 + (1.0 - beta2) * g[i] * g[i]);
            (state.exp_avg[i], state.exp_avg_sq[i]) = (m, v);
            let (m_hat, v_hat) = (m / bc1, v / bc2);
            let root = v_hat.sqrt();
            let d = root + self.eps;
            let adam = m_hat / d;
            upd[i] = adam + self.weight_decay * p[i];
            // Errors of m̂ and v̂ (their inputs', then the host 1/bc and the product).
            let m_hat_err = state.exp_avg_err[i] / bc1 + 2.0 * U * m_hat.abs();
            let v_hat_err = state.exp_avg_sq_err[i] / bc2 + 2.0 * U * v_hat;
            let root_err = (0.5 * v_hat_err / root).min(v_hat_err.sqrt()) + budget::SQRT * U * root;
            let d_err = root_err + budget::ROUNDED * U * d;
            upd_err[i] = m_hat_err / d + m_hat.abs() * d_err / (d * d) + budget::DIV * U * adam.abs() + 3.0 * U * (self.weight_decay * p[i].abs() + upd[i].abs());
        }
        let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
        let (p_norm, u_norm) = (norm(p), norm(&upd));
        // θ's earlier error enters u through the decay term and the ratio through ‖θ‖.
        let u_err = norm(&upd_err) + self.weight_decay * state.param_err;
        let adapt = self.adapts() && p_norm > 0.0 && u_norm > 0.0;
        let ratio = if adapt { p_norm / u_norm } else { 1.0 };
        let sum_depth = rows::shared_sum_depth(n as u64) as f64 * U;
        let ratio_err = if adapt { sum_depth + 2.0 * budget::SQRT * U + budget::DIV * U + state.param_err / p_norm + u_err / u_norm } else { 0.0 };
        let step = self.lr * ratio;
        for i in 0..n {
            p[i] -= step * upd[i];
        }
        state.param_err += step * (u_err + u_norm * (ratio_err + 3.0 * U)) + U * norm(p);
    }
}

gpu_struct! {
    /// The per-step scalars (`Scalars` in lamb.wgsl), from f64.
    pub struct Scalars {
        /// Learning rate.
        pub lr: f32,
        /// β₁.
        pub beta1: f32,
        /// 1 − β₁, rounded from f64.
        pub one_minus_beta1: f32,
        /// β₂.
        pub beta2: f32,
        /// 1 − β₂, rounded from f64.
        pub one_minus_beta2: f32,
        /// 1/bc₁ of this step (1 without bias correction).
        pub inv_bc1: f32,
        /// 1/bc₂ of this step (1 without bias correction).
        pub inv_bc2: f32,
        /// Term added to the denominator.
        pub eps: f32,
        /// Decoupled weight decay.
        pub weight_decay: f32,
        /// 1: scale by the trust ratio.
        pub adapt: u32,
        /// Rows of the whole table (the ratios follow their sums).
        pub n_rows: u32,
        /// Where the trust pass's list of tensors starts in the tensor table.
        pub first_trusted: u32,
    }
}

/// One tensor (`Tensor` in lamb.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct TensorDesc {
    param: u32,
    grad: u32,
    state: u32,
    numel: u32,
    first_row: u32,
    /// The tensor's index (read in the trust pass's list).
    index: u32,
    pad: [u32; 2],
}

/// The passes of one (param buffer, grad buffer) pair.
struct Window {
    bind_group: wgpu::BindGroup,
    rows: u32,
}

/// The entry points of lamb.wgsl, in `Kernels::pipelines` order.
const ENTRIES: [&str; 3] = ["moments", "trust", "apply"];
/// Bindings 1.. (read-only?): param, grad, exp_avg, exp_avg_sq, tensors, rows, sums.
const READ_ONLY: [bool; 7] = [false, true, false, false, true, true, false];
/// Bindings 1–4, with generated accessors.
const OPERANDS: [rows::Operand; 4] = [
    rows::Operand { name: "param", binding: 1, writable: true },
    rows::Operand { name: "grad", binding: 2, writable: false },
    rows::Operand { name: "exp_avg", binding: 3, writable: true },
    rows::Operand { name: "exp_avg_sq", binding: 4, writable: true },
];

/// LAMB on the GPU for any set of tensors (one param group, shapes not
/// needed): each step is one compute pass of three launches per buffer
/// pair — moments and the rows' partial norms, the per-tensor trust ratios
/// (fixed-order sums: bitwise reproducible), the update — recorded into the
/// caller's encoder.
///
/// ```no_run
/// use wgpu_optim::{device, Lamb, LambOptimizer, ParamSlice};
/// let gpu = device::headless().unwrap();
/// let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
/// let mk = |size| gpu.device.create_buffer(&wgpu::BufferDescriptor { label: None, size, usage, mapped_at_creation: false });
/// let (w, g) = (mk(4 * 1000), mk(4 * 1000));
/// let mut opt = LambOptimizer::new(&gpu.device, &gpu.queue, Lamb::default(), &[ParamSlice::whole(&w, &g)]).unwrap();
/// opt.step().unwrap();
/// ```
pub struct LambOptimizer {
    device: wgpu::Device,
    queue: wgpu::Queue,
    config: Lamb,
    params: Vec<ParamSlice>,
    /// Each tensor's offset in the state buffers.
    state_at: Vec<u64>,
    kernels: Kernels,
    windows: Vec<Window>,
    uniform: StepUniform<Scalars>,
    exp_avg: wgpu::Buffer,
    exp_avg_sq: wgpu::Buffer,
    n_rows: u32,
    /// Tensors the trust pass takes (those of more than one row).
    trusted: u32,
    step: u32,
    access: rows::RowAccess,
}

impl LambOptimizer {
    /// An optimizer for `params` (any shapes, all in group 0).
    ///
    /// **Errors:** [`OptimError::InvalidHyperparameter`] (see [`Lamb`]),
    /// the slice checks of [`crate::Optimizer::new`],
    /// [`OptimError::ExceedsLimits`] for buffers past the device's limits,
    /// [`OptimError::Wgpu`] / [`OptimError::OutOfMemory`] for anything the
    /// device rejects.
    pub fn new(device: &wgpu::Device, queue: &wgpu::Queue, config: Lamb, params: &[ParamSlice]) -> Result<Self> {
        config.validate()?;
        rows::check_tensors(device, params)?;
        let numels: Vec<u64> = params.iter().map(ParamSlice::len).collect();
        let access = rows::RowAccess::of(device, params);
        // Each tensor's state starts on a whole unit of the access.
        let unit = access.segment();
        let state_at: Vec<u64> = numels.iter().scan(0, |at, n| Some(std::mem::replace(at, *at + n.next_multiple_of(unit)))).collect();
        let state_len: u64 = numels.iter().map(|n| n.next_multiple_of(unit)).sum();
        if 4 * state_len > device.limits().max_storage_buffer_binding_size {
            return Err(OptimError::ExceedsLimits(format!("LAMB's state of {} bytes per moment is past the binding limit", 4 * state_len)));
        }
        let (rows, first) = rows::rows(&numels, access.row_len());
        let pairs = rows::windows(device, params, &rows)?;
        let shares: Vec<SharedRows> = pairs.iter().map(|(_, _, mine)| shared_rows::share(mine, &numels, access.per_lane, true)).collect();
        let descs: Vec<TensorDesc> = params.iter().zip(&state_at).zip(&first).enumerate().map(|(index, ((p, &state), &first_row))| TensorDesc { param: p.param_offset as u32, grad: p.grad_offset as u32, state: state as u32, numel: p.len() as u32, first_row, index: index as u32, pad: [0; 2] }).collect();
        // The trust pass's list: tensors of more than one row (the others are in shared rows, whose moments pass writes their ratios).
        let trusted: Vec<TensorDesc> = descs.iter().filter(|d| d.numel as u64 > access.row_len()).copied().collect();
        let source = rows::totals_source(access, &Scalars::wgsl(), &format!("{}{}{LAMB_WGSL}", shared_rows::wgsl(), access.operands(&OPERANDS)));
        let kernels = Kernels::new(device, "lamb", &source, &READ_ONLY, &ENTRIES)?;
        let (uniform, exp_avg, exp_avg_sq, tensors, sums) = scoped(device, || {
            let storage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
            let buffer = |label, elements: u64| device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size: 4 * elements.max(4), usage: storage, mapped_at_creation: false });
            (StepUniform::new(device), buffer("exp_avg", state_len), buffer("exp_avg_sq", state_len), buffer("lamb tensors", 8 * (descs.len() + trusted.len()) as u64), buffer("lamb sums", 2 * rows.len() as u64 + numels.len() as u64))
        })?;
        queue.write_buffer(&tensors, 0, bytemuck::cast_slice(&[descs, trusted.clone()].concat()));
        let mut opt = LambOptimizer { device: device.clone(), queue: queue.clone(), config, params: params.to_vec(), state_at, kernels, windows: Vec::new(), uniform, exp_avg, exp_avg_sq, n_rows: rows.len() as u32, trusted: trusted.len() as u32, step: 0, access };
        opt.windows = opt.build_windows(pairs, shares, &tensors, &sums)?;
        Ok(opt)
    }

    /// The row buffer and bind group of each (param buffer, grad buffer) pair.
    fn build_windows(&self, pairs: Vec<(wgpu::Buffer, wgpu::Buffer, Vec<rows::RowDesc>)>, shares: Vec<SharedRows>, tensors: &wgpu::Buffer, sums: &wgpu::Buffer) -> Result<Vec<Window>> {
        let device = &self.device;
        scoped(device, || {
            pairs
                .into_iter()
                .zip(shares)
                .map(|((param, grad, _), share)| {
                    let row_buf = rows::table(device, &self.queue, "lamb rows", &share.entries);
                    let resources = vec![self.uniform.binding(), param.as_entire_binding(), grad.as_entire_binding(), self.exp_avg.as_entire_binding(), self.exp_avg_sq.as_entire_binding(), tensors.as_entire_binding(), row_buf.as_entire_binding(), sums.as_entire_binding()];
                    Window { bind_group: self.kernels.bind(device, "lamb", resources), rows: share.workgroups }
                })
                .collect()
        })
    }

    /// The scalars of step `t`, computed in f64.
    fn scalars(&self, t: u32) -> Scalars {
        let c = &self.config;
        let (bc1, bc2) = c.corrections(t);
        Scalars {
            lr: c.lr as f32,
            beta1: c.betas.0 as f32,
            one_minus_beta1: (1.0 - c.betas.0) as f32,
            beta2: c.betas.1 as f32,
            one_minus_beta2: (1.0 - c.betas.1) as f32,
            inv_bc1: (1.0 / bc1) as f32,
            inv_bc2: (1.0 / bc2) as f32,
            eps: c.eps as f32,
            weight_decay: c.weight_decay as f32,
            adapt: c.adapts() as u32,
            n_rows: self.n_rows,
            first_trusted: self.params.len() as u32,
        }
    }

    /// Records the next step into `encoder` (nothing is submitted or waited
    /// for); any number may be recorded before a submit.
    pub fn record_step(&mut self, encoder: &mut wgpu::CommandEncoder) -> Result<()> {
        let t = self.step.checked_add(1).ok_or(OptimError::StepOverflow)?;
        self.uniform.record(&self.device, encoder, &self.scalars(t))?;
        self.step = t;
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("lamb step"), timestamp_writes: None });
        let per_window = |pass: &mut wgpu::ComputePass<'_>, pipeline: &wgpu::ComputePipeline| {
            pass.set_pipeline(pipeline);
            for w in self.windows.iter().filter(|w| w.rows > 0) {
                pass.set_bind_group(0, &w.bind_group, &[]);
                pass.dispatch_workgroups(w.rows, 1, 1);
            }
        };
        let pipelines = &self.kernels.pipelines;
        per_window(&mut pass, &pipelines[0]);
        if self.trusted > 0 {
            pass.set_pipeline(&pipelines[1]);
            pass.set_bind_group(0, &self.windows[0].bind_group, &[]);
            pass.dispatch_workgroups(self.trusted, 1, 1);
        }
        per_window(&mut pass, &pipelines[2]);
        Ok(())
    }

    /// Records and submits one step.
    ///
    /// **Errors:** [`OptimError::StepOverflow`], [`OptimError::Wgpu`]
    /// if the device rejects the work.
    pub fn step(&mut self) -> Result<()> {
        let (device, queue) = (self.device.clone(), self.queue.clone());
        rows::submit(&device, &queue, "lamb step", |encoder| self.record_step(encoder))
    }

    /// The config.
    pub fn config(&self) -> &Lamb {
        &self.config
    }

    /// Sets the learning rate (a schedule's value); the next steps use it.
    ///
    /// **Errors:** [`OptimError::InvalidHyperparameter`] for a bad lr.
    pub fn set_lr(&mut self, lr: f64) -> Result<()> {
        let config = Lamb { lr, ..self.config };
        config.validate()?;
        self.config = config;
        Ok(())
    }

    /// Replaces the config and the step count (a checkpoint's).
    ///
    /// **Errors:** [`OptimError::InvalidHyperparameter`]; nothing changes.
    pub fn set_config(&mut self, config: Lamb, steps: u32) -> Result<()> {
        config.validate()?;
        self.config = config;
        self.step = steps;
        Ok(())
    }

    /// How the element passes move their operands (scalar, vec4 or wide;
    /// the same bits either way).
    pub fn access(&self) -> rows::RowAccess {
        self.access
    }

    /// Steps taken (recorded) so far.
    pub fn step_count(&self) -> u32 {
        self.step
    }

    /// The parameter tensors, in the order given.
    pub fn params(&self) -> &[ParamSlice] {
        &self.params
    }

    /// `exp_avg` and `exp_avg_sq` of tensor `index`, read back (waits for
    /// the GPU).
    ///
    /// **Errors:** [`OptimError::InvalidOptions`] for a bad index;
    /// [`OptimError::Readback`] / [`OptimError::DeviceLost`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_state(&self, index: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        pollster::block_on(self.read_state_async(index))
    }

    /// [`LambOptimizer::read_state`] without blocking (the web's form).
    ///
    /// **Errors:** as [`LambOptimizer::read_state`].
    pub async fn read_state_async(&self, index: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        let at = *self.state_at.get(index).ok_or(OptimError::InvalidOptions("parameter index out of range"))?;
        let len = self.params[index].len();
        let both = crate::device::read_ranges_f32_async(&self.device, &self.queue, &[(&self.exp_avg, at, len), (&self.exp_avg_sq, at, len)]).await?;
        let (m, v) = both.split_at(len as usize);
        Ok((m.to_vec(), v.to_vec()))
    }

    /// Writes the state of tensor `index` and the step count (a resume from
    /// a checkpoint).
    ///
    /// **Errors:** [`OptimError::InvalidOptions`] for a bad index,
    /// [`OptimError::LengthMismatch`] for a wrong length. Nothing changes
    /// on an error.
    pub fn write_state(&mut self, index: usize, exp_avg: &[f32], exp_avg_sq: &[f32], step: u32) -> Result<()> {
        let at = *self.state_at.get(index).ok_or(OptimError::InvalidOptions("parameter index out of range"))?;
        let len = self.params[index].len();
        for values in [exp_avg, exp_avg_sq] {
            if values.len() as u64 != len {
                return Err(OptimError::LengthMismatch { index, param_len: len, grad_len: values.len() as u64 });
            }
        }
        self.queue.write_buffer(&self.exp_avg, 4 * at, bytemuck::cast_slice(exp_avg));
        self.queue.write_buffer(&self.exp_avg_sq, 4 * at, bytemuck::cast_slice(exp_avg_sq));
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The f64 reference reproduces burn-optim 0.22.1's `lamb.rs` numbers
    /// (two steps with the trust ratio, one without).
    #[test]
    fn reference_matches_burns_numbers() {
        let config = Lamb { lr: 0.01, weight_decay: 0.1, ..Lamb::default() };
        let run = |config: Lamb, grads: &[[f64; 3]]| {
            let (mut p, mut state) = (vec![1.0, -2.0, 3.0], LambReference::new(3));
            for (t, g) in grads.iter().enumerate() {
                config.reference_step(t as u32 + 1, &mut p, g, &mut state);
            }
            p
        };
        let close = |got: Vec<f64>, want: [f64; 3]| got.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6 * b.abs());
        assert!(close(run(config, &[[0.1, -0.2, 0.3], [-0.4, 0.5, -0.6]]), [1.0127187, -1.9956441, 2.9814672]));
        assert!(close(run(config, &[[0.1, -0.2, 0.3]]), [0.9802435, -1.9784473, 2.9766512]));
        assert!(close(run(Lamb { trust_ratio: TrustRatio::Never, ..config }, &[[0.1, -0.2, 0.3]]), [0.9890001, -1.988, 2.987]));
    }
}
