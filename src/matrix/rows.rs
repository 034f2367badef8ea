//! The row table of the tensor-wise rules: each workgroup handles one row,
//! up to [`RowAccess::row_len`] consecutive elements of one tensor, and writes its partial
//! sums to its row's slot, so a per-tensor reduction is a fixed-order sum
//! over that tensor's rows (deterministic; a workgroup per tensor,
//! tensor_total.wgsl). Rows are dispatched per
//! (param buffer, grad buffer) pair, the bindings of the element-wise passes.

use crate::engine::ParamSlice;

const ROWS_WGSL: &str = include_str!("../../shaders/matrix/rows.wgsl");

/// A tensor-wise shader's source: `WG`, `PER_LANE` (of `access`), the
/// shared pieces of rows.wgsl, the generated `Scalars` declaration (if
/// any), then `body`.
pub fn source(access: RowAccess, scalars: &str, body: &str) -> String {
    format!("const WG: u32 = {WG}u;\nconst PER_LANE: u32 = {}u;\n{ROWS_WGSL}\n{scalars}\n{body}", access.per_lane)
}

const TENSOR_TOTAL_WGSL: &str = include_str!("../../shaders/matrix/tensor_total.wgsl");

/// [`source`] with `TOTAL_WG`, `total_sum` and `tensor_total`
/// (tensor_total.wgsl) before `body`, for a shader whose `sums` holds a
/// pair of partial sums per row.
pub fn totals_source(access: RowAccess, scalars: &str, body: &str) -> String {
    source(access, scalars, &format!("const TOTAL_WG: u32 = {TOTAL_WG}u;\n{TENSOR_TOTAL_WGSL}\n{body}"))
}

/// Invocations per workgroup of the per-tensor passes (a workgroup per
/// tensor). 64 rather than [`WG`]: on lavapipe a model of 1000 tensors
/// took 5 ms more per LAMB step with 256 (each workgroup's barriers cost
/// there), while a GPU's 4096 rows of a 2^24 tensor are still 64 loads
/// per lane.
pub const TOTAL_WG: u32 = 64;
// tensor_total.wgsl's total_sum is a tree of 8 × 8 values.
const _: () = assert!(TOTAL_WG == 64);

/// Invocations per workgroup of the element-wise passes.
pub const WG: u32 = 256;
// rows.wgsl's workgroup_sum is a tree of 16 × 16 values.
const _: () = assert!(WG == 256);
/// Elements per invocation of a row on a GPU.
pub const PER_LANE_GPU: u32 = 16;
/// Elements per invocation of a row on a CPU adapter with `SHADER_INT64`
/// (where [`RowAccess::of`] picks the CPU shape), whose workgroup
/// reductions (their barriers) are slow: 4× fewer rows made LAMB 27 %
/// faster on lavapipe; a GPU would get a quarter of the workgroups.
pub const PER_LANE_CPU: u32 = 64;

/// The depth, in roundings, of a fixed-order sum over the row table of a
/// tensor of `n` elements, for either row length: a lane's sequential sum
/// (at most PER_LANE terms plus 2) and the workgroup's tree (log₂ WG) per
/// row, then tensor_total.wgsl's `tensor_total`: a lane's rows in order
/// (at most ⌈rows / TOTAL_WG⌉, rows at most ⌈n / (PER_LANE_GPU·WG)⌉) and
/// its tree (log₂ TOTAL_WG). On a GPU this is about 48 roundings looser
/// than its own shape needs.
pub fn sum_depth(n: u64) -> u64 {
    let rows = n.div_ceil(PER_LANE_GPU as u64 * WG as u64);
    2 + PER_LANE_CPU as u64 + WG.trailing_zeros() as u64 + rows.div_ceil(TOTAL_WG as u64) + TOTAL_WG.trailing_zeros() as u64
}

/// [`sum_depth`] for a rule whose tensors of one row may share rows
/// (LAMB, src/matrix/shared_rows.rs), where such a tensor's sum is a
/// lane's sum, a run of [`SEGMENT_RUN`] lanes in order and the runs of at
/// most [`MAX_SEGMENT_LANES`] in order.
pub fn shared_sum_depth(n: u64) -> u64 {
    let shared = 2 + PER_LANE_CPU as u64 + SEGMENT_RUN as u64 + (MAX_SEGMENT_LANES / SEGMENT_RUN) as u64;
    if n <= PER_LANE_CPU as u64 * WG as u64 { sum_depth(n).max(shared) } else { sum_depth(n) }
}

/// Most lanes one tensor takes in a row shared with other tensors: a
/// whole row's (src/matrix/shared_rows.rs).
pub const MAX_SEGMENT_LANES: u32 = WG;
/// Lanes of a shared row's tensor summed in order by one lane, before
/// the runs are summed in order.
pub const SEGMENT_RUN: u32 = 16;

/// A row of the table (`Row` in the shaders).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct RowDesc {
    /// Index of the tensor the row belongs to.
    pub tensor: u32,
    /// First element of the tensor the row covers.
    pub start: u32,
    /// Elements the row covers (the row length, less at the tensor's end).
    pub len: u32,
    /// The row's index over all rows (its partial-sum slot).
    pub index: u32,
}

/// The rows of `row_len` elements of tensors of `numels` elements, tensor
/// by tensor, and each tensor's first row.
pub fn rows(numels: &[u64], row_len: u64) -> (Vec<RowDesc>, Vec<u32>) {
    let mut rows = Vec::new();
    let mut first = Vec::with_capacity(numels.len());
    for (tensor, &numel) in numels.iter().enumerate() {
        first.push(rows.len() as u32);
        for start in (0..numel).step_by(row_len as usize) {
            let index = rows.len() as u32;
            rows.push(RowDesc { tensor: tensor as u32, start: start as u32, len: (numel - start).min(row_len) as u32, index });
        }
    }
    (rows, first)
}

/// The distinct (param buffer, grad buffer) pairs of `params`, each with
/// the rows of its tensors.
///
/// **Errors:** [`crate::OptimError::ExceedsLimits`] if a pair has more rows
/// than one dispatch of `device` can take (a workgroup each).
pub fn windows(device: &wgpu::Device, params: &[ParamSlice], rows: &[RowDesc]) -> crate::Result<Vec<(wgpu::Buffer, wgpu::Buffer, Vec<RowDesc>)>> {
    let mut out: Vec<(wgpu::Buffer, wgpu::Buffer, Vec<RowDesc>)> = Vec::new();
    for row in rows {
        let p = &params[row.tensor as usize];
        match out.iter_mut().find(|(a, b, _)| *a == p.param && *b == p.grad) {
            Some((_, _, mine)) => mine.push(*row),
            None => out.push((p.param.clone(), p.grad.clone(), vec![*row])),
        }
    }
    let most = device.limits().max_compute_workgroups_per_dimension as usize;
    match out.iter().find(|(_, _, mine)| mine.len() > most) {
        Some((_, _, mine)) => Err(crate::OptimError::ExceedsLimits(format!("{} rows of the row table in one buffer pair: one dispatch takes at most {most} workgroups", mine.len()))),
        None => Ok(out),
    }
}

/// Each slice's checks and the overlap check (as the fused engine's),
/// buffers within what the kernels can bind and address.
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
    crate::engine::params::check_disjoint(params)
}

/// [`check_params`], and at most one dispatch's workgroups of tensors: the
/// per-tensor passes (tensor_total.wgsl) take a workgroup each.
///
/// **Errors:** as [`check_params`]; [`crate::OptimError::ExceedsLimits`]
/// past that many tensors.
pub fn check_tensors(device: &wgpu::Device, params: &[ParamSlice]) -> crate::Result<()> {
    check_params(device, params)?;
    let most = device.limits().max_compute_workgroups_per_dimension;
    if params.len() > most as usize {
        return Err(crate::OptimError::ExceedsLimits(format!("{} tensors: the per-tensor passes take a workgroup each, at most {most} in one dispatch", params.len())));
    }
    Ok(())
}

/// A shader's entry points over one bind group layout: binding 0 a uniform
/// (a [`crate::engine::uniforms::StepUniform`]), then storage buffers.
pub struct Kernels {
    /// One per entry point, in the order given.
    pub pipelines: Vec<wgpu::ComputePipeline>,
    /// The bind group layout every entry point shares.
    pub layout: wgpu::BindGroupLayout,
}

impl Kernels {
    /// Compiles `source` and builds `entries`; `read_only[i]` is binding
    /// i + 1's access.
    pub fn new(device: &wgpu::Device, label: &str, source: &str, read_only: &[bool], entries: &[&str]) -> crate::Result<Self> {
        crate::error::scoped(device, || {
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some(label), source: wgpu::ShaderSource::Wgsl(source.into()) });
            let uniform = crate::engine::pipeline::uniform_entry(0, None, false);
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
    /// The WGSL variable name, also the suffix of its accessors (`ld_X`, `st_X`).
    pub name: &'static str,
    /// Its binding in group 0.
    pub binding: u32,
    /// Whether it is bound `read_write` (and gets a store accessor).
    pub writable: bool,
}

/// How the element passes of a tensor-wise rule move their operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowForm {
    /// `array<f32>`, a scalar access per element (any offset).
    Scalar,
    /// `array<vec4<f32>>`: every slice starts on a multiple of 4.
    Vec4,
    /// `array<vec4<u64>>`, two f32 per u64, 8 elements per access (as the
    /// engine's [`crate::engine::Access::Wide`]): every slice on a multiple
    /// of 8.
    Wide,
}

/// The access of a tensor-wise rule's element passes: its form, its unit
/// (the consecutive elements an invocation takes at a time) and the
/// elements per invocation of a row. Where the wide form can run (CPU
/// adapters with `SHADER_INT64`, as [`crate::WideAccess::Auto`]) the unit
/// is 8 for every form, so that a lane's partial sums cover the same
/// elements in the same order and the three forms give the same bits
/// (tested), and rows take [`PER_LANE_CPU`] per invocation; elsewhere
/// (GPUs, and CI's GL adapter) units of 4 keep the lanes' vec4 loads
/// contiguous and rows take [`PER_LANE_GPU`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowAccess {
    /// How the operands are bound and loaded.
    pub form: RowForm,
    /// Consecutive elements an invocation takes at a time (4 or 8).
    pub unit: u32,
    /// Elements per invocation of a row.
    pub per_lane: u32,
}

impl RowAccess {
    /// The widest form `device` and `params` allow.
    pub fn of(device: &wgpu::Device, params: &[ParamSlice]) -> Self {
        let wide = crate::WideAccess::Auto.wanted(device);
        let (unit, per_lane) = if wide { (8, PER_LANE_CPU) } else { (4, PER_LANE_GPU) };
        let form = if wide && aligned(params, 8) {
            RowForm::Wide
        } else if aligned(params, 4) {
            RowForm::Vec4
        } else {
            RowForm::Scalar
        };
        RowAccess { form, unit, per_lane }
    }

    /// Elements per row.
    pub fn row_len(self) -> u64 {
        self.per_lane as u64 * WG as u64
    }

    /// The multiple every engine-owned segment (state, averages) starts on.
    pub fn segment(self) -> u64 {
        self.unit as u64
    }

    /// The declarations of `operands` and their accessors: `UNIT`, `Unit`
    /// (its values as vec4s), `ld_X(e, n)` (the unit at element e; lanes
    /// from n on are unspecified), `at_X(e)` (element e alone) and
    /// `st_X(e, v, n)`, which stores the
    /// first n lanes (vec4 and scalar) or the whole unit (wide: callers
    /// pass loaded values back in lanes from n on, with `tail`); `lanes(n,
    /// h)`, the live lanes of vec4 h of a unit with n live elements;
    /// `tail(loaded, next, n, h)`, what to store in vec4 h of a param's unit
    /// (`next` in live lanes; with the wide form, `loaded` past them).
    pub fn operands(self, ops: &[Operand]) -> String {
        let tail = if self.form == RowForm::Wide { "select(loaded, next, lanes(n, h))" } else { "next" };
        let mut out = format!(
            "const UNIT: u32 = {}u;\nalias Unit = array<vec4<f32>, {}>;\n\
             fn lanes(n: u32, h: u32) -> vec4<bool> {{ return vec4<u32>(4u * h) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(n); }}\n\
             fn tail(loaded: vec4<f32>, next: vec4<f32>, n: u32, h: u32) -> vec4<f32> {{ return {tail}; }}\n",
            self.unit,
            self.unit / 4
        );
        if self.form == RowForm::Wide {
            out += crate::engine::shader::WIDE_WGSL;
        }
        for op in ops {
            out += &self.operand(op);
        }
        out
    }

    /// One operand: wide units directly, the others as vec4 halves
    /// (`ld4_X` / `st4_X`: the 4 elements at e, the first n of them).
    fn operand(self, op: &Operand) -> String {
        let (name, access) = (op.name, if op.writable { "read_write" } else { "read" });
        let binding = format!("@group(0) @binding({}) var<storage, {access}> {name}", op.binding);
        if self.form == RowForm::Wide {
            let mut out = format!("{binding}: array<vec4<u64>>;\nfn ld_{name}(e: u32, n: u32) -> Unit {{ let w = {name}[e >> 3u]; return Unit(wide_lo(w), wide_hi(w)); }}\n");
            out += &format!("fn at_{name}(e: u32) -> f32 {{ return wide_half({name}[e >> 3u][(e >> 1u) & 3u])[e & 1u]; }}\n");
            if op.writable {
                out += &format!("fn st_{name}(e: u32, v: Unit, n: u32) {{ {name}[e >> 3u] = wide_pack(v[0], v[1]); }}\n");
            }
            return out;
        }
        let at = match self.form {
            RowForm::Vec4 => format!("fn at_{name}(e: u32) -> f32 {{ return {name}[e >> 2u][e & 3u]; }}\n"),
            _ => format!("fn at_{name}(e: u32) -> f32 {{ return {name}[e]; }}\n"),
        };
        let (decl, load4, store4) = match self.form {
            RowForm::Vec4 => (
                format!("{binding}: array<vec4<f32>>;\n"),
                format!("fn ld4_{name}(e: u32, n: u32) -> vec4<f32> {{ return {name}[e >> 2u]; }}\n"),
                format!("fn st4_{name}(e: u32, v: vec4<f32>, n: u32) {{\n    let j = e >> 2u;\n    if (n >= 4u) {{ {name}[j] = v; return; }}\n    {name}[j].x = v.x;\n    if (n > 1u) {{ {name}[j].y = v.y; }}\n    if (n > 2u) {{ {name}[j].z = v.z; }}\n}}\n"),
            ),
            _ => (
                format!("{binding}: array<f32>;\n"),
                format!("fn ld4_{name}(e: u32, n: u32) -> vec4<f32> {{\n    var v = vec4<f32>({name}[e], 0.0, 0.0, 0.0);\n    if (n > 1u) {{ v.y = {name}[e + 1u]; }}\n    if (n > 2u) {{ v.z = {name}[e + 2u]; }}\n    if (n > 3u) {{ v.w = {name}[e + 3u]; }}\n    return v;\n}}\n"),
                format!("fn st4_{name}(e: u32, v: vec4<f32>, n: u32) {{\n    {name}[e] = v.x;\n    if (n > 1u) {{ {name}[e + 1u] = v.y; }}\n    if (n > 2u) {{ {name}[e + 2u] = v.z; }}\n    if (n > 3u) {{ {name}[e + 3u] = v.w; }}\n}}\n"),
            ),
        };
        let (load, store) = if self.unit == 8 {
            (
                format!("fn ld_{name}(e: u32, n: u32) -> Unit {{\n    var u = Unit(ld4_{name}(e, n), vec4<f32>(0.0));\n    if (n > 4u) {{ u[1] = ld4_{name}(e + 4u, n - 4u); }}\n    return u;\n}}\n"),
                format!("fn st_{name}(e: u32, u: Unit, n: u32) {{\n    st4_{name}(e, u[0], n);\n    if (n > 4u) {{ st4_{name}(e + 4u, u[1], n - 4u); }}\n}}\n"),
            )
        } else {
            (format!("fn ld_{name}(e: u32, n: u32) -> Unit {{ return Unit(ld4_{name}(e, n)); }}\n"), format!("fn st_{name}(e: u32, u: Unit, n: u32) {{ st4_{name}(e, u[0], n); }}\n"))
        };
        decl + &at + &load4 + &load + if op.writable { format!("{store4}{store}") } else { String::new() }.as_str()
    }
}

/// Whether every slice starts on a multiple of `unit` elements (param and
/// grad) and its buffers hold its last unit whole.
fn aligned(params: &[ParamSlice], unit: u64) -> bool {
    aligned_end(params, unit) && params.iter().all(|p| p.param_offset.is_multiple_of(unit) && p.grad_offset.is_multiple_of(unit))
}

/// Whether every slice's buffers hold whole `unit`s from its start on.
fn aligned_end(params: &[ParamSlice], unit: u64) -> bool {
    let fits = |buffer: &wgpu::Buffer, at: u64, len: u64| 4 * (at + len.next_multiple_of(unit)) <= buffer.size();
    params.iter().all(|p| fits(&p.param, p.param_offset, p.len()) && fits(&p.grad, p.grad_offset, p.len()))
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
        const ROW: u64 = 4096;
        let (rows, first) = rows(&[1, ROW, ROW + 3, 5], ROW);
        assert_eq!(first, [0, 1, 2, 4]);
        assert_eq!(rows.iter().map(|r| (r.tensor, r.start, r.len)).collect::<Vec<_>>(), [(0, 0, 1), (1, 0, ROW as u32), (2, 0, ROW as u32), (2, ROW as u32, 3), (3, 0, 5)]);
        assert!(rows.iter().enumerate().all(|(i, r)| r.index == i as u32));
    }
}
