//! A damped diagonal Newton step with a user-supplied Hessian diagonal,
//! optionally with Sophia's EMAs and clipping (no `torch.optim` class).

use serde::{Deserialize, Serialize};

use super::flags::{bit, CLIP_UPDATE, HESSIAN_EMA, MAXIMIZE, MOMENTUM};
use super::pieces::{budget, check_finite_nonneg, check_unit_halfopen, effective_grad};
use super::{RefState, Rule, RuleConfig, Slot, StateLayout};
use crate::error::Result;

/// A damped diagonal Newton–Raphson step with a Hessian diagonal you supply,
/// optionally with Sophia's EMAs and per-coordinate clipping.
///
/// ```text
/// g ← ∇ (negated if maximize) + weight_decay·θ
/// m ← m + (1 − β₁)·(g − m)   if β₁ > 0, else m = g              exp_avg
/// h̄ ← β₂·h̄ + (1 − β₂)·h     if β₂ > 0, else h̄ = h              hessian_ema (h: hessian)
/// u = m/(|h̄| + damping);  clip: u ← clamp(u, −clip, clip)
/// θ ← θ − lr·u
/// ```
///
/// **The `hessian` state is an input**: write the diagonal estimate (for
/// example Hutchinson's, `h ≈ z ⊙ (∇²f·z)` with Rademacher `z`) into state
/// slot 0 before a step, from your own kernel (`Optimizer::state_binding`)
/// or from the host (`Optimizer::write_state`).
///
/// The full Newton step is `θ ← θ − H⁻¹∇f`: exact in one step on a quadratic,
/// but it needs the whole n × n Hessian, O(n²) memory and an O(n³) solve.
/// Keeping only the diagonal costs O(n), like Adam, and is exact when the
/// problem is separable (the Hessian is diagonal): then one step with
/// `lr = 1`, `damping = 0` reaches the optimum (tested). `|h|` and `damping`
/// keep the step a descent direction where curvature is negative or tiny;
/// Sophia (Liu et al., 2023) smooths both g and h with EMAs and clips the
/// ratio, `clip = 1` with `lr` playing the role of its step size.
///
/// Defaults: `lr = 1`, `damping = 1e-8`, `weight_decay = 0`, `beta1 = 0`,
/// `beta2 = 0`, `clip = 0` (off), `maximize = false`. Sophia-like:
/// `beta1 = 0.965`, `beta2 = 0.99`, `clip = 1`, a small `lr`.
///
/// **Errors.** `lr`, `damping`, `weight_decay`, `clip` finite and ≥ 0;
/// `beta1`, `beta2` in [0, 1).
///
/// **Tolerance** (`k` in [`budget`] units from WGSL's accuracy): the
/// gradient (0 or 3), `m` (an EMA with β₁: g + 4), `h̄` (an EMA with β₂:
/// 4), `|h̄| + damping` (+1; `abs` is exact), `m/(…)` (+5), the clamp
/// (exact), `lr·u` (+2), `θ − …` (+1): 13 plain, 20 with every option.
/// Measured worst on llvmpipe: 1.04.
///
/// ```
/// let n = wgpu_optim::Newton::default();
/// assert_eq!((n.lr, n.clip), (1.0, 0.0));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Newton {
    /// Learning rate: a factor on the update u (default 1).
    pub lr: f64,
    /// Term added to `|h̄|` in the denominator (default 1e-8).
    pub damping: f64,
    /// Weight decay: an L2 penalty `weight_decay·θ` added to the gradient (default 0).
    pub weight_decay: f64,
    /// Coefficient of the running average of the gradient, `exp_avg`; 0 uses the gradient itself (default 0).
    pub beta1: f64,
    /// Coefficient of the running average of the Hessian diagonal, `hessian_ema`; 0 uses it as given (default 0).
    pub beta2: f64,
    /// Clamp each coordinate of the update to [−clip, clip]; 0 turns clipping off (default 0).
    pub clip: f64,
    /// Maximize the objective instead of minimizing it: the gradient is negated (default false).
    pub maximize: bool,
}

impl Default for Newton {
    fn default() -> Self {
        Newton { lr: 1.0, damping: 1e-8, weight_decay: 0.0, beta1: 0.0, beta2: 0.0, clip: 0.0, maximize: false }
    }
}

impl Newton {
    /// Checks every option; see the type's **Errors** section.
    pub fn validate(&self) -> Result<()> {
        check_finite_nonneg("lr", self.lr)?;
        check_finite_nonneg("damping", self.damping)?;
        check_finite_nonneg("weight_decay", self.weight_decay)?;
        check_finite_nonneg("clip", self.clip)?;
        check_unit_halfopen("beta1", self.beta1)?;
        check_unit_halfopen("beta2", self.beta2)
    }
}

crate::coefficients! {
    /// Newton's scalars.
    pub struct NewtonCoeffs { lr, weight_decay, beta1, one_minus_beta1, beta2, one_minus_beta2, damping, clip }
}

impl RuleConfig for Newton {
    const PYTORCH_NAME: &'static str = "newton";
    type Coeffs = NewtonCoeffs;

    fn rule(&self) -> Rule {
        Rule::Newton
    }

    fn validate(&self) -> Result<()> {
        Newton::validate(self)
    }

    fn lr_mut(&mut self) -> &mut f64 {
        &mut self.lr
    }

    fn weight_decay_mut(&mut self) -> Option<&mut f64> {
        Some(&mut self.weight_decay)
    }

    fn state(&self) -> StateLayout {
        StateLayout::new(&[
            Some(Slot::input("hessian")),
            (self.beta2 > 0.0).then_some(Slot::signed("hessian_ema")),
            (self.beta1 > 0.0).then_some(Slot::signed("exp_avg")),
        ])
    }

    fn flags(&self) -> u32 {
        bit(self.maximize, MAXIMIZE) | bit(self.beta1 > 0.0, MOMENTUM) | bit(self.beta2 > 0.0, HESSIAN_EMA) | bit(self.clip > 0.0, CLIP_UPDATE)
    }

    fn coeffs(&self, _t: u32) -> NewtonCoeffs {
        NewtonCoeffs {
            lr: self.lr,
            weight_decay: self.weight_decay,
            beta1: self.beta1,
            one_minus_beta1: 1.0 - self.beta1,
            beta2: self.beta2,
            one_minus_beta2: 1.0 - self.beta2,
            damping: self.damping,
            clip: self.clip,
        }
    }

    /// `h` (slot 0) is the user-supplied Hessian diagonal, an input.
    fn reference_step(&self, _t: u32, p: &mut [f64], g: &[f64], state: &mut RefState) {
        let [h, h_ema, m, _] = &mut state.slots;
        for i in 0..p.len() {
            let d = effective_grad(g[i], p[i], self.maximize, self.weight_decay);
            let mut mi = d;
            if self.beta1 > 0.0 {
                m[i] += (1.0 - self.beta1) * (d - m[i]);
                mi = m[i];
            }
            let mut hi = h[i];
            if self.beta2 > 0.0 {
                h_ema[i] = self.beta2 * h_ema[i] + (1.0 - self.beta2) * h[i];
                hi = h_ema[i];
            }
            let mut u = mi / (hi.abs() + self.damping);
            if self.clip > 0.0 {
                u = u.clamp(-self.clip, self.clip);
            }
            p[i] -= self.lr * u;
        }
    }

    fn tolerance_k(&self) -> f64 {
        use budget::*;
        let g = grad(self.weight_decay != 0.0);
        let m = if self.beta1 > 0.0 { ema(g) } else { g };
        let h = if self.beta2 > 0.0 { ema(0.0) } else { 0.0 };
        apply(scaled(quotient(m, sum(h, ROUNDED))))
    }

    fn cases() -> Vec<(&'static str, Self)> {
        vec![
            ("newton", Newton { lr: 0.1, damping: 1e-3, ..Newton::default() }),
            ("newton hessian ema maximize", Newton { lr: 0.05, beta2: 0.9, maximize: true, ..Newton::default() }),
            ("newton sophia wd", Newton { lr: 0.01, beta1: 0.965, beta2: 0.99, clip: 1.0, damping: 1e-3, weight_decay: 0.1, ..Newton::default() }),
        ]
    }
}
