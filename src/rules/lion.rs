//! Lion (Chen et al., 2023): the sign of an interpolated momentum (no
//! `torch.optim` class; names as in `lion-pytorch`).

use serde::{Deserialize, Serialize};

use super::flags::{bit, DECOUPLED, MAXIMIZE};
use super::pieces::{budget, check_finite_nonneg, check_unit_halfopen, effective_grad};
use super::{RefState, Rule, RuleConfig, Slot, StateLayout};
use crate::error::Result;

/// Lion (Chen et al., 2023, "Symbolic Discovery of Optimization
/// Algorithms"); not in `torch.optim`, names as in the paper and the common
/// PyTorch port (`lion-pytorch`).
///
/// ```text
/// g ← ∇ (negated if maximize)
/// c = β₁·m + (1 − β₁)·g
/// θ ← θ·(1 − lr·weight_decay) − lr·sign(c)          (sign(0) = 0; decoupled decay)
/// m ← β₂·m + (1 − β₂)·g                             exp_avg
/// ```
///
/// Defaults: `lr = 1e-4`, `betas = (0.9, 0.99)`, `weight_decay = 0`,
/// `maximize = false`. State: `exp_avg`.
///
/// **Errors.** `lr`, `weight_decay` finite and ≥ 0; betas in [0, 1).
///
/// **Tolerance** (`k` in [`budget`] units from WGSL's accuracy): `θ·decay`
/// (2) and `lr·sign(c)` (1; `sign` is exact), their difference (+1): 4 for
/// θ; `m` is an EMA of the exact gradient (4). Plus 2·lr for each step
/// whose sign was decided within f32 rounding of zero: the reference flags
/// |c| ≤ 4·2⁻²⁴·(|β₁m| + |(1−β₁)g|) there. Measured worst on llvmpipe: 0.82.
///
/// ```
/// assert_eq!(wgpu_optim::Lion::default().betas, (0.9, 0.99));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lion {
    /// Learning rate (default 1e-4).
    pub lr: f64,
    /// Coefficients (β₁, β₂): β₁ interpolates the update direction, β₂ the momentum `exp_avg` (default (0.9, 0.99)).
    pub betas: (f64, f64),
    /// Decoupled weight decay: θ is scaled by `1 − lr·weight_decay` each step (default 0).
    pub weight_decay: f64,
    /// Maximize the objective instead of minimizing it: the gradient is negated (default false).
    pub maximize: bool,
}

impl Default for Lion {
    fn default() -> Self {
        Lion { lr: 1e-4, betas: (0.9, 0.99), weight_decay: 0.0, maximize: false }
    }
}

impl Lion {
    /// Checks every option; see the type's **Errors** section.
    pub fn validate(&self) -> Result<()> {
        check_finite_nonneg("lr", self.lr)?;
        check_unit_halfopen("betas.0", self.betas.0)?;
        check_unit_halfopen("betas.1", self.betas.1)?;
        check_finite_nonneg("weight_decay", self.weight_decay)
    }
}

crate::coefficients! {
    /// Lion's scalars: `decay = 1 − lr·weight_decay`.
    pub struct LionCoeffs { lr, weight_decay, beta1, one_minus_beta1, beta2, one_minus_beta2, decay }
}

impl RuleConfig for Lion {
    const PYTORCH_NAME: &'static str = "lion";
    type Coeffs = LionCoeffs;

    fn rule(&self) -> Rule {
        Rule::Lion
    }

    fn validate(&self) -> Result<()> {
        Lion::validate(self)
    }

    fn lr_mut(&mut self) -> &mut f64 {
        &mut self.lr
    }

    fn weight_decay_mut(&mut self) -> Option<&mut f64> {
        Some(&mut self.weight_decay)
    }

    fn state(&self) -> StateLayout {
        StateLayout::new(&[Some(Slot::signed("exp_avg")), None, None])
    }

    fn flags(&self) -> u32 {
        DECOUPLED | bit(self.maximize, MAXIMIZE)
    }

    fn coeffs(&self, _t: u32) -> LionCoeffs {
        let (b1, b2) = self.betas;
        LionCoeffs {
            lr: self.lr,
            weight_decay: self.weight_decay,
            beta1: b1,
            one_minus_beta1: 1.0 - b1,
            beta2: b2,
            one_minus_beta2: 1.0 - b2,
            decay: 1.0 - self.lr * self.weight_decay,
        }
    }

    /// Sets the allowance 2·lr where sign(c) was decided by less than the
    /// f32 rounding of c (so the GPU may take the other sign).
    fn reference_step(&self, _t: u32, p: &mut [f64], g: &[f64], state: &mut RefState) {
        let (b1, b2) = self.betas;
        let m = &mut state.slots[0];
        for i in 0..p.len() {
            let d = effective_grad(g[i], p[i], self.maximize, 0.0);
            let (a, b) = (b1 * m[i], (1.0 - b1) * d);
            let ci = a + b;
            if ci.abs() <= 4.0 * f32::EPSILON as f64 * (a.abs() + b.abs()) {
                state.allowance[i] = 2.0 * self.lr;
            }
            let s = if ci > 0.0 { 1.0 } else if ci < 0.0 { -1.0 } else { 0.0 };
            p[i] = p[i] * (1.0 - self.lr * self.weight_decay) - self.lr * s;
            m[i] = b2 * m[i] + (1.0 - b2) * d;
        }
    }

    fn tolerance_k(&self) -> f64 {
        use budget::*;
        apply(sum(scaled(0.0), ROUNDED)).max(ema(0.0))
    }

    fn cases() -> Vec<(&'static str, Self)> {
        vec![("lion", Lion { lr: 1e-3, ..Lion::default() }), ("lion wd maximize", Lion { lr: 3e-3, weight_decay: 0.1, maximize: true, betas: (0.95, 0.98) })]
    }
}
