//! What every rank checks before its first collective: that all ranks
//! build the same model, from inputs each of them accepts.

use super::{Collectives, ShardRule};
use crate::engine::{params, EngineOptions, GradControl, ParamSlice, StateFormat};
use crate::error::{OptimError, Result};
use crate::matrix::TensorRule;

/// What ranks must agree on, each as a 64-bit FNV-1a hash: the world size,
/// the tensors (lengths, groups and shapes), and the rule with its options.
pub fn fingerprint(ranks: usize, rule: &ShardRule, params: &[ParamSlice], options: &EngineOptions) -> [u64; 3] {
    let fnv = |text: &str| text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
    let tensors: Vec<String> = params.iter().map(|p| format!("{}:{}:{:?}", p.len(), p.group, p.shape)).collect();
    [ranks as u64, fnv(&tensors.join(",")), fnv(&format!("{}|{:?}|{:?}", rule.describe(), options.state_format, options.grad_control))]
}

/// Checks that every rank builds the same model from inputs it accepts:
/// every rank learns every rank's verdict and fingerprint, so all return
/// an error together (this rank's own, or [`OptimError::RanksDisagree`])
/// and none waits in a later collective for a rank that gave up.
pub fn agree<T>(comm: &impl Collectives, local: Result<T>, mine: [u64; 3]) -> Result<T> {
    let bytes: Vec<u8> = std::iter::once(local.is_ok() as u8).chain(mine.iter().flat_map(|h| h.to_le_bytes())).collect();
    let all = comm.all_gather_bytes(&bytes)?;
    let value = local?;
    let what = ["the number of ranks", "the parameter tensors (count, lengths, groups or shapes)", "the rule or its options"];
    let first = &all[1..25];
    for (rank, theirs) in all.chunks_exact(25).enumerate() {
        if theirs[0] == 0 {
            return Err(OptimError::RanksDisagree { rank, what: "its own inputs, which it refused (see its error)" });
        }
        if let Some(k) = (0..3).find(|&k| theirs[1 + 8 * k..9 + 8 * k] != first[8 * k..8 * k + 8]) {
            return Err(OptimError::RanksDisagree { rank, what: what[k] });
        }
    }
    Ok(value)
}

/// Every rank learns whether every rank's `local` succeeded: this rank's
/// value, or its own error, or [`OptimError::RanksDisagree`] naming the
/// first other rank that failed (`what` says at what).
pub fn all_succeed<T>(comm: &impl Collectives, local: Result<T>, what: &'static str) -> Result<T> {
    let failed = first_failure(comm, local.is_ok())?;
    let value = local?;
    match failed {
        Some(rank) => Err(OptimError::RanksDisagree { rank, what }),
        None => Ok(value),
    }
}

/// Every rank's `ok`, all-gathered: the first rank that was not (the same
/// answer on every rank).
///
/// **Errors:** the transport's failures.
pub fn first_failure(comm: &impl Collectives, ok: bool) -> Result<Option<usize>> {
    Ok(comm.all_gather_bytes(&[ok as u8])?.iter().position(|&ok| ok == 0))
}

/// What a sharded optimizer refuses on one rank, before any collective;
/// else the grad control it runs with (an element-wise rule's own clipping,
/// Adan's `max_grad_norm`, folded in: the shard clips by the global norm).
pub fn check_local(device: &wgpu::Device, rule: &ShardRule, params: &[ParamSlice], options: &EngineOptions) -> Result<GradControl> {
    match rule {
        ShardRule::Fused(configs) => params::check_inputs(configs, params)?,
        ShardRule::Tensor(rule) => {
            rule.validate()?;
            crate::matrix::rows::check_tensors(device, params)?;
            if let (TensorRule::Muon(_), Some((index, p))) = (rule, params.iter().enumerate().find(|(_, p)| p.matrix().is_none())) {
                return Err(OptimError::ShapeRequired { index, rule: "muon", need: "a 2-D shape", shape: p.shape.clone() });
            }
        }
    }
    check_copies(params)?;
    options.grad_control.validate()?;
    if options.state_format != StateFormat::F32 {
        return Err(OptimError::InvalidOptions("a sharded optimizer keeps f32 state: 8-bit blocks would straddle shard boundaries, and bf16's stochastic rounding is keyed by the state's position, which sharding moves"));
    }
    match rule {
        ShardRule::Fused(configs) if !configs[0].host_scalars().is_empty() || configs[0].mode_switch(true).is_some() => Err(OptimError::InvalidOptions("a rule with host scalars or train/eval modes (schedule-free) is not sharded")),
        ShardRule::Fused(configs) => options.grad_control.with_rule(configs),
        ShardRule::Tensor(_) => Ok(options.grad_control),
    }
}

/// The step copies the grads out (`COPY_SRC`) and the params out and in
/// (`COPY_SRC | COPY_DST`): a buffer without them is refused here, not by
/// wgpu in the first step.
fn check_copies(params: &[ParamSlice]) -> Result<()> {
    use wgpu::BufferUsages as U;
    for (index, p) in params.iter().enumerate() {
        for (buffer, which, need) in [(&p.param, "param", U::COPY_SRC | U::COPY_DST), (&p.grad, "grad", U::COPY_SRC)] {
            if !buffer.usage().contains(need) {
                return Err(OptimError::MissingUsage { index, which, missing: need - buffer.usage() });
            }
        }
    }
    Ok(())
}
