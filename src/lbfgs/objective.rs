//! The objectives `wgpu-optim run --optimizer lbfgs` minimises, with the
//! gradient and the loss computed on the GPU (`shaders/lbfgs/objective.wgsl`)
//! and in f64 on the host (for the reference):
//!
//! ```text
//! quadratic    f = ½ xᵀAx − bᵀx                         g = Ax − b
//! rosenbrock   f = Σᵢ 100(xᵢ₊₁ − xᵢ²)² + (1 − xᵢ)²      (chained, minimum 0 at x = 1)
//! ```

use super::gpu::LossAt;
use super::kernels::MAX_PARTIALS;
use crate::engine::ParamSlice;
use crate::error::{scoped, OptimError, Result};

const REDUCE_WGSL: &str = include_str!("../../shaders/lbfgs/reduce.wgsl");
const OBJECTIVE_WGSL: &str = include_str!("../../shaders/lbfgs/objective.wgsl");
const WG: u32 = 256;

/// Which objective, with its data.
#[derive(Clone, Debug, PartialEq)]
pub enum ObjectiveKind {
    /// ½ xᵀAx − bᵀx with A (row-major, n×n) and b.
    Quadratic {
        /// A, row-major.
        a: Vec<f32>,
        /// b.
        b: Vec<f32>,
    },
    /// The chained Rosenbrock function.
    Rosenbrock,
}

impl ObjectiveKind {
    /// The name `run` takes.
    pub fn name(&self) -> &'static str {
        match self {
            ObjectiveKind::Quadratic { .. } => "quadratic",
            ObjectiveKind::Rosenbrock => "rosenbrock",
        }
    }

    /// f and ∇f at x, in f64.
    pub fn host_value(&self, x: &[f64]) -> (f64, Vec<f64>) {
        let n = x.len();
        match self {
            ObjectiveKind::Quadratic { a, b } => {
                let ax: Vec<f64> = (0..n).map(|i| (0..n).map(|j| a[i * n + j] as f64 * x[j]).sum()).collect();
                let f = (0..n).map(|i| 0.5 * x[i] * ax[i] - b[i] as f64 * x[i]).sum();
                (f, (0..n).map(|i| ax[i] - b[i] as f64).collect())
            }
            ObjectiveKind::Rosenbrock => {
                let mut g = vec![0.0; n];
                let mut f = 0.0;
                for i in 0..n.saturating_sub(1) {
                    let r = x[i + 1] - x[i] * x[i];
                    f += 100.0 * r * r + (1.0 - x[i]).powi(2);
                    g[i] += -400.0 * x[i] * r - 2.0 * (1.0 - x[i]);
                    g[i + 1] += 200.0 * r;
                }
                (f, g)
            }
        }
    }
}

/// An objective on the GPU, owning its params (`COPY_SRC | COPY_DST`) and
/// grads.
pub struct Objective {
    /// The objective.
    pub kind: ObjectiveKind,
    /// Workgroups of the `terms` pass (the partials `total` reduces).
    groups: u32,
    params: wgpu::Buffer,
    grad: wgpu::Buffer,
    loss: wgpu::Buffer,
    bind_group: wgpu::BindGroup,
    pipelines: [wgpu::ComputePipeline; 2],
}

impl Objective {
    /// An objective over `x0.len()` params starting at `x0`.
    ///
    /// **Errors:** [`OptimError::EmptyTensor`] for no params;
    /// [`OptimError::LengthMismatch`] when A is not n×n or b not n long;
    /// [`OptimError::Wgpu`] / [`OptimError::OutOfMemory`] from creation.
    pub fn new(device: &wgpu::Device, kind: ObjectiveKind, x0: &[f32]) -> Result<Self> {
        let n = x0.len() as u64;
        if n == 0 {
            return Err(OptimError::EmptyTensor { index: 0 });
        }
        if let ObjectiveKind::Quadratic { a, b } = &kind
            && (a.len() as u64 != n * n || b.len() as u64 != n)
        {
            return Err(OptimError::LengthMismatch { index: 0, param_len: n, grad_len: if b.len() as u64 != n { b.len() as u64 } else { a.len() as u64 } });
        }
        let groups = (n as u32).div_ceil(WG).clamp(1, MAX_PARTIALS);
        scoped(device, || Self::create(device, kind, x0, groups))
    }

    fn create(device: &wgpu::Device, kind: ObjectiveKind, x0: &[f32], groups: u32) -> Self {
        use wgpu::util::DeviceExt;
        use wgpu::BufferUsages as U;
        let init = |label, contents: &[u8], usage| device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some(label), contents, usage });
        let (a, b) = match &kind {
            ObjectiveKind::Quadratic { a, b } => (a.clone(), b.clone()),
            ObjectiveKind::Rosenbrock => (vec![0.0f32], vec![0.0f32]),
        };
        let n = x0.len() as u32;
        let params = init("objective params", bytemuck::cast_slice(x0), U::STORAGE | U::COPY_SRC | U::COPY_DST);
        let grad = init("objective grad", bytemuck::cast_slice(&vec![0.0f32; x0.len()]), U::STORAGE | U::COPY_SRC | U::COPY_DST);
        let a = init("objective A", bytemuck::cast_slice(&a), U::STORAGE);
        let b = init("objective b", bytemuck::cast_slice(&b), U::STORAGE);
        let partials = init("objective partials", &vec![0u8; MAX_PARTIALS as usize * 8], U::STORAGE);
        let loss = init("objective loss", &[0u8; 4], U::STORAGE | U::COPY_SRC);
        let kind_id = u32::from(kind == ObjectiveKind::Rosenbrock);
        let dims = init("objective dims", bytemuck::cast_slice(&[n, kind_id, groups, 0]), U::UNIFORM);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some("objective"), source: wgpu::ShaderSource::Wgsl(format!("{REDUCE_WGSL}\n{OBJECTIVE_WGSL}").into()) });
        let layout = Self::layout(device);
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor { label: Some("objective"), bind_group_layouts: &[Some(&layout)], immediate_size: 0 });
        let pipeline = |entry| device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor { label: Some(entry), layout: Some(&pipeline_layout), module: &module, entry_point: Some(entry), compilation_options: Default::default(), cache: None });
        let pipelines = [pipeline("terms"), pipeline("total")];
        let buffers = [&params, &grad, &a, &b, &partials, &loss, &dims];
        let entries: Vec<wgpu::BindGroupEntry> = buffers.iter().enumerate().map(|(i, buf)| wgpu::BindGroupEntry { binding: i as u32, resource: buf.as_entire_binding() }).collect();
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some("objective"), layout: &layout, entries: &entries });
        Objective { kind, groups, params, grad, loss, bind_group, pipelines }
    }

    /// x, g, A, b, partials, loss (storage) and the dims (uniform).
    fn layout(device: &wgpu::Device) -> wgpu::BindGroupLayout {
        let entry = |binding: u32, ty| wgpu::BindGroupLayoutEntry { binding, visibility: wgpu::ShaderStages::COMPUTE, ty: wgpu::BindingType::Buffer { ty, has_dynamic_offset: false, min_binding_size: None }, count: None };
        let storage = |read_only| wgpu::BufferBindingType::Storage { read_only };
        let entries = [entry(0, storage(true)), entry(1, storage(false)), entry(2, storage(true)), entry(3, storage(true)), entry(4, storage(false)), entry(5, storage(false)), entry(6, wgpu::BufferBindingType::Uniform)];
        device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some("objective"), entries: &entries })
    }

    /// The params buffer.
    pub fn params(&self) -> &wgpu::Buffer {
        &self.params
    }

    /// The params as slices of `lens` elements each, in order (the whole
    /// vector when `lens` is one length): L-BFGS over many tensors.
    pub fn slices(&self, lens: &[u64]) -> Vec<ParamSlice> {
        let mut at = 0;
        lens.iter()
            .map(|&len| {
                let s = ParamSlice::range(&self.params, at, &self.grad, at, len);
                at += len;
                s
            })
            .collect()
    }

    /// Records f and ∇f at the current params into `encoder`; the closure
    /// of an L-BFGS step.
    pub fn record(&self, encoder: &mut wgpu::CommandEncoder) -> LossAt {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("objective"), timestamp_writes: None });
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.set_pipeline(&self.pipelines[0]);
        pass.dispatch_workgroups(self.groups, 1, 1);
        pass.set_pipeline(&self.pipelines[1]);
        pass.dispatch_workgroups(1, 1, 1);
        drop(pass);
        LossAt { buffer: self.loss.clone(), offset: 0 }
    }
}

/// A random SPD quadratic of n unknowns: A = MMᵀ/n + I/10 (M uniform in
/// [−1, 1)), b uniform, the same for the same seed.
pub fn random_quadratic(seed: u64, n: usize) -> ObjectiveKind {
    let m = |i: usize, j: usize| crate::random::uniform(seed, i as u64, j as u64) as f64;
    let mut a = vec![0.0f32; n * n];
    for i in 0..n {
        for j in 0..n {
            let mmt: f64 = (0..n).map(|k| m(i, k) * m(j, k)).sum::<f64>() / n as f64;
            a[i * n + j] = (mmt + if i == j { 0.1 } else { 0.0 }) as f32;
        }
    }
    let b = (0..n).map(|i| crate::random::uniform(seed, u64::MAX - 1, i as u64)).collect();
    ObjectiveKind::Quadratic { a, b }
}
