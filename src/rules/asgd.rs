//! ASGD: `torch.optim.ASGD`.

use serde::{Deserialize, Serialize};

use super::flags::{bit, MAXIMIZE};
use super::pieces::{budget, check_finite_nonneg, effective_grad};
use super::{RefState, Rule, RuleConfig, Slot, StateLayout};
use crate::error::{OptimError, Result};

/// Averaged SGD, `torch.optim.ASGD` (its single-tensor path, which the
/// foreach path matches up to rounding).
///
/// ```text
/// g ← ∇ (negated if maximize) + weight_decay·θ
/// θ ← θ·(1 − lambd·η) − η·g
/// ax ← θ                      if μ = 1
/// ax ← ax + μ·(θ − ax)        otherwise
/// η = f32(lr / (1 + lambd·lr·(t − 1))^alpha),  μ = f32(1 / max(1, t − 1 − t0))
/// ```
///
/// η and μ are the values PyTorch stores at the end of the previous step
/// (η = lr and μ = 1 at t = 1), rounded to f32 as its 0-d f32 state
/// tensors are; they are functions of the step, computed on the host in
/// f64 (and tabulated for a GradScaler's device-side step). Defaults:
/// `lr = 1e-2`, `lambd = 1e-4`, `alpha = 0.75`, `t0 = 1e6`,
/// `weight_decay = 0`, `maximize = false`. State: `ax` (the average);
/// PyTorch's scalar `eta`, `mu` and `step` follow from the step count.
///
/// **Errors.** `lr`, `lambd`, `alpha`, `weight_decay` finite and ≥ 0 (as
/// PyTorch); `t0` finite (PyTorch does not check it).
///
/// **Tolerance** (`k` in [`budget`] units): the gradient (0, or 3 with an L2
/// term), `θ·decay` and `η·g` (2 each past their inputs), their difference
/// (+1), the store (+1): 4, or 7 with weight decay; `ax` is an EMA of θ
/// (+4): 8 or 11. Measured worst on llvmpipe: 1.67.
///
/// ```
/// let a = wgpu_optim::Asgd { lambd: -1.0, ..Default::default() };
/// assert!(a.validate().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Asgd {
    /// Learning rate (default 1e-2).
    pub lr: f64,
    /// Decay term λ of the step size η and of θ (default 1e-4).
    pub lambd: f64,
    /// Power of the step-size decay, `η = lr/(1 + λ·lr·(t − 1))^alpha` (default 0.75).
    pub alpha: f64,
    /// Step at which averaging starts (default 1e6).
    pub t0: f64,
    /// Weight decay: an L2 penalty `weight_decay·θ` added to the gradient (default 0).
    pub weight_decay: f64,
    /// Maximize the objective instead of minimizing it: the gradient is negated (default false).
    pub maximize: bool,
}

impl Default for Asgd {
    fn default() -> Self {
        Asgd { lr: 1e-2, lambd: 1e-4, alpha: 0.75, t0: 1e6, weight_decay: 0.0, maximize: false }
    }
}

impl Asgd {
    /// Checks every option; see the type's **Errors** section.
    pub fn validate(&self) -> Result<()> {
        check_finite_nonneg("lr", self.lr)?;
        check_finite_nonneg("lambd", self.lambd)?;
        check_finite_nonneg("alpha", self.alpha)?;
        check_finite_nonneg("weight_decay", self.weight_decay)?;
        if !self.t0.is_finite() {
            return Err(OptimError::InvalidHyperparameter { name: "t0", value: self.t0, requirement: "must be finite" });
        }
        Ok(())
    }

    /// η used by step t: PyTorch's stored eta after step t − 1, as f32.
    fn eta(&self, t: u32) -> f64 {
        let done = t.saturating_sub(1) as f64;
        (self.lr / (1.0 + self.lambd * self.lr * done).powf(self.alpha)) as f32 as f64
    }

    /// μ used by step t: PyTorch's stored mu after step t − 1, as f32.
    fn mu(&self, t: u32) -> f64 {
        let done = t.saturating_sub(1) as f64;
        (1.0 / (done - self.t0).max(1.0)) as f32 as f64
    }
}

crate::coefficients! {
    /// ASGD's scalars of step t: η, `decay = 1 − lambd·η`, μ.
    pub struct AsgdCoeffs { eta, decay, mu, weight_decay }
    at_step(c, f) { eta = f.x, decay = f.y, mu = f.z }
}

impl RuleConfig for Asgd {
    const PYTORCH_NAME: &'static str = "asgd";
    type Coeffs = AsgdCoeffs;

    fn rule(&self) -> Rule {
        Rule::Asgd
    }

    fn validate(&self) -> Result<()> {
        Asgd::validate(self)
    }

    fn lr_mut(&mut self) -> &mut f64 {
        &mut self.lr
    }

    fn weight_decay_mut(&mut self) -> Option<&mut f64> {
        Some(&mut self.weight_decay)
    }

    fn state(&self) -> StateLayout {
        StateLayout::new(&[Some(Slot::signed("ax")), None, None])
    }

    fn flags(&self) -> u32 {
        bit(self.maximize, MAXIMIZE)
    }

    fn coeffs(&self, t: u32) -> AsgdCoeffs {
        let [eta, decay, mu, _] = self.step_factors(t);
        AsgdCoeffs { eta, decay, mu, weight_decay: self.weight_decay }
    }

    fn step_factors(&self, t: u32) -> [f64; 4] {
        let eta = self.eta(t);
        [eta, 1.0 - self.lambd * eta, self.mu(t), 0.0]
    }

    fn reference_step(&self, t: u32, p: &mut [f64], g: &[f64], state: &mut RefState) {
        let done = (t - 1) as f64;
        let eta = (self.lr / (1.0 + self.lambd * self.lr * done).powf(self.alpha)) as f32 as f64;
        let mu = (1.0 / (done - self.t0).max(1.0)) as f32 as f64;
        let ax = &mut state.slots[0];
        for i in 0..p.len() {
            let d = effective_grad(g[i], p[i], self.maximize, self.weight_decay);
            p[i] *= 1.0 - self.lambd * eta;
            p[i] -= eta * d;
            ax[i] = if mu != 1.0 { ax[i] + mu * (p[i] - ax[i]) } else { p[i] };
        }
    }

    fn tolerance_k(&self) -> f64 {
        use budget::*;
        let theta = apply(sum(scaled(0.0), scaled(grad(self.weight_decay != 0.0))));
        theta.max(ema(theta))
    }

    fn cases() -> Vec<(&'static str, Self)> {
        vec![
            ("asgd", Asgd::default()),
            ("asgd averaging wd maximize", Asgd { lr: 0.05, lambd: 1e-2, alpha: 0.6, t0: 3.0, weight_decay: 0.02, maximize: true }),
        ]
    }
}
