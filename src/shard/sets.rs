//! A sharded optimizer's checkpoint sets: one file per rank and an index
//! (the format and its crash safety are in [`super::files`]).

use std::path::Path;

use super::{files, Collectives, ShardRule, ShardedOptimizer};
use crate::error::{OptimError, Result};

impl<C: Collectives> ShardedOptimizer<C> {
    /// Every rank learns whether every rank's `local` step succeeded: this
    /// rank's error, or one naming the first rank that failed.
    fn all_succeed(&self, local: Result<()>, what: &str) -> Result<()> {
        let failed = super::agree::first_failure(&self.comm, local.is_ok())?;
        local?;
        match failed {
            Some(rank) => Err(OptimError::Checkpoint(format!("rank {rank} failed to {what} (see its error); the previous checkpoint set is intact"))),
            None => Ok(()),
        }
    }

    /// Writes the sharded checkpoint set `NAME.rank{r}-of-{N}.safetensors`
    /// (this rank's shard) and `NAME.index.json` (rank 0), crash-safe: a
    /// save interrupted anywhere leaves the previous set loadable. Every
    /// rank must call it; no rank holds more than its own shard.
    ///
    /// **Errors:** [`OptimError::Io`] on this rank, or
    /// [`OptimError::Checkpoint`] naming another rank that failed (all
    /// ranks return an error together); the readbacks' and the transport's
    /// failures.
    pub fn save_sharded(&self, name: impl AsRef<Path>) -> Result<()> {
        let (name, rank, ranks) = (name.as_ref(), self.comm.rank(), self.comm.ranks());
        let clock = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        let ids = self.comm.all_gather_bytes(&clock.to_le_bytes())?;
        let save = u64::from_le_bytes(ids[..8].try_into().expect("8 bytes")) ^ ((self.steps as u64) << 1);
        let own = match self.rule {
            ShardRule::Fused(_) => self.own_fused_file(),
            ShardRule::Tensor(_) => self.own_tensor_file(),
        };
        let staged = own.and_then(|bytes| files::tag(&bytes, save, rank, ranks)).and_then(|tagged| files::save::stage(name, rank, ranks, &tagged));
        self.all_succeed(staged, "write its shard")?;
        let committed = if rank == 0 { files::save::commit(name, save, ranks) } else { Ok(()) };
        self.all_succeed(committed, "write the index")?;
        files::save::publish(name, rank, ranks)
    }

    /// Loads a sharded checkpoint set saved by any number of ranks (its
    /// index, `NAME.index.json`): merged in memory, then loaded as the
    /// merged checkpoint, so N ranks reshard a set of N′.
    ///
    /// **Errors:** as [`files::merge`], and as the merged checkpoint's load.
    pub fn load_sharded(&mut self, index: impl AsRef<Path>) -> Result<()> {
        let merged = files::merge(index.as_ref())?;
        match self.rule {
            ShardRule::Fused(_) => self.load_checkpoint_bytes(&merged),
            ShardRule::Tensor(_) => self.load_tensor_checkpoint_bytes(&merged),
        }
    }
}
