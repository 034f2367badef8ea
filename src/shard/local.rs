//! What steps one rank's shard: the fused engine over the shard's pieces of
//! the tensors (element-wise rules), or a tensor-wise optimizer over the
//! shard's whole tensors (LAMB, Adafactor, Muon). Either reads the shard's
//! mean grads from one buffer and writes the params in place.

use crate::checkpoint::tensor::TensorState;
use crate::engine::{EngineOptions, Optimizer, ParamSlice};
use crate::error::Result;
use crate::matrix::{AdafactorOptimizer, LambOptimizer, MuonOptimizer, TensorRule};
use crate::rules::OptimizerConfig;

/// The rule a sharded optimizer runs: the fused engine's configs (one per
/// param group), or one tensor-wise rule.
#[derive(Clone, Debug, PartialEq)]
pub enum ShardRule {
    /// An element-wise rule, by param group.
    Fused(Vec<OptimizerConfig>),
    /// LAMB, Adafactor or Muon, over whole tensors (one group).
    Tensor(TensorRule),
}

impl ShardRule {
    /// The rule and its options as text (for the ranks' fingerprint).
    pub fn describe(&self) -> String {
        match self {
            ShardRule::Fused(configs) => configs.iter().map(|c| format!("{}{}", c.pytorch_name(), serde_json::Value::Object(c.to_pytorch()))).collect::<Vec<_>>().join(";"),
            ShardRule::Tensor(rule) => format!("{}{}", rule.pytorch_name(), serde_json::Value::Object(rule.to_pytorch())),
        }
    }

    /// The number of param groups.
    pub fn groups(&self) -> usize {
        match self {
            ShardRule::Fused(configs) => configs.len(),
            ShardRule::Tensor(_) => 1,
        }
    }
}

/// The optimizer of one rank's shard.
pub enum Local {
    /// The rank owns nothing.
    Empty,
    /// The fused engine over the shard's pieces.
    Fused(Box<Optimizer>),
    /// Muon over the shard's whole tensors.
    Muon(MuonOptimizer),
    /// LAMB over the shard's whole tensors.
    Lamb(LambOptimizer),
    /// Adafactor over the shard's whole tensors.
    Adafactor(AdafactorOptimizer),
}

impl Local {
    /// The optimizer of `rule` over `slices` (the shard's pieces or whole
    /// tensors, their grads in the shard's grad buffer).
    ///
    /// **Errors:** the optimizer's construction errors.
    pub fn new(device: &wgpu::Device, queue: &wgpu::Queue, rule: &ShardRule, slices: &[ParamSlice], options: EngineOptions) -> Result<Self> {
        if slices.is_empty() {
            return Ok(Local::Empty);
        }
        Ok(match rule {
            ShardRule::Fused(configs) => Local::Fused(Box::new(Optimizer::with_grad_control_as_given(device, queue, configs, slices, options)?)),
            ShardRule::Tensor(TensorRule::Muon(c)) => Local::Muon(MuonOptimizer::new(device, queue, *c, slices)?),
            ShardRule::Tensor(TensorRule::Lamb(c)) => Local::Lamb(LambOptimizer::new(device, queue, *c, slices)?),
            ShardRule::Tensor(TensorRule::Adafactor(c)) => Local::Adafactor(AdafactorOptimizer::new(device, queue, *c, slices)?),
        })
    }

    /// One step of the shard (submitted).
    ///
    /// **Errors:** as the optimizer's `step`.
    pub fn step(&mut self) -> Result<()> {
        match self {
            Local::Empty => Ok(()),
            Local::Fused(o) => o.step(),
            Local::Muon(o) => o.step(),
            Local::Lamb(o) => o.step(),
            Local::Adafactor(o) => o.step(),
        }
    }

    /// The slices it steps.
    pub fn params(&self) -> &[ParamSlice] {
        match self {
            Local::Empty => &[],
            Local::Fused(o) => o.params(),
            Local::Muon(o) => o.params(),
            Local::Lamb(o) => o.params(),
            Local::Adafactor(o) => o.params(),
        }
    }

    /// The tensor-wise optimizer's state access (`None` for the fused
    /// engine or an empty shard).
    pub fn tensor_state(&self) -> Option<&dyn TensorState> {
        match self {
            Local::Muon(o) => Some(o),
            Local::Lamb(o) => Some(o),
            Local::Adafactor(o) => Some(o),
            Local::Empty | Local::Fused(_) => None,
        }
    }

    /// The same, mutable.
    pub fn tensor_state_mut(&mut self) -> Option<&mut dyn TensorState> {
        match self {
            Local::Muon(o) => Some(o),
            Local::Lamb(o) => Some(o),
            Local::Adafactor(o) => Some(o),
            Local::Empty | Local::Fused(_) => None,
        }
    }
}

/// The cost of stepping a tensor of `len` elements (shape `shape`) with a
/// tensor-wise rule, for balancing whole tensors over ranks: elements for
/// LAMB and Adafactor; for Muon, the multiply-adds of one Newton–Schulz
/// iteration on an s × l matrix (s ≤ l): X Xᵀ and B X (s² l each) and A A
/// (s³), doubled as flops.
pub fn tensor_cost(rule: &TensorRule, len: u64, shape: Option<&[u64]>) -> u64 {
    match (rule, shape) {
        (TensorRule::Muon(_), Some(&[rows, cols])) => {
            let (s, l) = (rows.min(cols), rows.max(cols));
            2 * (2 * s * s * l + s * s * s)
        }
        _ => len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::{Lamb, Muon};

    /// Muon's cost is one Newton–Schulz iteration's flops, the same for a
    /// matrix and its transpose; LAMB's is the element count.
    #[test]
    fn tensor_costs() {
        let muon = TensorRule::Muon(Muon::default());
        assert_eq!(tensor_cost(&muon, 6, Some(&[2, 3])), 2 * (2 * 4 * 3 + 8));
        assert_eq!(tensor_cost(&muon, 6, Some(&[3, 2])), tensor_cost(&muon, 6, Some(&[2, 3])));
        assert_eq!(tensor_cost(&TensorRule::Lamb(Lamb::default()), 6, Some(&[2, 3])), 6);
    }
}
