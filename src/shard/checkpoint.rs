//! Checkpoints of a sharded optimizer: the ranks' shards gathered into the
//! ordinary single-process checkpoint (`crate::checkpoint`), which
//! `Optimizer::load_checkpoint` reads, and which a sharded optimizer of any
//! number of ranks loads by taking its own shard of it: resharding is
//! loading.

use std::path::Path;

use super::{Collectives, Local, ShardRule, ShardedOptimizer};
use crate::rules::OptimizerConfig;
use crate::checkpoint::{decode, encode, write_atomic, Model};
use crate::engine::ScalerState;
use crate::error::{OptimError, Result};

impl<C: Collectives> ShardedOptimizer<C> {
    /// The element-wise rule's configs.
    fn configs(&self) -> Result<&[OptimizerConfig]> {
        match &self.rule {
            ShardRule::Fused(configs) => Ok(configs),
            ShardRule::Tensor(_) => Err(OptimError::InvalidOptions("a tensor-wise rule's checkpoints are the tensor-wise format (save_tensor_checkpoint)")),
        }
    }

    /// The model its checkpoints describe (no scheduler's `initial_lr`).
    fn model<'a>(&'a self, configs: &'a [OptimizerConfig], initial_lrs: &'a [Option<f64>]) -> Model<'a> {
        Model { rule: configs[0].rule().name(), configs, initial_lrs, params: &self.params, names: self.state_names(), host: vec![Vec::new(); configs.len()], train_mode: true }
    }

    /// The merged checkpoint, as one process's optimizer would write it,
    /// on every rank (every rank must call it: the state is all-gathered).
    ///
    /// **Errors:** the readbacks' and the transport's failures;
    /// [`OptimError::Checkpoint`] if serialising fails.
    pub fn checkpoint_bytes(&self) -> Result<Vec<u8>> {
        let names = self.state_names();
        let slots: Vec<Vec<f32>> = (0..names.len()).map(|slot| if names[slot].is_empty() { Ok(Vec::new()) } else { self.gather_state(slot) }).collect::<Result<_>>()?;
        let starts: Vec<usize> = self.params.iter().scan(0, |at, p| Some(std::mem::replace(at, *at + p.len() as usize))).collect();
        let configs = self.configs()?;
        let initial_lrs = vec![None; configs.len()];
        encode(&self.model(configs, &initial_lrs), self.steps, self.control.state(), |slot, i| Ok(slots[slot][starts[i]..starts[i] + self.params[i].len() as usize].to_vec()))
    }

    /// This rank's file of a sharded set: the merged layout, each tensor
    /// holding only the elements this rank owns (see [`super::files`]).
    ///
    /// **Errors:** the readbacks' failures; [`OptimError::Checkpoint`].
    pub(super) fn own_fused_file(&self) -> Result<Vec<u8>> {
        let configs = self.configs()?;
        let initial_lrs = vec![None; configs.len()];
        let pieces = &self.plan.shards[self.comm.rank()].pieces;
        encode(&self.model(configs, &initial_lrs), self.steps, self.control.state(), |slot, i| match (&self.local, pieces.iter().position(|p| p.tensor == i)) {
            (Local::Fused(engine), Some(k)) => engine.read_state(slot, k),
            _ => Ok(Vec::new()),
        })
    }

    /// Writes the merged checkpoint to `path` from rank 0, atomically (see
    /// [`write_atomic`]); every rank must call it.
    ///
    /// **Errors:** as [`ShardedOptimizer::checkpoint_bytes`], and
    /// [`OptimError::Io`] on rank 0.
    pub fn save_checkpoint(&self, path: impl AsRef<Path>) -> Result<()> {
        let bytes = self.checkpoint_bytes()?;
        match self.comm.rank() {
            0 => write_atomic(path.as_ref(), &bytes),
            _ => Ok(()),
        }
    }

    /// Restores this rank's shard of the state, the step count and the
    /// hyperparameters from a merged checkpoint, written by a sharded
    /// optimizer of any number of ranks or by one process's optimizer of
    /// the same model. Nothing changes unless all of it fits.
    ///
    /// **Errors:** [`OptimError::Checkpoint`] naming what does not fit.
    pub fn load_checkpoint_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        let configs = self.configs()?;
        let initial_lrs = vec![None; configs.len()];
        let loaded = decode(&self.model(configs, &initial_lrs), bytes)?;
        if let Local::Fused(engine) = &mut self.local {
            let pieces = &self.plan.shards[self.comm.rank()].pieces;
            for (i, slot, values) in &loaded.state {
                for (k, piece) in pieces.iter().enumerate().filter(|(_, p)| p.tensor == *i) {
                    engine.write_state(*slot, k, &values[piece.start as usize..(piece.start + piece.len) as usize])?;
                }
            }
            engine.replace_configs(loaded.configs.clone())?;
            engine.set_step_count(loaded.host_step - loaded.scaler.skipped);
        }
        self.control.set_state(ScalerState { found_inf: 0, ..loaded.scaler });
        self.rule = ShardRule::Fused(loaded.configs);
        self.steps = loaded.host_step;
        Ok(())
    }

    /// Reads `path` (on every rank) and loads it as
    /// [`ShardedOptimizer::load_checkpoint_bytes`].
    ///
    /// **Errors:** [`OptimError::Io`], [`OptimError::Checkpoint`].
    pub fn load_checkpoint(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| OptimError::io(path, e))?;
        self.load_checkpoint_bytes(&bytes)
    }
}
