//! The GPU engine: pipelines, state buffers, the parameter table, dispatch.
//!
//! Set up once with the user's `&Device, &Queue`, then record a fused step
//! into the user's `CommandEncoder` each iteration with
//! [`Optimizer::record_step`]. Nothing here waits on the GPU except the
//! explicit readback helpers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::config::{flags, Coeffs, OptimizerConfig, Rule};
use crate::error::{scoped, OptimError, Result};

/// Maximum number of param groups one optimizer can hold (size of the
/// `groups` array of the step uniform).
pub const MAX_GROUPS: usize = 8;

const COMMON_WGSL: &str = include_str!("../shaders/common.wgsl");
const CEILING_WGSL: &str = include_str!("../shaders/ceiling.wgsl");
const BF16_WGSL: &str = include_str!("../shaders/bf16.wgsl");
const Q8_WGSL: &str = include_str!("../shaders/q8.wgsl");

/// Elements each invocation updates (one vec4 chunk).
const LANES: u64 = 4;

/// Table rows (workgroups) per launch: the table is read from uniform memory
/// (on lavapipe a per-workgroup row from a storage buffer turned every
/// operand access into a gather, about a third slower), 16-byte header plus
/// rows fill exactly the 16 KiB every adapter allows for a uniform binding.
const TABLE_ROWS: usize = 1023;
const TABLE_BYTES: u64 = 16 + 16 * TABLE_ROWS as u64;

/// Header of the per-step uniform.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct StepHead {
    pub flags: u32,
    /// Host step count, 1-based (this step).
    pub step: u32,
    /// Workgroups over all windows (number of GradControl partial sums).
    pub partials: u32,
    pub growth_interval: u32,
    pub max_norm: f32,
    pub growth_factor: f32,
    pub backoff_factor: f32,
    pub n_groups: u32,
    /// Seed of the stochastic rounding of bf16 state.
    pub seed: u32,
    /// 8-bit state: bit i set when slot i uses the signed map, bit 8 + i
    /// when it is quantised in the square-root domain.
    pub signed_mask: u32,
    /// 8-bit state: index of the first step-factor row in `factors` (the
    /// maps come first).
    pub factor_base: u32,
    pub _pad: u32,
}

/// The per-step uniform (binding 0): flags, the step counter and, for each
/// param group, the rule's scalars computed on the host in f64.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct StepScalars {
    pub head: StepHead,
    pub groups: [Coeffs; MAX_GROUPS],
}

/// One row of the GPU parameter table (binding 6): the elements one
/// workgroup updates, up to `4·WG` consecutive elements of one tensor. One
/// row per workgroup means no search on the GPU, and a row is a single
/// 16-byte load (`len_group` = len | group << 16), for 16 bytes of table per
/// 4·WG elements.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Block {
    param_offset: u32,
    grad_offset: u32,
    state_offset: u32,
    len_group: u32,
}

/// What a pipeline computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// A fused update rule.
    Rule(Rule),
    /// The bandwidth ceiling: moves the bytes of a rule using the state
    /// slots in `state_mask` (bit i: slot i), with no arithmetic. Benchmarks
    /// only; see `shaders/ceiling.wgsl`.
    Ceiling { state_mask: u32 },
}

/// Entry points of the step module (`shaders/common.wgsl`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Entry {
    /// The fused update (`main`).
    Update,
    /// Per-workgroup partial sums of squares and non-finite flags.
    ReduceGrads,
    /// Norms, grad multipliers, skip and loss-scale update (one workgroup).
    FinalizeGrads,
}

impl Entry {
    fn name(self) -> &'static str {
        match self {
            Entry::Update => "main",
            Entry::ReduceGrads => "reduce_grads",
            Entry::FinalizeGrads => "finalize_grads",
        }
    }
}

/// Which pipeline: a kernel, an entry point, a workgroup size, and the memory access form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PipelineKey {
    pub kernel: Kernel,
    pub entry: Entry,
    pub workgroup_size: u32,
    /// `true`: operands bound as `array<vec4<f32>>` (every tensor starts at a
    /// multiple of 4 elements); `false`: `array<f32>`, any offset.
    pub vec4: bool,
    /// How the state slots are stored.
    pub state: StateKind,
}

/// Bindings 1–5 and their chunk load/store functions, in vec4 or scalar form
/// (see `shaders/common.wgsl`). Lanes are addressed by constant components
/// only: a dynamically indexed vector would be spilled to memory on some
/// backends (lavapipe among them).
fn access_prelude(vec4: bool, state: StateKind) -> String {
    const LANE: [&str; 4] = ["x", "y", "z", "w"];
    let operands = [("param", 1, true), ("grad", 2, false), ("state0", 3, true), ("state1", 4, true), ("state2", 5, true)];
    let mut out = String::new();
    match state {
        StateKind::Bf16 => out += BF16_WGSL,
        StateKind::Int8 => out += Q8_WGSL,
        StateKind::F32 => {}
    }
    for (slot, (name, binding, writable)) in operands.into_iter().enumerate() {
        if state == StateKind::Int8 && name.starts_with("state") {
            // One u32 of four codes per chunk; the block scales follow the
            // codes (from table.scale_offset); see shaders/q8.wgsl.
            let k = slot - 2;
            out += &format!(
                "@group(0) @binding({binding}) var<storage, read_write> {name}: array<u32>;\n\
                 fn load_{name}(i: u32, n: u32) -> vec4<f32> {{ return q8_decode({name}[i >> 2u], bitcast<f32>({name}[q8_scale_index(i)]), {k}u); }}\n\
                 fn store_{name}(i: u32, n: u32, v: vec4<f32>) {{ {name}[i >> 2u] = q8_encode(v, q8_scale[{k}], {k}u); }}\n\
                 fn store_scale_{name}(i: u32) {{ {name}[q8_scale_index(i)] = bitcast<u32>(q8_scale[{k}]); }}\n"
            );
            continue;
        }
        if state == StateKind::Bf16 && name.starts_with("state") {
            // Every chunk's state starts on a whole vec4: one vec2<u32> (four
            // bf16) per chunk, whatever the param alignment.
            out += &format!(
                "@group(0) @binding({binding}) var<storage, read_write> {name}: array<vec2<u32>>;\n\
                 fn load_{name}(i: u32, n: u32) -> vec4<f32> {{ return bf16x4_unpack({name}[i >> 2u]); }}\n\
                 fn store_{name}(i: u32, n: u32, v: vec4<f32>) {{ {name}[i >> 2u] = bf16x4_pack_stochastic(v, i); }}\n"
            );
            continue;
        }
        let access = if writable { "read_write" } else { "read" };
        if vec4 {
            // Chunks start on whole vec4s and bindings are rounded up to whole
            // vec4s, so a chunk is always loaded whole; lanes past `n` are
            // never stored.
            out += &format!(
                "@group(0) @binding({binding}) var<storage, {access}> {name}: array<vec4<f32>>;\n\
                 fn load_{name}(i: u32, n: u32) -> vec4<f32> {{ return {name}[i >> 2u]; }}\n"
            );
            if writable {
                let tail: String = (1..4).map(|k| format!("    if (n > {k}u) {{ {name}[j].{} = v.{}; }}\n", LANE[k], LANE[k])).collect();
                out += &format!(
                    "fn store_{name}(i: u32, n: u32, v: vec4<f32>) {{\n    let j = i >> 2u;\n    \
                     if (n == 4u) {{ {name}[j] = v; return; }}\n    {name}[j].x = v.x;\n{tail}}}\n"
                );
            }
        } else {
            let load: String = (1..4).map(|k| format!("    if (n > {k}u) {{ v.{} = {name}[i + {k}u]; }}\n", LANE[k])).collect();
            out += &format!(
                "@group(0) @binding({binding}) var<storage, {access}> {name}: array<f32>;\n\
                 fn load_{name}(i: u32, n: u32) -> vec4<f32> {{\n    var v = vec4<f32>({name}[i], 0.0, 0.0, 0.0);\n{load}    return v;\n}}\n"
            );
            if writable {
                let store: String = (1..4).map(|k| format!("    if (n > {k}u) {{ {name}[i + {k}u] = v.{}; }}\n", LANE[k])).collect();
                out += &format!("fn store_{name}(i: u32, n: u32, v: vec4<f32>) {{\n    {name}[i] = v.x;\n{store}}}\n");
            }
        }
    }
    out
}

/// Compiled pipelines of one device, keyed by [`PipelineKey`], built at most
/// once each. Share one cache between optimizers on the same device with
/// [`EngineOptions::cache`].
pub struct PipelineCache {
    layout: wgpu::BindGroupLayout,
    pipeline_layout: wgpu::PipelineLayout,
    pipelines: Mutex<HashMap<PipelineKey, wgpu::ComputePipeline>>,
}

/// A compute-visible storage-buffer layout entry.
pub(crate) fn storage_entry(binding: u32, read_only: bool) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

impl PipelineCache {
    /// Creates the shared bind-group layout; compiles nothing yet.
    pub fn new(device: &wgpu::Device) -> Self {
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("wgpu-optim step layout"),
            entries: &[
                wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: true,
                        min_binding_size: wgpu::BufferSize::new(std::mem::size_of::<StepScalars>() as u64),
                    },
                    count: None,
                },
                storage_entry(1, false),
                storage_entry(2, true),
                storage_entry(3, false),
                storage_entry(4, false),
                storage_entry(5, false),
                wgpu::BindGroupLayoutEntry {
                    binding: 6,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: true,
                        min_binding_size: wgpu::BufferSize::new(TABLE_BYTES),
                    },
                    count: None,
                },
                storage_entry(7, false),
                storage_entry(8, true),
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("wgpu-optim step pipeline layout"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        PipelineCache { layout, pipeline_layout, pipelines: Mutex::new(HashMap::new()) }
    }

    /// The pipeline for `key`, compiled on first use.
    pub fn get(&self, device: &wgpu::Device, key: PipelineKey) -> Result<wgpu::ComputePipeline> {
        let mut map = self.pipelines.lock().expect("pipeline cache poisoned");
        if let Some(p) = map.get(&key) {
            return Ok(p.clone());
        }
        let pipeline = scoped(device, || {
            let (label, body, mask) = match key.kernel {
                Kernel::Rule(rule) => (rule.name(), rule.shader_source(), None),
                Kernel::Ceiling { state_mask } => ("ceiling", CEILING_WGSL, Some(state_mask)),
            };
            let source = format!("{}\n{COMMON_WGSL}\n{body}", access_prelude(key.vec4, key.state));
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(label),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(label),
                layout: Some(&self.pipeline_layout),
                module: &module,
                entry_point: Some(if key.entry == Entry::Update && key.state == StateKind::Int8 { "main_q8" } else { key.entry.name() }),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &[("WG", key.workgroup_size as f64), ("STATE_MASK", mask.unwrap_or(0) as f64)][..if mask.is_some() { 2 } else { 1 }],
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            })
        })?;
        map.insert(key, pipeline.clone());
        Ok(pipeline)
    }

    /// Number of pipelines compiled so far.
    pub fn len(&self) -> usize {
        self.pipelines.lock().expect("pipeline cache poisoned").len()
    }

    /// Whether no pipeline has been compiled yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bind-group layout every rule shares.
    pub fn layout(&self) -> &wgpu::BindGroupLayout {
        &self.layout
    }
}

/// One parameter tensor: a range of a user param buffer and the matching
/// range of a user grad buffer, in f32 elements (any element offset).
#[derive(Clone, Debug)]
pub struct ParamSlice {
    pub param: wgpu::Buffer,
    pub param_offset: u64,
    pub param_len: u64,
    pub grad: wgpu::Buffer,
    pub grad_offset: u64,
    pub grad_len: u64,
    /// Index of the param group (into the configs given to the optimizer).
    pub group: u32,
}

impl ParamSlice {
    /// A whole param buffer paired with a whole grad buffer, in group 0.
    pub fn whole(param: &wgpu::Buffer, grad: &wgpu::Buffer) -> Self {
        ParamSlice {
            param: param.clone(),
            param_offset: 0,
            param_len: param.size() / 4,
            grad: grad.clone(),
            grad_offset: 0,
            grad_len: grad.size() / 4,
            group: 0,
        }
    }

    /// `len` elements at `param_offset` of `param` and `grad_offset` of `grad`.
    pub fn range(param: &wgpu::Buffer, param_offset: u64, grad: &wgpu::Buffer, grad_offset: u64, len: u64) -> Self {
        ParamSlice {
            param: param.clone(),
            param_offset,
            param_len: len,
            grad: grad.clone(),
            grad_offset,
            grad_len: len,
            group: 0,
        }
    }

    /// The same slice in param group `group`.
    pub fn in_group(mut self, group: u32) -> Self {
        self.group = group;
        self
    }

    /// Number of elements.
    pub fn len(&self) -> u64 {
        self.param_len
    }

    /// Whether the slice has no elements.
    pub fn is_empty(&self) -> bool {
        self.param_len == 0
    }
}

/// `torch.amp.GradScaler` settings: grads are divided by a loss scale kept
/// on the GPU; a step with any non-finite grad is skipped for every tensor
/// (params, state and the optimizer's step count stay bitwise unchanged),
/// the scale is multiplied by `backoff_factor`; after `growth_interval`
/// clean steps in a row it is multiplied by `growth_factor`. No host sync.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GradScaler {
    pub init_scale: f64,
    pub growth_factor: f64,
    pub backoff_factor: f64,
    pub growth_interval: u32,
}

impl Default for GradScaler {
    /// PyTorch's defaults: 2^16, 2.0, 0.5, 2000.
    fn default() -> Self {
        GradScaler { init_scale: 65536.0, growth_factor: 2.0, backoff_factor: 0.5, growth_interval: 2000 }
    }
}

/// What happens to the grads on the GPU before the update, in the same
/// recorded step: optional global-norm clipping per param group
/// (`torch.nn.utils.clip_grad_norm_`: scale by
/// `min(1, max_norm/(norm + 1e-6))`, norm over every tensor of the group,
/// after unscaling), and optional dynamic loss scaling.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GradControl {
    pub max_norm: Option<f64>,
    pub scaler: Option<GradScaler>,
}

impl GradControl {
    fn validate(&self) -> Result<()> {
        let bad = |name, value: f64, requirement| Err(OptimError::InvalidHyperparameter { name, value, requirement });
        if let Some(m) = self.max_norm
            && !(m.is_finite() && m > 0.0)
        {
            return bad("max_norm", m, "must be finite and positive");
        }
        if let Some(sc) = self.scaler {
            if !(sc.init_scale.is_finite() && sc.init_scale > 0.0) {
                return bad("init_scale", sc.init_scale, "must be finite and positive");
            }
            if !(sc.growth_factor.is_finite() && sc.growth_factor > 1.0) {
                return bad("growth_factor", sc.growth_factor, "must be finite and > 1");
            }
            if !(sc.backoff_factor > 0.0 && sc.backoff_factor < 1.0) {
                return bad("backoff_factor", sc.backoff_factor, "must be in (0, 1)");
            }
            if sc.growth_interval == 0 {
                return bad("growth_interval", 0.0, "must be at least 1");
            }
        }
        Ok(())
    }

    fn flags(&self) -> u32 {
        (if self.max_norm.is_some() { flags::CLIP } else { 0 }) | (if self.scaler.is_some() { flags::SCALER } else { 0 })
    }
}

/// The GradScaler's state on the GPU (read with [`Optimizer::read_grad_control`]).
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct ScalerState {
    pub scale: f32,
    pub growth_tracker: u32,
    /// Steps skipped so far (the optimizer's step is the host count less this).
    pub skipped: u32,
    /// Whether the last step was skipped.
    pub found_inf: u32,
}

/// How the optimizer state (moments, accumulators) is stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum StateFormat {
    /// f32, 4 bytes per element and slot.
    #[default]
    F32,
    /// bfloat16 packed two per u32, 2 bytes per element and slot. The
    /// update computes in f32; each stored value is rounded stochastically
    /// with a counter-based hash of (seed, step, element), so a run is
    /// reproducible and the rounding is unbiased (a small update to a large
    /// moment is kept in expectation instead of being rounded away).
    Bf16 { seed: u32 },
    /// Blockwise 8-bit (bitsandbytes style): one byte per element, a code
    /// into a 256-entry dynamic map (`quant::dynamic_map`: signed for
    /// moments that can be negative, unsigned otherwise), scaled by the
    /// absmax of its block; one block per workgroup row (4·WG elements, 1024
    /// by default), so one f32 scale per 1024 values. Round to nearest.
    Int8Blockwise,
}

impl StateFormat {
    /// The bytes of `values` in this format (bf16: round to nearest even,
    /// padded to whole u32 words).
    pub fn encode(self, values: &[f32]) -> Vec<u8> {
        match self {
            StateFormat::F32 => bytemuck::cast_slice(values).to_vec(),
            StateFormat::Bf16 { .. } => {
                let mut halves: Vec<u16> = values.iter().map(|&v| bf16_round(v)).collect();
                if halves.len() % 2 == 1 {
                    halves.push(0);
                }
                bytemuck::cast_slice(&halves).to_vec()
            }
            StateFormat::Int8Blockwise => unreachable!("8-bit state is written block by block"),
        }
    }

    fn kind(self) -> StateKind {
        match self {
            StateFormat::F32 => StateKind::F32,
            StateFormat::Bf16 { .. } => StateKind::Bf16,
            StateFormat::Int8Blockwise => StateKind::Int8,
        }
    }

    /// Bytes per state element.
    pub fn bytes(self) -> u64 {
        match self {
            StateFormat::F32 => 4,
            StateFormat::Bf16 { .. } => 2,
            StateFormat::Int8Blockwise => 1,
        }
    }
}

/// How a pipeline reads and writes the state slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StateKind {
    F32,
    Bf16,
    Int8,
}

/// bf16 bits of `x`, rounded to nearest even (host-side writes of state).
pub fn bf16_round(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) | 0x40) as u16;
    }
    let rounding = 0x7fff + ((b >> 16) & 1);
    (b.wrapping_add(rounding) >> 16) as u16
}

/// Engine knobs. Defaults suit every adapter.
#[derive(Clone)]
pub struct EngineOptions {
    /// Workgroup size (the shader's `override WG`). Default 256.
    pub workgroup_size: u32,
    /// Caps the bytes bound per storage binding below the device limit, to
    /// force chunking (testing). `None`: use the device limits.
    pub max_binding_bytes: Option<u64>,
    /// Number of per-step uniform slots: how many steps can be recorded
    /// before a submit. Default 64.
    pub ring_slots: u32,
    /// Shared pipeline cache; `None` makes a private one.
    pub cache: Option<Arc<PipelineCache>>,
    /// Use 16-byte vector loads where every tensor starts at a multiple of
    /// 4 elements (and the bound ranges can be rounded up to whole vec4s).
    /// Default `true`; `false` forces the scalar-access kernel. Both give
    /// bitwise-identical results.
    pub vec4: bool,
    /// Benchmarks only: run the bandwidth-ceiling kernel (same bytes, no
    /// arithmetic) instead of the rule. Params and state become garbage.
    pub ceiling: bool,
    /// Clipping and loss scaling on the GPU (default: none).
    pub grad_control: GradControl,
    /// Precision of the optimizer state (default f32).
    pub state_format: StateFormat,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions { workgroup_size: 256, max_binding_bytes: None, ring_slots: 64, cache: None, vec4: true, ceiling: false, grad_control: GradControl::default(), state_format: StateFormat::F32 }
    }
}

/// A contiguous piece of one parameter tensor inside one dispatch.
#[derive(Clone, Debug)]
struct Piece {
    param_index: usize,
    len: u64,
    dispatch: usize,
    state_offset: u64,
}

/// One binding window: its bind group, its launches (dynamic offset of a
/// table chunk, workgroups), and its state buffers.
struct Dispatch {
    bind_group: wgpu::BindGroup,
    /// (table byte offset, workgroups, first partial index) per launch.
    launches: Vec<(u32, u32, u32)>,
    state: [Option<wgpu::Buffer>; 3],
    param: (wgpu::Buffer, u64, u64),
    grad: (wgpu::Buffer, u64, u64),
    table: wgpu::Buffer,
    /// 8-bit state: the first u32 of the block scales in each state buffer.
    scale_offset: u64,
}

/// Engine-owned buffers every window's bind group shares.
struct Shared {
    layout: wgpu::BindGroupLayout,
    ring: wgpu::Buffer,
    unused: [wgpu::Buffer; 3],
    control: wgpu::Buffer,
    factors: wgpu::Buffer,
}

/// Byte size of the GradControl header (scale … found_inf, 8 group vec4s).
const CONTROL_HEAD: u64 = 16 + 16 * MAX_GROUPS as u64;

impl Shared {
    fn bind_group(&self, device: &wgpu::Device, param: &(wgpu::Buffer, u64, u64), grad: &(wgpu::Buffer, u64, u64), state: &[Option<wgpu::Buffer>; 3], table: &wgpu::Buffer) -> wgpu::BindGroup {
        let state_res = |slot: usize| match &state[slot] {
            Some(b) => b.as_entire_binding(),
            None => self.unused[slot].as_entire_binding(),
        };
        device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("wgpu-optim step"),
            layout: &self.layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &self.ring,
                        offset: 0,
                        size: wgpu::BufferSize::new(std::mem::size_of::<StepScalars>() as u64),
                    }),
                },
                wgpu::BindGroupEntry { binding: 1, resource: elements(&param.0, param.1, param.2) },
                wgpu::BindGroupEntry { binding: 2, resource: elements(&grad.0, grad.1, grad.2) },
                wgpu::BindGroupEntry { binding: 3, resource: state_res(0) },
                wgpu::BindGroupEntry { binding: 4, resource: state_res(1) },
                wgpu::BindGroupEntry { binding: 5, resource: state_res(2) },
                wgpu::BindGroupEntry {
                    binding: 6,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: table, offset: 0, size: wgpu::BufferSize::new(TABLE_BYTES) }),
                },
                wgpu::BindGroupEntry { binding: 7, resource: self.control.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 8, resource: self.factors.as_entire_binding() },
            ],
        })
    }
}

/// A fused GPU optimizer over a set of parameter tensors.
///
/// Built once from the user's device, queue, configs (one per param group,
/// all of the same rule and option flags) and [`ParamSlice`]s. Each step is
/// one compute pass with one dispatch per binding window (one for everything
/// that fits the device's storage-binding limit).
///
/// ```no_run
/// use wgpu_optim::{device, AdamW, Optimizer, ParamSlice};
/// let gpu = device::headless().unwrap();
/// let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
/// let mk = |size| gpu.device.create_buffer(&wgpu::BufferDescriptor { label: None, size, usage, mapped_at_creation: false });
/// let (p, g) = (mk(4 * 1000), mk(4 * 1000));
/// let mut opt = Optimizer::new(&gpu.device, &gpu.queue, AdamW::default().into(), &[ParamSlice::whole(&p, &g)]).unwrap();
/// let mut enc = gpu.device.create_command_encoder(&Default::default());
/// // ... record the backward pass that writes `g` ...
/// opt.record_step(&mut enc).unwrap();
/// gpu.queue.submit([enc.finish()]);
/// ```
pub struct Optimizer {
    device: wgpu::Device,
    queue: wgpu::Queue,
    configs: Vec<OptimizerConfig>,
    params: Vec<ParamSlice>,
    pipeline: wgpu::ComputePipeline,
    /// Reduce and finalize pipelines when clipping or loss scaling is on.
    control_pipelines: Option<(wgpu::ComputePipeline, wgpu::ComputePipeline)>,
    grad_control: GradControl,
    control_flags: u32,
    total_blocks: u32,
    factor_capacity: u32,
    shared: Shared,
    dispatches: Vec<Dispatch>,
    pieces: Vec<Piece>,
    slot_stride: u64,
    ring_slots: u32,
    slot: u32,
    step: u32,
    scalars: StepScalars,
    vec4: bool,
    state_format: StateFormat,
    /// Elements per state block (8-bit scales; 4 otherwise).
    state_block: u64,
    /// `StepHead::signed_mask`, fixed by the rule's state slots.
    q8_mask: u32,
}

/// Binds elements `[lo, hi)` of an f32 buffer.
fn elements(buffer: &wgpu::Buffer, lo: u64, hi: u64) -> wgpu::BindingResource<'_> {
    wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer, offset: lo * 4, size: wgpu::BufferSize::new((hi - lo) * 4) })
}

fn align_down(x: u64, a: u64) -> u64 {
    x / a * a
}

/// Checks configs and slices; everything an optimizer rejects before
/// touching the device.
fn validate(configs: &[OptimizerConfig], params: &[ParamSlice]) -> Result<()> {
    if configs.is_empty() || params.is_empty() {
        return Err(OptimError::EmptyParams);
    }
    if configs.len() > MAX_GROUPS {
        return Err(OptimError::TooManyGroups { groups: configs.len(), max: MAX_GROUPS });
    }
    for c in configs {
        c.validate()?;
    }
    let (rule, fl, names) = (configs[0].rule(), configs[0].flags(), configs[0].state_names());
    for (index, c) in configs.iter().enumerate().skip(1) {
        if c.rule() != rule || c.flags() != fl || c.state_names() != names {
            return Err(OptimError::GroupMismatch { index });
        }
    }
    for (index, p) in params.iter().enumerate() {
        if p.param_len != p.grad_len {
            return Err(OptimError::LengthMismatch { index, param_len: p.param_len, grad_len: p.grad_len });
        }
        if p.param_len == 0 {
            return Err(OptimError::EmptyTensor { index });
        }
        if p.group as usize >= configs.len() {
            return Err(OptimError::UnknownGroup { index, group: p.group, groups: configs.len() });
        }
        for (which, buf, off, len, usage) in [
            ("param", &p.param, p.param_offset, p.param_len, wgpu::BufferUsages::STORAGE),
            ("grad", &p.grad, p.grad_offset, p.grad_len, wgpu::BufferUsages::STORAGE),
        ] {
            if !buf.usage().contains(usage) {
                return Err(OptimError::MissingUsage { index, which, missing: usage - buf.usage() });
            }
            let end = off.checked_add(len).ok_or(OptimError::ExceedsLimits("slice range overflows u64".into()))?;
            if end > buf.size() / 4 {
                return Err(OptimError::OutOfBounds { index, which, start: off, end, buffer_len: buf.size() / 4 });
            }
        }
        if p.param == p.grad {
            return Err(OptimError::InvalidOptions("param and grad must live in different buffers"));
        }
    }
    Ok(())
}

/// A window of one param buffer and one grad buffer, bound once per dispatch.
struct Window {
    param: wgpu::Buffer,
    grad: wgpu::Buffer,
    p_lo: u64,
    p_hi: u64,
    g_lo: u64,
    g_hi: u64,
    state_len: u64,
    /// Each segment's state is padded to a multiple of this (4, or a whole
    /// workgroup row for 8-bit state).
    state_align: u64,
    segments: Vec<(usize, u64, u64)>, // (param index, start, len)
}

impl Window {
    /// An empty window over `param` and `grad` starting (aligned down) at
    /// elements `p_start` and `g_start`.
    fn new(param: &wgpu::Buffer, grad: &wgpu::Buffer, p_start: u64, g_start: u64, align: u64, state_align: u64) -> Self {
        Window {
            param: param.clone(),
            grad: grad.clone(),
            p_lo: align_down(p_start, align),
            p_hi: 0,
            g_lo: align_down(g_start, align),
            g_hi: 0,
            state_len: 0,
            state_align,
            segments: Vec::new(),
        }
    }

    /// Adds `[start, start+len)` of slice `p` if the window stays within `limit` elements.
    fn try_add(&mut self, index: usize, p: &ParamSlice, start: u64, len: u64, limit: u64, align: u64) -> bool {
        if self.param != p.param || self.grad != p.grad {
            return false;
        }
        let (ps, gs) = (p.param_offset + start, p.grad_offset + start);
        let p_lo = self.p_lo.min(align_down(ps, align));
        let g_lo = self.g_lo.min(align_down(gs, align));
        let p_hi = self.p_hi.max(ps + len);
        let g_hi = self.g_hi.max(gs + len);
        let state_len = self.state_len + len.next_multiple_of(self.state_align);
        if p_hi - p_lo > limit || g_hi - g_lo > limit || state_len > limit {
            return false;
        }
        (self.p_lo, self.p_hi, self.g_lo, self.g_hi) = (p_lo, p_hi, g_lo, g_hi);
        self.state_len = state_len;
        self.segments.push((index, start, len));
        true
    }
}

impl Window {
    /// Whether this window can be bound as `array<vec4<f32>>`: every segment
    /// starts on a whole vec4 of both buffers, and the bound ranges rounded
    /// up to whole vec4s stay inside the buffers.
    fn vec4_ready(&self, params: &[ParamSlice]) -> bool {
        let aligned = self.segments.iter().all(|&(i, start, _)| {
            let p = &params[i];
            (p.param_offset + start).is_multiple_of(LANES) && (p.grad_offset + start).is_multiple_of(LANES)
        });
        aligned
            && self.p_hi.next_multiple_of(LANES) <= self.param.size() / 4
            && self.g_hi.next_multiple_of(LANES) <= self.grad.size() / 4
    }
}

/// Slots whose 8-bit codes use the signed map, and (bits 8–10) those
/// quantised in the square-root domain.
fn q8_mask(names: &[&str]) -> u32 {
    names.iter().enumerate().fold(0, |m, (i, n)| {
        let c = crate::quant::Coding::of(n);
        m | (c.signed as u32) << i | (c.sqrt as u32) << (8 + i)
    })
}

/// Splits the slices into binding windows no larger than `limit` elements.
fn plan_windows(params: &[ParamSlice], limit: u64, align: u64, state_align: u64) -> Vec<Window> {
    let mut windows: Vec<Window> = Vec::new();
    for (index, p) in params.iter().enumerate() {
        let mut start = 0;
        while start < p.param_len {
            let (ps, gs) = (p.param_offset + start, p.grad_offset + start);
            // What fits a fresh window: the binding limit less the alignment
            // slack of both buffers, and whole padded state blocks.
            let fresh_room = (limit - ps % align.max(1) - gs % align.max(1)).min(align_down(limit, state_align));
            let len = (p.param_len - start).min(fresh_room);
            let added = windows.last_mut().is_some_and(|w| w.try_add(index, p, start, len, limit, align));
            if !added {
                let mut w = Window::new(&p.param, &p.grad, ps, gs, align, state_align);
                let ok = w.try_add(index, p, start, len, limit, align);
                debug_assert!(ok, "a piece always fits a fresh window");
                windows.push(w);
            }
            start += len;
        }
    }
    windows
}

impl Optimizer {
    /// An optimizer with one param group.
    ///
    /// **Errors:** see [`Optimizer::with_groups`].
    pub fn new(device: &wgpu::Device, queue: &wgpu::Queue, config: OptimizerConfig, params: &[ParamSlice]) -> Result<Self> {
        Self::with_groups(device, queue, &[config], params, EngineOptions::default())
    }

    /// An optimizer with several param groups: `params[i].group` indexes
    /// `configs`. Every config must use the same rule and option flags
    /// (scalars such as lr, weight_decay, betas, eps may differ).
    ///
    /// **Errors:** [`OptimError::EmptyParams`], [`OptimError::LengthMismatch`],
    /// [`OptimError::InvalidHyperparameter`], [`OptimError::InvalidOptions`],
    /// [`OptimError::MissingUsage`], [`OptimError::OutOfBounds`],
    /// [`OptimError::GroupMismatch`], [`OptimError::ExceedsLimits`], and
    /// [`OptimError::Wgpu`] for anything the device rejects.
    pub fn with_groups(
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        configs: &[OptimizerConfig],
        params: &[ParamSlice],
        options: EngineOptions,
    ) -> Result<Self> {
        validate(configs, params)?;
        let limits = device.limits();
        let wg = options.workgroup_size;
        if wg == 0 || wg > limits.max_compute_workgroup_size_x || wg > limits.max_compute_invocations_per_workgroup {
            return Err(OptimError::ExceedsLimits(format!("workgroup size {wg} not supported by the device")));
        }
        let align = (limits.min_storage_buffer_offset_alignment as u64 / 4).max(1);
        let mut limit_bytes = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
        if let Some(cap) = options.max_binding_bytes {
            limit_bytes = limit_bytes.min(cap);
        }
        let limit = align_down(limit_bytes / 4, align).min(u32::MAX as u64 / 2);
        if limit < 2 * align {
            return Err(OptimError::ExceedsLimits(format!("binding limit of {limit_bytes} bytes is too small")));
        }
        let names = configs[0].state_names();
        if limits.max_uniform_buffer_binding_size < TABLE_BYTES || (limits.max_compute_workgroups_per_dimension as usize) < TABLE_ROWS {
            return Err(OptimError::ExceedsLimits("the device allows less than 16 KiB per uniform binding or 1023 workgroups per dispatch".into()));
        }

        let slot_stride = (std::mem::size_of::<StepScalars>() as u64).next_multiple_of(limits.min_uniform_buffer_offset_alignment as u64);
        let table_stride = TABLE_BYTES.next_multiple_of(limits.min_uniform_buffer_offset_alignment as u64);
        let ring_slots = options.ring_slots.max(1);
        let state_align = if options.state_format == StateFormat::Int8Blockwise { LANES * wg as u64 } else { LANES };
        let mut windows = plan_windows(params, limit, align, state_align);
        let vec4 = options.vec4 && windows.iter().all(|w| w.vec4_ready(params));
        if vec4 {
            for w in &mut windows {
                w.p_hi = w.p_hi.next_multiple_of(LANES);
                w.g_hi = w.g_hi.next_multiple_of(LANES);
            }
        }
        let kernel = if options.ceiling {
            let state_mask = (0..3).filter(|&i| names.get(i).is_some_and(|n| !n.is_empty())).fold(0, |m, i| m | 1 << i);
            Kernel::Ceiling { state_mask }
        } else {
            Kernel::Rule(configs[0].rule())
        };
        let cache = options.cache.clone().unwrap_or_else(|| Arc::new(PipelineCache::new(device)));
        if options.state_format == StateFormat::Int8Blockwise && !wg.is_power_of_two() {
            return Err(OptimError::InvalidOptions("8-bit state needs a power-of-two workgroup size"));
        }
        let pipeline = cache.get(device, PipelineKey { kernel, entry: Entry::Update, workgroup_size: wg, vec4, state: options.state_format.kind() })?;

        let state_format = options.state_format;
        let control_opts = options.grad_control;
        control_opts.validate()?;
        let control_flags = control_opts.flags();
        if control_flags != 0 && !wg.is_power_of_two() {
            return Err(OptimError::InvalidOptions("grad clipping and loss scaling need a power-of-two workgroup size"));
        }
        let state_kind = options.state_format.kind();
        let entry_pipeline = |entry| cache.get(device, PipelineKey { kernel, entry, workgroup_size: wg, vec4, state: state_kind });
        let control_pipelines = if control_flags != 0 { Some((entry_pipeline(Entry::ReduceGrads)?, entry_pipeline(Entry::FinalizeGrads)?)) } else { None };
        let per_block = LANES * wg as u64;
        let total_blocks: u64 = windows.iter().flat_map(|w| &w.segments).map(|s| s.2.div_ceil(per_block)).sum();

        let built = scoped(device, || -> Result<_> {
            let buffer = |label, size, usage| device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size, usage, mapped_at_creation: false });
            let storage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
            let ring = buffer("wgpu-optim step scalars", slot_stride * ring_slots as u64, wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST);
            let unused = std::array::from_fn(|_| buffer("wgpu-optim unused state", 16, wgpu::BufferUsages::STORAGE));
            let control_size = CONTROL_HEAD + 8 * if control_flags != 0 { total_blocks.max(2) } else { 2 };
            let control = buffer("wgpu-optim grad control", control_size, storage);
            let init_scale = control_opts.scaler.map_or(1.0, |sc| sc.init_scale as f32);
            let mut head = vec![0u32; (CONTROL_HEAD / 4) as usize];
            head[0] = init_scale.to_bits();
            for g in 0..MAX_GROUPS {
                head[4 + 4 * g + 1] = 1f32.to_bits();
            }
            queue.write_buffer(&control, 0, bytemuck::cast_slice(&head));
            let factors = buffer("wgpu-optim step factors", 16, wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST);
            let shared = Shared { layout: cache.layout().clone(), ring, unused, control, factors };
            let mut dispatches = Vec::with_capacity(windows.len());
            let mut pieces = Vec::new();
            let mut partial_base = 0u32;
            let mut state_base = 0u64;
            for (d, w) in windows.iter().enumerate() {
                let mut rows: Vec<Block> = Vec::with_capacity(w.segments.iter().map(|s| s.2.div_ceil(per_block) as usize).sum());
                let mut state_offset = 0u64;
                for &(param_index, start, len) in &w.segments {
                    let p = &params[param_index];
                    for at in (0..len).step_by(per_block as usize) {
                        rows.push(Block {
                            param_offset: (p.param_offset + start + at - w.p_lo) as u32,
                            grad_offset: (p.grad_offset + start + at - w.g_lo) as u32,
                            state_offset: (state_offset + at) as u32,
                            len_group: (len - at).min(per_block) as u32 | p.group << 16,
                        });
                    }
                    pieces.push(Piece { param_index, len, dispatch: d, state_offset });
                    // Every segment's state starts on a whole vec4 (8-bit: a whole block).
                    state_offset += len.next_multiple_of(state_align);
                }
                // The table is uniform memory in chunks of TABLE_ROWS rows, one
                // launch per chunk (so no launch exceeds the dispatch grid).
                let chunks = rows.chunks(TABLE_ROWS);
                let mut table = vec![0u8; (chunks.len() as u64 * table_stride) as usize];
                let mut launches = Vec::with_capacity(chunks.len());
                for (k, chunk) in chunks.enumerate() {
                    let at = k * table_stride as usize;
                    // state_base: the window's first state element over all
                    // windows, so stochastic rounding keys are global.
                    let head = [chunk.len() as u32, partial_base, state_base as u32, (w.state_len / 4) as u32];
                    table[at..at + 16].copy_from_slice(bytemuck::bytes_of(&head));
                    table[at + 16..at + 16 + 16 * chunk.len()].copy_from_slice(bytemuck::cast_slice(chunk));
                    launches.push((at as u32, chunk.len() as u32, partial_base));
                    partial_base += chunk.len() as u32;
                }
                let table_buf = buffer("wgpu-optim param table", table.len() as u64, wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST);
                queue.write_buffer(&table_buf, 0, &table);
                let state: [Option<wgpu::Buffer>; 3] = std::array::from_fn(|slot| {
                    let used = names.get(slot).is_some_and(|n| !n.is_empty());
                    used.then(|| {
                        let init = configs[0].initial_state(slot);
                        let q8 = state_format == StateFormat::Int8Blockwise;
                        // 8-bit: codes, then one f32 scale per block.
                        let size = state_offset * state_format.bytes() + if q8 { 4 * (state_offset / state_align) } else { 0 };
                        let buf = buffer(names[slot], size, storage);
                        if init != 0.0 {
                            let bytes = if q8 {
                                let (mut codes, scales) = crate::quant::encode(&vec![init; state_offset as usize], state_align as usize, crate::quant::Coding::of(names[slot]));
                                codes.extend_from_slice(bytemuck::cast_slice(&scales));
                                codes
                            } else {
                                state_format.encode(&vec![init; state_offset as usize])
                            };
                            queue.write_buffer(&buf, 0, &bytes);
                        }
                        buf
                    })
                });
                debug_assert_eq!(state_offset, w.state_len);
                state_base += state_offset;
                let param = (w.param.clone(), w.p_lo, w.p_hi);
                let grad = (w.grad.clone(), w.g_lo, w.g_hi);
                let bind_group = shared.bind_group(device, &param, &grad, &state, &table_buf);
                dispatches.push(Dispatch { bind_group, launches, state, param, grad, table: table_buf, scale_offset: state_offset / 4 });
            }
            Ok((shared, dispatches, pieces))
        })??;
        let (shared, dispatches, pieces) = built;
        let mut opt = Optimizer {
            device: device.clone(),
            queue: queue.clone(),
            configs: configs.to_vec(),
            params: params.to_vec(),
            pipeline,
            control_pipelines,
            grad_control: control_opts,
            control_flags,
            total_blocks: total_blocks as u32,
            factor_capacity: 0,
            shared,
            dispatches,
            pieces,
            slot_stride,
            ring_slots,
            slot: 0,
            step: 0,
            scalars: bytemuck::Zeroable::zeroed(),
            vec4,
            state_format,
            state_block: state_align,
            q8_mask: q8_mask(names),
        };
        if control_opts.scaler.is_some() || state_format == StateFormat::Int8Blockwise {
            opt.grow_factors(1024)?;
        }
        Ok(opt)
    }

    /// Makes the step-factor table (GradScaler mode) hold steps `0..=steps`,
    /// doubling it, and rebinds. Rare: amortised O(1) per step.
    fn grow_factors(&mut self, steps: u32) -> Result<()> {
        let scaler = self.grad_control.scaler.is_some();
        let capacity = if scaler { steps.max(1).next_power_of_two().max(self.factor_capacity * 2) } else { 0 };
        let mut rows: Vec<[f32; 4]> = Vec::new();
        if self.state_format == StateFormat::Int8Blockwise {
            for signed in [true, false] {
                let map = crate::quant::dynamic_map(signed);
                rows.extend(map.chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]));
            }
        }
        debug_assert_eq!(rows.len() as u64, self.factor_base());
        if scaler {
            rows.extend((0..=capacity).flat_map(|t| self.configs.iter().map(move |c| c.step_factors(t))));
        }
        if rows.is_empty() {
            rows.push([0.0; 4]);
        }
        let device = self.device.clone();
        scoped(&device, || {
            let factors = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("wgpu-optim step factors"),
                size: (rows.len() * 16) as u64,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            self.queue.write_buffer(&factors, 0, bytemuck::cast_slice(&rows));
            self.shared.factors = factors;
            for i in 0..self.dispatches.len() {
                let d = &self.dispatches[i];
                let bg = self.shared.bind_group(&device, &d.param, &d.grad, &d.state, &d.table);
                self.dispatches[i].bind_group = bg;
            }
        })?;
        self.factor_capacity = capacity;
        Ok(())
    }

    /// First step-factor row in the factors buffer (8-bit state puts its two
    /// quantisation maps, 64 vec4 each, first).
    fn factor_base(&self) -> u64 {
        if self.state_format == StateFormat::Int8Blockwise { 128 } else { 0 }
    }

    /// Records one fused step into `encoder`: writes this step's scalars to
    /// the next uniform slot (`Queue::write_buffer`) and records one compute
    /// pass. No CPU–GPU synchronisation. At most
    /// [`EngineOptions::ring_slots`] steps may be recorded between submits.
    ///
    /// **Errors:** [`OptimError::StepOverflow`] after `u32::MAX` steps.
    pub fn record_step(&mut self, encoder: &mut wgpu::CommandEncoder) -> Result<()> {
        let step = self.step.checked_add(1).ok_or(OptimError::StepOverflow)?;
        if self.grad_control.scaler.is_some() && step >= self.factor_capacity {
            self.grow_factors(step)?;
        }
        let first = if step == 1 { flags::FIRST_STEP } else { 0 };
        let scaler = self.grad_control.scaler.unwrap_or_default();
        self.scalars.head = StepHead {
            flags: self.configs[0].flags() | first | self.control_flags,
            step,
            partials: self.total_blocks,
            growth_interval: scaler.growth_interval,
            max_norm: self.grad_control.max_norm.unwrap_or(0.0) as f32,
            growth_factor: scaler.growth_factor as f32,
            backoff_factor: scaler.backoff_factor as f32,
            n_groups: self.configs.len() as u32,
            seed: match self.state_format {
                StateFormat::Bf16 { seed } => seed,
                _ => 0,
            },
            signed_mask: self.q8_mask,
            factor_base: self.factor_base() as u32,
            _pad: 0,
        };
        for (slot, c) in self.scalars.groups.iter_mut().zip(&self.configs) {
            *slot = c.coeffs(step);
        }
        let offset = self.slot as u64 * self.slot_stride;
        self.queue.write_buffer(&self.shared.ring, offset, bytemuck::bytes_of(&self.scalars));
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("wgpu-optim step"), timestamp_writes: None });
            let launch = |pass: &mut wgpu::ComputePass, pipeline: &wgpu::ComputePipeline| {
                pass.set_pipeline(pipeline);
                for d in &self.dispatches {
                    for &(table_offset, workgroups, _) in &d.launches {
                        pass.set_bind_group(0, &d.bind_group, &[offset as u32, table_offset]);
                        pass.dispatch_workgroups(workgroups, 1, 1);
                    }
                }
            };
            if let Some((reduce, finalize)) = &self.control_pipelines {
                launch(&mut pass, reduce);
                pass.set_pipeline(finalize);
                pass.set_bind_group(0, &self.dispatches[0].bind_group, &[offset as u32, 0]);
                pass.dispatch_workgroups(1, 1, 1);
            }
            launch(&mut pass, &self.pipeline);
        }
        self.step = step;
        self.slot = (self.slot + 1) % self.ring_slots;
        Ok(())
    }

    /// Per-group total grad norms of the last recorded step (after
    /// unscaling, before clipping), read back (waits for the GPU). Only
    /// computed with clipping or loss scaling on.
    ///
    /// **Errors:** [`OptimError::InvalidOptions`] without grad control; [`OptimError::Readback`].
    pub fn read_grad_norms(&self) -> Result<Vec<f32>> {
        if self.control_flags == 0 {
            return Err(OptimError::InvalidOptions("grad norms are computed only with clipping or loss scaling"));
        }
        let head = crate::device::read_f32(&self.device, &self.queue, &self.shared.control, 0, CONTROL_HEAD / 4)?;
        Ok((0..self.configs.len()).map(|g| head[4 + 4 * g]).collect())
    }

    /// The GradScaler state on the GPU (waits for the GPU).
    ///
    /// **Errors:** [`OptimError::Readback`].
    pub fn read_grad_control(&self) -> Result<ScalerState> {
        let head = crate::device::read_f32(&self.device, &self.queue, &self.shared.control, 0, 4)?;
        Ok(bytemuck::cast_slice::<f32, ScalerState>(&head)[0])
    }

    /// Overwrites the GradScaler state (e.g. from a checkpoint).
    pub fn write_grad_control(&self, state: ScalerState) {
        self.queue.write_buffer(&self.shared.control, 0, bytemuck::bytes_of(&state));
    }

    /// The buffer holding the loss scale (f32 at byte 0), for your backward
    /// kernels to multiply the loss gradient by, on the GPU.
    pub fn grad_control_buffer(&self) -> &wgpu::Buffer {
        &self.shared.control
    }

    /// The clipping and loss-scaling settings.
    pub fn grad_control(&self) -> GradControl {
        self.grad_control
    }

    /// Records and submits one step (convenience). Does not wait for the GPU.
    ///
    /// **Errors:** [`OptimError::StepOverflow`], or [`OptimError::Wgpu`] for
    /// anything the device rejects (captured with an error scope).
    pub fn step(&mut self) -> Result<()> {
        let device = self.device.clone();
        let queue = self.queue.clone();
        scoped(&device, || {
            let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("wgpu-optim step") });
            self.record_step(&mut enc)?;
            queue.submit([enc.finish()]);
            Ok(())
        })?
    }

    /// Steps taken so far (PyTorch's `state['step']`).
    pub fn step_count(&self) -> u32 {
        self.step
    }

    /// The fused rule this optimizer runs.
    pub fn rule(&self) -> Rule {
        self.configs[0].rule()
    }

    /// The config of param group `group`.
    pub fn config(&self, group: usize) -> Option<&OptimizerConfig> {
        self.configs.get(group)
    }

    /// All param-group configs.
    pub fn configs(&self) -> &[OptimizerConfig] {
        &self.configs
    }

    /// Sets the learning rate of a group; takes effect at the next recorded
    /// step, no pipeline is rebuilt.
    ///
    /// **Errors:** [`OptimError::InvalidHyperparameter`] for a negative or
    /// non-finite lr; [`OptimError::UnknownGroup`].
    pub fn set_lr(&mut self, group: usize, lr: f64) -> Result<()> {
        let groups = self.configs.len();
        let c = self.configs.get_mut(group).ok_or(OptimError::UnknownGroup { index: 0, group: group as u32, groups })?;
        let mut new = *c;
        new.set_lr(lr);
        new.validate()?;
        *c = new;
        Ok(())
    }

    /// The parameter tensors, in the order given.
    pub fn params(&self) -> &[ParamSlice] {
        &self.params
    }

    /// PyTorch `state_dict` names of the state slots (empty name: slot unused).
    pub fn state_names(&self) -> &'static [&'static str] {
        self.configs[0].state_names()
    }

    /// Whether the vec4 kernel runs (see [`EngineOptions::vec4`]).
    pub fn uses_vec4(&self) -> bool {
        self.vec4
    }

    /// Bytes read plus written per parameter element by one step: param
    /// (read + write), grad (read), each state slot (read + write).
    pub fn bytes_per_element(&self) -> u64 {
        let slots = self.state_names().iter().filter(|s| !s.is_empty()).count() as u64;
        4 * 3 + 2 * slots * self.state_format.bytes()
    }

    /// Bytes of optimizer state per parameter element.
    pub fn state_bytes_per_element(&self) -> u64 {
        self.state_names().iter().filter(|s| !s.is_empty()).count() as u64 * self.state_format.bytes()
    }

    /// How the state is stored.
    pub fn state_format(&self) -> StateFormat {
        self.state_format
    }

    /// Total parameter elements.
    pub fn numel(&self) -> u64 {
        self.params.iter().map(|p| p.param_len).sum()
    }

    /// Number of dispatches per step (1 unless tensors span several buffers
    /// or exceed the binding limit).
    pub fn dispatch_count(&self) -> usize {
        self.dispatches.len()
    }

    /// Reads state slot `slot` of parameter `param_index` back to the host
    /// (waits for the GPU).
    ///
    /// **Errors:** [`OptimError::InvalidOptions`] for an unused slot or a bad
    /// index; [`OptimError::Readback`].
    pub fn read_state(&self, slot: usize, param_index: usize) -> Result<Vec<f32>> {
        let ranges = self.state_ranges(slot, param_index)?;
        match self.state_format {
            StateFormat::F32 => crate::device::read_ranges_f32(&self.device, &self.queue, &ranges),
            StateFormat::Bf16 { .. } => {
                // Whole words (pieces start on a vec4), then drop the padding.
                let words: Vec<_> = ranges.iter().map(|&(b, off, len)| (b, off / 2, len.div_ceil(2))).collect();
                let raw = crate::device::read_ranges_f32(&self.device, &self.queue, &words)?;
                let halves: Vec<f32> = raw.iter().flat_map(|w| {
                    let b = w.to_bits();
                    [f32::from_bits(b << 16), f32::from_bits(b & 0xffff_0000)]
                }).collect();
                let mut out = Vec::with_capacity(ranges.iter().map(|r| r.2 as usize).sum());
                let mut at = 0usize;
                for &(_, _, len) in &ranges {
                    out.extend_from_slice(&halves[at..at + len as usize]);
                    at += 2 * len.div_ceil(2) as usize;
                }
                Ok(out)
            }
            StateFormat::Int8Blockwise => {
                let coding = crate::quant::Coding::of(self.state_names()[slot]);
                let block = self.state_block;
                let mut out = Vec::new();
                for (piece, &(buf, off, len)) in self.state_pieces(param_index).zip(&ranges) {
                    let scale_at = self.dispatches[piece.dispatch].scale_offset + off / block;
                    let raw = crate::device::read_ranges_f32(&self.device, &self.queue, &[(buf, off / 4, len.div_ceil(4)), (buf, scale_at, len.div_ceil(block))])?;
                    let (words, scales) = raw.split_at(len.div_ceil(4) as usize);
                    let codes: Vec<u8> = words.iter().flat_map(|w| w.to_bits().to_le_bytes()).take(len as usize).collect();
                    out.extend(crate::quant::decode(&codes, scales, block as usize, coding));
                }
                Ok(out)
            }
        }
    }

    fn state_pieces(&self, param_index: usize) -> impl Iterator<Item = &Piece> {
        self.pieces.iter().filter(move |p| p.param_index == param_index)
    }

    /// Overwrites state slot `slot` of parameter `param_index` (e.g. from a
    /// checkpoint).
    ///
    /// **Errors:** as [`Optimizer::read_state`], plus
    /// [`OptimError::LengthMismatch`] if `values` has the wrong length.
    pub fn write_state(&self, slot: usize, param_index: usize, values: &[f32]) -> Result<()> {
        let ranges = self.state_ranges(slot, param_index)?;
        let total: u64 = ranges.iter().map(|r| r.2).sum();
        if total != values.len() as u64 {
            return Err(OptimError::LengthMismatch { index: param_index, param_len: total, grad_len: values.len() as u64 });
        }
        let mut at = 0usize;
        for (piece, (buf, off, len)) in self.state_pieces(param_index).zip(ranges) {
            let part = &values[at..at + len as usize];
            if self.state_format == StateFormat::Int8Blockwise {
                // Whole blocks (a piece's state is padded to whole blocks).
                let block = self.state_block;
                let (mut codes, scales) = crate::quant::encode(part, block as usize, crate::quant::Coding::of(self.state_names()[slot]));
                codes.resize(codes.len().next_multiple_of(4), 0);
                self.queue.write_buffer(buf, off, &codes);
                let scale_at = self.dispatches[piece.dispatch].scale_offset + off / block;
                self.queue.write_buffer(buf, scale_at * 4, bytemuck::cast_slice(&scales));
            } else {
                self.queue.write_buffer(buf, off * self.state_format.bytes(), &self.state_format.encode(part));
            }
            at += len as usize;
        }
        Ok(())
    }

    /// Replaces the configs (checked by the caller to have this optimizer's
    /// rule and flags).
    pub(crate) fn replace_configs(&mut self, configs: Vec<OptimizerConfig>) -> Result<()> {
        debug_assert_eq!(configs.len(), self.configs.len());
        self.configs = configs;
        if self.grad_control.scaler.is_some() {
            // The step factors depend on betas / lr_decay: recompute them.
            let capacity = self.factor_capacity;
            self.factor_capacity = 0;
            self.grow_factors(capacity)?;
        }
        Ok(())
    }

    /// Sets the step counter (e.g. when resuming from a checkpoint).
    pub fn set_step_count(&mut self, step: u32) {
        self.step = step;
    }

    fn state_ranges(&self, slot: usize, param_index: usize) -> Result<Vec<(&wgpu::Buffer, u64, u64)>> {
        if param_index >= self.params.len() {
            return Err(OptimError::InvalidOptions("parameter index out of range"));
        }
        let mut ranges = Vec::new();
        for piece in self.state_pieces(param_index) {
            let buf = self.dispatches[piece.dispatch]
                .state
                .get(slot)
                .and_then(|b| b.as_ref())
                .ok_or(OptimError::InvalidOptions("this rule has no such state slot"))?;
            ranges.push((buf, piece.state_offset, piece.len));
        }
        debug_assert_eq!(ranges.iter().map(|r| r.2).sum::<u64>(), self.params[param_index].param_len);
        Ok(ranges)
    }
}
