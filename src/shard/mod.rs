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

mod checkpoint;
pub mod control;
pub mod plan;

pub use control::{Decision, ShardControl};
pub use plan::{Piece, Shard, ShardPlan, Sharding};

use crate::engine::{params, EngineOptions, GradControl, Optimizer, ParamSlice, ScalerState, StateFormat};
use crate::error::{OptimError, Result};
use crate::rules::OptimizerConfig;

/// The collective operations a sharded step needs, as a transport provides
/// them. Every rank calls each operation in the same order.
pub trait Collectives {
    /// This process's rank, `0..ranks()`.
    fn rank(&self) -> usize;
    /// The number of ranks.
    fn ranks(&self) -> usize;
    /// Sums `send` (the whole vector, the same length on every rank)
    /// element-wise over the ranks; rank r receives block r, of
    /// `counts[r]` elements, into `recv`.
    ///
    /// **Errors:** the transport's failures.
    fn reduce_scatter_sum(&self, send: &[f32], counts: &[usize], recv: &mut [f32]) -> Result<()>;
    /// Concatenates every rank's `send` (`counts[r]` elements from rank r)
    /// in rank order into `recv`, on every rank.
    ///
    /// **Errors:** the transport's failures.
    fn all_gather(&self, send: &[f32], counts: &[usize], recv: &mut [f32]) -> Result<()>;
    /// Every rank's `send` (the same length on every rank), concatenated in
    /// rank order.
    ///
    /// **Errors:** the transport's failures.
    fn all_gather_bytes(&self, send: &[u8]) -> Result<Vec<u8>>;
}

/// A borrowed transport is a transport (keep the communicator, lend it to
/// an optimizer).
impl<T: Collectives + ?Sized> Collectives for &T {
    fn rank(&self) -> usize {
        (**self).rank()
    }

    fn ranks(&self) -> usize {
        (**self).ranks()
    }

    fn reduce_scatter_sum(&self, send: &[f32], counts: &[usize], recv: &mut [f32]) -> Result<()> {
        (**self).reduce_scatter_sum(send, counts, recv)
    }

    fn all_gather(&self, send: &[f32], counts: &[usize], recv: &mut [f32]) -> Result<()> {
        (**self).all_gather(send, counts, recv)
    }

    fn all_gather_bytes(&self, send: &[u8]) -> Result<Vec<u8>> {
        (**self).all_gather_bytes(send)
    }
}

/// One process alone: the collectives of a world of one rank.
#[derive(Clone, Copy, Debug, Default)]
pub struct SingleProcess;

impl Collectives for SingleProcess {
    fn rank(&self) -> usize {
        0
    }

    fn ranks(&self) -> usize {
        1
    }

    fn reduce_scatter_sum(&self, send: &[f32], _counts: &[usize], recv: &mut [f32]) -> Result<()> {
        recv.copy_from_slice(send);
        Ok(())
    }

    fn all_gather(&self, send: &[f32], _counts: &[usize], recv: &mut [f32]) -> Result<()> {
        recv.copy_from_slice(send);
        Ok(())
    }

    fn all_gather_bytes(&self, send: &[u8]) -> Result<Vec<u8>> {
        Ok(send.to_vec())
    }
}

/// What ranks must agree on, each as a 64-bit FNV-1a hash: the world size,
/// the tensors (lengths and groups), and the rule with its options.
fn fingerprint(ranks: usize, configs: &[OptimizerConfig], params: &[ParamSlice], options: &EngineOptions) -> [u64; 3] {
    let fnv = |text: &str| text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
    let tensors: Vec<String> = params.iter().map(|p| format!("{}:{}", p.len(), p.group)).collect();
    let rule: Vec<String> = configs.iter().map(|c| format!("{}{}", c.pytorch_name(), serde_json::Value::Object(c.to_pytorch()))).collect();
    [ranks as u64, fnv(&tensors.join(",")), fnv(&format!("{}|{:?}|{:?}", rule.join(";"), options.state_format, options.grad_control))]
}

/// Checks that every rank builds the same model from inputs it accepts:
/// every rank learns every rank's verdict and fingerprint, so all return
/// an error together (this rank's own, or [`OptimError::RanksDisagree`])
/// and none waits in a later collective for a rank that gave up.
fn agree(comm: &impl Collectives, local: Result<()>, mine: [u64; 3]) -> Result<()> {
    let bytes: Vec<u8> = std::iter::once(local.is_ok() as u8).chain(mine.iter().flat_map(|h| h.to_le_bytes())).collect();
    let all = comm.all_gather_bytes(&bytes)?;
    local?;
    let what = ["the number of ranks", "the parameter tensors (count, lengths or groups)", "the rule or its options"];
    let first = &all[1..25];
    for (rank, theirs) in all.chunks_exact(25).enumerate() {
        if theirs[0] == 0 {
            return Err(OptimError::RanksDisagree { rank, what: "its own inputs, which it refused (see its error)" });
        }
        if let Some(k) = (0..3).find(|&k| theirs[1 + 8 * k..9 + 8 * k] != first[8 * k..8 * k + 8]) {
            return Err(OptimError::RanksDisagree { rank, what: what[k] });
        }
    }
    Ok(())
}

/// What a sharded optimizer refuses on one rank, before any collective.
fn check_local(configs: &[OptimizerConfig], params: &[ParamSlice], options: &EngineOptions) -> Result<()> {
    params::check_inputs(configs, params)?;
    options.grad_control.validate()?;
    if options.state_format != StateFormat::F32 {
        return Err(OptimError::InvalidOptions("a sharded optimizer keeps f32 state: 8-bit blocks would straddle shard boundaries, and bf16's stochastic rounding is keyed by the state's position, which sharding moves"));
    }
    Ok(())
}

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
    /// The params written to the param buffers (queued for the next submit).
    WriteParams,
}

/// A data-parallel optimizer whose state is sharded across ranks.
///
/// Built on every rank from the same configs and tensors (checked); each
/// [`ShardedOptimizer::step`] averages the ranks' grads, steps this rank's
/// shard with the fused engine and gathers the params everywhere. The
/// result is the single-process [`Optimizer`]'s fed the mean grads: bitwise,
/// where the transport sums the grads exactly (see the crate docs).
///
/// Element-wise rules with f32 state (bf16 and 8-bit state are refused
/// with a typed error). Clipping and loss scaling ([`GradControl`]) are
/// computed on the host from every rank's partial sums, added in rank
/// order (see [`control`]): the norms and the skip decision are bitwise
/// the same on every rank.
pub struct ShardedOptimizer<C: Collectives> {
    comm: C,
    device: wgpu::Device,
    queue: wgpu::Queue,
    plan: ShardPlan,
    /// Each group's config.
    configs: Vec<OptimizerConfig>,
    params: Vec<ParamSlice>,
    /// The fused step over this rank's pieces (`None` for an empty shard).
    engine: Option<Optimizer>,
    shard_grads: wgpu::Buffer,
    control: ShardControl,
    /// Steps recorded, skipped ones included (as [`Optimizer::step_count`]).
    steps: u32,
}

impl<C: Collectives> ShardedOptimizer<C> {
    /// A sharded optimizer over `params` (the full model's tensors, in the
    /// same order on every rank), in param groups as [`Optimizer::with_groups`].
    ///
    /// **Errors:** the input checks of [`Optimizer::with_groups`];
    /// [`OptimError::InvalidOptions`] for bf16 or 8-bit state; [`OptimError::RanksDisagree`] when the ranks build
    /// different models, or another rank refused its inputs. All ranks
    /// return an error together; none is left waiting.
    pub fn new(comm: C, device: &wgpu::Device, queue: &wgpu::Queue, configs: &[OptimizerConfig], params: &[ParamSlice], options: EngineOptions) -> Result<Self> {
        agree(&comm, check_local(configs, params, &options), fingerprint(comm.ranks(), configs, params, &options))?;
        let lens: Vec<u64> = params.iter().map(ParamSlice::len).collect();
        let plan = ShardPlan::new(&lens, comm.ranks(), &Sharding::Elements)?;
        let shard = &plan.shards[comm.rank()];
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        let shard_grads = crate::error::scoped(device, || device.create_buffer(&wgpu::BufferDescriptor { label: Some("wgpu-optim shard grads"), size: 4 * shard.len().max(1), usage, mapped_at_creation: false }))?;
        let mut at = 0;
        let slices: Vec<ParamSlice> = shard
            .pieces
            .iter()
            .map(|piece| {
                let p = &params[piece.tensor];
                let slice = ParamSlice::range(&p.param, p.param_offset + piece.start, &shard_grads, at, piece.len).in_group(p.group);
                at += piece.len;
                slice
            })
            .collect();
        let engine = match slices.is_empty() {
            true => None,
            false => Some(Optimizer::with_groups(device, queue, configs, &slices, EngineOptions { grad_control: GradControl::default(), ..options })?),
        };
        let control = ShardControl::new(options.grad_control);
        Ok(ShardedOptimizer { comm, device: device.clone(), queue: queue.clone(), plan, configs: configs.to_vec(), params: params.to_vec(), engine, shard_grads, control, steps: 0 })
    }

    /// One data-parallel step from the grads in every rank's grad buffers:
    /// their mean over ranks steps the params on every rank. Waits for the
    /// GPU (the grads and the shard's params go through host memory).
    ///
    /// **Errors:** [`OptimError::StepOverflow`], the readbacks' and the
    /// transport's failures, and as [`Optimizer::step`].
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
        let grad_ranges: Vec<_> = self.params.iter().map(|p| (&p.grad, p.grad_offset, p.len())).collect();
        let grads = crate::device::read_ranges_f32(&self.device, &self.queue, &grad_ranges)?;
        done(Phase::ReadGrads);
        let mut mine = vec![0.0f32; counts[self.comm.rank()]];
        self.comm.reduce_scatter_sum(&grads, &counts, &mut mine)?;
        done(Phase::ReduceScatter);
        let ranks = self.comm.ranks() as f32;
        mine.iter_mut().for_each(|g| *g /= ranks);
        if self.control.active() {
            let skip = self.control_grads(&mut mine)?;
            done(Phase::Control);
            if skip {
                self.steps = steps;
                return Ok(());
            }
        }
        let shard_params = match &mut self.engine {
            Some(engine) => {
                self.queue.write_buffer(&self.shard_grads, 0, bytemuck::cast_slice(&mine));
                engine.step()?;
                let ranges: Vec<_> = engine.params().iter().map(|p| (&p.param, p.param_offset, p.len())).collect();
                crate::device::read_ranges_f32(&self.device, &self.queue, &ranges)?
            }
            None => Vec::new(),
        };
        done(Phase::ShardStep);
        let mut flat = vec![0.0f32; self.plan.total() as usize];
        self.comm.all_gather(&shard_params, &counts, &mut flat)?;
        done(Phase::AllGather);
        let mut at = 0usize;
        for p in &self.params {
            self.queue.write_buffer(&p.param, 4 * p.param_offset, bytemuck::cast_slice(&flat[at..at + p.len() as usize]));
            at += p.len() as usize;
        }
        done(Phase::WriteParams);
        self.steps = steps;
        Ok(())
    }

    /// Clipping and loss scaling of this rank's mean grads, as every rank
    /// decides alike: whether to skip the step.
    fn control_grads(&mut self, mine: &mut [f32]) -> Result<bool> {
        let shard = &self.plan.shards[self.comm.rank()];
        let mut groups = Vec::with_capacity(mine.len());
        for piece in &shard.pieces {
            groups.extend(std::iter::repeat_n(self.params[piece.tensor].group as usize, piece.len as usize));
        }
        let (sums, found) = control::partials(mine, |i| groups[i], self.configs.len(), self.control.state().scale);
        let decision = self.control.decide(&self.comm, &sums, found)?;
        if !decision.skip {
            mine.iter_mut().zip(&groups).for_each(|(g, &k)| *g *= decision.multipliers[k]);
        }
        Ok(decision.skip)
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
    /// **Errors:** the readbacks' and the transport's failures.
    pub fn gather_state(&self, slot: usize) -> Result<Vec<f32>> {
        let mine: Vec<f32> = match &self.engine {
            Some(engine) => (0..engine.params().len()).map(|i| engine.read_state(slot, i)).collect::<Result<Vec<_>>>()?.concat(),
            None => Vec::new(),
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
    /// [`Optimizer::step_count`]).
    pub fn step_count(&self) -> u32 {
        self.steps
    }

    /// The state names of the rule, by slot (empty where a slot is unused).
    pub fn state_names(&self) -> Vec<&'static str> {
        self.configs[0].state_names()
    }

    /// Bytes of optimizer state this rank holds.
    pub fn state_bytes(&self) -> u64 {
        let slots = self.state_names().iter().filter(|n| !n.is_empty()).count() as u64;
        4 * slots * self.plan.shards[self.comm.rank()].len()
    }
}
