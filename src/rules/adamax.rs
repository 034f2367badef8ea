//! Adamax: `torch.optim.Adamax` (Adam with the infinity norm).

use serde::{Deserialize, Serialize};

use super::flags::{bit, MAXIMIZE};
use super::pieces::{budget, bias_correction, check_adam_like, effective_grad};
use super::{RefState, Rule, RuleConfig, Slot, StateLayout};
use crate::error::Result;

/// Adamax, `torch.optim.Adamax` (Adam with the infinity norm).
///
/// ```text
/// g ← ∇ (negated if maximize) + weight_decay·θ
/// m ← m + (1 − β₁)·(g − m)                      exp_avg
/// u ← max(β₂·u, |g| + eps)                       exp_inf
/// θ ← θ − lr/(1 − β₁ᵗ) · m/u                     (lr/(1 − β₁ᵗ) on the host in f64)
/// ```
///
/// Defaults: `lr = 2e-3`, `betas = (0.9, 0.999)`, `eps = 1e-8`,
/// `weight_decay = 0`, `maximize = false`. State: `exp_avg`, `exp_inf`.
///
/// **Errors.** As [`Adam`](super::adam::Adam).
///
/// **Tolerance** (`k` in [`budget`] units from WGSL's accuracy): the
/// gradient (0 or 3), `m` (an EMA: g + 4), `u = max(β₂u, |g| + eps)` (the
/// max is exact: g + 1 or 2), `m/u` (+5), `clr·…` (+2), `θ − …` (+1): 14
/// without weight decay, 20 with. Measured worst on llvmpipe: 0.91.
///
/// ```
/// assert_eq!(wgpu_optim::Adamax::default().lr, 2e-3);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Adamax {
    /// Learning rate (default 2e-3).
    pub lr: f64,
    /// Coefficients (β₁, β₂) of the running average of the gradient and the decay of its infinity norm (default (0.9, 0.999)).
    pub betas: (f64, f64),
    /// Term added to |g| in the infinity norm for numerical stability (default 1e-8).
    pub eps: f64,
    /// Weight decay: an L2 penalty `weight_decay·θ` added to the gradient (default 0).
    pub weight_decay: f64,
    /// Maximize the objective instead of minimizing it: the gradient is negated (default false).
    pub maximize: bool,
}

impl Default for Adamax {
    fn default() -> Self {
        Adamax { lr: 2e-3, betas: (0.9, 0.999), eps: 1e-8, weight_decay: 0.0, maximize: false }
    }
}

impl Adamax {
    /// Checks every option; see [`Adam`](super::adam::Adam)'s **Errors** section.
    pub fn validate(&self) -> Result<()> {
        check_adam_like(self.lr, self.betas, self.eps, self.weight_decay)
    }
}

crate::coefficients! {
    /// Adamax's scalars: `clr = lr/(1 − β₁ᵗ)`.
    pub struct AdamaxCoeffs { lr, weight_decay, beta1, beta2, one_minus_beta1, eps, clr }
    at_step(c, f) { clr = c.lr * f.x }
}

impl RuleConfig for Adamax {
    const PYTORCH_NAME: &'static str = "adamax";
    type Coeffs = AdamaxCoeffs;

    fn rule(&self) -> Rule {
        Rule::Adamax
    }

    fn validate(&self) -> Result<()> {
        Adamax::validate(self)
    }

    fn lr_mut(&mut self) -> &mut f64 {
        &mut self.lr
    }

    fn weight_decay_mut(&mut self) -> Option<&mut f64> {
        Some(&mut self.weight_decay)
    }

    fn state(&self) -> StateLayout {
        StateLayout::new(&[Some(Slot::signed("exp_avg")), Some(Slot::unsigned("exp_inf")), None])
    }

    fn flags(&self) -> u32 {
        bit(self.maximize, MAXIMIZE)
    }

    fn coeffs(&self, t: u32) -> AdamaxCoeffs {
        let (b1, b2) = self.betas;
        let bc1 = bias_correction(b1, t);
        AdamaxCoeffs { lr: self.lr, weight_decay: self.weight_decay, beta1: b1, beta2: b2, one_minus_beta1: 1.0 - b1, eps: self.eps, clr: self.lr / bc1 }
    }

    fn step_factors(&self, t: u32) -> [f64; 4] {
        [1.0 / bias_correction(self.betas.0, t), 0.0, 0.0, 0.0]
    }

    fn reference_step(&self, t: u32, p: &mut [f64], g: &[f64], state: &mut RefState) {
        let clr = self.lr / (1.0 - self.betas.0.powi(t as i32));
        let [m, u, ..] = &mut state.slots;
        for i in 0..p.len() {
            let d = effective_grad(g[i], p[i], self.maximize, self.weight_decay);
            m[i] += (1.0 - self.betas.0) * (d - m[i]);
            u[i] = (self.betas.1 * u[i]).max(d.abs() + self.eps);
            p[i] -= clr * m[i] / u[i];
        }
    }

    fn tolerance_k(&self) -> f64 {
        use budget::*;
        let g = grad(self.weight_decay != 0.0);
        let u = scaled(0.0).max(sum(g, ROUNDED));
        apply(scaled(quotient(ema(g), u)))
    }

    fn cases() -> Vec<(&'static str, Self)> {
        vec![("adamax", Adamax::default()), ("adamax wd maximize", Adamax { weight_decay: 0.1, maximize: true, betas: (0.8, 0.99), ..Adamax::default() })]
    }
}
