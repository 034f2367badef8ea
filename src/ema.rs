//! A weight EMA of many parameter tensors on the GPU, as PyTorch's
//! `AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))`.

use crate::engine::uniforms::{gpu_struct, StepUniform};
use crate::engine::ParamSlice;
use crate::error::{scoped, OptimError, Result};
use crate::matrix::muon::lerp;
use crate::matrix::rows::{self, Kernels};

const EMA_WGSL: &str = include_str!("../shaders/ema.wgsl");

gpu_struct! {
    /// The per-update scalars (`Scalars` in ema.wgsl).
    pub struct Scalars {
        /// 1 − decay, from f64.
        pub weight: f32,
        /// 1 on the first update (n_averaged = 0): copy θ.
        pub copy: u32,
        /// Padding to 16 bytes.
        pub pad0: u32,
        /// Padding to 16 bytes.
        pub pad1: u32,
    }
}

/// One tensor (`Tensor` in ema.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct TensorDesc {
    param: u32,
    ema: u32,
    pad: [u32; 2],
}

/// The f64 reference of one update of one element (PyTorch's foreach
/// path: `lerp(ema, θ, 1 − decay)`, a copy when `n_averaged = 0`).
pub fn reference_update(ema: f64, theta: f64, decay: f64, n_averaged: u64) -> f64 {
    if n_averaged == 0 { theta } else { lerp(ema, theta, 1.0 - decay) }
}

/// An exponential moving average of parameter tensors, kept on the GPU:
///
/// ```text
/// first update:  ema ← θ                       (n_averaged = 0: a copy)
/// later:         ema ← lerp(ema, θ, 1 − decay)  (PyTorch's lerp: a + w·(b − a) for w < 0.5)
/// n_averaged += 1
/// ```
///
/// `decay` must be in [0, 1] (PyTorch's `ValueError`); PyTorch's default
/// for `get_ema_multi_avg_fn` is 0.999. All tensors update in one dispatch
/// per param buffer, recorded into the caller's encoder after the
/// optimizer's step (no CPU sync). State: the averages (one per tensor, in
/// order) and `n_averaged`. Buffers (BatchNorm statistics) are the caller's:
/// PyTorch copies them unless `use_buffers`.
///
/// ```no_run
/// use wgpu_optim::{device, ema::WeightEma, AdamW, Optimizer, ParamSlice};
/// let gpu = device::headless().unwrap();
/// let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
/// let mk = |size| gpu.device.create_buffer(&wgpu::BufferDescriptor { label: None, size, usage, mapped_at_creation: false });
/// let (w, g) = (mk(4 * 1000), mk(4 * 1000));
/// let params = [ParamSlice::whole(&w, &g)];
/// let mut opt = Optimizer::new(&gpu.device, &gpu.queue, AdamW::default().into(), &params).unwrap();
/// let mut ema = WeightEma::new(&gpu.device, &gpu.queue, 0.999, &params).unwrap();
/// let mut encoder = gpu.device.create_command_encoder(&Default::default());
/// opt.record_step(&mut encoder).unwrap();
/// ema.record_update(&mut encoder).unwrap();
/// gpu.queue.submit([encoder.finish()]);
/// ```
pub struct WeightEma {
    device: wgpu::Device,
    queue: wgpu::Queue,
    decay: f64,
    lens: Vec<u64>,
    /// Each tensor's offset in the average buffer.
    at: Vec<u64>,
    kernels: Kernels,
    windows: Vec<(wgpu::BindGroup, u32)>,
    uniform: StepUniform<Scalars>,
    averages: wgpu::Buffer,
    n_averaged: u64,
    access: rows::RowAccess,
}

impl WeightEma {
    /// An EMA of `params` (their param ranges; grads are not read).
    ///
    /// **Errors:** [`OptimError::InvalidHyperparameter`] for a decay outside
    /// [0, 1]; the slice checks of [`crate::Optimizer::new`];
    /// [`OptimError::ExceedsLimits`]; [`OptimError::Wgpu`] /
    /// [`OptimError::OutOfMemory`].
    pub fn new(device: &wgpu::Device, queue: &wgpu::Queue, decay: f64, params: &[ParamSlice]) -> Result<Self> {
        if !(0.0..=1.0).contains(&decay) {
            return Err(OptimError::InvalidHyperparameter { name: "decay", value: decay, requirement: "must be in [0, 1]" });
        }
        let params: Vec<ParamSlice> = params.iter().map(|p| p.clone().in_group(0)).collect();
        rows::check_params(device, &params)?;
        let lens: Vec<u64> = params.iter().map(ParamSlice::len).collect();
        let access = rows::RowAccess::of(device, &params);
        // Each average starts on a whole unit of the access.
        let unit = access.segment();
        let at: Vec<u64> = lens.iter().scan(0, |at, n| Some(std::mem::replace(at, *at + n.next_multiple_of(unit)))).collect();
        let total: u64 = lens.iter().map(|n| n.next_multiple_of(unit)).sum();
        if 4 * total > device.limits().max_storage_buffer_binding_size {
            return Err(OptimError::ExceedsLimits(format!("the EMA of {} bytes is past the binding limit", 4 * total)));
        }
        let operands = [rows::Operand { name: "param", binding: 1, writable: false }, rows::Operand { name: "ema", binding: 2, writable: true }];
        let source = rows::source(access, &Scalars::wgsl(), &format!("{}{EMA_WGSL}", access.operands(&operands)));
        let kernels = Kernels::new(device, "weight ema", &source, &[true, false, true, true], &["update"])?;
        let (averages, uniform) = scoped(device, || {
            let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
            (device.create_buffer(&wgpu::BufferDescriptor { label: Some("weight ema"), size: 4 * total.max(4), usage, mapped_at_creation: false }), StepUniform::new(device))
        })?;
        let (table, _) = rows::rows(&lens, access.row_len());
        let descs: Vec<TensorDesc> = params.iter().zip(&at).map(|(p, &ema)| TensorDesc { param: p.param_offset as u32, ema: ema as u32, pad: [0; 2] }).collect();
        let pairs = rows::windows(device, &params, &table)?;
        let windows = scoped(device, || {
            let tensors = rows::table(device, queue, "ema tensors", &descs);
            pairs
                .into_iter()
                .map(|(param, _, mine)| {
                    let row_buf = rows::table(device, queue, "ema rows", &mine);
                    let resources = vec![uniform.binding(), param.as_entire_binding(), averages.as_entire_binding(), tensors.as_entire_binding(), row_buf.as_entire_binding()];
                    (kernels.bind(device, "weight ema", resources), mine.len() as u32)
                })
                .collect()
        })?;
        Ok(WeightEma { device: device.clone(), queue: queue.clone(), decay, lens, at, kernels, windows, uniform, averages, n_averaged: 0, access })
    }

    /// How the update moves its operands (scalar, vec4 or wide; the same
    /// bits either way).
    pub fn access(&self) -> rows::RowAccess {
        self.access
    }

    /// Records one update into `encoder` (after the optimizer's step); any
    /// number may be recorded before a submit.
    ///
    /// **Errors:** none today; the `Result` is for symmetry with the
    /// optimizers' `record_step`.
    pub fn record_update(&mut self, encoder: &mut wgpu::CommandEncoder) -> Result<()> {
        let scalars = Scalars { weight: (1.0 - self.decay) as f32, copy: (self.n_averaged == 0) as u32, pad0: 0, pad1: 0 };
        self.uniform.record(&self.device, encoder, &scalars)?;
        self.n_averaged += 1;
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("weight ema"), timestamp_writes: None });
        pass.set_pipeline(&self.kernels.pipelines[0]);
        for (bind_group, rows) in &self.windows {
            pass.set_bind_group(0, bind_group, &[]);
            pass.dispatch_workgroups(*rows, 1, 1);
        }
        Ok(())
    }

    /// Records and submits one update.
    ///
    /// **Errors:** [`OptimError::Wgpu`] if the device rejects the work.
    pub fn update(&mut self) -> Result<()> {
        let (device, queue) = (self.device.clone(), self.queue.clone());
        rows::submit(&device, &queue, "weight ema", |encoder| self.record_update(encoder))
    }

    /// Updates so far (PyTorch's `n_averaged`).
    pub fn n_averaged(&self) -> u64 {
        self.n_averaged
    }

    /// The decay.
    pub fn decay(&self) -> f64 {
        self.decay
    }

    /// The average of tensor `index`, read back (waits for the GPU).
    ///
    /// **Errors:** [`OptimError::InvalidOptions`] for a bad index;
    /// [`OptimError::Readback`] / [`OptimError::DeviceLost`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read(&self, index: usize) -> Result<Vec<f32>> {
        pollster::block_on(self.read_async(index))
    }

    /// [`WeightEma::read`] without blocking (the web's form).
    ///
    /// **Errors:** as [`WeightEma::read`].
    pub async fn read_async(&self, index: usize) -> Result<Vec<f32>> {
        let at = *self.at.get(index).ok_or(OptimError::InvalidOptions("parameter index out of range"))?;
        crate::device::read_f32_async(&self.device, &self.queue, &self.averages, at, self.lens[index]).await
    }

    /// Restores the average of tensor `index` and `n_averaged` (from a
    /// checkpoint).
    ///
    /// **Errors:** [`OptimError::InvalidOptions`] for a bad index,
    /// [`OptimError::LengthMismatch`] for a wrong length; nothing changes
    /// on an error.
    pub fn write(&mut self, index: usize, values: &[f32], n_averaged: u64) -> Result<()> {
        let at = *self.at.get(index).ok_or(OptimError::InvalidOptions("parameter index out of range"))?;
        if values.len() as u64 != self.lens[index] {
            return Err(OptimError::LengthMismatch { index, param_len: self.lens[index], grad_len: values.len() as u64 });
        }
        self.queue.write_buffer(&self.averages, 4 * at, bytemuck::cast_slice(values));
        self.n_averaged = n_averaged;
        Ok(())
    }
}
