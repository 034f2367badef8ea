//! f64 CPU reference of every rule and option, with the same config types.
//! Each rule's reference step is in its own file under `src/rules/`
//! ([`RuleConfig::reference_step`](crate::rules::RuleConfig::reference_step)),
//! written from PyTorch's equations; the GPU is validated against it, and
//! nothing here is rounded to f32.

use crate::error::{OptimError, Result};
use crate::rules::{OptimizerConfig, RefState};

/// f64 optimizer state for one flat parameter vector.
///
/// ```
/// use wgpu_optim::{reference::ReferenceOptimizer, Sgd};
/// let mut opt = ReferenceOptimizer::new(Sgd { lr: 0.5, ..Sgd::default() }.into(), 2).unwrap();
/// let mut p = vec![1.0, 2.0];
/// opt.step(&mut p, &[1.0, -1.0]).unwrap();
/// assert_eq!(p, vec![0.5, 2.5]);
/// ```
#[derive(Clone, Debug)]
pub struct ReferenceOptimizer {
    /// The rule and its hyperparameters.
    pub config: OptimizerConfig,
    /// Steps taken so far.
    pub step: u32,
    /// State slots in binding order (see [`OptimizerConfig::state`]) and the
    /// last step's error allowance.
    pub state: RefState,
}

impl ReferenceOptimizer {
    /// A fresh optimizer for `n` parameters.
    ///
    /// **Errors** if the config is invalid.
    pub fn new(config: OptimizerConfig, n: usize) -> Result<Self> {
        config.validate()?;
        let slots = std::array::from_fn(|slot| vec![config.initial_state(slot); n]);
        Ok(ReferenceOptimizer { config, step: 0, state: RefState { slots, allowance: vec![0.0; n] } })
    }

    /// One step: updates `params` in place from `grads`.
    ///
    /// **Errors** on length mismatch or step-counter overflow.
    pub fn step(&mut self, params: &mut [f64], grads: &[f64]) -> Result<()> {
        if params.len() != grads.len() || params.len() != self.state.allowance.len() {
            return Err(OptimError::LengthMismatch { index: 0, param_len: params.len() as u64, grad_len: grads.len() as u64 });
        }
        self.step = self.step.checked_add(1).ok_or(OptimError::StepOverflow)?;
        self.state.allowance.fill(0.0);
        self.config.reference_step(self.step, params, grads, &mut self.state);
        Ok(())
    }

    /// The state tensors that exist for this config, with their PyTorch names.
    pub fn named_state(&self) -> Vec<(&'static str, &[f64])> {
        self.config.state().used().map(|(slot, s)| (s.name, self.state.slots[slot].as_slice())).collect()
    }
}
