//! AdamW: `torch.optim.AdamW` (Adam with decoupled weight decay).

use serde::{Deserialize, Serialize};

use super::adam::{AdamCoeffs, AdamLike};
use super::pieces::check_adam_like;
use super::{RefState, Rule, RuleConfig, StateLayout};
use super::unfused::Instr;
use crate::error::Result;

/// AdamW, `torch.optim.AdamW` (decoupled weight decay).
///
/// ```text
/// θ ← θ·(1 − lr·weight_decay)          (the product lr·weight_decay is formed on the host in f64)
/// then the Adam update of [`Adam`](super::adam::Adam) without the L2 term.
/// ```
///
/// Defaults as [`Adam`](super::adam::Adam) except `weight_decay = 1e-2`.
/// State: `exp_avg`, `exp_avg_sq`, `max_exp_avg_sq` (amsgrad).
///
/// **Errors** and **tolerance** as Adam (the same budget without an L2 term:
/// k = 30.5; measured worst on llvmpipe: 1.42).
///
/// ```
/// assert_eq!(wgpu_optim::AdamW::default().weight_decay, 1e-2);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamW {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Coefficients (β₁, β₂) of the running averages of the gradient and its square (default (0.9, 0.999)).
    pub betas: (f64, f64),
    /// Term added to the denominator for numerical stability (default 1e-8).
    pub eps: f64,
    /// Decoupled weight decay: θ is scaled by `1 − lr·weight_decay` each step (default 1e-2).
    pub weight_decay: f64,
    /// Use the AMSGrad variant: divide by the running maximum of `exp_avg_sq` (default false).
    pub amsgrad: bool,
    /// Maximize the objective instead of minimizing it: the gradient is negated (default false).
    pub maximize: bool,
    /// Add eps inside the square root, `√(v̂ + eps)`, instead of after it, `√v̂ + eps` (default false).
    pub eps_inside_sqrt: bool,
}

impl Default for AdamW {
    fn default() -> Self {
        AdamW { lr: 1e-3, betas: (0.9, 0.999), eps: 1e-8, weight_decay: 1e-2, amsgrad: false, maximize: false, eps_inside_sqrt: false }
    }
}

impl AdamW {
    /// Checks every option; see [`Adam`](super::adam::Adam)'s **Errors** section.
    pub fn validate(&self) -> Result<()> {
        check_adam_like(self.lr, self.betas, self.eps, self.weight_decay)
    }
}

impl From<&AdamW> for AdamLike {
    fn from(c: &AdamW) -> Self {
        AdamLike { lr: c.lr, betas: c.betas, eps: c.eps, weight_decay: c.weight_decay, amsgrad: c.amsgrad, maximize: c.maximize, eps_inside_sqrt: c.eps_inside_sqrt, decoupled: true }
    }
}

impl RuleConfig for AdamW {
    const PYTORCH_NAME: &'static str = "adamw";
    type Coeffs = AdamCoeffs;

    fn rule(&self) -> Rule {
        Rule::AdamW
    }

    fn validate(&self) -> Result<()> {
        AdamW::validate(self)
    }

    fn lr_mut(&mut self) -> &mut f64 {
        &mut self.lr
    }

    fn weight_decay_mut(&mut self) -> Option<&mut f64> {
        Some(&mut self.weight_decay)
    }

    fn state(&self) -> StateLayout {
        AdamLike::from(self).state()
    }

    fn flags(&self) -> u32 {
        AdamLike::from(self).flags()
    }

    fn coeffs(&self, t: u32) -> AdamCoeffs {
        AdamLike::from(self).coeffs(t)
    }

    fn step_factors(&self, t: u32) -> [f64; 4] {
        AdamLike::from(self).step_factors(t)
    }

    fn reference_step(&self, t: u32, p: &mut [f64], g: &[f64], state: &mut RefState) {
        AdamLike::from(self).reference_step(t, p, g, state)
    }

    fn tolerance_k(&self) -> f64 {
        AdamLike::from(self).tolerance_k()
    }

    fn cases() -> Vec<(&'static str, Self)> {
        vec![
            ("adamw", AdamW::default()),
            ("adamw amsgrad", AdamW { amsgrad: true, weight_decay: 0.1, ..AdamW::default() }),
            ("adamw eps_inside_sqrt maximize", AdamW { eps_inside_sqrt: true, maximize: true, lr: 1e-2, ..AdamW::default() }),
        ]
    }

    fn unfused(&self, t: u32) -> Option<Vec<Instr>> {
        AdamLike::from(self).unfused(t)
    }
}
