//! Compiled pipelines, keyed by what they compute and how, built at most
//! once per device (share one [`PipelineCache`] between optimizers with
//! [`EngineOptions::cache`](super::EngineOptions::cache)).

use std::collections::HashMap;
use std::sync::Mutex;

use super::plan::TABLE_BYTES;
use super::shader;
use super::state::StateKind;
use super::uniforms::StepScalars;
use crate::error::{scoped, Result};
use crate::rules::Rule;

/// What a pipeline computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// A fused update rule.
    Rule(Rule),
    /// The engine-overhead ceiling: moves a rule's bytes through the same
    /// table-driven main with no arithmetic. Benchmarks only; see
    /// `shaders/bench/ceiling.wgsl`.
    Ceiling,
}

/// Entry points of the step module (`shaders/prelude/`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Entry {
    /// The fused update (`main`, or `main_q8` with 8-bit state).
    Update,
    /// Per-workgroup partial sums of squares and non-finite flags.
    ReduceGrads,
    /// Norms, grad multipliers, skip and loss-scale update (one workgroup).
    FinalizeGrads,
}

/// How a pipeline binds and moves the f32 operands (params, grads, f32 and
/// bf16 state); results are bitwise the same in every form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// `array<f32>`, four scalar loads per operand: tensors at any offset.
    Scalar,
    /// `array<vec4<f32>>`: every tensor starts on a whole vec4.
    Vec4,
    /// `array<vec4<u64>>`, two f32 per u64, 8 elements per access: every
    /// tensor starts on a multiple of 8 elements, and the device has
    /// `SHADER_INT64` (a naga extension, not standard WGSL). It halves the
    /// memory instructions per element, which is what a CPU adapter
    /// (lavapipe) pays for; see `shaders/prelude/wide.wgsl`.
    Wide,
}

impl Access {
    /// Elements one invocation moves per access unit (the shader's `UNIT`):
    /// 4, or 8 wide (f32 and bf16 state; 8-bit state never runs wide).
    pub fn unit(self, state: StateKind) -> u64 {
        match (self, state) {
            (Access::Scalar | Access::Vec4, _) | (Access::Wide, StateKind::Int8) => 4,
            (Access::Wide, StateKind::F32 | StateKind::Bf16) => 8,
        }
    }

    /// Element alignment every tensor start (and bound range) needs.
    pub fn alignment(self) -> u64 {
        match self {
            Access::Scalar => 1,
            Access::Vec4 => 4,
            Access::Wide => 8,
        }
    }
}

/// Which pipeline: a kernel, an entry point, a workgroup size, the memory
/// access form, and the state slots it reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PipelineKey {
    pub kernel: Kernel,
    pub entry: Entry,
    pub workgroup_size: u32,
    /// Access units per invocation (the shader's `override CHUNKS`; a table
    /// row is `access.unit(state)`·WG·CHUNKS elements).
    pub chunks: u32,
    /// The option flags (`rules::flags`; the shader's `override FLAGS`), so
    /// that a disabled option's code compiles away.
    pub flags: u32,
    /// How the f32 operands are bound and accessed.
    pub access: Access,
    /// How the state slots are stored.
    pub state: StateKind,
    /// Bit i: state slot i is used (the shader's `override STATE_MASK`).
    pub state_mask: u32,
    /// 8-bit state: the slots' codings (`state::q8_mask`; the shader's
    /// `override Q8_CODING`); 0 otherwise.
    pub q8_coding: u32,
}

impl PipelineKey {
    fn entry_point(&self) -> &'static str {
        match (self.entry, self.state) {
            (Entry::Update, StateKind::Int8) => "main_q8",
            (Entry::Update, _) => "main",
            (Entry::ReduceGrads, _) => "reduce_grads",
            (Entry::FinalizeGrads, _) => "finalize_grads",
        }
    }

    fn label(&self) -> &'static str {
        match self.kernel {
            Kernel::Rule(rule) => rule.name(),
            Kernel::Ceiling => "ceiling",
        }
    }
}

/// Compiled pipelines of one device, keyed by [`PipelineKey`].
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
        ty: wgpu::BindingType::Buffer { ty: wgpu::BufferBindingType::Storage { read_only }, has_dynamic_offset: false, min_binding_size: None },
        count: None,
    }
}

/// A compute-visible uniform entry with a dynamic offset.
fn dynamic_uniform_entry(binding: u32, size: u64) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer { ty: wgpu::BufferBindingType::Uniform, has_dynamic_offset: true, min_binding_size: wgpu::BufferSize::new(size) },
        count: None,
    }
}

impl PipelineCache {
    /// Creates the shared bind-group layout (the convention of
    /// `shaders/prelude/common.wgsl`); compiles nothing yet.
    pub fn new(device: &wgpu::Device) -> Self {
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("wgpu-optim step layout"),
            entries: &[
                dynamic_uniform_entry(0, std::mem::size_of::<StepScalars>() as u64),
                storage_entry(1, false),
                storage_entry(2, true),
                storage_entry(3, false),
                storage_entry(4, false),
                storage_entry(5, false),
                dynamic_uniform_entry(6, TABLE_BYTES),
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
    ///
    /// **Errors:** [`OptimError::Wgpu`](crate::OptimError::Wgpu) if the device rejects it.
    pub fn get(&self, device: &wgpu::Device, key: PipelineKey) -> Result<wgpu::ComputePipeline> {
        let mut map = self.pipelines.lock().expect("pipeline cache poisoned");
        if let Some(p) = map.get(&key) {
            return Ok(p.clone());
        }
        let pipeline = scoped(device, || {
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some(key.label()), source: wgpu::ShaderSource::Wgsl(shader::source(&key).into()) });
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(key.label()),
                layout: Some(&self.pipeline_layout),
                module: &module,
                entry_point: Some(key.entry_point()),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &[("WG", key.workgroup_size as f64), ("CHUNKS", key.chunks as f64), ("FLAGS", key.flags as f64), ("STATE_MASK", key.state_mask as f64), ("Q8_CODING", key.q8_coding as f64)],
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
