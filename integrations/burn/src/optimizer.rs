//! The drop-in optimizer: `step(lr, model, grads) -> model`, as burn's
//! `ModuleOptimizer`, but one fused engine step for every parameter.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use wgpu_optim::{ClipScope, EngineOptions, GradControl, GradSource, OptimError, Optimizer, OptimizerConfig, ParamSlice};

use crate::adopt::{adopt, Layout, ParamInfo};
use crate::buffers::{pin_all, resolve, Resolved, TensorBuffer};
use crate::device::SharedDevice;
use crate::error::{Error, Result};

/// Which param group (index into the configs) a parameter belongs to.
pub type GroupFn = Box<dyn Fn(&ParamInfo) -> usize>;

/// Builds a [`FusedOptimizer`] (see [`FusedOptimizer::builder`]).
pub struct Builder {
    configs: Vec<OptimizerConfig>,
    group: GroupFn,
    options: EngineOptions,
    grads_in_place: bool,
}

impl Builder {
    /// Biases and norm scales (parameters of one dimension) in a second
    /// group without weight decay — the usual recipe for AdamW.
    pub fn no_weight_decay_on_vectors(mut self) -> Self {
        let mut no_decay = self.configs[0];
        no_decay.set_weight_decay(0.0);
        self.configs = vec![self.configs[0], no_decay];
        self.group = Box::new(|p: &ParamInfo| usize::from(p.dims.len() <= 1));
        self
    }

    /// Any param groups: `configs[group(param)]` steps each parameter
    /// (same rule and option flags; scalars may differ).
    pub fn groups(mut self, configs: Vec<OptimizerConfig>, group: impl Fn(&ParamInfo) -> usize + 'static) -> Self {
        self.configs = configs;
        self.group = Box::new(group);
        self
    }

    /// `clip_grad_norm_(model.parameters(), max_norm)` on the GPU: one
    /// norm over every parameter of every group.
    pub fn clip_grad_norm(mut self, max_norm: f64) -> Self {
        self.options.grad_control.max_norm = Some(max_norm);
        self
    }

    /// What one clipping norm covers: [`ClipScope::Global`] (the default,
    /// as PyTorch's `clip_grad_norm_`) or [`ClipScope::PerGroup`].
    pub fn clip_scope(mut self, scope: ClipScope) -> Self {
        self.options.grad_control.clip_scope = scope;
        self
    }

    /// Whether the step reads a grad where burn left it when its parameter
    /// has a flat tensor to itself (the default), instead of copying it
    /// into the engine's grad buffer; `false` copies every grad (the same
    /// values, bitwise).
    pub fn grads_in_place(mut self, in_place: bool) -> Self {
        self.grads_in_place = in_place;
        self
    }

    /// Any engine options (state format, GradScaler, `skip_nonfinite`, …).
    pub fn engine_options(mut self, options: EngineOptions) -> Self {
        self.options = options;
        self
    }

    /// Adopts `model`'s parameters (see [`FusedOptimizer`]) and builds the
    /// engine over them; returns the model to train from now on.
    ///
    /// **Errors:** [`Error::Unsupported`] for a parameter the engine cannot
    /// step, [`Error::Engine`] for bad options or device failures.
    pub fn build<M: Module>(self, shared: &SharedDevice, model: M) -> Result<(M, FusedOptimizer)> {
        let limits = shared.wgpu_device.limits();
        let max_flat = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size) / 4 / crate::adopt::ALIGN * crate::adopt::ALIGN;
        let (model, layout) = adopt(model, &shared.device, max_flat)?;
        let grads: Vec<wgpu::Buffer> = layout
            .flats
            .iter()
            .map(|f| shared.wgpu_device.create_buffer(&wgpu::BufferDescriptor { label: Some("wgpu-optim-burn grads"), size: 4 * f.len, usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST, mapped_at_creation: false }))
            .collect();
        let mut slices = Vec::with_capacity(layout.params.len());
        for p in &layout.params {
            let group = (self.group)(&p.info);
            if group >= self.configs.len() {
                return Err(Error::Engine(wgpu_optim::OptimError::UnknownGroup { index: slices.len(), group: group as u32, groups: self.configs.len() }));
            }
            let flat = &layout.flats[p.flat].buffer;
            slices.push(ParamSlice::range(&flat.buffer, flat.element_offset() + p.offset, &grads[p.flat], p.offset, p.info.numel).in_group(group as u32));
        }
        let engine = Optimizer::with_groups(&shared.wgpu_device, &shared.queue, &self.configs, &slices, self.options)?;
        let index = layout.params.iter().enumerate().map(|(i, p)| (p.info.id, i)).collect();
        let mut per_flat = vec![0usize; layout.flats.len()];
        layout.params.iter().for_each(|p| per_flat[p.flat] += 1);
        let alone = layout.params.iter().map(|p| self.grads_in_place && per_flat[p.flat] == 1).collect();
        Ok((model, FusedOptimizer { shared: shared.clone(), engine, layout, grads, index, alone, phases: StepPhases::default() }))
    }
}

/// wgpu-optim's fused step for a burn model, on burn's own device and queue.
///
/// At build time the model's float parameters move into a few flat f32
/// tensors that burn allocates (persistent memory), each parameter a view
/// of an aligned range: burn computes with them as before, and the engine
/// updates all of them in place, one dispatch per flat tensor (one for any
/// model up to the device's binding limit, 128 MiB on lavapipe). burn's
/// grads are fresh allocations every step: a parameter with a flat tensor
/// to itself has its grad read where burn left it
/// ([`Optimizer::record_step_with_grads`]); the others' grads are copied
/// into the engine's grad buffer (one batched copy, 8 bytes per element). A
/// parameter without a grad (frozen, unreached) is left untouched, state
/// included, as in PyTorch.
pub struct FusedOptimizer {
    shared: SharedDevice,
    engine: Optimizer,
    layout: Layout,
    /// The engine's grad buffer of each flat tensor.
    grads: Vec<wgpu::Buffer>,
    index: HashMap<ParamId, usize>,
    /// Which parameters have a flat tensor to themselves (their grads can
    /// be read in place), when [`Builder::grads_in_place`] is on.
    alone: Vec<bool>,
    phases: StepPhases,
}

/// Host time in each phase of [`FusedOptimizer::step`], summed over the
/// steps since the last [`FusedOptimizer::take_phases`] (the bench's
/// per-phase breakdown). What the device takes is the step's wall clock
/// less these.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepPhases {
    /// Steps counted.
    pub steps: u32,
    /// Checking that the model's parameters are still the adopted views,
    /// and setting the lr.
    pub check: Duration,
    /// Finding and pinning each grad's buffer range (a resolve through
    /// burn's fusion layer per grad), and setting the activity mask (a
    /// table rewrite when it changes).
    pub collect: Duration,
    /// Flushing burn's queued work.
    pub flush: Duration,
    /// Encoding the grad copies and the engine's step, and submitting.
    pub record: Duration,
    /// Grads read where burn left them, not copied (summed over the steps).
    pub in_place: u32,
}

/// The grads of one step, resolved (not yet pinned), by parameter index.
struct CollectGrads<'a> {
    grads: &'a GradientsParams,
    index: &'a HashMap<ParamId, usize>,
    paths: Vec<&'a str>,
    numels: Vec<u64>,
    found: Vec<Option<Resolved>>,
    error: Option<Error>,
}

impl ModuleVisitor for CollectGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let Some(&i) = self.index.get(&param.id) else { return };
        if let Some(g) = self.grads.get::<D>(param.id) {
            match resolve(self.paths[i], &g) {
                Ok(b) if b.numel != self.numels[i] => self.error = Some(Error::ModelMismatch(format!("the grad of {} has {} elements, the parameter {}", self.paths[i], b.numel, self.numels[i]))),
                Ok(b) => self.found[i] = Some(b),
                Err(e) => self.error = Some(e),
            }
        }
    }
}

impl FusedOptimizer {
    /// A builder for `config` (PyTorch names and defaults, e.g.
    /// `wgpu_optim::AdamW { lr: 1e-3, ..Default::default() }.into()`).
    pub fn builder(config: OptimizerConfig) -> Builder {
        Builder { configs: vec![config], group: Box::new(|_| 0), options: EngineOptions { grad_control: GradControl::default(), ..EngineOptions::default() }, grads_in_place: true }
    }

    /// One optimizer step at learning rate `lr` (every group), from the
    /// grads of `GradientsParams::from_grads(loss.backward(), &model)`:
    /// burn's queued work is flushed, the grads are bound where they lie or
    /// copied into the engine's buffer (see [`Builder::grads_in_place`]) and
    /// the fused step is submitted on the same queue,
    /// so burn's next forward pass reads the updated parameters. Returns
    /// the model (its parameters updated in place).
    ///
    /// **Errors:** [`Error::ParamMoved`] / [`Error::ModelMismatch`] if the
    /// model's parameters are no longer the adopted views, [`Error::Engine`]
    /// for anything the engine or device reports.
    pub fn step<M: Module>(&mut self, lr: f64, model: M, grads: GradientsParams) -> Result<M> {
        let start = Instant::now();
        self.layout.check_views(&model, false)?;
        for g in 0..self.engine.configs().len() {
            self.engine.set_lr(g, lr)?;
        }
        let checked = Instant::now();
        let paths = self.layout.params.iter().map(|p| p.info.path.as_str()).collect();
        let numels = self.layout.params.iter().map(|p| p.info.numel).collect();
        let mut collect = CollectGrads { grads: &grads, index: &self.index, paths, numels, found: (0..self.layout.params.len()).map(|_| None).collect(), error: None };
        model.visit(&mut collect);
        if let Some(e) = collect.error {
            return Err(e);
        }
        let found = pin_all(&collect.found)?;
        self.engine.set_active(&found.iter().map(Option::is_some).collect::<Vec<_>>())?;
        let collected = Instant::now();
        // burn's work (the backward pass that wrote the grads) goes first.
        self.shared.device.flush().map_err(|e| Error::Device(format!("{e:?}")))?;
        let flushed = Instant::now();
        let mut encoder = self.shared.wgpu_device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("wgpu-optim-burn step") });
        let in_place = self.record_grads_and_step(&mut encoder, &found)?;
        self.shared.queue.submit([encoder.finish()]);
        // The pins go only now: burn may reuse the grads' memory after this
        // submission, which the queue orders after it.
        drop(found);
        let p = &mut self.phases;
        p.steps += 1;
        p.check += checked - start;
        p.collect += collected - checked;
        p.flush += flushed - collected;
        p.record += flushed.elapsed();
        p.in_place += in_place;
        Ok(model)
    }

    /// Records the step, reading in place the grads of parameters alone in
    /// their flat tensor and copying the others first (all of them, should
    /// the engine refuse a binding, e.g. one off the offset alignment);
    /// returns how many were read in place.
    fn record_grads_and_step(&mut self, encoder: &mut wgpu::CommandEncoder, found: &[Option<TensorBuffer>]) -> Result<u32> {
        let sources: Vec<Option<GradSource>> = found.iter().zip(&self.alone).map(|(g, &alone)| g.as_ref().filter(|_| alone).map(|g| GradSource { buffer: &g.buffer, offset: g.element_offset() })).collect();
        let in_place = sources.iter().flatten().count() as u32;
        self.record_copies(encoder, found, |i| sources[i].is_none());
        if in_place == 0 {
            self.engine.record_step(encoder)?;
            return Ok(0);
        }
        match self.engine.record_step_with_grads(encoder, &sources) {
            Err(OptimError::GradSource { .. }) => {
                self.record_copies(encoder, found, |i| sources[i].is_some());
                self.engine.record_step(encoder)?;
                Ok(0)
            }
            other => other.map(|()| in_place).map_err(Error::from),
        }
    }

    /// Records the copy of grad `i` into the engine's grad buffer, for every
    /// found grad with `which(i)`.
    fn record_copies(&self, encoder: &mut wgpu::CommandEncoder, found: &[Option<TensorBuffer>], which: impl Fn(usize) -> bool) {
        for (i, (p, g)) in self.layout.params.iter().zip(found).enumerate() {
            if let Some(g) = g.as_ref().filter(|_| which(i)) {
                encoder.copy_buffer_to_buffer(&g.buffer, g.offset, &self.grads[p.flat], 4 * p.offset, 4 * p.info.numel);
            }
        }
    }

    /// The host time of each phase of the steps since the last call, and
    /// resets it.
    pub fn take_phases(&mut self) -> StepPhases {
        std::mem::take(&mut self.phases)
    }

    /// Moves the model's parameters to their eval form, for a rule that has
    /// one (schedule-free AdamW's `eval()`: y to x), in one pass on burn's
    /// queue after its pending work; [`FusedOptimizer::train`] moves them
    /// back. A step in eval mode is an error.
    ///
    /// **Errors:** [`Error::Engine`] for a rule without modes, or what the
    /// device reports.
    pub fn eval(&mut self) -> Result<()> {
        self.switch_mode(true)
    }

    /// Moves the parameters back to their train form (schedule-free's
    /// `train()`: x to y); see [`FusedOptimizer::eval`].
    ///
    /// **Errors:** as [`FusedOptimizer::eval`].
    pub fn train(&mut self) -> Result<()> {
        self.switch_mode(false)
    }

    fn switch_mode(&mut self, eval: bool) -> Result<()> {
        // The switch moves every tensor, those without grads last step too.
        self.engine.set_active(&vec![true; self.layout.params.len()])?;
        self.shared.device.flush().map_err(|e| Error::Device(format!("{e:?}")))?;
        let mut encoder = self.shared.wgpu_device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("wgpu-optim-burn mode") });
        if eval { self.engine.eval(&mut encoder)? } else { self.engine.train(&mut encoder)? }
        self.shared.queue.submit([encoder.finish()]);
        Ok(())
    }

    /// The engine (schedules, state, norms, checkpoints' internals).
    pub fn engine(&self) -> &Optimizer {
        &self.engine
    }

    /// The engine, mutably (e.g. `wgpu_optim::schedule::Scheduler::apply`).
    pub fn engine_mut(&mut self) -> &mut Optimizer {
        &mut self.engine
    }

    /// The adopted parameters, in the engine's order (the checkpoint's
    /// `state.{i}` order).
    pub fn params(&self) -> impl Iterator<Item = &ParamInfo> {
        self.layout.params.iter().map(|p| &p.info)
    }

    /// Saves the optimizer state (safetensors, PyTorch names, atomic).
    /// The model's parameters are saved by burn (its records).
    ///
    /// **Errors:** [`Error::Engine`].
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        Ok(self.engine.save_checkpoint(path)?)
    }

    /// Loads the optimizer state saved by [`FusedOptimizer::save`].
    ///
    /// **Errors:** [`Error::Engine`] (a checkpoint that does not fit
    /// changes nothing).
    pub fn load(&mut self, path: impl AsRef<Path>) -> Result<()> {
        Ok(self.engine.load_checkpoint(path)?)
    }
}
