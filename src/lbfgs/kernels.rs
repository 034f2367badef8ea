//! The vector operations of L-BFGS (`shaders/lbfgs/vectors.wgsl`) and how
//! they are recorded: each operation is a dispatch with its own `Op`
//! (a dynamic uniform offset) and its operands as binding ranges, queued
//! into a [`Batch`] that one compute pass records. Coefficients and dot
//! products stay on the GPU in the `scalars` buffer.

use crate::error::{scoped, OptimError, Result};

const REDUCE_WGSL: &str = include_str!("../../shaders/lbfgs/reduce.wgsl");
const VECTORS_WGSL: &str = include_str!("../../shaders/lbfgs/vectors.wgsl");

/// Invocations per workgroup (`WG` in reduce.wgsl).
pub const WG: u32 = 256;
/// vec4s per invocation of an element-wise pass.
const PER_LANE: u32 = 4;
/// Workgroups of a partial reduction (one `finish` workgroup sums them).
pub const MAX_PARTIALS: u32 = WG;
/// Bytes between two `Op`s in the uniform buffer (WebGPU's largest
/// `min_uniform_buffer_offset_alignment`).
const OP_STRIDE: u64 = 256;

/// The slots of the `scalars` buffer with a fixed meaning; the ring's ρ and
/// α follow from [`slot::RING`].
pub mod slot {
    /// Always 0.
    pub const ZERO: u32 = 0;
    /// Always 1.
    pub const ONE: u32 = 1;
    /// The initial inverse-Hessian scale (written by the host).
    pub const H_DIAG: u32 = 2;
    /// yᵀs and yᵀy of the newest pair.
    pub const YS: u32 = 3;
    /// yᵀy.
    pub const YY: u32 = 4;
    /// gᵀd.
    pub const GTD: u32 = 5;
    /// max |g|.
    pub const G_MAX: u32 = 6;
    /// Σ |g|.
    pub const G_SUM: u32 = 7;
    /// max |d|.
    pub const D_MAX: u32 = 8;
    /// The loss the closure left.
    pub const LOSS: u32 = 9;
    /// The second loop's βᵢ.
    pub const BETA: u32 = 10;
    /// A value nothing reads (the unused second result of a reduction).
    pub const SINK: u32 = 11;
    /// Σ |d| (NaN when d has one: max |d| alone would hide it).
    pub const D_SUM: u32 = 12;
    /// The first ρ; the ring of `c` slots has ρ at RING.. and α at RING + c...
    pub const RING: u32 = 16;
}

/// The entry points of vectors.wgsl.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// (Σ a·b, Σ a·a) per workgroup.
    PartialDot,
    /// (max |a|, Σ |a|) per workgroup.
    PartialAbs,
    /// The partials into `scalars`.
    Finish,
    /// out = c·a.
    SetScaled,
    /// out += c·a.
    AddScaled,
    /// out = c·out.
    Scale,
    /// out = a − b.
    Diff,
    /// out = a + c·b.
    Moved,
    /// out += c·a, and (Σ b·out, Σ b·b) per workgroup.
    AddScaledDot,
}

const ENTRIES: [(Entry, &str); 9] = [
    (Entry::PartialDot, "partial_dot"),
    (Entry::PartialAbs, "partial_abs"),
    (Entry::Finish, "finish"),
    (Entry::SetScaled, "set_scaled"),
    (Entry::AddScaled, "add_scaled"),
    (Entry::Scale, "scale"),
    (Entry::Diff, "diff"),
    (Entry::Moved, "moved"),
    (Entry::AddScaledDot, "add_scaled_dot"),
];

/// One dispatch's uniform (`Op` in vectors.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Op {
    n: u32,
    stride: u32,
    kind: u32,
    groups: u32,
    c0: u32,
    c1: u32,
    out0: u32,
    out1: u32,
    mul0: u32,
    host: f32,
    sign: f32,
    pad: u32,
}

/// A coefficient: `host + sign·(scalars[c0] − scalars[c1])`.
#[derive(Clone, Copy, Debug)]
pub struct Coef {
    /// The host's part (f64, rounded once to f32).
    pub host: f64,
    /// The sign of the GPU's part (0: none).
    pub sign: f32,
    /// The GPU scalars.
    pub slots: (u32, u32),
}

impl Coef {
    /// An `Op` with this coefficient (the rest zero).
    fn op(self) -> Op {
        Op { host: self.host as f32, sign: self.sign, c0: self.slots.0, c1: self.slots.1, ..Op::default() }
    }

    /// A host constant.
    pub fn host(value: f64) -> Self {
        Coef { host: value, sign: 0.0, slots: (slot::ZERO, slot::ZERO) }
    }
    /// `sign·(scalars[a] − scalars[b])`.
    pub fn gpu(sign: f32, a: u32, b: u32) -> Self {
        Coef { host: 0.0, sign, slots: (a, b) }
    }
}

/// A binding range of f32 elements.
#[derive(Clone, Debug)]
pub struct View {
    /// The buffer.
    pub buffer: wgpu::Buffer,
    /// First byte (a multiple of 256).
    pub offset: u64,
    /// Bytes.
    pub size: u64,
}

/// The pipelines, the fixed buffers and the op slots.
pub struct Kernels {
    device: wgpu::Device,
    pipelines: Vec<wgpu::ComputePipeline>,
    layout: wgpu::BindGroupLayout,
    ops: wgpu::Buffer,
    op_group: wgpu::BindGroup,
    op_capacity: u64,
    /// The scalars (f32).
    pub scalars: wgpu::Buffer,
    partials: wgpu::Buffer,
    dummy_read: wgpu::Buffer,
    dummy_write: wgpu::Buffer,
    /// vec4s of a vector.
    n: u32,
}

fn storage(binding: u32, read_only: bool) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer { ty: wgpu::BufferBindingType::Storage { read_only }, has_dynamic_offset: false, min_binding_size: None },
        count: None,
    }
}

fn buffer(device: &wgpu::Device, label: &str, size: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size, usage, mapped_at_creation: false })
}

impl Kernels {
    /// Pipelines for vectors of `n` elements (bound as `n.div_ceil(4)`
    /// vec4s, the tails zero), `scalar_count` scalars and up
    /// to `op_capacity` dispatches in one command buffer.
    ///
    /// **Errors:** [`OptimError::Wgpu`] / [`OptimError::OutOfMemory`] from
    /// creation.
    pub fn new(device: &wgpu::Device, n: u32, scalar_count: u32, op_capacity: u64) -> Result<Self> {
        scoped(device, || {
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some("lbfgs vectors"),
                source: wgpu::ShaderSource::Wgsl(format!("{REDUCE_WGSL}\n{VECTORS_WGSL}").into()),
            });
            let entries = [storage(0, true), storage(1, true), storage(2, false), storage(3, false), storage(4, false)];
            let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some("lbfgs operands"), entries: &entries });
            let op_entry = wgpu::BindGroupLayoutEntry {
                binding: 0,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer { ty: wgpu::BufferBindingType::Uniform, has_dynamic_offset: true, min_binding_size: wgpu::BufferSize::new(std::mem::size_of::<Op>() as u64) },
                count: None,
            };
            let op_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some("lbfgs op"), entries: &[op_entry] });
            let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor { label: Some("lbfgs"), bind_group_layouts: &[Some(&layout), Some(&op_layout)], immediate_size: 0 });
            let pipelines = ENTRIES
                .iter()
                .map(|(_, entry)| {
                    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                        label: Some(entry),
                        layout: Some(&pipeline_layout),
                        module: &module,
                        entry_point: Some(entry),
                        compilation_options: Default::default(),
                        cache: None,
                    })
                })
                .collect();
            use wgpu::BufferUsages as U;
            let ops = buffer(device, "lbfgs ops", op_capacity * OP_STRIDE, U::UNIFORM | U::COPY_DST);
            let op_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("lbfgs op"),
                layout: &op_layout,
                entries: &[wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: &ops, offset: 0, size: wgpu::BufferSize::new(std::mem::size_of::<Op>() as u64) }),
                }],
            });
            let scalars = buffer(device, "lbfgs scalars", scalar_count as u64 * 4, U::STORAGE | U::COPY_SRC | U::COPY_DST);
            let partials = buffer(device, "lbfgs partials", MAX_PARTIALS as u64 * 8, U::STORAGE);
            let dummy_read = buffer(device, "lbfgs unused", 16, U::STORAGE);
            let dummy_write = buffer(device, "lbfgs unused", 16, U::STORAGE);
            Kernels { device: device.clone(), pipelines, layout, ops, op_group, op_capacity, scalars, partials, dummy_read, dummy_write, n: n.div_ceil(4) }
        })
    }

    fn whole(buffer: &wgpu::Buffer) -> View {
        View { buffer: buffer.clone(), offset: 0, size: buffer.size() }
    }

    fn bind(&self, operands: [Option<&View>; 3]) -> wgpu::BindGroup {
        let fallback = [Self::whole(&self.dummy_read), Self::whole(&self.dummy_read), Self::whole(&self.dummy_write)];
        let views: Vec<View> = operands.iter().zip(fallback).map(|(v, f)| v.cloned().unwrap_or(f)).collect();
        let mut entries: Vec<wgpu::BindGroupEntry> = views
            .iter()
            .enumerate()
            .map(|(i, v)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: &v.buffer, offset: v.offset, size: wgpu::BufferSize::new(v.size) }),
            })
            .collect();
        entries.push(wgpu::BindGroupEntry { binding: 3, resource: self.scalars.as_entire_binding() });
        entries.push(wgpu::BindGroupEntry { binding: 4, resource: self.partials.as_entire_binding() });
        self.device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some("lbfgs operands"), layout: &self.layout, entries: &entries })
    }

    /// Workgroups of a partial reduction over the vector.
    fn partial_groups(&self) -> u32 {
        self.n.div_ceil(WG).clamp(1, MAX_PARTIALS)
    }

    /// Workgroups of an element-wise pass over the vector: PER_LANE
    /// elements per invocation.
    fn elementwise_groups(&self) -> u32 {
        let most = self.device.limits().max_compute_workgroups_per_dimension;
        self.n.div_ceil(WG * PER_LANE).clamp(1, most)
    }
}

/// The dispatches of one compute pass, in order: entry, operands, workgroups.
pub struct Batch<'k> {
    kernels: &'k Kernels,
    ops: Vec<Op>,
    dispatches: Vec<(Entry, [Option<View>; 3], u32)>,
}

impl<'k> Batch<'k> {
    /// An empty batch.
    pub fn new(kernels: &'k Kernels) -> Self {
        Batch { kernels, ops: Vec::new(), dispatches: Vec::new() }
    }

    fn push(&mut self, entry: Entry, operands: [Option<&View>; 3], mut op: Op, groups: u32) {
        op.n = self.kernels.n;
        op.stride = groups * WG;
        self.ops.push(op);
        self.dispatches.push((entry, operands.map(|v| v.cloned()), groups));
    }

    fn elementwise(&mut self, entry: Entry, operands: [Option<&View>; 3], c: Coef) {
        let groups = self.kernels.elementwise_groups();
        self.push(entry, operands, c.op(), groups);
    }

    /// out = c·a.
    pub fn set_scaled(&mut self, out: &View, a: &View, c: Coef) {
        self.elementwise(Entry::SetScaled, [Some(a), None, Some(out)], c);
    }
    /// out += c·a.
    pub fn add_scaled(&mut self, out: &View, a: &View, c: Coef) {
        self.elementwise(Entry::AddScaled, [Some(a), None, Some(out)], c);
    }
    /// out = c·out.
    pub fn scale(&mut self, out: &View, c: Coef) {
        self.elementwise(Entry::Scale, [None, None, Some(out)], c);
    }
    /// out = a − b.
    pub fn diff(&mut self, out: &View, a: &View, b: &View) {
        self.elementwise(Entry::Diff, [Some(a), Some(b), Some(out)], Coef::host(0.0));
    }
    /// out = a + c·b.
    pub fn moved(&mut self, out: &View, a: &View, b: &View, c: Coef) {
        self.elementwise(Entry::Moved, [Some(a), Some(b), Some(out)], c);
    }

    fn reduce(&mut self, entry: Entry, a: &View, b: Option<&View>, outs: (u32, u32), mul: u32) {
        let groups = self.kernels.partial_groups();
        self.push(entry, [Some(a), b, None], Op::default(), groups);
        self.finish(u32::from(entry == Entry::PartialAbs), groups, outs, mul);
    }

    fn finish(&mut self, kind: u32, groups: u32, outs: (u32, u32), mul: u32) {
        self.push(Entry::Finish, [None, None, None], Op { kind, groups, out0: outs.0, out1: outs.1, mul0: mul, ..Op::default() }, 1);
    }

    /// out += c·a, then `scalars[outs.0] = bᵀout · scalars[mul]` (and
    /// `scalars[outs.1] = bᵀb`) over the updated out, in one pass: the
    /// reduction's lanes and order are [`Batch::dot`]'s.
    pub fn add_scaled_dot(&mut self, out: &View, a: &View, c: Coef, b: &View, outs: (u32, u32), mul: u32) {
        let groups = self.kernels.partial_groups();
        self.push(Entry::AddScaledDot, [Some(a), Some(b), Some(out)], c.op(), groups);
        self.finish(0, groups, outs, mul);
    }

    /// `scalars[outs.0] = aᵀb · scalars[mul]`, `scalars[outs.1] = aᵀa`.
    pub fn dot(&mut self, a: &View, b: &View, outs: (u32, u32), mul: u32) {
        self.reduce(Entry::PartialDot, a, Some(b), outs, mul);
    }
    /// `scalars[outs.0] = max |a|`, `scalars[outs.1] = Σ |a|`.
    pub fn abs(&mut self, a: &View, outs: (u32, u32)) {
        self.reduce(Entry::PartialAbs, a, None, outs, slot::ONE);
    }

    /// Writes the ops' uniforms and records the pass into `encoder`.
    ///
    /// **Errors:** [`OptimError::ExceedsLimits`] past the op capacity (an
    /// internal bound from the history size).
    pub fn record(self, queue: &wgpu::Queue, encoder: &mut wgpu::CommandEncoder, first_op: &mut u64) -> Result<()> {
        let k = self.kernels;
        if *first_op + self.ops.len() as u64 > k.op_capacity {
            return Err(OptimError::ExceedsLimits(format!("{} L-BFGS dispatches before one submit (capacity {})", *first_op + self.ops.len() as u64, k.op_capacity)));
        }
        let mut bytes = vec![0u8; self.ops.len() * OP_STRIDE as usize];
        for (i, op) in self.ops.iter().enumerate() {
            bytes[i * OP_STRIDE as usize..][..std::mem::size_of::<Op>()].copy_from_slice(bytemuck::bytes_of(op));
        }
        if !bytes.is_empty() {
            queue.write_buffer(&k.ops, *first_op * OP_STRIDE, &bytes);
        }
        let first = *first_op;
        scoped(&k.device, || {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("lbfgs"), timestamp_writes: None });
            for (i, (entry, operands, groups)) in self.dispatches.iter().enumerate() {
                let index = ENTRIES.iter().position(|(e, _)| e == entry).expect("every entry has a pipeline");
                pass.set_pipeline(&k.pipelines[index]);
                pass.set_bind_group(0, &k.bind([operands[0].as_ref(), operands[1].as_ref(), operands[2].as_ref()]), &[]);
                pass.set_bind_group(1, &k.op_group, &[((first + i as u64) * OP_STRIDE) as u32]);
                pass.dispatch_workgroups(*groups, 1, 1);
            }
        })?;
        *first_op += self.ops.len() as u64;
        Ok(())
    }
}
