//! The unfused baseline: each rule as the sequence of elementwise kernels
//! PyTorch's single-tensor (`foreach=False, fused=False`) implementation
//! launches, one dispatch per operation, for the benchmark ratio
//! fused / unfused measured in the same run.

use std::collections::HashMap;

use crate::rules::unfused::{Buf, Instr, Op};
use crate::rules::OptimizerConfig;
use crate::error::{scoped, OptimError, Result};

const ELEMENTWISE_WGSL: &str = include_str!("../../shaders/bench/elementwise.wgsl");
const WG: u32 = 256;
/// Most operations one step of any rule launches.
const MAX_OPS: u64 = 16;

/// A rule run as one kernel per elementwise operation (see the module docs).
/// Supports the configs without maximize, amsgrad, centered, RMSprop
/// momentum or eps_inside_sqrt (the defaults the bench uses).
pub struct Unfused {
    device: wgpu::Device,
    config: OptimizerConfig,
    layout: wgpu::BindGroupLayout,
    pipeline_layout: wgpu::PipelineLayout,
    pipelines: HashMap<Op, wgpu::ComputePipeline>,
    bind_groups: HashMap<(Buf, Buf, Buf), wgpu::BindGroup>,
    buffers: HashMap<Buf, wgpu::Buffer>,
    ring: wgpu::Buffer,
    stride: u64,
    step: u32,
    n4: u32,
    workgroups: (u32, u32),
}

impl Unfused {
    /// Whether there is a baseline for `config`: the rule provides one
    /// ([`RuleConfig::unfused`](crate::rules::RuleConfig::unfused)), for the
    /// plain form (no maximize, amsgrad, centered, RMSprop momentum or
    /// eps_inside_sqrt) of SGD, Momentum, NAG, Adagrad, RMSprop, Adadelta,
    /// Adam and AdamW.
    pub fn supports(config: &OptimizerConfig) -> bool {
        config.unfused(1).is_some()
    }

    /// Baseline over the first `n` elements of `param` and `grad` (each at
    /// least `n` rounded up to a whole vec4).
    ///
    /// **Errors:** [`OptimError::InvalidOptions`] for an unsupported config
    /// or too-small buffers, [`OptimError::Wgpu`].
    pub fn new(device: &wgpu::Device, queue: &wgpu::Queue, config: OptimizerConfig, param: &wgpu::Buffer, grad: &wgpu::Buffer, n: u64) -> Result<Self> {
        config.validate()?;
        if !Self::supports(&config) {
            return Err(OptimError::InvalidOptions("the unfused baseline covers the plain form of SGD, Momentum, NAG, Adagrad, RMSprop, Adadelta, Adam and AdamW"));
        }
        let n4 = n.div_ceil(4);
        if param.size() < n4 * 16 || grad.size() < n4 * 16 {
            return Err(OptimError::InvalidOptions("unfused baseline buffers must hold whole vec4s"));
        }
        let limits = device.limits();
        let blocks = n4.div_ceil(WG as u64);
        let gx = blocks.min(limits.max_compute_workgroups_per_dimension as u64);
        let stride = 16u64.next_multiple_of(limits.min_uniform_buffer_offset_alignment as u64);
        let built = scoped(device, || {
            let entry = |binding, ty| wgpu::BindGroupLayoutEntry { binding, visibility: wgpu::ShaderStages::COMPUTE, ty, count: None };
            let storage = |read_only| wgpu::BindingType::Buffer { ty: wgpu::BufferBindingType::Storage { read_only }, has_dynamic_offset: false, min_binding_size: None };
            let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some("unfused layout"),
                entries: &[
                    entry(0, wgpu::BindingType::Buffer { ty: wgpu::BufferBindingType::Uniform, has_dynamic_offset: true, min_binding_size: wgpu::BufferSize::new(16) }),
                    entry(1, storage(false)),
                    entry(2, storage(true)),
                    entry(3, storage(true)),
                ],
            });
            let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some("unfused"),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
            let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
            let make = |label, size| device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size, usage, mapped_at_creation: false });
            let mut buffers = HashMap::new();
            buffers.insert(Buf::Param, param.clone());
            buffers.insert(Buf::Grad, grad.clone());
            for b in [Buf::GradWd, Buf::State0, Buf::State1, Buf::Tmp0, Buf::Tmp1] {
                buffers.insert(b, make("unfused tensor", n4 * 16));
            }
            buffers.insert(Buf::Unused, make("unfused unused", 16));
            let ring = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("unfused scalars"),
                size: stride * MAX_OPS,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            (layout, pipeline_layout, buffers, ring)
        })?;
        let (layout, pipeline_layout, buffers, ring) = built;
        let init = config.initial_state(0) as f32;
        if init != 0.0 && config.state().get(0).is_some() {
            queue.write_buffer(&buffers[&Buf::State0], 0, bytemuck::cast_slice(&vec![init; (n4 * 4) as usize]));
        }
        Ok(Unfused {
            device: device.clone(),
            config,
            layout,
            pipeline_layout,
            pipelines: HashMap::new(),
            bind_groups: HashMap::new(),
            buffers,
            ring,
            stride,
            step: 0,
            n4: n4 as u32,
            workgroups: (gx as u32, blocks.div_ceil(gx) as u32),
        })
    }

    /// The launches of step `t`, following PyTorch's `_single_tensor_*`
    /// (each rule's [`RuleConfig::unfused`](crate::rules::RuleConfig::unfused)).
    fn program(&self, t: u32) -> Vec<Instr> {
        self.config.unfused(t).unwrap_or_default()
    }

    /// Kernel launches per (steady-state) step.
    pub fn kernels_per_step(&self) -> usize {
        self.program(2).len()
    }

    fn pipeline(&mut self, op: Op) -> Result<wgpu::ComputePipeline> {
        if let Some(p) = self.pipelines.get(&op) {
            return Ok(p.clone());
        }
        let (device, layout) = (&self.device, &self.pipeline_layout);
        let p = scoped(device, || {
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some("elementwise"), source: wgpu::ShaderSource::Wgsl(ELEMENTWISE_WGSL.into()) });
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some("elementwise"),
                layout: Some(layout),
                module: &module,
                entry_point: Some("main"),
                compilation_options: wgpu::PipelineCompilationOptions { constants: &[("OP", op as u32 as f64), ("WG", WG as f64)], zero_initialize_workgroup_memory: false },
                cache: None,
            })
        })?;
        self.pipelines.insert(op, p.clone());
        Ok(p)
    }

    fn bind_group(&mut self, x: Buf, y: Buf, z: Buf) -> wgpu::BindGroup {
        if let Some(b) = self.bind_groups.get(&(x, y, z)) {
            return b.clone();
        }
        let res = |b: Buf| self.buffers[&b].as_entire_binding();
        let bg = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("unfused"),
            layout: &self.layout,
            entries: &[
                wgpu::BindGroupEntry { binding: 0, resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: &self.ring, offset: 0, size: wgpu::BufferSize::new(16) }) },
                wgpu::BindGroupEntry { binding: 1, resource: res(x) },
                wgpu::BindGroupEntry { binding: 2, resource: res(y) },
                wgpu::BindGroupEntry { binding: 3, resource: res(z) },
            ],
        });
        self.bind_groups.insert((x, y, z), bg.clone());
        bg
    }

    /// Records one step: the upload of its operations' scalars (in encoder
    /// order, as the engine's step) and one compute pass per operation.
    ///
    /// **Errors:** [`OptimError::Wgpu`] if a pipeline fails to build.
    pub fn record_step(&mut self, encoder: &mut wgpu::CommandEncoder) -> Result<()> {
        self.step += 1;
        let program = self.program(self.step);
        let mut scalars = vec![0u8; (MAX_OPS * self.stride) as usize];
        for (i, instr) in program.iter().enumerate() {
            let at = i * self.stride as usize;
            let words: [u32; 4] = [(instr.4 as f32).to_bits(), 0, self.n4, self.workgroups.0];
            scalars[at..at + 16].copy_from_slice(bytemuck::bytes_of(&words));
        }
        crate::engine::uniforms::record_upload(&self.device, encoder, &self.ring, 0, &scalars)?;
        for (i, &(op, x, y, z, _)) in program.iter().enumerate() {
            let pipeline = self.pipeline(op)?;
            let bg = self.bind_group(x, y, z);
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("unfused op"), timestamp_writes: None });
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bg, &[(i as u64 * self.stride) as u32]);
            pass.dispatch_workgroups(self.workgroups.0, self.workgroups.1, 1);
        }
        Ok(())
    }

    /// State buffer `slot` (0 or 1, the rule's first two state tensors).
    pub fn state(&self, slot: usize) -> &wgpu::Buffer {
        &self.buffers[if slot == 0 { &Buf::State0 } else { &Buf::State1 }]
    }
}
