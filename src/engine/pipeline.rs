//! Compiled pipelines, keyed by what they compute and how, built at most
//! once per device (share one [`PipelineCache`] between optimizers with
//! [`EngineOptions::cache`](super::EngineOptions::cache)).

use std::collections::HashMap;
use std::sync::Mutex;

use super::table::TABLE_BYTES;
use super::key::PipelineKey;
use super::shader;
use super::uniforms::StepScalars;
use crate::error::{scoped, Result};
use super::key::STATE_BINDINGS;

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

/// A compute-visible uniform entry of at least `size` bytes, with a
/// dynamic offset if `dynamic`.
pub(crate) fn uniform_entry(binding: u32, size: Option<u64>, dynamic: bool) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer { ty: wgpu::BufferBindingType::Uniform, has_dynamic_offset: dynamic, min_binding_size: size.and_then(wgpu::BufferSize::new) },
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
                uniform_entry(0, Some(std::mem::size_of::<StepScalars>() as u64), false),
                storage_entry(1, false),
                storage_entry(2, true),
                storage_entry(STATE_BINDINGS[0], false),
                storage_entry(STATE_BINDINGS[1], false),
                storage_entry(STATE_BINDINGS[2], false),
                uniform_entry(6, Some(TABLE_BYTES), true),
                storage_entry(7, false),
                storage_entry(8, true),
                storage_entry(STATE_BINDINGS[3], false),
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
