//! f64 CPU reference for every rule and option, mirroring the shaders in
//! `shaders/` one function per rule, with the same config types. The GPU is
//! validated against this module; nothing here is rounded to f32.

mod rules;

use crate::config::OptimizerConfig;
use crate::error::{OptimError, Result};

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
    pub config: OptimizerConfig,
    /// Steps taken so far.
    pub step: u32,
    /// State slots in binding order; see [`OptimizerConfig::state_names`].
    pub state: [Vec<f64>; 3],
    /// Lion: elements whose update sign, in the last step, was within the
    /// f32 rounding of its argument (the GPU may take the other sign).
    pub sign_ambiguous: Vec<bool>,
}

impl ReferenceOptimizer {
    /// A fresh optimizer for `n` parameters.
    ///
    /// **Errors** if the config is invalid.
    pub fn new(config: OptimizerConfig, n: usize) -> Result<Self> {
        config.validate()?;
        let state = std::array::from_fn(|slot| vec![config.initial_state(slot) as f64; n]);
        let sign_ambiguous = if matches!(config, OptimizerConfig::Lion(_)) { vec![false; n] } else { Vec::new() };
        Ok(ReferenceOptimizer { config, step: 0, state, sign_ambiguous })
    }

    /// One step: updates `params` in place from `grads`.
    ///
    /// **Errors** on length mismatch or step-counter overflow.
    pub fn step(&mut self, params: &mut [f64], grads: &[f64]) -> Result<()> {
        if params.len() != grads.len() || params.len() != self.state[0].len() {
            return Err(OptimError::LengthMismatch {
                index: 0,
                param_len: params.len() as u64,
                grad_len: grads.len() as u64,
            });
        }
        self.step = self.step.checked_add(1).ok_or(OptimError::StepOverflow)?;
        let t = self.step;
        let [s0, s1, s2] = &mut self.state;
        match &self.config {
            OptimizerConfig::Sgd(c) => rules::sgd(c, t, params, grads, s0),
            OptimizerConfig::Adagrad(c) => rules::adagrad(c, t, params, grads, s0),
            OptimizerConfig::RmsProp(c) => rules::rmsprop(c, params, grads, s0, s1, s2),
            OptimizerConfig::Adadelta(c) => rules::adadelta(c, params, grads, s0, s1),
            OptimizerConfig::Adam(c) => {
                let opts = rules::AdamLike::new(c.lr, c.betas, c.eps, c.amsgrad, c.maximize, c.eps_inside_sqrt);
                rules::adam(&rules::AdamLike { l2: c.weight_decay, ..opts }, t, params, grads, s0, s1, s2)
            }
            OptimizerConfig::AdamW(c) => {
                let opts = rules::AdamLike::new(c.lr, c.betas, c.eps, c.amsgrad, c.maximize, c.eps_inside_sqrt);
                rules::adam(&rules::AdamLike { decoupled: c.weight_decay, ..opts }, t, params, grads, s0, s1, s2)
            }
            OptimizerConfig::Adamax(c) => rules::adamax(c, t, params, grads, s0, s1),
            OptimizerConfig::NAdam(c) => rules::nadam(c, t, params, grads, s0, s1),
            OptimizerConfig::RAdam(c) => rules::radam(c, t, params, grads, s0, s1),
            OptimizerConfig::Newton(c) => rules::newton(c, params, grads, s0, s1, s2),
            OptimizerConfig::Lion(c) => rules::lion(c, params, grads, s0, &mut self.sign_ambiguous),
        }
        Ok(())
    }

    /// The state tensors that exist for this config, with their PyTorch names.
    pub fn named_state(&self) -> Vec<(&'static str, &[f64])> {
        self.config
            .state_names()
            .iter()
            .enumerate()
            .filter(|(_, n)| !n.is_empty())
            .map(|(slot, n)| (*n, self.state[slot].as_slice()))
            .collect()
    }
}
