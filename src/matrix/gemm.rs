//! Batched GEMM on the GPU (`shaders/matrix/gemm.wgsl`): every matrix
//! product of one Newton–Schulz stage, for all of a step's matrices, in one
//! dispatch (more only past [`MAX_ITEMS`] matrices).

use crate::error::{scoped, Result};

/// Items per dispatch: a 16-byte header and 48 bytes per item fill the 16 KiB
/// every adapter allows for a uniform binding.
pub const MAX_ITEMS: usize = 340;
const ITEM_BYTES: u64 = 48;
/// Bytes of one batch's uniform.
pub const BATCH_BYTES: u64 = 16 + ITEM_BYTES * MAX_ITEMS as u64;
/// Which kernel of gemm.wgsl computes the products (the same values
/// either way).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GemmKernel {
    /// `Blocks` on CPU adapters, `Tiles` on GPUs.
    #[default]
    Auto,
    /// 16 × 16 tiles staged in workgroup memory.
    Tiles,
    /// 8 × 8 blocks per invocation from registers, no barriers.
    Blocks,
}

impl GemmKernel {
    /// The entry point and the outputs per workgroup along each side.
    fn resolve(self, device: &wgpu::Device) -> (&'static str, u32) {
        match self {
            GemmKernel::Auto if device.adapter_info().device_type == wgpu::DeviceType::Cpu => GemmKernel::Blocks.resolve(device),
            GemmKernel::Auto | GemmKernel::Tiles => ("tiles", 16),
            GemmKernel::Blocks => ("blocks", 64),
        }
    }
}
const GEMM_WGSL: &str = include_str!("../../shaders/matrix/gemm.wgsl");

/// One product C = alpha·A·B + beta·D over element offsets of the scratch
/// buffer; A is m×k and B k×n through (row, column) strides, C and D are
/// row-major m×n.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Item {
    /// Rows of A, C and D.
    pub m: u32,
    /// Columns of B, C and D.
    pub n: u32,
    /// Columns of A and rows of B (the inner dimension).
    pub k: u32,
    /// Offset of A in the scratch buffer (elements).
    pub a_off: u32,
    /// Row stride of A (elements).
    pub a_rs: u32,
    /// Column stride of A (elements).
    pub a_cs: u32,
    /// Offset of B in the scratch buffer (elements).
    pub b_off: u32,
    /// Row stride of B (elements).
    pub b_rs: u32,
    /// Column stride of B (elements).
    pub b_cs: u32,
    /// Offset of D in the scratch buffer (elements; read only where beta ≠ 0).
    pub d_off: u32,
    /// Offset of C, the output, in the scratch buffer (elements).
    pub c_off: u32,
    /// Padding to 48 bytes (three vec4s).
    pub pad: u32,
}

impl Item {
    /// Multiply-adds of the product.
    pub fn flops(&self) -> u64 {
        2 * self.m as u64 * self.n as u64 * self.k as u64
    }
}

/// The compiled kernel and its bind-group layout.
pub struct Gemm {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
    /// Outputs per workgroup along each side.
    tile: u32,
}

/// One stage's products, ready to record: a uniform per chunk of items.
pub struct Stage {
    bind_groups: Vec<(wgpu::BindGroup, [u32; 3])>,
    _uniforms: wgpu::Buffer,
}

impl Gemm {
    /// Compiles the kernel.
    ///
    /// **Errors:** [`OptimError::Wgpu`](crate::OptimError::Wgpu) if the device rejects it.
    pub fn new(device: &wgpu::Device, kernel: GemmKernel) -> Result<Self> {
        let (entry, tile) = kernel.resolve(device);
        scoped(device, || {
            let source = format!("const MAX_ITEMS: u32 = {MAX_ITEMS}u;\n{GEMM_WGSL}");
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some("gemm"), source: wgpu::ShaderSource::Wgsl(source.into()) });
            let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some("gemm"),
                entries: &[
                    wgpu::BindGroupLayoutEntry { binding: 0, visibility: wgpu::ShaderStages::COMPUTE, ty: wgpu::BindingType::Buffer { ty: wgpu::BufferBindingType::Uniform, has_dynamic_offset: false, min_binding_size: wgpu::BufferSize::new(BATCH_BYTES) }, count: None },
                    crate::engine::pipeline::storage_entry(1, false),
                ],
            });
            let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor { label: Some("gemm"), bind_group_layouts: &[Some(&layout)], immediate_size: 0 });
            let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor { label: Some("gemm"), layout: Some(&pipeline_layout), module: &module, entry_point: Some(entry), compilation_options: Default::default(), cache: None });
            Gemm { pipeline, layout, tile }
        })
    }

    /// The products `items` with `alpha`, `beta` over `scratch`, as
    /// dispatches of at most [`MAX_ITEMS`] items (written once; recorded
    /// every step).
    pub fn stage(&self, device: &wgpu::Device, queue: &wgpu::Queue, scratch: &wgpu::Buffer, items: &[Item], alpha: f32, beta: f32) -> Stage {
        let chunks: Vec<&[Item]> = items.chunks(MAX_ITEMS).collect();
        let stride = BATCH_BYTES.next_multiple_of(device.limits().min_uniform_buffer_offset_alignment as u64);
        let uniforms = device.create_buffer(&wgpu::BufferDescriptor { label: Some("gemm batches"), size: stride * chunks.len().max(1) as u64, usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST, mapped_at_creation: false });
        let mut bind_groups = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            let mut bytes = vec![0u8; BATCH_BYTES as usize];
            bytes[0..4].copy_from_slice(&alpha.to_le_bytes());
            bytes[4..8].copy_from_slice(&beta.to_le_bytes());
            bytes[8..12].copy_from_slice(&(chunk.len() as u32).to_le_bytes());
            bytes[16..16 + chunk.len() * ITEM_BYTES as usize].copy_from_slice(bytemuck::cast_slice(chunk));
            queue.write_buffer(&uniforms, i as u64 * stride, &bytes);
            let batch = wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: &uniforms, offset: i as u64 * stride, size: wgpu::BufferSize::new(BATCH_BYTES) });
            let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("gemm"),
                layout: &self.layout,
                entries: &[wgpu::BindGroupEntry { binding: 0, resource: batch }, wgpu::BindGroupEntry { binding: 1, resource: scratch.as_entire_binding() }],
            });
            let (m, n) = chunk.iter().fold((0, 0), |(m, n), it| (it.m.max(m), it.n.max(n)));
            bind_groups.push((bind_group, [n.div_ceil(self.tile), m.div_ceil(self.tile), chunk.len() as u32]));
        }
        Stage { bind_groups, _uniforms: uniforms }
    }

    /// Records a stage into a compute pass.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>, stage: &Stage) {
        pass.set_pipeline(&self.pipeline);
        for (bind_group, [x, y, z]) in &stage.bind_groups {
            pass.set_bind_group(0, bind_group, &[]);
            pass.dispatch_workgroups(*x, *y, *z);
        }
    }
}
