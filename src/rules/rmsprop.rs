//! RMSprop: `torch.optim.RMSprop`.

use serde::{Deserialize, Serialize};

use super::flags::{bit, CENTERED, EPS_INSIDE_SQRT, MAXIMIZE, MOMENTUM};
use super::pieces::{budget, check_finite_nonneg, check_positive, check_unit_halfopen, effective_grad};
use super::{RefState, Rule, RuleConfig, Slot, StateLayout};
use super::unfused::{Buf::*, Instr, Op::*};
use crate::error::Result;

/// RMSprop, `torch.optim.RMSprop`.
///
/// ```text
/// g ← ∇f(θ)  (negated if maximize);  g ← g + weight_decay·θ
/// v ← alpha·v + (1 − alpha)·g²
/// if centered:  ḡ ← alpha·ḡ + (1 − alpha)·g;   ṽ ← v − ḡ²   else ṽ ← v
/// d ← √ṽ + eps                         PyTorch
/// d ← √(ṽ + eps)                       eps_inside_sqrt = true (Hinton's lecture form)
/// if momentum > 0:  b ← momentum·b + g/d;  θ ← θ − lr·b
/// else:             θ ← θ − lr·g/d
/// ```
///
/// Defaults: `lr = 1e-2`, `alpha = 0.99`, `eps = 1e-8`, `weight_decay = 0`,
/// `momentum = 0`, `centered = false`, `maximize = false`,
/// `eps_inside_sqrt = false`. State: `square_avg`, `momentum_buffer`
/// (momentum > 0), `grad_avg` (centered).
///
/// **Errors.** `lr`, `momentum`, `weight_decay` finite and ≥ 0; `alpha` in
/// [0, 1); `eps` finite and > 0.
///
/// **Tolerance** (`k` in [`budget`] units from WGSL's accuracy): the
/// gradient (0 or 3), `v` (an EMA of g²: 2g + 5), `√v + eps` (v/2 + 10),
/// `g/d` (+5), momentum `μ·b + g/d` (+1), `lr·…` (+2), `θ − …` (+1): 21
/// plain, 27 with weight decay and momentum. Centered, `v − ḡ²` amplifies
/// the errors of v and ḡ² by `v/(v − ḡ²)`, at most 2 for the tests'
/// zero-mean gradients (ḡ² ≤ v/2): 37 to 41. Measured worst on llvmpipe:
/// 3.65 (momentum, 10 steps), 6.6 (centered).
///
/// ```
/// let r = wgpu_optim::RmsProp { alpha: 1.0, ..Default::default() };
/// assert!(r.validate().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RmsProp {
    /// Learning rate (default 1e-2).
    pub lr: f64,
    /// Smoothing constant of the running average of g² (default 0.99).
    pub alpha: f64,
    /// Term added to the denominator for numerical stability (default 1e-8).
    pub eps: f64,
    /// Weight decay: an L2 penalty `weight_decay·θ` added to the gradient (default 0).
    pub weight_decay: f64,
    /// Momentum factor; 0 keeps no momentum buffer (default 0).
    pub momentum: f64,
    /// Normalize by an estimate of the gradient's variance, `v − ḡ²`, instead of `v` (default false).
    pub centered: bool,
    /// Maximize the objective instead of minimizing it: the gradient is negated (default false).
    pub maximize: bool,
    /// Add eps inside the square root, `√(ṽ + eps)`, instead of after it, `√ṽ + eps` (default false).
    pub eps_inside_sqrt: bool,
}

impl Default for RmsProp {
    fn default() -> Self {
        RmsProp { lr: 1e-2, alpha: 0.99, eps: 1e-8, weight_decay: 0.0, momentum: 0.0, centered: false, maximize: false, eps_inside_sqrt: false }
    }
}

impl RmsProp {
    /// Checks every option; see the type's **Errors** section.
    pub fn validate(&self) -> Result<()> {
        check_finite_nonneg("lr", self.lr)?;
        check_unit_halfopen("alpha", self.alpha)?;
        check_positive("eps", self.eps)?;
        check_finite_nonneg("weight_decay", self.weight_decay)?;
        check_finite_nonneg("momentum", self.momentum)
    }
}

crate::coefficients! {
    /// RMSprop's scalars.
    pub struct RmsPropCoeffs { lr, weight_decay, alpha, one_minus_alpha, eps, momentum }
}

impl RuleConfig for RmsProp {
    const PYTORCH_NAME: &'static str = "rmsprop";
    type Coeffs = RmsPropCoeffs;

    fn rule(&self) -> Rule {
        Rule::RmsProp
    }

    fn validate(&self) -> Result<()> {
        RmsProp::validate(self)
    }

    fn lr_mut(&mut self) -> &mut f64 {
        &mut self.lr
    }

    fn weight_decay_mut(&mut self) -> Option<&mut f64> {
        Some(&mut self.weight_decay)
    }

    fn state(&self) -> StateLayout {
        StateLayout::new(&[
            Some(Slot::second_moment("square_avg")),
            (self.momentum > 0.0).then_some(Slot::signed("momentum_buffer")),
            self.centered.then_some(Slot::signed("grad_avg")),
        ])
    }

    fn flags(&self) -> u32 {
        bit(self.maximize, MAXIMIZE) | bit(self.centered, CENTERED) | bit(self.eps_inside_sqrt, EPS_INSIDE_SQRT) | bit(self.momentum > 0.0, MOMENTUM)
    }

    fn coeffs(&self, _t: u32) -> RmsPropCoeffs {
        RmsPropCoeffs { lr: self.lr, weight_decay: self.weight_decay, alpha: self.alpha, one_minus_alpha: 1.0 - self.alpha, eps: self.eps, momentum: self.momentum }
    }

    fn reference_step(&self, _t: u32, p: &mut [f64], g: &[f64], state: &mut RefState) {
        let [sq, buf, gavg, _] = &mut state.slots;
        for i in 0..p.len() {
            let d = effective_grad(g[i], p[i], self.maximize, self.weight_decay);
            sq[i] = self.alpha * sq[i] + (1.0 - self.alpha) * d * d;
            let mut v = sq[i];
            if self.centered {
                gavg[i] += (1.0 - self.alpha) * (d - gavg[i]);
                v -= gavg[i] * gavg[i];
            }
            let denom = if self.eps_inside_sqrt { (v + self.eps).sqrt() } else { v.sqrt() + self.eps };
            if self.momentum > 0.0 {
                buf[i] = self.momentum * buf[i] + d / denom;
                p[i] -= self.lr * buf[i];
            } else {
                p[i] -= self.lr * d / denom;
            }
        }
    }

    fn tolerance_k(&self) -> f64 {
        use budget::*;
        let g = grad(self.weight_decay != 0.0);
        let mut v = ema(product(g, g));
        if self.centered {
            v = 2.0 * sum(v, product(ema(g), ema(g)));
        }
        let d = if self.eps_inside_sqrt { root(sum(v, ROUNDED)) } else { sum(root(v), ROUNDED) };
        let q = quotient(g, d);
        let delta = if self.momentum > 0.0 { sum(scaled(0.0), q) } else { q };
        apply(scaled(delta))
    }

    fn cases() -> Vec<(&'static str, Self)> {
        vec![
            ("rmsprop", RmsProp::default()),
            ("rmsprop centered", RmsProp { centered: true, ..RmsProp::default() }),
            ("rmsprop momentum", RmsProp { momentum: 0.9, ..RmsProp::default() }),
            ("rmsprop centered momentum wd", RmsProp { centered: true, momentum: 0.5, weight_decay: 0.1, ..RmsProp::default() }),
            ("rmsprop eps_inside_sqrt maximize", RmsProp { eps_inside_sqrt: true, maximize: true, ..RmsProp::default() }),
        ]
    }

    /// `_single_tensor_rmsprop` without momentum or centering:
    /// `square_avg.mul_(alpha).addcmul_(grad, grad, value=1−alpha)`,
    /// `avg = square_avg.sqrt().add_(eps)`, `param.addcdiv_(grad, avg, value=−lr)`.
    fn unfused(&self, _t: u32) -> Option<Vec<Instr>> {
        if self.maximize || self.eps_inside_sqrt || self.centered || self.momentum != 0.0 {
            return None;
        }
        let (mut out, g) = super::unfused::l2_grad(self.weight_decay);
        out.push((MulScalar, State0, Unused, Unused, self.alpha));
        out.push((Addcmul, State0, g, g, 1.0 - self.alpha));
        out.push((SqrtOf, Tmp0, State0, Unused, 0.0));
        out.push((AddScalar, Tmp0, Unused, Unused, self.eps));
        out.push((Addcdiv, Param, g, Tmp0, -self.lr));
        Some(out)
    }
}
