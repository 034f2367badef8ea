//! Tensor-wise rules: updates that need more than one element at a time.
//! [`Muon`] orthogonalizes each matrix's momentum with a Newton–Schulz
//! iteration (element-wise passes in `shaders/matrix/muon.wgsl` around
//! batched tiled GEMMs in `shaders/matrix/gemm.wgsl`, all of a step's
//! matrices in each launch); [`Lamb`] scales each tensor's Adam update by
//! the trust ratio ‖θ‖/‖u‖ (`shaders/matrix/lamb.wgsl`); [`Adafactor`]
//! keeps factored second moments per matrix and scales by RMS(θ) and
//! RMS(U) (`shaders/matrix/adafactor.wgsl`). All use the row table of
//! [`rows`] for deterministic per-tensor reductions.

pub mod adafactor;
pub mod gemm;
pub mod lamb;
pub mod muon;
pub mod rows;
pub mod rule;
pub mod shared_rows;

pub use adafactor::{Adafactor, AdafactorOptimizer};
pub use lamb::{Lamb, LambOptimizer, TrustRatio};
pub use muon::{AdjustLr, Muon};
pub use rule::TensorRule;
use rows::RowDesc;

use crate::engine::uniforms::{gpu_struct, StepUniform};
use crate::engine::ParamSlice;
use crate::error::{scoped, OptimError, Result};
use gemm::{Gemm, Item, Stage};

const MUON_WGSL: &str = include_str!("../../shaders/matrix/muon.wgsl");

gpu_struct! {
    /// The scalars of every step (`Scalars` in muon.wgsl), from f64.
    pub struct Scalars {
        /// 1 − lr·weight_decay.
        pub decay: f32,
        /// Learning rate, before the per-matrix `adjust_lr_fn` ratio.
        pub lr: f32,
        /// Momentum factor μ.
        pub momentum: f32,
        /// Floor of ‖X‖_F in the normalization.
        pub eps: f32,
        /// 1: Nesterov momentum.
        pub nesterov: u32,
        /// 1: the last Newton–Schulz step wrote X' (odd ns_steps).
        pub final_half: u32,
        /// Rows of the whole table (the per-matrix norms follow their sums).
        pub n_rows: u32,
    }
}

/// One matrix (`Tensor` in muon.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct TensorDesc {
    param: u32,
    grad: u32,
    state: u32,
    scratch: u32,
    rows: u32,
    cols: u32,
    ratio: f32,
    first_row: u32,
}

/// The element-wise passes of one (param buffer, grad buffer) pair.
struct Window {
    bind_group: wgpu::BindGroup,
    rows: u32,
}

/// The entry points of muon.wgsl, in `Kernels::pipelines` order.
const ENTRIES: [&str; 4] = ["momentum", "norms", "normalize", "apply"];
/// Bindings 1.. (read-only?): param, grad, state, scratch, tensors, rows, sums.
const READ_ONLY: [bool; 7] = [false, true, false, false, true, true, false];

/// Where one matrix lives: its shape, and its offsets in the state and
/// scratch buffers.
#[derive(Clone, Copy, Debug)]
struct Placement {
    rows: u64,
    cols: u64,
    state: u64,
    scratch: u64,
}

impl Placement {
    fn short(&self) -> u64 {
        self.rows.min(self.cols)
    }

    fn long(&self) -> u64 {
        self.rows.max(self.cols)
    }

    fn numel(&self) -> u64 {
        self.rows * self.cols
    }

    /// X, X′, the Gram matrix A and the polynomial B.
    fn scratch_len(&self) -> u64 {
        2 * self.numel() + 2 * self.short() * self.short()
    }
}

/// The GEMM items of one Newton–Schulz step reading X (or X′ when `odd`).
fn ns_items(places: &[Placement], odd: bool) -> [Vec<Item>; 3] {
    let mut out: [Vec<Item>; 3] = Default::default();
    for p in places {
        let (m, n) = (p.short() as u32, p.long() as u32);
        let numel = p.numel() as u32;
        let base = p.scratch as u32;
        let (x_in, x_out) = if odd { (base + numel, base) } else { (base, base + numel) };
        let (a, b) = (base + 2 * numel, base + 2 * numel + m * m);
        // A = X·Xᵀ (m×m, K = n); B = c·A·A + b·A (m×m, K = m); X′ = B·X + a·X (m×n, K = m).
        out[0].push(Item { m, n: m, k: n, a_off: x_in, a_rs: n, a_cs: 1, b_off: x_in, b_rs: 1, b_cs: n, d_off: a, c_off: a, pad: 0 });
        out[1].push(Item { m, n: m, k: m, a_off: a, a_rs: m, a_cs: 1, b_off: a, b_rs: m, b_cs: 1, d_off: a, c_off: b, pad: 0 });
        out[2].push(Item { m, n, k: m, a_off: b, a_rs: m, a_cs: 1, b_off: x_in, b_rs: n, b_cs: 1, d_off: x_in, c_off: x_out, pad: 0 });
    }
    out
}

/// Muon on the GPU for a set of 2-D parameter tensors (one param group):
/// each step is one compute pass recorded into the caller's encoder —
/// momentum and the norms, then `ns_steps` × 3 batched GEMM launches for
/// all matrices together, then the update.
///
/// ```no_run
/// use wgpu_optim::{device, matrix::MuonOptimizer, Muon, ParamSlice};
/// let gpu = device::headless().unwrap();
/// let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
/// let mk = |size| gpu.device.create_buffer(&wgpu::BufferDescriptor { label: None, size, usage, mapped_at_creation: false });
/// let (w, g) = (mk(4 * 64 * 32), mk(4 * 64 * 32));
/// let mut opt = MuonOptimizer::new(&gpu.device, &gpu.queue, Muon::default(), &[ParamSlice::whole(&w, &g).with_shape(&[64, 32])]).unwrap();
/// opt.step().unwrap();
/// ```
pub struct MuonOptimizer {
    device: wgpu::Device,
    queue: wgpu::Queue,
    config: Muon,
    params: Vec<ParamSlice>,
    places: Vec<Placement>,
    kernels: rows::Kernels,
    gemm: Gemm,
    stages: Vec<Stage>,
    windows: Vec<Window>,
    uniform: StepUniform<Scalars>,
    state: wgpu::Buffer,
    scratch: wgpu::Buffer,
    n_tensors: u32,
    access: rows::RowAccess,
}

impl MuonOptimizer {
    /// An optimizer for `params`, each with a 2-D shape, all in group 0.
    ///
    /// **Errors:** [`OptimError::InvalidHyperparameter`] (see [`Muon`]),
    /// [`OptimError::ShapeRequired`] for a tensor without a 2-D shape,
    /// [`OptimError::ShapeMismatch`], the slice checks of
    /// [`crate::Optimizer::new`], [`OptimError::ExceedsLimits`] for buffers
    /// or matrices past the device's limits, [`OptimError::Wgpu`] /
    /// [`OptimError::OutOfMemory`] for anything the device rejects.
    pub fn new(device: &wgpu::Device, queue: &wgpu::Queue, config: Muon, params: &[ParamSlice]) -> Result<Self> {
        config.validate()?;
        let places = check_params(device, params)?;
        let access = rows::RowAccess::of(device, params);
        let kernels = rows::Kernels::new(device, "muon", &rows::totals_source(access, &Scalars::wgsl(), MUON_WGSL), &READ_ONLY, &ENTRIES)?;
        let gemm = Gemm::new(device, gemm::GemmKernel::Auto)?;
        let n_rows: u64 = places.iter().map(|p| p.numel().div_ceil(access.row_len())).sum();
        let state_len: u64 = places.iter().map(Placement::numel).sum();
        let scratch_len: u64 = places.iter().map(Placement::scratch_len).sum();
        let (uniform, state, scratch, tensors, sums) = scoped(device, || {
            let buffer = |label, elements: u64, usage| device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size: 4 * elements.max(4), usage, mapped_at_creation: false });
            let storage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
            (
                StepUniform::new(device),
                buffer("momentum_buffer", state_len, storage),
                buffer("muon scratch", scratch_len, storage),
                buffer("muon tensors", 8 * places.len() as u64, storage),
                buffer("muon sums", 2 * n_rows + places.len() as u64, storage),
            )
        })?;
        let mut opt = MuonOptimizer { device: device.clone(), queue: queue.clone(), config, params: params.to_vec(), places, kernels, gemm, stages: Vec::new(), windows: Vec::new(), uniform, state, scratch, n_tensors: params.len() as u32, access };
        opt.build(&tensors, &sums, n_rows as u32)?;
        Ok(opt)
    }

    /// The tensor table, the row tables and bind groups of each window, and
    /// the GEMM stages.
    fn build(&mut self, tensors: &wgpu::Buffer, sums: &wgpu::Buffer, n_rows: u32) -> Result<()> {
        let device = self.device.clone();
        let (descs, rows) = self.tables();
        self.queue.write_buffer(tensors, 0, bytemuck::cast_slice(&descs));
        let pairs = rows::windows(&device, &self.params, &rows)?;
        let windows = scoped(&device, || {
            pairs
                .into_iter()
                .map(|(param, grad, mine)| {
                    let row_buf = device.create_buffer(&wgpu::BufferDescriptor { label: Some("muon rows"), size: 16 * mine.len() as u64, usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST, mapped_at_creation: false });
                    self.queue.write_buffer(&row_buf, 0, bytemuck::cast_slice(&mine));
                    let resources = [self.uniform.binding(), param.as_entire_binding(), grad.as_entire_binding(), self.state.as_entire_binding(), self.scratch.as_entire_binding(), tensors.as_entire_binding(), row_buf.as_entire_binding(), sums.as_entire_binding()];
                    let bind_group = self.kernels.bind(&device, "muon", resources.to_vec());
                    Window { bind_group, rows: mine.len() as u32 }
                })
                .collect::<Vec<_>>()
        })?;
        self.windows = windows;
        self.build_stages()?;
        debug_assert_eq!(rows.len() as u32, n_rows);
        Ok(())
    }

    /// The GEMM stages of every Newton–Schulz step (the ns coefficients are
    /// their scalars, so they are rebuilt when the config changes).
    fn build_stages(&mut self) -> Result<()> {
        let (a, b, c) = self.config.ns_coefficients;
        let device = self.device.clone();
        let stages = scoped(&device, || {
            let mut stages = Vec::new();
            for step in 0..self.config.ns_steps {
                let [gram, poly, update] = ns_items(&self.places, step % 2 == 1);
                stages.push(self.gemm.stage(&device, &self.queue, &self.scratch, &gram, 1.0, 0.0));
                stages.push(self.gemm.stage(&device, &self.queue, &self.scratch, &poly, c as f32, b as f32));
                stages.push(self.gemm.stage(&device, &self.queue, &self.scratch, &update, 1.0, a as f32));
            }
            stages
        })?;
        self.stages = stages;
        Ok(())
    }

    /// The tensor descriptors and the row table (rows of each tensor in order).
    fn tables(&self) -> (Vec<TensorDesc>, Vec<RowDesc>) {
        let (rows, first) = rows::rows(&self.places.iter().map(Placement::numel).collect::<Vec<_>>(), self.access.row_len());
        let descs = self
            .params
            .iter()
            .zip(&self.places)
            .zip(first)
            .map(|((p, place), first_row)| {
                let ratio = self.config.adjust_lr_fn.ratio(place.rows, place.cols) as f32;
                TensorDesc { param: p.param_offset as u32, grad: p.grad_offset as u32, state: place.state as u32, scratch: place.scratch as u32, rows: place.rows as u32, cols: place.cols as u32, ratio, first_row }
            })
            .collect();
        (descs, rows)
    }

    /// The scalars of the next step, computed in f64.
    fn scalars(&self) -> Scalars {
        let c = &self.config;
        Scalars {
            decay: (1.0 - c.lr * c.weight_decay) as f32,
            lr: c.lr as f32,
            momentum: c.momentum as f32,
            eps: c.eps as f32,
            nesterov: c.nesterov as u32,
            final_half: c.ns_steps % 2,
            n_rows: self.n_rows(),
        }
    }

    fn n_rows(&self) -> u32 {
        self.windows.iter().map(|w| w.rows).sum()
    }

    /// Records one step into `encoder` (nothing is submitted or waited for).
    pub fn record_step(&mut self, encoder: &mut wgpu::CommandEncoder) -> Result<()> {
        self.uniform.record(&self.device, encoder, &self.scalars())?;
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("muon step"), timestamp_writes: None });
        let per_window = |pass: &mut wgpu::ComputePass<'_>, pipeline: &wgpu::ComputePipeline| {
            pass.set_pipeline(pipeline);
            for w in self.windows.iter().filter(|w| w.rows > 0) {
                pass.set_bind_group(0, &w.bind_group, &[]);
                pass.dispatch_workgroups(w.rows, 1, 1);
            }
        };
        let [momentum, norms, normalize, apply] = [0, 1, 2, 3].map(|i| &self.kernels.pipelines[i]);
        per_window(&mut pass, momentum);
        pass.set_pipeline(norms);
        pass.set_bind_group(0, &self.windows[0].bind_group, &[]);
        pass.dispatch_workgroups(self.n_tensors, 1, 1);
        per_window(&mut pass, normalize);
        for stage in &self.stages {
            self.gemm.record(&mut pass, stage);
        }
        per_window(&mut pass, apply);
        Ok(())
    }

    /// Records and submits one step.
    ///
    /// **Errors:** [`OptimError::Wgpu`] if the device rejects the work.
    pub fn step(&mut self) -> Result<()> {
        let (device, queue) = (self.device.clone(), self.queue.clone());
        rows::submit(&device, &queue, "muon step", |encoder| self.record_step(encoder))
    }

    /// The config.
    pub fn config(&self) -> &Muon {
        &self.config
    }

    /// Sets the learning rate (a schedule's value); the next steps use it.
    ///
    /// **Errors:** [`OptimError::InvalidHyperparameter`] for a bad lr.
    pub fn set_lr(&mut self, lr: f64) -> Result<()> {
        let config = Muon { lr, ..self.config };
        config.validate()?;
        self.config = config;
        Ok(())
    }

    /// Replaces the config (a checkpoint's hyperparameters); the next
    /// steps use it.
    ///
    /// **Errors:** [`OptimError::InvalidHyperparameter`]; nothing changes.
    pub fn set_config(&mut self, config: Muon) -> Result<()> {
        config.validate()?;
        let old = std::mem::replace(&mut self.config, config);
        if let Err(e) = self.build_stages() {
            self.config = old;
            return Err(e);
        }
        Ok(())
    }

    /// The parameter tensors, in the order given.
    pub fn params(&self) -> &[ParamSlice] {
        &self.params
    }

    /// `momentum_buffer` of tensor `index` (row-major in its shape), read
    /// back (waits for the GPU).
    ///
    /// **Errors:** [`OptimError::InvalidOptions`] for a bad index;
    /// [`OptimError::Readback`] / [`OptimError::DeviceLost`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_state(&self, index: usize) -> Result<Vec<f32>> {
        pollster::block_on(self.read_state_async(index))
    }

    /// [`MuonOptimizer::read_state`] without blocking (the web's form).
    ///
    /// **Errors:** as [`MuonOptimizer::read_state`].
    pub async fn read_state_async(&self, index: usize) -> Result<Vec<f32>> {
        let place = self.places.get(index).ok_or(OptimError::InvalidOptions("parameter index out of range"))?;
        crate::device::read_f32_async(&self.device, &self.queue, &self.state, place.state, place.numel()).await
    }

    /// Writes `momentum_buffer` of tensor `index` (e.g. from a checkpoint).
    ///
    /// **Errors:** [`OptimError::InvalidOptions`] for a bad index,
    /// [`OptimError::LengthMismatch`] for a wrong length.
    pub fn write_state(&self, index: usize, values: &[f32]) -> Result<()> {
        let place = self.places.get(index).ok_or(OptimError::InvalidOptions("parameter index out of range"))?;
        if values.len() as u64 != place.numel() {
            return Err(OptimError::LengthMismatch { index, param_len: place.numel(), grad_len: values.len() as u64 });
        }
        self.queue.write_buffer(&self.state, 4 * place.state, bytemuck::cast_slice(values));
        Ok(())
    }

    /// Floating-point operations of one step's GEMMs (for GFLOP/s).
    pub fn gemm_flops(&self) -> u64 {
        (0..2).flat_map(|odd| ns_items(&self.places, odd == 1)).flatten().map(|it| it.flops()).sum::<u64>() * self.config.ns_steps as u64 / 2
    }
}

/// Every slice's checks, a 2-D shape for each; the state and scratch
/// placement.
fn check_params(device: &wgpu::Device, params: &[ParamSlice]) -> Result<Vec<Placement>> {
    rows::check_tensors(device, params)?;
    let limit = device.limits().max_storage_buffer_binding_size;
    let (mut state, mut scratch) = (0u64, 0u64);
    let mut places = Vec::new();
    for (index, p) in params.iter().enumerate() {
        let Some((rows, cols)) = p.matrix() else {
            return Err(OptimError::ShapeRequired { index, rule: "muon", need: "a 2-D shape", shape: p.shape.clone() });
        };
        let place = Placement { rows, cols, state, scratch };
        state += place.numel();
        scratch += place.scratch_len();
        places.push(place);
    }
    if 4 * scratch > limit || 4 * state > limit {
        return Err(OptimError::ExceedsLimits(format!("Muon's scratch of {} bytes is past the binding limit of {limit} bytes", 4 * scratch)));
    }
    Ok(places)
}
