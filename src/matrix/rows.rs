//! The row table of the tensor-wise rules: each workgroup handles one row,
//! up to [`ROW`] consecutive elements of one tensor, and writes its partial
//! sums to its row's slot, so a per-tensor reduction is a fixed-order sum
//! over that tensor's rows (deterministic). Rows are dispatched per
//! (param buffer, grad buffer) pair, the bindings of the element-wise passes.

use crate::engine::ParamSlice;

const ROWS_WGSL: &str = include_str!("../../shaders/matrix/rows.wgsl");

/// A tensor-wise shader's source: `WG`, the shared pieces of rows.wgsl, the
/// generated `Scalars` declaration (if any), then `body`.
pub fn source(scalars: &str, body: &str) -> String {
    format!("const WG: u32 = {WG}u;\nconst PER_LANE: u32 = {PER_LANE}u;\n{ROWS_WGSL}\n{scalars}\n{body}")
}

/// A lane mask: true for the first `n` lanes of a unit of 4.
pub const LANES_WGSL: &str = "fn lanes(n: u32) -> vec4<bool> { return vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(n); }\n";

/// Invocations per workgroup of the element-wise passes.
pub const WG: u32 = 256;
// rows.wgsl's workgroup_sum is a tree of 16 × 16 values.
const _: () = assert!(WG == 256);
/// Elements per invocation of a row (fewer, larger rows: each costs a
/// workgroup reduction, whose barriers a CPU adapter runs slowly).
pub const PER_LANE: u32 = 16;
/// Elements per row.
pub const ROW: u64 = PER_LANE as u64 * WG as u64;

/// A row of the table (`Row` in the shaders).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct RowDesc {
    pub tensor: u32,
    /// First element of the tensor the row covers.
    pub start: u32,
    pub len: u32,
    /// The row's index over all rows (its partial-sum slot).
    pub index: u32,
}

/// The rows of tensors of `numels` elements, tensor by tensor, and each
/// tensor's first row.
pub fn rows(numels: &[u64]) -> (Vec<RowDesc>, Vec<u32>) {
    let mut rows = Vec::new();
    let mut first = Vec::with_capacity(numels.len());
    for (tensor, &numel) in numels.iter().enumerate() {
        first.push(rows.len() as u32);
        for start in (0..numel).step_by(ROW as usize) {
            let index = rows.len() as u32;
            rows.push(RowDesc { tensor: tensor as u32, start: start as u32, len: (numel - start).min(ROW) as u32, index });
        }
    }
    (rows, first)
}

/// The distinct (param buffer, grad buffer) pairs of `params`, each with
/// the rows of its tensors.
pub fn windows(params: &[ParamSlice], rows: &[RowDesc]) -> Vec<(wgpu::Buffer, wgpu::Buffer, Vec<RowDesc>)> {
    let mut out: Vec<(wgpu::Buffer, wgpu::Buffer, Vec<RowDesc>)> = Vec::new();
    for row in rows {
        let p = &params[row.tensor as usize];
        match out.iter_mut().find(|(a, b, _)| *a == p.param && *b == p.grad) {
            Some((_, _, mine)) => mine.push(*row),
            None => out.push((p.param.clone(), p.grad.clone(), vec![*row])),
        }
    }
    out
}

/// Each slice's checks (as the fused engine's), buffers within what the
/// kernels can bind and address.
pub fn check_params(device: &wgpu::Device, params: &[ParamSlice]) -> crate::Result<()> {
    use crate::error::OptimError;
    if params.is_empty() {
        return Err(OptimError::EmptyParams);
    }
    let limit = device.limits().max_storage_buffer_binding_size;
    for (index, p) in params.iter().enumerate() {
        crate::engine::params::check_slice(index, p, 1)?;
        for buffer in [&p.param, &p.grad] {
            if buffer.size() > limit || buffer.size() / 4 > u32::MAX as u64 {
                return Err(OptimError::ExceedsLimits(format!("parameter {index}: a buffer of {} bytes is past the binding limit of {limit} bytes", buffer.size())));
            }
        }
    }
    Ok(())
}

/// A shader's entry points over one bind group layout: binding 0 a uniform
/// with a dynamic offset (a [`crate::engine::uniforms::Ring`] slot), then
/// storage buffers.
pub struct Kernels {
    /// One per entry point, in the order given.
    pub pipelines: Vec<wgpu::ComputePipeline>,
    pub layout: wgpu::BindGroupLayout,
}

impl Kernels {
    /// Compiles `source` and builds `entries`; `read_only[i]` is binding
    /// i + 1's access.
    pub fn new(device: &wgpu::Device, label: &str, source: &str, read_only: &[bool], entries: &[&str]) -> crate::Result<Self> {
        crate::error::scoped(device, || {
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some(label), source: wgpu::ShaderSource::Wgsl(source.into()) });
            let uniform = wgpu::BindGroupLayoutEntry { binding: 0, visibility: wgpu::ShaderStages::COMPUTE, ty: wgpu::BindingType::Buffer { ty: wgpu::BufferBindingType::Uniform, has_dynamic_offset: true, min_binding_size: None }, count: None };
            let mut layout_entries = vec![uniform];
            layout_entries.extend(read_only.iter().enumerate().map(|(i, &ro)| crate::engine::pipeline::storage_entry(i as u32 + 1, ro)));
            let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(label), entries: &layout_entries });
            let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor { label: Some(label), bind_group_layouts: &[Some(&layout)], immediate_size: 0 });
            let make = |entry: &&str| device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor { label: Some(entry), layout: Some(&pipeline_layout), module: &module, entry_point: Some(entry), compilation_options: Default::default(), cache: None });
            Kernels { pipelines: entries.iter().map(make).collect(), layout }
        })
    }

    /// A bind group of `resources`, binding 0 first.
    pub fn bind(&self, device: &wgpu::Device, label: &str, resources: Vec<wgpu::BindingResource<'_>>) -> wgpu::BindGroup {
        let entries: Vec<_> = resources.into_iter().enumerate().map(|(i, resource)| wgpu::BindGroupEntry { binding: i as u32, resource }).collect();
        device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some(label), layout: &self.layout, entries: &entries })
    }
}

/// Records with `record` into a new encoder and submits it, inside an
/// error scope (the `step()` of the tensor-wise optimizers).
///
/// **Errors:** what `record` returns; [`crate::OptimError::Wgpu`] if the
/// device rejects the work.
pub fn submit(device: &wgpu::Device, queue: &wgpu::Queue, label: &str, record: impl FnOnce(&mut wgpu::CommandEncoder) -> crate::Result<()>) -> crate::Result<()> {
    crate::error::scoped(device, || {
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) });
        record(&mut encoder)?;
        queue.submit([encoder.finish()]);
        Ok(())
    })?
}

/// A storage operand of a tensor-wise shader (an `array<f32>` of elements).
#[derive(Clone, Copy, Debug)]
pub struct Operand {
    pub name: &'static str,
    pub binding: u32,
    pub writable: bool,
}

/// The declarations of `operands` and their accessors, `ld_X(e, n)` (the 4
/// elements from e; lanes from n on are unspecified) and `st_X(e, v, n)`
/// (stores the first n lanes). With `vec4` every operand is bound as
/// `array<vec4<f32>>` and e must be a multiple of 4 (one access per 4
/// elements: on a CPU adapter every access is a loop over SIMD lanes, so
/// this is about 4× fewer); otherwise as `array<f32>` (any offset).
pub fn operands(vec4: bool, ops: &[Operand]) -> String {
    let mut out = String::new();
    for op in ops {
        let (name, access) = (op.name, if op.writable { "read_write" } else { "read" });
        if vec4 {
            out += &format!("@group(0) @binding({}) var<storage, {access}> {name}: array<vec4<f32>>;\n", op.binding);
            out += &format!("fn ld_{name}(e: u32, n: u32) -> vec4<f32> {{ return {name}[e >> 2u]; }}\n");
            if op.writable {
                out += &format!(
                    "fn st_{name}(e: u32, v: vec4<f32>, n: u32) {{\n    let j = e >> 2u;\n    if (n >= 4u) {{ {name}[j] = v; return; }}\n    {name}[j].x = v.x;\n    if (n > 1u) {{ {name}[j].y = v.y; }}\n    if (n > 2u) {{ {name}[j].z = v.z; }}\n}}\n"
                );
            }
        } else {
            out += &format!("@group(0) @binding({}) var<storage, {access}> {name}: array<f32>;\n", op.binding);
            out += &format!(
                "fn ld_{name}(e: u32, n: u32) -> vec4<f32> {{\n    var v = vec4<f32>({name}[e], 0.0, 0.0, 0.0);\n    if (n > 1u) {{ v.y = {name}[e + 1u]; }}\n    if (n > 2u) {{ v.z = {name}[e + 2u]; }}\n    if (n > 3u) {{ v.w = {name}[e + 3u]; }}\n    return v;\n}}\n"
            );
            if op.writable {
                out += &format!(
                    "fn st_{name}(e: u32, v: vec4<f32>, n: u32) {{\n    {name}[e] = v.x;\n    if (n > 1u) {{ {name}[e + 1u] = v.y; }}\n    if (n > 2u) {{ {name}[e + 2u] = v.z; }}\n    if (n > 3u) {{ {name}[e + 3u] = v.w; }}\n}}\n"
                );
            }
        }
    }
    out
}

/// Whether every slice can be read in whole vec4s: param and grad offsets
/// multiples of 4, and each buffer long enough for the last vec4 of each
/// slice.
pub fn vec4_aligned(params: &[ParamSlice]) -> bool {
    params.iter().all(|p| {
        let fits = |buffer: &wgpu::Buffer, at: u64| at.is_multiple_of(4) && 4 * (at + p.len()).next_multiple_of(4) <= buffer.size();
        fits(&p.param, p.param_offset) && fits(&p.grad, p.grad_offset)
    })
}

/// A read-only storage buffer holding `items` (at least 16 bytes).
pub fn table<T: bytemuck::Pod>(device: &wgpu::Device, queue: &wgpu::Queue, label: &str, items: &[T]) -> wgpu::Buffer {
    let bytes: &[u8] = bytemuck::cast_slice(items);
    let buffer = device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size: (bytes.len() as u64).max(16), usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST, mapped_at_creation: false });
    queue.write_buffer(&buffer, 0, bytes);
    buffer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_cover_each_tensor_once_in_order() {
        let (rows, first) = rows(&[1, ROW, ROW + 3, 5]);
        assert_eq!(first, [0, 1, 2, 4]);
        assert_eq!(rows.iter().map(|r| (r.tensor, r.start, r.len)).collect::<Vec<_>>(), [(0, 0, 1), (1, 0, ROW as u32), (2, 0, ROW as u32), (2, ROW as u32, 3), (3, 0, 5)]);
        assert!(rows.iter().enumerate().all(|(i, r)| r.index == i as u32));
    }
}
