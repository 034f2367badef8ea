//! 2-D test surfaces (quadratic, Rosenbrock, Beale, saddle) with f64 values
//! and gradients on the host and f32 gradients in `shaders/surfaces.wgsl`, so
//! that optimisation loops run entirely on the GPU.

pub mod panels;

use crate::error::{scoped, OptimError, Result};

/// A 2-D test function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Surface {
    /// `x² + 10·y²`, minimum 0 at (0, 0).
    Quadratic,
    /// `(1 − x)² + 100·(y − x²)²`, minimum 0 at (1, 1).
    Rosenbrock,
    /// Beale's function, minimum 0 at (3, 0.5).
    Beale,
    /// `x² − y²`, a saddle at (0, 0) (unbounded below).
    Saddle,
}

impl Surface {
    /// All surfaces.
    pub const ALL: [Surface; 4] = [Surface::Quadratic, Surface::Rosenbrock, Surface::Beale, Surface::Saddle];

    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            Surface::Quadratic => "quadratic",
            Surface::Rosenbrock => "rosenbrock",
            Surface::Beale => "beale",
            Surface::Saddle => "saddle",
        }
    }

    fn id(self) -> u32 {
        match self {
            Surface::Quadratic => 0,
            Surface::Rosenbrock => 1,
            Surface::Beale => 2,
            Surface::Saddle => 3,
        }
    }

    /// f(x, y).
    pub fn value(self, x: f64, y: f64) -> f64 {
        match self {
            Surface::Quadratic => x * x + 10.0 * y * y,
            Surface::Rosenbrock => (1.0 - x).powi(2) + 100.0 * (y - x * x).powi(2),
            Surface::Beale => {
                (1.5 - x + x * y).powi(2) + (2.25 - x + x * y * y).powi(2) + (2.625 - x + x * y * y * y).powi(2)
            }
            Surface::Saddle => x * x - y * y,
        }
    }

    /// ∇f(x, y).
    pub fn gradient(self, x: f64, y: f64) -> [f64; 2] {
        match self {
            Surface::Quadratic => [2.0 * x, 20.0 * y],
            Surface::Rosenbrock => {
                let r = y - x * x;
                [-2.0 * (1.0 - x) - 400.0 * x * r, 200.0 * r]
            }
            Surface::Beale => {
                let a = 1.5 - x + x * y;
                let b = 2.25 - x + x * y * y;
                let c = 2.625 - x + x * y * y * y;
                [
                    2.0 * a * (y - 1.0) + 2.0 * b * (y * y - 1.0) + 2.0 * c * (y * y * y - 1.0),
                    2.0 * a * x + 4.0 * b * x * y + 6.0 * c * x * y * y,
                ]
            }
            Surface::Saddle => [2.0 * x, -2.0 * y],
        }
    }

    /// The minimiser, if the surface has one.
    pub fn minimum(self) -> Option<[f64; 2]> {
        match self {
            Surface::Quadratic => Some([0.0, 0.0]),
            Surface::Rosenbrock => Some([1.0, 1.0]),
            Surface::Beale => Some([3.0, 0.5]),
            Surface::Saddle => None,
        }
    }
}

/// A compiled gradient kernel for one surface, bound to an (x, y) buffer and
/// a grad buffer of the same size.
pub struct SurfaceGradient {
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    workgroups: u32,
}

impl SurfaceGradient {
    /// Builds the kernel once. `xy` and `grad` hold `2·problems` f32.
    ///
    /// **Errors:** [`crate::OptimError::Wgpu`] if the device rejects a buffer.
    pub fn new(device: &wgpu::Device, surface: Surface, xy: &wgpu::Buffer, grad: &wgpu::Buffer) -> Result<Self> {
        scoped(device, || {
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some("surfaces"),
                source: wgpu::ShaderSource::Wgsl(include_str!("../../shaders/surfaces.wgsl").into()),
            });
            let entry = crate::engine::pipeline::storage_entry;
            let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some("surfaces"),
                entries: &[entry(0, true), entry(1, false)],
            });
            let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some("surfaces"),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
            let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(surface.name()),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some("main"),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &[("SURFACE", surface.id() as f64)],
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
            let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("surfaces"),
                layout: &layout,
                entries: &[
                    wgpu::BindGroupEntry { binding: 0, resource: xy.as_entire_binding() },
                    wgpu::BindGroupEntry { binding: 1, resource: grad.as_entire_binding() },
                ],
            });
            let problems = (xy.size() / 8) as u32;
            SurfaceGradient { pipeline, bind_group, workgroups: problems.div_ceil(64).max(1) }
        })
    }

    /// Records the gradient evaluation into `encoder`.
    pub fn record(&self, encoder: &mut wgpu::CommandEncoder) {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("surface gradient"), timestamp_writes: None });
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(self.workgroups, 1, 1);
    }
}

/// Runs `steps` steps of `config` on `surface` from `start`, entirely on the
/// GPU (gradient kernel and fused step recorded into the same encoder), and
/// returns the path of (x, y), `steps + 1` points, read back once at the end.
///
/// **Errors:** anything the engine reports.
#[cfg(not(target_arch = "wasm32"))]
pub fn trajectory(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    surface: Surface,
    config: crate::OptimizerConfig,
    start: [f32; 2],
    steps: u32,
) -> Result<Vec<[f32; 2]>> {
    trajectory_with(device, queue, surface, config, start, steps, crate::EngineOptions::default())
}

/// [`trajectory`] with engine options (for example bf16 state).
///
/// **Errors:** anything the engine reports.
#[cfg(not(target_arch = "wasm32"))]
pub fn trajectory_with(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    surface: Surface,
    config: crate::OptimizerConfig,
    start: [f32; 2],
    steps: u32,
    options: crate::EngineOptions,
) -> Result<Vec<[f32; 2]>> {
    pollster::block_on(trajectory_async(device, queue, surface, config, start, steps, options))
}

/// [`trajectory_with`] without blocking: how the browser's playground runs
/// it.
///
/// **Errors:** [`OptimError::ExceedsLimits`] when the path (8 bytes a
/// point) is larger than a buffer may be, before anything is created;
/// anything the engine reports.
pub async fn trajectory_async(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    surface: Surface,
    config: crate::OptimizerConfig,
    start: [f32; 2],
    steps: u32,
    options: crate::EngineOptions,
) -> Result<Vec<[f32; 2]>> {
    let path_bytes = 8 * (steps as u64 + 1);
    let most = device.limits().max_buffer_size;
    if path_bytes > most {
        return Err(OptimError::ExceedsLimits(format!("a path of {steps} steps takes {path_bytes} bytes; the device allows buffers of {most}")));
    }
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
    let xy = device.create_buffer(&wgpu::BufferDescriptor { label: Some("xy"), size: 8, usage, mapped_at_creation: false });
    let grad = device.create_buffer(&wgpu::BufferDescriptor { label: Some("grad"), size: 8, usage, mapped_at_creation: false });
    let path = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("path"),
        size: path_bytes,
        usage,
        mapped_at_creation: false,
    });
    queue.write_buffer(&xy, 0, bytemuck::cast_slice(&start));
    let kernel = SurfaceGradient::new(device, surface, &xy, &grad)?;
    let mut opt = crate::Optimizer::with_groups(device, queue, &[config], &[crate::ParamSlice::whole(&xy, &grad)], options)?;
    let per_submit = 32;
    let mut t = 0;
    let mut enc = device.create_command_encoder(&Default::default());
    enc.copy_buffer_to_buffer(&xy, 0, &path, 0, 8);
    while t < steps {
        for _ in 0..per_submit.min(steps - t) {
            kernel.record(&mut enc);
            opt.record_step(&mut enc)?;
            t += 1;
            enc.copy_buffer_to_buffer(&xy, 0, &path, 8 * t as u64, 8);
        }
        queue.submit([std::mem::replace(&mut enc, device.create_command_encoder(&Default::default())).finish()]);
    }
    let flat = crate::device::read_f32_async(device, queue, &path, 0, 2 * (steps as u64 + 1)).await?;
    Ok(flat.chunks_exact(2).map(|c| [c[0], c[1]]).collect())
}
