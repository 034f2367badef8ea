//! Optimizer state sharded across data-parallel ranks (ZeRO stage 1), over
//! any transport: the [`ShardPlan`] says which rank owns which elements,
//! [`Collectives`] is the narrow interface a transport implements (the
//! `wgpu-optim-mpi` crate does it over MPI), and [`ShardedOptimizer`] runs
//! the step: a reduce-scatter of the grads (averaged over ranks), the fused
//! step on this rank's shard only, with state for the shard alone, and an
//! all-gather of the updated params into every rank's param buffers.
//!
//! Every rank holds the full params, as in data-parallel training. Grads
//! and params travel through host memory (one mapped read of the grads and
//! one of the shard's params per step), so a step waits for the GPU.

mod agree;
mod checkpoint;
mod collectives;
pub mod control;
pub mod files;
pub mod local;
pub mod plan;
mod sets;
pub mod staging;
mod tensorwise;

pub use collectives::{Collectives, SingleProcess};
pub use control::{Decision, ShardControl};
pub use local::ShardRule;
pub use plan::{Piece, Shard, ShardPlan, Sharding};

use crate::engine::{EngineOptions, GradControl, ParamSlice, ScalerState};
use crate::error::{OptimError, Result};
use crate::matrix::TensorRule;
use crate::rules::OptimizerConfig;
use local::Local;

/// The phases of a sharded step, in order (see
/// [`ShardedOptimizer::step_observed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The grads read back to the host.
    ReadGrads,
    /// The reduce-scatter of the grads over the ranks.
    ReduceScatter,
    /// The norms and the found-inf flag all-gathered (with clipping or
    /// loss scaling only).
    Control,
    /// The mean grads uploaded, the shard stepped, its params read back.
    ShardStep,
    /// The all-gather of the updated params.
    AllGather,
    /// The gathered params written to the param buffers (one upload, one
    /// GPU copy per tensor, submitted).
    WriteParams,
}

/// A data-parallel optimizer whose state is sharded across ranks.
///
/// Built on every rank from the same rule and tensors (checked); each
/// [`ShardedOptimizer::step`] averages the ranks' grads, steps this rank's
/// shard and gathers the params everywhere. The result is the
/// single-process optimizer's fed the mean grads: bitwise, where the
/// transport sums the grads exactly (see the crate docs).
///
/// Element-wise rules ([`ShardedOptimizer::new`]) shard the flat vector
/// into element ranges and step them with the fused engine; LAMB,
/// Adafactor and Muon ([`ShardedOptimizer::tensorwise`]) need whole
/// tensors, balanced over the ranks by cost ([`local::tensor_cost`]). State
/// is f32 (bf16 and 8-bit state are refused with a typed error). Clipping
/// and loss scaling ([`GradControl`]) are computed on the host from every
/// rank's partial sums, added in rank order (see [`control`]): the norms
/// and the skip decision are bitwise the same on every rank.
pub struct ShardedOptimizer<C: Collectives> {
    comm: C,
    device: wgpu::Device,
    queue: wgpu::Queue,
    plan: ShardPlan,
    rule: ShardRule,
    params: Vec<ParamSlice>,
    /// The optimizer of this rank's shard.
    local: Local,
    shard_grads: wgpu::Buffer,
    stage: staging::Stage,
    control: ShardControl,
    /// Steps recorded, skipped ones included (as [`Optimizer::step_count`](crate::Optimizer::step_count)).
    steps: u32,
}

impl<C: Collectives> ShardedOptimizer<C> {
    /// A sharded element-wise optimizer over `params` (the full model's
    /// tensors, in the same order on every rank), in param groups as
    /// [`Optimizer::with_groups`](crate::Optimizer::with_groups).
    ///
    /// **Errors:** the input checks of [`Optimizer::with_groups`](crate::Optimizer::with_groups);
    /// [`OptimError::InvalidOptions`] for bf16 or 8-bit state, or schedule-free;
    /// [`OptimError::RanksDisagree`] when the ranks build different models,
    /// or another rank refused its inputs. All ranks return an error
    /// together; none is left waiting.
    pub fn new(comm: C, device: &wgpu::Device, queue: &wgpu::Queue, configs: &[OptimizerConfig], params: &[ParamSlice], options: EngineOptions) -> Result<Self> {
        Self::build(comm, device, queue, ShardRule::Fused(configs.to_vec()), params, options)
    }

    /// A sharded LAMB, Adafactor or Muon over `params` (whole tensors per
    /// rank, with their shapes; one group). Clipping and loss scaling in
    /// `options.grad_control` apply as for [`ShardedOptimizer::new`].
    ///
    /// **Errors:** the tensor-wise optimizer's input checks (Muon:
    /// [`OptimError::ShapeRequired`] without a 2-D shape), and as
    /// [`ShardedOptimizer::new`].
    pub fn tensorwise(comm: C, device: &wgpu::Device, queue: &wgpu::Queue, rule: TensorRule, params: &[ParamSlice], options: EngineOptions) -> Result<Self> {
        Self::build(comm, device, queue, ShardRule::Tensor(rule), params, options)
    }

    fn build(comm: C, device: &wgpu::Device, queue: &wgpu::Queue, rule: ShardRule, params: &[ParamSlice], options: EngineOptions) -> Result<Self> {
        let grad_control = agree::agree(&comm, agree::check_local(device, &rule, params, &options), agree::fingerprint(comm.ranks(), &rule, params, &options))?;
        let options = EngineOptions { grad_control, ..options };
        let lens: Vec<u64> = params.iter().map(ParamSlice::len).collect();
        let sharding = match &rule {
            ShardRule::Fused(_) => Sharding::Elements,
            ShardRule::Tensor(r) => Sharding::WholeTensors { costs: params.iter().map(|p| local::tensor_cost(r, p.len(), p.shape.as_deref())).collect() },
        };
        let plan = ShardPlan::new(&lens, comm.ranks(), &sharding)?;
        // A rank that fails to build its shard (out of memory, a device
        // limit) tells the others, so that none waits in a first collective.
        let control = ShardControl::new(options.grad_control);
        let built = Self::build_shard(device, queue, &rule, params, &plan.shards[comm.rank()], options);
        let (local, shard_grads, stage) = agree::all_succeed(&comm, built, "building its shard, which failed (see its error)")?;
        Ok(ShardedOptimizer { comm, device: device.clone(), queue: queue.clone(), plan, rule, params: params.to_vec(), local, shard_grads, stage, control, steps: 0 })
    }

    /// This rank's optimizer, shard grad buffer and staging.
    fn build_shard(device: &wgpu::Device, queue: &wgpu::Queue, rule: &ShardRule, params: &[ParamSlice], shard: &Shard, options: EngineOptions) -> Result<(Local, wgpu::Buffer, staging::Stage)> {
        // each piece's grads start on a unit, as its params do within its tensor
        let grad_at: Vec<u64> = shard.pieces.iter().scan(0, |at, p| Some(std::mem::replace(at, (*at + p.len).next_multiple_of(plan::UNIT)))).collect();
        let padded = shard.pieces.last().map_or(0, |p| grad_at[grad_at.len() - 1] + p.len);
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        let shard_grads = crate::error::scoped(device, || device.create_buffer(&wgpu::BufferDescriptor { label: Some("wgpu-optim shard grads"), size: 4 * padded.max(1), usage, mapped_at_creation: false }))?;
        let slices: Vec<ParamSlice> = shard
            .pieces
            .iter()
            .zip(&grad_at)
            .map(|(piece, &at)| {
                let p = &params[piece.tensor];
                let whole = piece.len == p.len();
                ParamSlice { param_offset: p.param_offset + piece.start, param_len: piece.len, grad: shard_grads.clone(), grad_offset: at, grad_len: piece.len, shape: p.shape.clone().filter(|_| whole), ..p.clone() }
            })
            .collect();
        let local = Local::new(device, queue, rule, &slices, EngineOptions { grad_control: GradControl::default(), ..options })?;
        let stage = staging::Stage::new(device, params, local.params())?;
        Ok((local, shard_grads, stage))
    }

    /// One data-parallel step from the grads in every rank's grad buffers:
    /// their mean over ranks steps the params on every rank. Waits for the
    /// GPU (the grads and the shard's params go through host memory).
    ///
    /// **Errors:** [`OptimError::StepOverflow`], the readbacks' and the
    /// transport's failures, and as [`Optimizer::step`](crate::Optimizer::step).
    pub fn step(&mut self) -> Result<()> {
        self.step_observed(|_| {})
    }

    /// [`ShardedOptimizer::step`], calling `done` as each [`Phase`] ends
    /// (for timing).
    ///
    /// **Errors:** as [`ShardedOptimizer::step`].
    pub fn step_observed(&mut self, mut done: impl FnMut(Phase)) -> Result<()> {
        let steps = self.steps.checked_add(1).ok_or(OptimError::StepOverflow)?;
        let counts = self.plan.counts();
        let st = &mut self.stage;
        st.grads_in.read(&self.device, &self.queue, &mut st.grads)?;
        done(Phase::ReadGrads);
        self.comm.reduce_scatter_sum(&st.grads, &counts, &mut st.mine)?;
        done(Phase::ReduceScatter);
        let ranks = self.comm.ranks() as f32;
        st.mine.iter_mut().for_each(|g| *g /= ranks);
        if self.control.active() {
            let runs: Vec<(usize, usize)> = self.plan.shards[self.comm.rank()].pieces.iter().map(|p| (p.len as usize, self.params[p.tensor].group as usize)).collect();
            let skip = control_grads(&mut self.control, &self.comm, &runs, self.rule.groups(), &mut st.mine);
            done(Phase::Control);
            if skip? {
                self.steps = steps;
                return Ok(());
            }
        }
        if !matches!(self.local, Local::Empty) {
            st.pad_grads();
            self.queue.write_buffer(&self.shard_grads, 0, bytemuck::cast_slice(&st.padded));
            self.local.step()?;
            st.params_in.read(&self.device, &self.queue, &mut st.shard_params)?;
        }
        done(Phase::ShardStep);
        self.comm.all_gather(&st.shard_params, &counts, &mut st.flat)?;
        done(Phase::AllGather);
        let own = &self.plan.shards[self.comm.rank()];
        st.upload.write(&self.device, &self.queue, &st.flat, own.lo..own.hi);
        done(Phase::WriteParams);
        self.steps = steps;
        Ok(())
    }

    /// The norms of the last step, the same on every rank: one over every
    /// group ([`crate::ClipScope::Global`]) or one per group.
    ///
    /// **Errors:** [`OptimError::InvalidOptions`] without clipping or loss scaling.
    pub fn grad_norms(&self) -> Result<Vec<f32>> {
        match self.control.active() {
            true => Ok(self.control.norms().to_vec()),
            false => Err(OptimError::InvalidOptions("grad norms are computed only with clipping or loss scaling")),
        }
    }

    /// The GradScaler's state, the same on every rank (scale 1 without
    /// one); `skipped` counts the steps skipped for non-finite grads.
    /// Multiply your loss by `scale` before the backward pass.
    pub fn scaler_state(&self) -> ScalerState {
        self.control.state()
    }

    /// State slot `slot` of every tensor, gathered from all ranks into the
    /// flat order (what one process's optimizer would hold). Every rank
    /// must call it.
    ///
    /// **Errors:** the readbacks' and the transport's failures;
    /// [`OptimError::InvalidOptions`] for a tensor-wise rule (see
    /// [`ShardedOptimizer::gather_tensor_state`]).
    pub fn gather_state(&self, slot: usize) -> Result<Vec<f32>> {
        let mine: Vec<f32> = match &self.local {
            Local::Fused(engine) => (0..engine.params().len()).map(|i| engine.read_state(slot, i)).collect::<Result<Vec<_>>>()?.concat(),
            Local::Empty if matches!(self.rule, ShardRule::Fused(_)) => Vec::new(),
            _ => return Err(OptimError::InvalidOptions("a tensor-wise rule's state is gathered by name (gather_tensor_state)")),
        };
        let mut flat = vec![0.0f32; self.plan.total() as usize];
        self.comm.all_gather(&mine, &self.plan.counts(), &mut flat)?;
        Ok(flat)
    }

    /// The plan every rank follows.
    pub fn plan(&self) -> &ShardPlan {
        &self.plan
    }

    /// The transport.
    pub fn comm(&self) -> &C {
        &self.comm
    }

    /// Steps recorded, skipped ones included (the same on every rank; as
    /// [`Optimizer::step_count`](crate::Optimizer::step_count)).
    pub fn step_count(&self) -> u32 {
        self.steps
    }

    /// The state names of an element-wise rule, by slot (empty where a
    /// slot is unused; none for a tensor-wise rule).
    pub fn state_names(&self) -> Vec<&'static str> {
        match &self.rule {
            ShardRule::Fused(configs) => configs[0].state_names(),
            ShardRule::Tensor(_) => Vec::new(),
        }
    }

    /// The rule it runs.
    pub fn rule(&self) -> &ShardRule {
        &self.rule
    }

    /// Bytes of optimizer state this rank holds.
    pub fn state_bytes(&self) -> u64 {
        let shard = &self.plan.shards[self.comm.rank()];
        match &self.rule {
            ShardRule::Fused(configs) => 4 * configs[0].state_names().iter().filter(|n| !n.is_empty()).count() as u64 * shard.len(),
            ShardRule::Tensor(rule) => {
                let numel = |p: &crate::ParamSlice| rule.state_layout(p.shape.as_deref().unwrap_or(&[p.len()])).iter().map(|(_, s)| s.iter().product::<u64>()).sum::<u64>();
                4 * shard.pieces.iter().map(|piece| numel(&self.params[piece.tensor])).sum::<u64>()
            }
        }
    }
}

/// Clipping and loss scaling of this rank's mean grads `mine` (in `runs`
/// of (elements, group)), as every rank decides alike: whether to skip the
/// step; if not, the grads are unscaled and clipped in place.
fn control_grads(control: &mut ShardControl, comm: &impl Collectives, runs: &[(usize, usize)], groups: usize, mine: &mut [f32]) -> Result<bool> {
    let (sums, found) = control::partials(mine, runs, groups, control.state().scale);
    let decision = control.decide(comm, &sums, found)?;
    if !decision.skip {
        let mut at = 0;
        for &(len, group) in runs {
            mine[at..at + len].iter_mut().for_each(|g| *g *= decision.multipliers[group]);
            at += len;
        }
    }
    Ok(decision.skip)
}
