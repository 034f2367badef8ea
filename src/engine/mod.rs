//! The GPU engine: set up once with the user's `&Device, &Queue`, then
//! record a fused step into the user's `CommandEncoder` each iteration with
//! [`Optimizer::record_step`]. Nothing here waits on the GPU except the
//! explicit readback helpers.
//!
//! Rooms: [`params`] (the tensors and input checks), [`plan`] (windows and
//! the parameter table, no GPU needed), [`options`] (the knobs), [`key`]
//! (what a pipeline is),
//! [`pipeline`] (the cache),
//! [`shader`] (assembly), [`state`] (state formats and buffers),
//! [`uniforms`] (the per-step uniform), [`grad_control`] (clipping
//! and loss scaling), [`grad_sources`] (grads bound in place for a step); this file is the [`Optimizer`] facade.

pub mod grad_control;
pub mod grad_sources;
pub mod key;
mod modes;
pub mod options;
pub mod params;
pub mod pipeline;
pub mod plan;
mod sizing;
pub mod shader;
pub mod state;
pub mod table;
pub mod uniforms;

use std::sync::Arc;

pub use grad_control::{ClipScope, GradControl, GradScaler, ScalerState};
pub use grad_sources::GradSource;
pub use params::ParamSlice;
pub use key::{Access, Entry, Kernel, PipelineKey};
pub use options::{EngineOptions, WideAccess};
pub use pipeline::PipelineCache;
pub use state::{bf16_round, StateFormat, StateKind};
pub use uniforms::{StepHead, StepScalars};

use crate::error::{scoped, OptimError, Result};
use crate::rules::{flags, OptimizerConfig, Rule, MAX_SLOTS};
use plan::{TensorRange, Window};
use table::{Launch, Row, TABLE_BYTES};
use sizing::{chunks, per_block, plan, plan_limits, wanted_access, Planned};
use state::StateStore;
use uniforms::StepUniform;

/// Maximum number of param groups one optimizer can hold (size of the
/// `groups` array of the step uniform).
pub const MAX_GROUPS: usize = 8;

/// Most chunks per invocation with 8-bit state, whose kernel keeps a
/// block's new state in registers until the block's absmax is known.
pub const Q8_MAX_CHUNKS: u32 = 4;

/// One binding window on the GPU: its bind group, launches and bound ranges.
struct Dispatch {
    bind_group: wgpu::BindGroup,
    window: Window,
    /// The window's workgroup rows (packed once; the activity mask only
    /// zeroes lengths, so launches and workgroup counts never change).
    rows: Vec<Row>,
    launches: Vec<Launch>,
    param: Bound,
    grad: Bound,
    table: wgpu::Buffer,
}

/// Engine-owned buffers every window's bind group shares.
struct Shared {
    layout: wgpu::BindGroupLayout,
    uniform: StepUniform,
    unused: [wgpu::Buffer; MAX_SLOTS],
    control: wgpu::Buffer,
    factors: wgpu::Buffer,
}

/// Binds elements `[lo, hi)` of an f32 buffer.
fn elements(buffer: &wgpu::Buffer, lo: u64, hi: u64) -> wgpu::BindingResource<'_> {
    wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer, offset: lo * 4, size: wgpu::BufferSize::new((hi - lo) * 4) })
}

/// A buffer and the element range `[lo, hi)` of it that is bound.
type Bound = (wgpu::Buffer, u64, u64);

impl Shared {
    fn bind_group(&self, device: &wgpu::Device, param: &Bound, grad: &Bound, table: &wgpu::Buffer, state: &[Option<wgpu::Buffer>; MAX_SLOTS]) -> wgpu::BindGroup {
        let state_res = |slot: usize| state[slot].as_ref().unwrap_or(&self.unused[slot]).as_entire_binding();
        let table = wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: table, offset: 0, size: wgpu::BufferSize::new(TABLE_BYTES) });
        let resources = [
            (0, self.uniform.binding()),
            (1, elements(&param.0, param.1, param.2)),
            (2, elements(&grad.0, grad.1, grad.2)),
            (6, table),
            (7, self.control.as_entire_binding()),
            (8, self.factors.as_entire_binding()),
        ];
        let state = (0..MAX_SLOTS).map(|slot| (key::STATE_BINDINGS[slot], state_res(slot)));
        let entries: Vec<_> = resources.into_iter().chain(state).map(|(binding, resource)| wgpu::BindGroupEntry { binding, resource }).collect();
        device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some("wgpu-optim step"), layout: &self.layout, entries: &entries })
    }
}

/// The pipelines one optimizer records.
struct Pipelines {
    update: wgpu::ComputePipeline,
    /// Reduce and finalize, when clipping or loss scaling is on.
    control: Option<(wgpu::ComputePipeline, wgpu::ComputePipeline)>,
    /// The pass between train and eval form, for a rule with modes.
    switch: Option<wgpu::ComputePipeline>,
}

impl Pipelines {
    fn new(device: &wgpu::Device, cache: &PipelineCache, config: &OptimizerConfig, options: &EngineOptions, access: Access) -> Result<Self> {
        let kernel = if options.ceiling { Kernel::Ceiling } else { Kernel::Rule(config.rule()) };
        let q8_coding = if options.state_format == StateFormat::Int8Blockwise { state::q8_mask(&config.state()) } else { 0 };
        let flags = config.flags() | options.grad_control.flags();
        let key = |entry| PipelineKey { kernel, entry, workgroup_size: options.workgroup_size, chunks: chunks(options, access), flags, access, state: options.state_format.kind(), state_mask: config.state().mask(), q8_coding };
        let control = match options.grad_control.active() {
            true => Some((cache.get(device, key(Entry::ReduceGrads))?, cache.get(device, key(Entry::FinalizeGrads))?)),
            false => None,
        };
        let switch = match config.mode_switch(true) {
            Some(_) => Some(cache.get(device, PipelineKey { flags: flags | flags::MODE_SWITCH, ..key(Entry::Update) })?),
            None => None,
        };
        Ok(Pipelines { update: cache.get(device, key(Entry::Update))?, control, switch })
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
    /// Each group's `initial_lr` once a scheduler attached (PyTorch's key).
    initial_lrs: Vec<Option<f64>>,
    params: Vec<ParamSlice>,
    pipelines: Pipelines,
    grad_control: GradControl,
    total_blocks: u32,
    factor_capacity: u32,
    shared: Shared,
    dispatches: Vec<Dispatch>,
    state: StateStore,
    step: u32,
    /// Each group's scalars carried on the host between steps ([`OptimizerConfig::host_scalars`]).
    host: Vec<Vec<f64>>,
    /// Train or eval form of the params, for a rule with modes (schedule-free).
    train_mode: bool,
    scalars: StepScalars,
    access: Access,
    /// The tensors as planned, and which of them the step updates.
    tensors: Vec<TensorRange>,
    active: Vec<bool>,
    /// Parameter tables of a changed activity mask, one per dispatch,
    /// uploaded by the next recorded step (empty when none is pending).
    pending_tables: Vec<Vec<u8>>,
    /// Bytes between table chunks.
    table_stride: u64,
}

/// What `with_groups` builds inside one error scope.
struct Built {
    shared: Shared,
    dispatches: Vec<Dispatch>,
    state: StateStore,
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
    pub fn with_groups(device: &wgpu::Device, queue: &wgpu::Queue, configs: &[OptimizerConfig], params: &[ParamSlice], options: EngineOptions) -> Result<Self> {
        let options = EngineOptions { grad_control: options.grad_control.with_rule(configs)?, ..options };
        Self::with_grad_control_as_given(device, queue, configs, params, options)
    }

    /// [`Optimizer::with_groups`] without folding the rule's own clipping
    /// into `options.grad_control`: for a shard, whose clipping is global
    /// and done before its step.
    pub(crate) fn with_grad_control_as_given(device: &wgpu::Device, queue: &wgpu::Queue, configs: &[OptimizerConfig], params: &[ParamSlice], options: EngineOptions) -> Result<Self> {
        params::check_inputs(configs, params)?;
        options.grad_control.validate()?;
        modes::check_options(&configs[0], params, &options)?;
        let planned = plan(params, plan_limits(device, &options)?, &wanted_access(device, &options));
        let cache = options.cache.clone().unwrap_or_else(|| Arc::new(PipelineCache::new(device)));
        let pipelines = Pipelines::new(device, &cache, &configs[0], &options, planned.access)?;
        let built = scoped(device, || Self::allocate(device, queue, &cache, configs, &planned, &options))??;
        let mut opt = Optimizer {
            device: device.clone(),
            queue: queue.clone(),
            configs: configs.to_vec(),
            initial_lrs: vec![None; configs.len()],
            params: params.to_vec(),
            pipelines,
            grad_control: options.grad_control,
            total_blocks: built.dispatches.iter().flat_map(|d| &d.launches).map(|l| l.workgroups).sum(),
            factor_capacity: 0,
            shared: built.shared,
            dispatches: built.dispatches,
            state: built.state,
            step: 0,
            host: modes::initial_host(configs),
            train_mode: true,
            scalars: bytemuck::Zeroable::zeroed(),
            access: planned.access,
            active: vec![true; planned.tensors.len()],
            pending_tables: Vec::new(),
            tensors: planned.tensors,
            table_stride: TABLE_BYTES.next_multiple_of(device.limits().min_uniform_buffer_offset_alignment as u64),
        };
        if opt.grad_control.device_step() {
            opt.grow_factors(1024)?;
        }
        Ok(opt)
    }

    /// Every buffer and bind group of a new optimizer.
    fn allocate(device: &wgpu::Device, queue: &wgpu::Queue, cache: &PipelineCache, configs: &[OptimizerConfig], planned: &Planned, options: &EngineOptions) -> Result<Built> {
        let Planned { buffers, tensors, windows, limits, .. } = planned;
        let per_block = per_block(options, planned.access);
        let table_stride = TABLE_BYTES.next_multiple_of(device.limits().min_uniform_buffer_offset_alignment as u64);
        let total_blocks: u64 = windows.iter().flat_map(|w| &w.segments).map(|s| s.2.div_ceil(per_block)).sum();
        let unused = std::array::from_fn(|_| device.create_buffer(&wgpu::BufferDescriptor { label: Some("wgpu-optim unused state"), size: 32, usage: wgpu::BufferUsages::STORAGE, mapped_at_creation: false }));
        let factors = device.create_buffer(&wgpu::BufferDescriptor { label: Some("wgpu-optim step factors"), size: 16, usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST, mapped_at_creation: false });
        let control = grad_control::control_buffer(device, queue, &options.grad_control, total_blocks);
        let shared = Shared { layout: cache.layout().clone(), uniform: StepUniform::new(device), unused, control, factors };
        let state = StateStore::new(device, queue, configs, windows, tensors, options.state_format, limits.state_align);
        state.copy_params(device, queue, windows, tensors, buffers);
        let (mut first_block, mut state_base) = (0u32, 0u64);
        let mut dispatches = Vec::with_capacity(windows.len());
        for (window, state_buffers) in windows.iter().zip(&state.buffers) {
            let rows = table::pack(&window.pieces(tensors, per_block, limits.state_align), per_block, options.packs_rows());
            let (bytes, launches) = table::table(&rows, &[], table_stride, first_block, state_base, window.state_len);
            let table = device.create_buffer(&wgpu::BufferDescriptor { label: Some("wgpu-optim param table"), size: bytes.len() as u64, usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST, mapped_at_creation: false });
            queue.write_buffer(&table, 0, &bytes);
            first_block += rows.len() as u32;
            state_base += window.state_len;
            let param = (buffers[window.param_buf].clone(), window.p_lo, window.p_hi);
            let grad = (buffers[window.grad_buf].clone(), window.g_lo, window.g_hi);
            let bind_group = shared.bind_group(device, &param, &grad, &table, state_buffers);
            dispatches.push(Dispatch { bind_group, window: window.clone(), rows, launches, param, grad, table });
        }
        Ok(Built { shared, dispatches, state })
    }

    /// The uniform header of step `step`.
    fn head(&self, step: u32) -> StepHead {
        let scaler = self.grad_control.scaler.unwrap_or_default();
        StepHead {
            flags: self.configs[0].flags() | flags::bit(step == 1, flags::FIRST_STEP) | self.grad_control.flags(),
            step,
            partials: self.total_blocks,
            growth_interval: scaler.growth_interval,
            max_norm: self.grad_control.max_norm.unwrap_or(0.0) as f32,
            growth_factor: scaler.growth_factor as f32,
            backoff_factor: scaler.backoff_factor as f32,
            n_groups: self.configs.len() as u32,
            seed: match self.state.format {
                StateFormat::Bf16 { seed } => seed,
                _ => 0,
            },
            norm_eps: self.grad_control.norm_eps() as f32,
            pad1: 0,
            pad2: 0,
        }
    }

    /// Records one fused step into `encoder`: the upload of this step's
    /// scalars (a copy from a small staging buffer, in the encoder's order)
    /// and one compute pass. No CPU–GPU synchronisation. Any number of steps
    /// may be recorded before a submit, into one encoder or several: each
    /// reads its own scalars, bitwise as with one submit per step.
    ///
    /// **Errors:** [`OptimError::StepOverflow`] after `u32::MAX` steps;
    /// [`OptimError::NotInTrainMode`] for a rule with modes in eval mode.
    pub fn record_step(&mut self, encoder: &mut wgpu::CommandEncoder) -> Result<()> {
        let step = self.prepare_step()?;
        self.record_prepared(encoder, step, None)
    }

    /// Checks that one more step can be recorded and grows the step-factor
    /// table for it (which rebuilds the bind groups: take them only after
    /// this); returns the step's number.
    fn prepare_step(&mut self) -> Result<u32> {
        let step = self.step.checked_add(1).ok_or(OptimError::StepOverflow)?;
        if !self.train_mode {
            return Err(OptimError::NotInTrainMode);
        }
        if self.grad_control.device_step() && step >= self.factor_capacity {
            self.grow_factors(step)?;
        }
        Ok(step)
    }

    /// Records prepared step `step`, with each dispatch's own bind group or
    /// `rebound[d]` for dispatch `d`.
    fn record_prepared(&mut self, encoder: &mut wgpu::CommandEncoder, step: u32, rebound: Option<&[wgpu::BindGroup]>) -> Result<()> {
        self.scalars.head = self.head(step);
        let mut host = self.host.clone();
        for ((slot, c), host) in self.scalars.groups.iter_mut().zip(&self.configs).zip(&mut host) {
            *slot = c.advance(step, host);
        }
        self.record_scalars_and_tables(encoder)?;
        self.record_passes(encoder, false, rebound);
        (self.step, self.host) = (step, host);
        Ok(())
    }

    /// Records the uploads of this pass's uniform and of any pending tables.
    fn record_scalars_and_tables(&mut self, encoder: &mut wgpu::CommandEncoder) -> Result<()> {
        self.shared.uniform.record(&self.device, encoder, &self.scalars)?;
        for (d, table) in self.dispatches.iter().zip(self.pending_tables.drain(..)) {
            uniforms::record_upload(&self.device, encoder, &d.table, 0, &table)?;
        }
        Ok(())
    }

    /// The step's compute pass: grad control (reduce, finalize), then the
    /// update; or, `switching` between train and eval form, only the switch.
    /// Dispatch `d` binds its own bind group, or `rebound[d]`.
    fn record_passes(&self, encoder: &mut wgpu::CommandEncoder, switching: bool, rebound: Option<&[wgpu::BindGroup]>) {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("wgpu-optim step"), timestamp_writes: None });
        let bind_group = |d: usize| rebound.map_or(&self.dispatches[d].bind_group, |r| &r[d]);
        let launch = |pass: &mut wgpu::ComputePass, pipeline: &wgpu::ComputePipeline| {
            pass.set_pipeline(pipeline);
            for (i, d) in self.dispatches.iter().enumerate() {
                for l in &d.launches {
                    pass.set_bind_group(0, bind_group(i), &[l.table_offset]);
                    pass.dispatch_workgroups(l.workgroups, 1, 1);
                }
            }
        };
        if let Some((reduce, finalize)) = self.pipelines.control.as_ref().filter(|_| !switching) {
            launch(&mut pass, reduce);
            pass.set_pipeline(finalize);
            pass.set_bind_group(0, bind_group(0), &[0]);
            pass.dispatch_workgroups(1, 1, 1);
        }
        let update = if switching { self.pipelines.switch.as_ref().expect("a rule with modes has its switch pipeline") } else { &self.pipelines.update };
        launch(&mut pass, update);
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
    /// non-finite lr; [`OptimError::GroupOutOfRange`].
    pub fn set_lr(&mut self, group: usize, lr: f64) -> Result<()> {
        let groups = self.configs.len();
        let c = self.configs.get_mut(group).ok_or(OptimError::GroupOutOfRange { group, groups })?;
        let mut new = *c;
        new.set_lr(lr);
        new.validate()?;
        *c = new;
        Ok(())
    }

    /// Each group's `initial_lr`: the base lr a [`crate::schedule::Scheduler`]
    /// scales, set when the first scheduler attaches and kept by
    /// checkpoints (PyTorch's `param_group['initial_lr']`).
    pub fn initial_lrs(&self) -> &[Option<f64>] {
        &self.initial_lrs
    }

    /// Sets each group's `initial_lr` (a checkpoint's).
    pub(crate) fn set_initial_lrs(&mut self, initial_lrs: Vec<Option<f64>>) {
        debug_assert_eq!(initial_lrs.len(), self.configs.len());
        self.initial_lrs = initial_lrs;
    }

    /// Gives each group without an `initial_lr` its current lr, as
    /// PyTorch's `group.setdefault('initial_lr', group['lr'])` when a
    /// scheduler is built, and returns them all.
    pub(crate) fn attach_scheduler(&mut self) -> Vec<f64> {
        self.initial_lrs.iter_mut().zip(&self.configs).map(|(init, c)| *init.get_or_insert(c.lr())).collect()
    }

    /// The parameter tensors, in the order given.
    pub fn params(&self) -> &[ParamSlice] {
        &self.params
    }

    /// Whether a vector kernel runs (vec4 or wide; see [`EngineOptions::vec4`]).
    pub fn uses_vec4(&self) -> bool {
        self.access != Access::Scalar
    }

    /// The access form the step runs with (see [`WideAccess`]).
    pub fn access(&self) -> Access {
        self.access
    }

    /// Total parameter elements.
    pub fn numel(&self) -> u64 {
        self.params.iter().map(|p| p.param_len).sum()
    }

    /// Workgroups per step, over every window: one per table row, where
    /// short tensors share rows ([`EngineOptions::pack_rows`]).
    pub fn workgroups(&self) -> u32 {
        self.total_blocks
    }

    /// Number of dispatches per step (1 unless tensors span several buffers
    /// or exceed the binding limit).
    pub fn dispatch_count(&self) -> usize {
        self.dispatches.len()
    }

    /// Replaces the configs (checked by the caller to have this optimizer's
    /// rule and flags).
    pub(crate) fn replace_configs(&mut self, configs: Vec<OptimizerConfig>) -> Result<()> {
        debug_assert_eq!(configs.len(), self.configs.len());
        self.configs = configs;
        if self.grad_control.device_step() {
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
}
