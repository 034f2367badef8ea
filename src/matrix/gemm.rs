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
    /// 32 × 32 blocks per invocation from registers, no barriers (8 × 8
    /// on wgpu's GL backend: see [`block_side`]).
    Blocks,
}

impl GemmKernel {
    /// The entry point and the outputs per workgroup along each side.
    fn resolve(self, device: &wgpu::Device) -> (&'static str, u32) {
        match self {
            GemmKernel::Auto if device.adapter_info().device_type == wgpu::DeviceType::Cpu => GemmKernel::Blocks.resolve(device),
            GemmKernel::Auto | GemmKernel::Tiles => ("tiles", 16),
            GemmKernel::Blocks => ("blocks", WG_SIDE * block_side(device)),
        }
    }
}
const GEMM_WGSL: &str = include_str!("../../shaders/matrix/gemm.wgsl");
/// Invocations along each side of a `blocks` workgroup (given to gemm.wgsl).
const WG_SIDE: u32 = 8;
/// Rows and columns of C per `blocks` invocation (a multiple of 4). On
/// lavapipe (`wgpu-optim bench --matrices 4 --matrix-size 512`, one run
/// each) 8 gave 5.3–5.9 GFLOP/s, 16 gave 8.1–8.6, 24 gave 9.7, 32 gave
/// 11.3 and 48 gave 6.8 (with a three-minute shader compile; 64 did not
/// compile in five).
const BLOCK: u32 = 32;

/// The `blocks` side on `device`: 32, but 8 on wgpu's GL backend,
/// which compiles a pipeline holding its one context lock and makes any
/// other thread waiting for that lock more than a second panic ("Could
/// not lock adapter context"): llvmpipe's GLSL compile of the 32 × 32
/// kernel takes longer than that (seen in `tests/muon.rs` on GL).
pub fn block_side(device: &wgpu::Device) -> u32 {
    if device.adapter_info().backend == wgpu::Backend::Gl { 8 } else { BLOCK }
}

/// The `blocks` entry point for `block` × `block` outputs per invocation,
/// unrolled: one variable per accumulator vec4, each k step loading `block`
/// elements of A and of B and doing `block`² multiply-adds in k order (so
/// its values are the `tiles` kernel's, bitwise).
pub fn blocks_kernel(block: u32) -> String {
    let quads = block / 4;
    let mut s = String::from("@compute @workgroup_size(WG_SIDE, WG_SIDE)\nfn blocks(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {\n");
    s += "    if (wid.z >= batch.count) { return; }\n    let g = batch.items[wid.z];\n";
    s += &format!("    let r0 = (wid.y * WG_SIDE + lid.y) * {block}u;\n    let c0 = (wid.x * WG_SIDE + lid.x) * {block}u;\n");
    s += "    if (r0 >= g.m || c0 >= g.n) { return; }\n    // Rows and columns past the edge read the last one and are not written.\n";
    for q in 0..quads {
        let lanes = |base: &str| (0..4).map(|l| format!("{base} + {}u", 4 * q + l)).collect::<Vec<_>>().join(", ");
        s += &format!("    let ia{q} = min(vec4<u32>({}), vec4<u32>(g.m - 1u)) * g.a_rs + g.a_off;\n", lanes("r0"));
        s += &format!("    let ib{q} = min(vec4<u32>({}), vec4<u32>(g.n - 1u)) * g.b_cs + g.b_off;\n", lanes("c0"));
    }
    let accs = (0..block).flat_map(|i| (0..quads).map(move |q| format!("acc{i}_{q}")));
    s += &accs.map(|a| format!("    var {a} = vec4<f32>(0.0);\n")).collect::<String>();
    s += "    for (var k = 0u; k < g.k; k++) {\n        let ka = k * g.a_cs;\n        let kb = k * g.b_rs;\n";
    for q in 0..quads {
        s += &format!("        let a{q} = vec4<f32>(mem[ia{q}.x + ka], mem[ia{q}.y + ka], mem[ia{q}.z + ka], mem[ia{q}.w + ka]);\n");
        s += &format!("        let b{q} = vec4<f32>(mem[ib{q}.x + kb], mem[ib{q}.y + kb], mem[ib{q}.z + kb], mem[ib{q}.w + kb]);\n");
    }
    for i in 0..block {
        let a = format!("a{}.{}", i / 4, ["x", "y", "z", "w"][i as usize % 4]);
        s += &(0..quads).map(|q| format!("        acc{i}_{q} = acc{i}_{q} + {a} * b{q};\n")).collect::<String>();
    }
    s += "    }\n";
    for i in 0..block {
        s += &(0..quads).map(|q| format!("    put(g, r0 + {i}u, c0 + {}u, acc{i}_{q});\n", 4 * q)).collect::<String>();
    }
    s + "}\n\n" + PUT
}

/// Writes `alpha·v + beta·D` to the four outputs from (r, c) that are in C.
const PUT: &str = "fn put(g: Item, r: u32, c: u32, v: vec4<f32>) {
    if (r >= g.m) { return; }
    for (var j = 0u; j < 4u; j++) {
        if (c + j >= g.n) { return; }
        var x = batch.alpha * v[j];
        if (batch.beta != 0.0) {
            x = x + batch.beta * mem[g.d_off + r * g.n + c + j];
        }
        mem[g.c_off + r * g.n + c + j] = x;
    }
}
";

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
            // The generated block kernel only where it runs (32 × 32 is
            // thousands of lines for naga to parse).
            let blocks = if entry == "blocks" { blocks_kernel(block_side(device)) } else { String::new() };
            let source = format!("const MAX_ITEMS: u32 = {MAX_ITEMS}u;\nconst WG_SIDE: u32 = {WG_SIDE}u;\n{GEMM_WGSL}\n{blocks}");
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
