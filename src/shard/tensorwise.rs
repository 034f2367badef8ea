//! The state of a sharded LAMB, Adafactor or Muon: each tensor's state
//! lives on the rank that owns the tensor. Gathered, it is what one
//! process's optimizer holds, and its checkpoint is the ordinary
//! tensor-wise one (`crate::checkpoint::tensor`), which a sharded optimizer
//! of any number of ranks loads by restoring the tensors it owns.

use futures::future::LocalBoxFuture;
use std::path::Path;

use super::{Collectives, ShardRule, ShardedOptimizer};
use crate::checkpoint::tensor::{self, TensorState};
use crate::error::{OptimError, Result};
use crate::matrix::adafactor::StateTensor;
use crate::matrix::TensorRule;

type Layout = Vec<(&'static str, Vec<u64>)>;

/// Every tensor's state, gathered: what a checkpoint writes.
struct Gathered {
    rule: TensorRule,
    steps: u32,
    tensors: Vec<Vec<StateTensor>>,
}

impl TensorState for Gathered {
    fn rule(&self) -> TensorRule {
        self.rule
    }
    fn tensor_count(&self) -> usize {
        self.tensors.len()
    }
    fn steps(&self) -> u32 {
        self.steps
    }
    fn state_layout(&self, index: usize) -> Layout {
        self.tensors[index].iter().map(|s| (s.name, s.shape.clone())).collect()
    }
    fn named_state_async(&self, index: usize) -> LocalBoxFuture<'_, Result<Vec<StateTensor>>> {
        Box::pin(std::future::ready(Ok(self.tensors[index].clone())))
    }
    fn restore(&mut self, _: usize, _: &[StateTensor]) -> Result<()> {
        Err(OptimError::InvalidOptions("gathered state is read-only"))
    }
    fn resume(&mut self, _: TensorRule, _: u32) -> Result<()> {
        Err(OptimError::InvalidOptions("gathered state is read-only"))
    }
}

/// The whole model seen by one rank while loading: every tensor's layout
/// (checked against the file), restoring only the tensors this rank owns.
struct Owned<'a> {
    rule: TensorRule,
    layouts: Vec<Layout>,
    /// Each tensor's index in the rank's optimizer, if it owns it.
    local: Vec<Option<usize>>,
    opt: Option<&'a mut dyn TensorState>,
    resumed: Option<(TensorRule, u32)>,
}

impl TensorState for Owned<'_> {
    fn rule(&self) -> TensorRule {
        self.rule
    }
    fn tensor_count(&self) -> usize {
        self.layouts.len()
    }
    fn steps(&self) -> u32 {
        0
    }
    fn state_layout(&self, index: usize) -> Layout {
        self.layouts[index].clone()
    }
    fn named_state_async(&self, _: usize) -> LocalBoxFuture<'_, Result<Vec<StateTensor>>> {
        Box::pin(std::future::ready(Err(OptimError::InvalidOptions("a loading view has no state to read"))))
    }
    fn restore(&mut self, index: usize, state: &[StateTensor]) -> Result<()> {
        match (self.local[index], self.opt.as_deref_mut()) {
            (Some(k), Some(opt)) => opt.restore(k, state),
            _ => Ok(()),
        }
    }
    fn resume(&mut self, rule: TensorRule, steps: u32) -> Result<()> {
        self.resumed = Some((rule, steps));
        match self.opt.as_deref_mut() {
            Some(opt) => opt.resume(rule, steps),
            None => Ok(()),
        }
    }
}

impl<C: Collectives> ShardedOptimizer<C> {
    fn tensor_rule(&self) -> Result<TensorRule> {
        match &self.rule {
            ShardRule::Tensor(rule) => Ok(*rule),
            ShardRule::Fused(_) => Err(OptimError::InvalidOptions("an element-wise rule's state is gathered by slot (gather_state)")),
        }
    }

    /// The step a tensor-wise checkpoint records, as one process's optimizer
    /// records it: the steps taken (skipped ones not counted; the format
    /// holds no GradScaler state), and 0 for Muon, which has no step.
    fn file_steps(&self, rule: &TensorRule) -> u32 {
        match rule {
            TensorRule::Muon(_) => 0,
            _ => self.steps - self.control.state().skipped,
        }
    }

    /// Each tensor's state layout (names and shapes), computed alike on every rank.
    fn layouts(&self, rule: &TensorRule) -> Vec<Layout> {
        self.params.iter().map(|p| rule.state_layout(p.shape.as_deref().unwrap_or(&[p.len()]))).collect()
    }

    /// Every tensor's state by PyTorch name and shape (LAMB, Adafactor,
    /// Muon), gathered from the ranks that own them: what one process's
    /// optimizer holds. Every rank must call it.
    ///
    /// **Errors:** [`OptimError::InvalidOptions`] for an element-wise rule;
    /// the readbacks' and the transport's failures.
    pub fn gather_tensor_state(&self) -> Result<Vec<Vec<StateTensor>>> {
        let rule = self.tensor_rule()?;
        let layouts = self.layouts(&rule);
        let numel = |t: usize| layouts[t].iter().map(|(_, s)| s.iter().product::<u64>() as usize).sum::<usize>();
        let counts: Vec<usize> = self.plan.shards.iter().map(|s| s.pieces.iter().map(|p| numel(p.tensor)).sum()).collect();
        let mut mine = Vec::with_capacity(counts[self.comm.rank()]);
        if let Some(opt) = self.local.tensor_state() {
            for k in 0..opt.tensor_count() {
                opt.named_state(k)?.iter().for_each(|s| mine.extend_from_slice(&s.values));
            }
        }
        let mut flat = vec![0.0f32; counts.iter().sum()];
        self.comm.all_gather(&mine, &counts, &mut flat)?;
        let mut at = 0;
        Ok(layouts
            .into_iter()
            .map(|layout| {
                let tensors = layout.into_iter().map(|(name, shape)| {
                    let n = shape.iter().product::<u64>() as usize;
                    at += n;
                    StateTensor { name, shape, values: flat[at - n..at].to_vec() }
                });
                tensors.collect()
            })
            .collect())
    }

    /// This rank's file of a sharded set: every tensor's state names, the
    /// tensors it owns whole, the others empty (see [`super::files`]).
    ///
    /// **Errors:** the readbacks' failures; [`OptimError::Checkpoint`].
    pub(super) fn own_tensor_file(&self) -> Result<Vec<u8>> {
        let rule = self.tensor_rule()?;
        let mut tensors: Vec<Vec<StateTensor>> = self.layouts(&rule).into_iter().map(|l| l.into_iter().map(|(name, _)| StateTensor { name, shape: vec![0], values: Vec::new() }).collect()).collect();
        if let Some(opt) = self.local.tensor_state() {
            for (k, piece) in self.plan.shards[self.comm.rank()].pieces.iter().enumerate() {
                tensors[piece.tensor] = opt.named_state(k)?;
            }
        }
        tensor::to_bytes(&Gathered { rule, steps: self.file_steps(&rule), tensors })
    }

    /// The merged tensor-wise checkpoint, as one process's optimizer
    /// writes it, on every rank (every rank must call it).
    ///
    /// **Errors:** as [`ShardedOptimizer::gather_tensor_state`];
    /// [`OptimError::Checkpoint`] if serialising fails.
    pub fn tensor_checkpoint_bytes(&self) -> Result<Vec<u8>> {
        let rule = self.tensor_rule()?;
        tensor::to_bytes(&Gathered { rule, steps: self.file_steps(&rule), tensors: self.gather_tensor_state()? })
    }

    /// Restores the tensors this rank owns, the step count and the config
    /// from a merged tensor-wise checkpoint (of one process, or of a
    /// sharded optimizer of any number of ranks). The whole file is checked
    /// against the model before anything changes. The step count becomes
    /// the file's (steps taken; 0 for Muon), with no skipped steps: the
    /// tensor-wise format holds no GradScaler state.
    ///
    /// **Errors:** as [`tensor::load_bytes`]; [`OptimError::InvalidOptions`]
    /// for an element-wise rule.
    pub fn load_tensor_checkpoint_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        let rule = self.tensor_rule()?;
        let mut local = vec![None; self.params.len()];
        for (k, piece) in self.plan.shards[self.comm.rank()].pieces.iter().enumerate() {
            local[piece.tensor] = Some(k);
        }
        let layouts = self.layouts(&rule);
        let mut view = Owned { rule, layouts, local, opt: self.local.tensor_state_mut(), resumed: None };
        tensor::load_bytes(&mut view, bytes)?;
        if let Some((rule, steps)) = view.resumed {
            self.rule = ShardRule::Tensor(rule);
            self.steps = steps;
            self.control.set_state(crate::engine::ScalerState { skipped: 0, found_inf: 0, ..self.control.state() });
        }
        Ok(())
    }

    /// Writes the merged tensor-wise checkpoint from rank 0, atomically;
    /// every rank must call it.
    ///
    /// **Errors:** as [`ShardedOptimizer::tensor_checkpoint_bytes`], and
    /// [`OptimError::Io`] on rank 0.
    pub fn save_tensor_checkpoint(&self, path: impl AsRef<Path>) -> Result<()> {
        let bytes = self.tensor_checkpoint_bytes()?;
        match self.comm.rank() {
            0 => crate::checkpoint::write_atomic(path.as_ref(), &bytes),
            _ => Ok(()),
        }
    }

    /// Reads `path` on every rank and loads it as
    /// [`ShardedOptimizer::load_tensor_checkpoint_bytes`].
    ///
    /// **Errors:** [`OptimError::Io`], and as that.
    pub fn load_tensor_checkpoint(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| OptimError::io(path, e))?;
        self.load_tensor_checkpoint_bytes(&bytes)
    }
}
