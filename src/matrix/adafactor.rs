//! Adafactor: `torch.optim.Adafactor` — options, validation, the f64
//! reference with its error bound, and the GPU optimizer
//! [`AdafactorOptimizer`].

use serde::{Deserialize, Serialize};

use super::muon::lerp;
use super::rows::{self, Kernels, RowDesc};
use crate::engine::uniforms::{gpu_struct, StepUniform};
use crate::engine::ParamSlice;
use crate::error::{scoped, OptimError, Result};
use crate::rules::pieces::{budget, check_finite_nonneg};

const ADAFACTOR_WGSL: &str = include_str!("../../shaders/matrix/adafactor.wgsl");
/// f32's machine epsilon, PyTorch's `eps[0] = None` for f32 params.
pub const F32_EPS: f64 = f32::EPSILON as f64;

/// Adafactor, `torch.optim.Adafactor`: factored second moments (a row and
/// a column statistic per matrix instead of one per element), a step
/// relative to the param's RMS, and update clipping.
///
/// ```text
/// w = t^beta2_decay;  rho = min(lr, 1/√t);  α = max(eps2, RMS(θ))·rho      (θ before the decay)
/// θ ← θ·(1 − lr·weight_decay)
/// factored (2+ dims, per slab of the last two, R × C):
///   row_var ← lerp(row_var, mean_c(G²), w);  col_var ← lerp(col_var, mean_r(G²), w)
///   V = row_var·col_varᵀ / max(mean(row_var), eps1)
/// otherwise:  variance ← lerp(variance, G², w);  V = variance
/// U = G / max(√V, eps1)        (PyTorch: clamp(V, eps1²).rsqrt()·G)
/// θ ← θ − α / max(1, RMS(U)/d) · U
/// ```
///
/// Defaults (PyTorch's code): `lr = 1e-2`, `beta2_decay = -0.8`,
/// `eps = (None, 1e-3)` (None: f32's machine epsilon, [`F32_EPS`]),
/// `d = 1.0`, `weight_decay = 0.0` (PyTorch's docs say 1e-2; its code has
/// 0), `maximize = false`. State: `row_var` (shape `[.., R, 1]`) and
/// `col_var` (`[.., 1, C]`) for tensors with a shape of 2 or more dims,
/// `variance` for the rest (no shape, 1-D, 0-D); a step count shared by all
/// tensors (PyTorch keeps one per tensor; they agree unless tensors are
/// added later).
///
/// **Errors.** As PyTorch: `lr ≥ 0`, `beta2_decay ≤ 0`, `eps` ≥ 0,
/// `d ≥ 1`, `weight_decay ≥ 0`; every value finite.
///
/// **Tolerance** ([`Adafactor::reference_step`] carries it), from WGSL's
/// accuracy: each row or column mean is a fixed-order sum of C (or R)
/// squares, in segments then over them (depth at most C), and a division
/// (relative (C + 6)u: the terms are non-negative),
/// and each lerp of non-negative values adds 8u per step; the slab mean of
/// row_var adds its sum's depth ([`Factoring::slab_sum_depth`]: R, or
/// ⌈R/64⌉ + 6 for a tree) + 5u, the quotient V 6u, `inverseSqrt` 4u, the product
/// with G 1u; the two RMS values are fixed-order sums of squares (depth
/// [`rows::sum_depth`], for either row length, halved by the root, plus 9u
/// and the divisions);
/// the update adds 3u of step·‖U‖ and u‖θ‖. The bound is normwise per
/// tensor and includes the previous steps' error of θ through RMS(θ) and
/// the decay.
///
/// ```
/// let a = wgpu_optim::Adafactor { d: 0.5, ..Default::default() };
/// assert!(a.validate().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Adafactor {
    pub lr: f64,
    pub beta2_decay: f64,
    /// `(eps1, eps2)`; `None` is f32's machine epsilon.
    pub eps: (Option<f64>, f64),
    pub d: f64,
    pub weight_decay: f64,
    pub maximize: bool,
}

impl Default for Adafactor {
    fn default() -> Self {
        Adafactor { lr: 1e-2, beta2_decay: -0.8, eps: (None, 1e-3), d: 1.0, weight_decay: 0.0, maximize: false }
    }
}

/// u = 2⁻²⁴.
const U: f64 = 1.0 / (1u64 << 24) as f64;

/// Relative error a lerp of non-negative values adds (in u): a convex
/// combination keeps its inputs' relative errors; the difference, product
/// and sum add 6u, the host weight's rounding 2u more.
const LERP: f64 = 8.0;

/// How a tensor's second moment is kept: B slabs of R × C, or unfactored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Factoring {
    pub slabs: u64,
    pub rows: u64,
    pub cols: u64,
}

impl Factoring {
    /// PyTorch's choice for a tensor of `shape` (`None`: a flat range, as
    /// 1-D): the last two dims of a shape of 2 or more dims.
    pub fn of(shape: Option<&[u64]>) -> Option<Factoring> {
        match shape {
            Some(s) if s.len() >= 2 => Some(Factoring { slabs: s[..s.len() - 2].iter().product(), rows: s[s.len() - 2], cols: s[s.len() - 1] }),
            _ => None,
        }
    }

    /// Whether a slab's mean of row_var is summed by a workgroup's tree
    /// (lanes take every TOTAL_WG-th row, then `total_sum`:
    /// B·(⌈R/TOTAL_WG⌉ + 10) steps, 10 the tree's share) rather than by a
    /// lane per slab (its R rows in order: ⌈B/TOTAL_WG⌉·R steps): whichever
    /// takes fewer steps.
    pub fn slab_tree(&self) -> bool {
        let wg = rows::TOTAL_WG as u64;
        self.slabs * (self.rows.div_ceil(wg) + 10) < self.slabs.div_ceil(wg) * self.rows
    }

    /// The depth in roundings of a slab's sum of row_var.
    pub fn slab_sum_depth(&self) -> u64 {
        if self.slab_tree() {
            self.rows.div_ceil(rows::TOTAL_WG as u64) + rows::TOTAL_WG.trailing_zeros() as u64
        } else {
            self.rows
        }
    }
}

/// The state tensors of a parameter of `shape`, in their order in the state
/// buffer, by PyTorch name and shape: `row_var` `[.., R, 1]` and `col_var`
/// `[.., 1, C]` for 2 or more dims, else `variance` (the param's shape).
pub fn state_layout(shape: &[u64]) -> Vec<(&'static str, Vec<u64>)> {
    match Factoring::of(Some(shape)) {
        Some(f) => {
            let lead = &shape[..shape.len() - 2];
            vec![("row_var", [lead, &[f.rows, 1]].concat()), ("col_var", [lead, &[1, f.cols]].concat())]
        }
        None => vec![("variance", shape.to_vec())],
    }
}

/// `values` (a state buffer's range, in layout order) cut into the layout's
/// tensors: (name, shape, values).
pub fn split_state<T: Clone>(layout: Vec<(&'static str, Vec<u64>)>, values: &[T]) -> Vec<(&'static str, Vec<u64>, Vec<T>)> {
    let mut at = 0;
    layout
        .into_iter()
        .map(|(name, shape)| {
            let len = shape.iter().product::<u64>() as usize;
            at += len;
            (name, shape, values[at - len..at].to_vec())
        })
        .collect()
}

/// One tensor's f64 reference state, with the bounds of the GPU's error.
#[derive(Clone, Debug)]
pub struct AdafactorReference {
    pub factoring: Option<Factoring>,
    /// row_var (B·R) then col_var (B·C), or variance (numel).
    pub state: Vec<f64>,
    /// Relative error bound of every state value (the values are ≥ 0).
    pub state_rel_err: f64,
    /// Bound of ‖θ_GPU − θ‖₂ over the tensor.
    pub param_err: f64,
}

impl AdafactorReference {
    /// Zero state for a tensor of `numel` elements and `shape`.
    pub fn new(numel: u64, shape: Option<&[u64]>) -> Self {
        let factoring = Factoring::of(shape);
        let len = factoring.map_or(numel, |f| f.slabs * (f.rows + f.cols));
        AdafactorReference { factoring, state: vec![0.0; len as usize], state_rel_err: 0.0, param_err: 0.0 }
    }
}

impl Adafactor {
    /// Checks every option; see the type's **Errors** section.
    pub fn validate(&self) -> Result<()> {
        check_finite_nonneg("lr", self.lr)?;
        if !(self.beta2_decay <= 0.0 && self.beta2_decay.is_finite()) {
            return Err(OptimError::InvalidHyperparameter { name: "beta2_decay", value: self.beta2_decay, requirement: "must be finite and <= 0" });
        }
        if let Some(eps1) = self.eps.0 {
            check_finite_nonneg("eps[0]", eps1)?;
        }
        check_finite_nonneg("eps[1]", self.eps.1)?;
        if !(self.d >= 1.0 && self.d.is_finite()) {
            return Err(OptimError::InvalidHyperparameter { name: "d", value: self.d, requirement: "must be finite and >= 1" });
        }
        check_finite_nonneg("weight_decay", self.weight_decay)
    }

    /// eps1, with PyTorch's `None` resolved for f32 params.
    pub fn eps1(&self) -> f64 {
        self.eps.0.unwrap_or(F32_EPS)
    }

    /// The host scalars of step `t`: (w, rho).
    fn schedule(&self, t: u32) -> (f64, f64) {
        let t = t as f64;
        (t.powf(self.beta2_decay), self.lr.min(1.0 / t.sqrt()))
    }

    /// Step `t` (1-based) of one tensor in f64, as PyTorch's single-tensor
    /// code; also advances the error bounds of `state` (see **Tolerance**).
    pub fn reference_step(&self, t: u32, p: &mut [f64], grad: &[f64], state: &mut AdafactorReference) {
        let (w, rho) = self.schedule(t);
        let eps1 = self.eps1();
        let n = p.len();
        let g: Vec<f64> = grad.iter().map(|&x| if self.maximize { -x } else { x }).collect();
        let rms = |v: &[f64]| (v.iter().map(|x| x * x).sum::<f64>() / n as f64).sqrt();
        let p_rms = rms(p);
        let alpha = self.eps.1.max(p_rms) * rho;
        let decay = 1.0 - self.lr * self.weight_decay;
        p.iter_mut().for_each(|x| *x *= decay);
        let (v, state_err, v_err) = match state.factoring {
            Some(f) => self.factored_variance(f, &g, w, state),
            None => {
                state.state.iter_mut().zip(&g).for_each(|(s, g)| *s = lerp(*s, g * g, w));
                let err = state.state_rel_err.max(budget::ROUNDED * U) + LERP * U;
                (state.state.clone(), err, err)
            }
        };
        state.state_rel_err = state_err;
        let upd: Vec<f64> = g.iter().zip(&v).map(|(g, v)| g / v.max(eps1 * eps1).sqrt()).collect();
        let u_rms = rms(&upd);
        let denom = (u_rms / self.d).max(1.0);
        let step = alpha / denom;
        p.iter_mut().zip(&upd).for_each(|(x, u)| *x -= step * u);
        // Errors: U relative (V's, halved by the root, inverseSqrt 4u, × G), the two RMS values, the update.
        let u_err = v_err / 2.0 + 5.0 * U;
        let depth = rows::sum_depth(n as u64) as f64 * U;
        let p_norm = p_rms * (n as f64).sqrt();
        let alpha_err = (if p_rms > self.eps.1 { depth / 2.0 + budget::DIV * U / 2.0 + budget::SQRT * U + state.param_err / p_norm.max(1e-300) } else { 0.0 }) + 2.0 * U;
        let denom_err = if denom > 1.0 { u_err + depth / 2.0 + budget::DIV * U * 1.5 + budget::SQRT * U } else { 0.0 };
        let u_norm = u_rms * (n as f64).sqrt();
        let theta = p.iter().map(|x| x * x).sum::<f64>().sqrt();
        state.param_err = state.param_err * decay + step * u_norm * (u_err + alpha_err + denom_err + budget::DIV * U + 3.0 * U) + 2.0 * U * theta;
    }

    /// The factored statistics of one step for every slab; returns V, the
    /// state's relative error bound and V's.
    fn factored_variance(&self, f: Factoring, g: &[f64], w: f64, state: &mut AdafactorReference) -> (Vec<f64>, f64, f64) {
        let (b_n, r_n, c_n) = (f.slabs as usize, f.rows as usize, f.cols as usize);
        let (row_var, col_var) = state.state.split_at_mut(b_n * r_n);
        let mut v = vec![0.0; g.len()];
        for b in 0..b_n {
            let slab = &g[b * r_n * c_n..(b + 1) * r_n * c_n];
            for r in 0..r_n {
                let mean = slab[r * c_n..(r + 1) * c_n].iter().map(|x| x * x).sum::<f64>() / c_n as f64;
                row_var[b * r_n + r] = lerp(row_var[b * r_n + r], mean, w);
            }
            for c in 0..c_n {
                let mean = (0..r_n).map(|r| slab[r * c_n + c].powi(2)).sum::<f64>() / r_n as f64;
                col_var[b * c_n + c] = lerp(col_var[b * c_n + c], mean, w);
            }
            let row_mean = (row_var[b * r_n..(b + 1) * r_n].iter().sum::<f64>() / r_n as f64).max(self.eps1());
            for r in 0..r_n {
                for c in 0..c_n {
                    v[b * r_n * c_n + r * c_n + c] = row_var[b * r_n + r] * col_var[b * c_n + c] / row_mean;
                }
            }
        }
        let mean_err = (f.rows.max(f.cols) + 6) as f64 * U;
        let state_err = state.state_rel_err.max(mean_err) + LERP * U;
        // row_var, col_var and their slab mean (its sum and division), the product and quotient.
        let v_err = 3.0 * state_err + (f.slab_sum_depth() + 5) as f64 * U + 6.0 * U;
        (v, state_err, v_err)
    }
}

gpu_struct! {
    /// The per-step scalars (`Scalars` in adafactor.wgsl), from f64.
    pub struct Scalars {
        /// t^beta2_decay.
        pub w: f32,
        pub rho: f32,
        /// 1 − lr·weight_decay.
        pub decay: f32,
        pub eps1: f32,
        pub eps2: f32,
        pub d: f32,
        pub maximize: u32,
    }
}

/// One state tensor of one parameter, as PyTorch's `state_dict` holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct StateTensor {
    pub name: &'static str,
    pub shape: Vec<u64>,
    pub values: Vec<f32>,
}

/// One tensor (`Tensor` in adafactor.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct TensorDesc {
    param: u32,
    grad: u32,
    numel: u32,
    factored: u32,
    slabs: u32,
    rows: u32,
    cols: u32,
    state: u32,
    first_row: u32,
    scales: u32,
    slab_tree: u32,
    pad: u32,
}

/// Elements per segment of a row or column in the line passes: one
/// invocation sums a segment's G², another (for lines of several) the
/// line's segments in order. 256 on GPUs: a column of a 16384 × 1024 matrix
/// is 64 segments, not 16,384 loads in one thread. 16,384 where `access`
/// has the CPU shape ([`rows::PER_LANE_CPU`]), where segments buy nothing
/// and cost their table's loads: 256 there took the bench's 4096 × 1024
/// step on lavapipe from 74 to 83.5 ms; only longer lines are split.
pub fn segment_len(access: rows::RowAccess) -> u64 {
    if access.per_lane == rows::PER_LANE_CPU { 16384 } else { 256 }
}

/// A segment of a row or column of one slab (`Segment` in adafactor.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Segment {
    tensor: u32,
    /// 0: of a row (row_var), 1: of a column (col_var).
    column: u32,
    slab: u32,
    /// The row or column within the slab.
    index: u32,
    /// Its first element along the line, and its elements.
    first: u32,
    count: u32,
    /// Its partial sum's slot in `sums` (a line's segments are consecutive).
    slot: u32,
    /// On a line's last segment, the line's count of segments; else 0.
    segs: u32,
}

/// The entry points of adafactor.wgsl, in `Kernels::pipelines` order.
const ENTRIES: [&str; 6] = ["line_segments", "line_means", "slab_means", "norms", "step_size", "apply"];
/// Bindings 1.. (read-only?): param, grad, state, tensors, rows, segments, sums.
const READ_ONLY: [bool; 7] = [false, true, false, true, true, true, false];

/// The passes of one (param buffer, grad buffer) pair.
struct Window {
    bind_group: wgpu::BindGroup,
    rows: u32,
    segments: u32,
    /// Whether a line has several segments (`line_means` runs).
    split: bool,
}

/// Where one tensor's state lives.
#[derive(Clone, Copy, Debug)]
struct Placement {
    factoring: Option<Factoring>,
    state: u64,
    numel: u64,
}

impl Placement {
    fn state_len(&self) -> u64 {
        self.factoring.map_or(self.numel, |f| f.slabs * (f.rows + f.cols))
    }
}

/// Adafactor on the GPU for any set of tensors (one param group): tensors
/// with a shape of 2 or more dims ([`ParamSlice::with_shape`]) are
/// factored over their last two dims, the rest are not. Each step is one
/// compute pass recorded into the caller's encoder: the row and column
/// statistics (an invocation per segment of a line, [`segment_len`], then
/// one per line of several segments), the slab means, RMS(θ) and RMS(U)
/// in one pass over the elements (fixed-order sums: bitwise reproducible),
/// the update.
///
/// ```no_run
/// use wgpu_optim::{device, Adafactor, AdafactorOptimizer, ParamSlice};
/// let gpu = device::headless().unwrap();
/// let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
/// let mk = |size| gpu.device.create_buffer(&wgpu::BufferDescriptor { label: None, size, usage, mapped_at_creation: false });
/// let (w, g) = (mk(4 * 64 * 32), mk(4 * 64 * 32));
/// let mut opt = AdafactorOptimizer::new(&gpu.device, &gpu.queue, Adafactor::default(), &[ParamSlice::whole(&w, &g).with_shape(&[64, 32])]).unwrap();
/// opt.step().unwrap();
/// ```
pub struct AdafactorOptimizer {
    device: wgpu::Device,
    queue: wgpu::Queue,
    config: Adafactor,
    params: Vec<ParamSlice>,
    places: Vec<Placement>,
    kernels: Kernels,
    windows: Vec<Window>,
    uniform: StepUniform<Scalars>,
    state: wgpu::Buffer,
    step: u32,
    access: rows::RowAccess,
}

impl AdafactorOptimizer {
    /// An optimizer for `params`, all in group 0.
    ///
    /// **Errors:** [`OptimError::InvalidHyperparameter`] (see
    /// [`Adafactor`]), the slice checks of [`crate::Optimizer::new`]
    /// (including [`OptimError::ShapeMismatch`]),
    /// [`OptimError::ExceedsLimits`], [`OptimError::Wgpu`] /
    /// [`OptimError::OutOfMemory`] for anything the device rejects.
    pub fn new(device: &wgpu::Device, queue: &wgpu::Queue, config: Adafactor, params: &[ParamSlice]) -> Result<Self> {
        config.validate()?;
        rows::check_tensors(device, params)?;
        let mut at = 0;
        let places: Vec<Placement> = params
            .iter()
            .map(|p| {
                let place = Placement { factoring: Factoring::of(p.shape.as_deref()), state: at, numel: p.len() };
                at += place.state_len();
                place
            })
            .collect();
        if 4 * at > device.limits().max_storage_buffer_binding_size {
            return Err(OptimError::ExceedsLimits(format!("Adafactor's state of {} bytes is past the binding limit", 4 * at)));
        }
        let access = rows::RowAccess::of(device, params);
        let source = rows::totals_source(access, &Scalars::wgsl(), ADAFACTOR_WGSL);
        let kernels = Kernels::new(device, "adafactor", &source, &READ_ONLY, &ENTRIES)?;
        let state = scoped(device, || device.create_buffer(&wgpu::BufferDescriptor { label: Some("adafactor state"), size: 4 * at.max(4), usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC, mapped_at_creation: false }))?;
        let uniform = scoped(device, || StepUniform::new(device))?;
        let mut opt = AdafactorOptimizer { device: device.clone(), queue: queue.clone(), config, params: params.to_vec(), places, kernels, windows: Vec::new(), uniform, state, step: 0, access };
        opt.windows = opt.build_windows()?;
        Ok(opt)
    }

    /// The tensor, row and line tables, and a bind group per (param buffer,
    /// grad buffer) pair.
    fn build_windows(&self) -> Result<Vec<Window>> {
        let numels: Vec<u64> = self.places.iter().map(|p| p.numel).collect();
        let (rows, first) = rows::rows(&numels, self.access.row_len());
        let mut scales = 2 * rows.len() as u32;
        let descs: Vec<TensorDesc> = self
            .params
            .iter()
            .zip(&self.places)
            .zip(&first)
            .map(|((p, place), &first_row)| {
                let f = place.factoring.unwrap_or(Factoring { slabs: 1, rows: 1, cols: 1 });
                let desc = TensorDesc { param: p.param_offset as u32, grad: p.grad_offset as u32, numel: place.numel as u32, factored: place.factoring.is_some() as u32, slabs: f.slabs as u32, rows: f.rows as u32, cols: f.cols as u32, state: place.state as u32, first_row, scales, slab_tree: place.factoring.is_some_and(|f| f.slab_tree()) as u32, pad: 0 };
                scales += 1 + f.slabs as u32;
                desc
            })
            .collect();
        let device = &self.device;
        let pairs = rows::windows(device, &self.params, &rows)?;
        let mut slot = scales;
        let segments: Vec<Vec<Segment>> = pairs.iter().map(|(_, _, mine)| self.segments(mine, &mut slot)).collect();
        let most = device.limits().max_compute_workgroups_per_dimension as usize;
        if let Some(many) = segments.iter().find(|s| s.len().div_ceil(64) > most) {
            return Err(OptimError::ExceedsLimits(format!("{} line segments in one buffer pair: one dispatch of 64 per workgroup takes at most {}", many.len(), 64 * most)));
        }
        scoped(device, || {
            let tensors = rows::table(device, &self.queue, "adafactor tensors", &descs);
            let sums = device.create_buffer(&wgpu::BufferDescriptor { label: Some("adafactor sums"), size: 4 * slot.max(4) as u64, usage: wgpu::BufferUsages::STORAGE, mapped_at_creation: false });
            pairs
                .into_iter()
                .zip(segments)
                .map(|((param, grad, mine), segments)| {
                    let row_buf = rows::table(device, &self.queue, "adafactor rows", &mine);
                    let segment_buf = rows::table(device, &self.queue, "adafactor segments", &segments);
                    let resources = vec![self.uniform.binding(), param.as_entire_binding(), grad.as_entire_binding(), self.state.as_entire_binding(), tensors.as_entire_binding(), row_buf.as_entire_binding(), segment_buf.as_entire_binding(), sums.as_entire_binding()];
                    let split = segments.iter().any(|s| s.segs > 1);
                    Window { bind_group: self.kernels.bind(device, "adafactor", resources), rows: mine.len() as u32, segments: segments.len() as u32, split }
                })
                .collect()
        })
    }

    /// The segments of the rows and columns of every slab of the factored
    /// tensors that `rows` (one window's row table) covers, their partial
    /// sums in slots from `slot` on (advanced past them).
    fn segments(&self, rows: &[RowDesc], slot: &mut u32) -> Vec<Segment> {
        let mut tensors: Vec<u32> = rows.iter().map(|r| r.tensor).collect();
        tensors.dedup();
        let seg_len = segment_len(self.access);
        let mut out = Vec::new();
        for tensor in tensors {
            let Some(f) = self.places[tensor as usize].factoring else { continue };
            for slab in 0..f.slabs as u32 {
                for (column, lines, len) in [(0, f.rows, f.cols), (1, f.cols, f.rows)] {
                    for index in 0..lines as u32 {
                        let segs = len.div_ceil(seg_len) as u32;
                        for (k, from) in (0..len).step_by(seg_len as usize).enumerate() {
                            let segs = if k as u32 + 1 == segs { segs } else { 0 };
                            out.push(Segment { tensor, column, slab, index, first: from as u32, count: (len - from).min(seg_len) as u32, slot: *slot, segs });
                            *slot += 1;
                        }
                    }
                }
            }
        }
        out
    }

    /// The scalars of step `t`, computed in f64.
    fn scalars(&self, t: u32) -> Scalars {
        let c = &self.config;
        let (w, rho) = c.schedule(t);
        Scalars { w: w as f32, rho: rho as f32, decay: (1.0 - c.lr * c.weight_decay) as f32, eps1: c.eps1() as f32, eps2: c.eps.1 as f32, d: c.d as f32, maximize: c.maximize as u32 }
    }

    /// Records the next step into `encoder` (nothing is submitted or waited
    /// for); any number may be recorded before a submit.
    pub fn record_step(&mut self, encoder: &mut wgpu::CommandEncoder) -> Result<()> {
        let t = self.step.checked_add(1).ok_or(OptimError::StepOverflow)?;
        self.uniform.record(&self.device, encoder, &self.scalars(t))?;
        self.step = t;
        let n_tensors = self.params.len() as u32;
        let p = &self.kernels.pipelines;
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("adafactor step"), timestamp_writes: None });
        let mut launch = |pipeline: &wgpu::ComputePipeline, count: &dyn Fn(&Window) -> u32, once: bool| {
            pass.set_pipeline(pipeline);
            for w in self.windows.iter().take(if once { 1 } else { usize::MAX }) {
                let n = count(w);
                if n > 0 {
                    pass.set_bind_group(0, &w.bind_group, &[]);
                    pass.dispatch_workgroups(n, 1, 1);
                }
            }
        };
        launch(&p[0], &|w| w.segments.div_ceil(64), false);
        launch(&p[1], &|w| if w.split { w.segments.div_ceil(64) } else { 0 }, false);
        launch(&p[2], &|_| n_tensors, true);
        launch(&p[3], &|w| w.rows, false);
        launch(&p[4], &|_| n_tensors, true);
        launch(&p[5], &|w| w.rows, false);
        Ok(())
    }

    /// Records and submits one step.
    ///
    /// **Errors:** [`OptimError::StepOverflow`], [`OptimError::Wgpu`] if
    /// the device rejects the work.
    pub fn step(&mut self) -> Result<()> {
        let (device, queue) = (self.device.clone(), self.queue.clone());
        rows::submit(&device, &queue, "adafactor step", |encoder| self.record_step(encoder))
    }

    /// The config.
    pub fn config(&self) -> &Adafactor {
        &self.config
    }

    /// Sets the learning rate (a schedule's value); the next steps use it.
    ///
    /// **Errors:** [`OptimError::InvalidHyperparameter`] for a bad lr.
    pub fn set_lr(&mut self, lr: f64) -> Result<()> {
        let config = Adafactor { lr, ..self.config };
        config.validate()?;
        self.config = config;
        Ok(())
    }

    /// Replaces the config and the step count (a checkpoint's).
    ///
    /// **Errors:** [`OptimError::InvalidHyperparameter`]; nothing changes.
    pub fn set_config(&mut self, config: Adafactor, steps: u32) -> Result<()> {
        config.validate()?;
        self.config = config;
        self.step = steps;
        Ok(())
    }

    /// The parameter tensors, in the order given.
    pub fn params(&self) -> &[ParamSlice] {
        &self.params
    }

    /// Writes the state of tensor `index` from tensors named and shaped as
    /// [`AdafactorOptimizer::read_state`] gives them.
    ///
    /// **Errors:** [`OptimError::InvalidOptions`] for a bad index or a
    /// missing name,
    /// [`OptimError::LengthMismatch`] for other lengths; nothing changes.
    pub fn write_state(&mut self, index: usize, state: &[StateTensor]) -> Result<()> {
        let place = *self.places.get(index).ok_or(OptimError::InvalidOptions("parameter index out of range"))?;
        let mut values = Vec::new();
        for (name, _) in self.state_layout(index) {
            let s = state.iter().find(|s| s.name == name).ok_or(OptimError::InvalidOptions("Adafactor's state needs row_var and col_var (factored) or variance"))?;
            values.extend_from_slice(&s.values);
        }
        if values.len() as u64 != place.state_len() {
            return Err(OptimError::LengthMismatch { index, param_len: place.state_len(), grad_len: values.len() as u64 });
        }
        self.queue.write_buffer(&self.state, 4 * place.state, bytemuck::cast_slice(&values));
        Ok(())
    }

    /// Steps taken (recorded) so far.
    pub fn step_count(&self) -> u32 {
        self.step
    }

    /// The state of tensor `index` under PyTorch's names and shapes:
    /// `row_var` `[.., R, 1]` and `col_var` `[.., 1, C]`, or `variance`
    /// (the param's shape). Reads back (waits for the GPU).
    ///
    /// **Errors:** [`OptimError::InvalidOptions`] for a bad index;
    /// [`OptimError::Readback`] / [`OptimError::DeviceLost`].
    pub fn read_state(&self, index: usize) -> Result<Vec<StateTensor>> {
        let place = *self.places.get(index).ok_or(OptimError::InvalidOptions("parameter index out of range"))?;
        let values = crate::device::read_f32(&self.device, &self.queue, &self.state, place.state, place.state_len())?;
        Ok(split_state(self.state_layout(index), &values).into_iter().map(|(name, shape, values)| StateTensor { name, shape, values }).collect())
    }

    /// The names and shapes [`AdafactorOptimizer::read_state`] gives tensor
    /// `index` (empty for a bad index), without reading anything back.
    pub fn state_layout(&self, index: usize) -> Vec<(&'static str, Vec<u64>)> {
        self.params.get(index).map_or_else(Vec::new, |p| state_layout(p.shape.as_deref().unwrap_or(&[p.len()])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Step 1 by hand: a vector's U is sign(g), RMS(U) = 1, so θ moves by
    /// RMS(θ)·lr; a matrix's first statistics are its row and column means
    /// of g², and the 3-D shape factors per slab.
    #[test]
    fn reference_first_steps_by_hand() {
        let config = Adafactor::default();
        let mut p = vec![1.0, -2.0, 3.0];
        let mut state = AdafactorReference::new(3, None);
        config.reference_step(1, &mut p, &[0.1, 0.2, -0.3], &mut state);
        let alpha = (14.0f64 / 3.0).sqrt() * 0.01;
        assert!(p.iter().zip([1.0 - alpha, -2.0 - alpha, 3.0 + alpha]).all(|(a, b)| (a - b).abs() < 1e-15), "{p:?}");
        let mut state = AdafactorReference::new(12, Some(&[2, 2, 3]));
        let g = [1.0, 2.0, 2.0, 0.0, 0.0, 3.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0];
        config.reference_step(1, &mut [0.5; 12], &g, &mut state);
        assert_eq!(state.factoring, Some(Factoring { slabs: 2, rows: 2, cols: 3 }));
        assert_eq!(state.state, [3.0, 3.0, 1.0, 4.0, 0.5, 2.0, 6.5, 2.5, 2.5, 2.5]);
    }
}
