//! Adam: `torch.optim.Adam`, and the Adam moments, scalars and reference
//! step AdamW shares.

use serde::{Deserialize, Serialize};

use super::flags::{bit, AMSGRAD, DECOUPLED, EPS_INSIDE_SQRT, MAXIMIZE};
use super::pieces::{bias_correction, budget, check_adam_like, effective_grad};
use super::{RefState, Rule, RuleConfig, Slot, StateLayout};
use super::unfused::{Buf::*, Instr, Op::*};
use crate::error::Result;

/// Adam, `torch.optim.Adam` (weight decay is an L2 term added to the gradient).
///
/// ```text
/// g ← ∇f(θ)  (negated if maximize);  g ← g + weight_decay·θ
/// m ← β₁·m + (1 − β₁)·g
/// v ← β₂·v + (1 − β₂)·g²
/// v̂max ← max(v̂max, v)                          if amsgrad (then v ← v̂max below)
/// θ ← θ − lr/(1 − β₁ᵗ) · m / (√v/√(1 − β₂ᵗ) + eps)      PyTorch
/// θ ← θ − lr/(1 − β₁ᵗ) · m / √(v/(1 − β₂ᵗ) + eps)       eps_inside_sqrt = true
/// ```
///
/// Defaults: `lr = 1e-3`, `betas = (0.9, 0.999)`, `eps = 1e-8`,
/// `weight_decay = 0`, `amsgrad = false`, `maximize = false`,
/// `eps_inside_sqrt = false`. State: `exp_avg`, `exp_avg_sq`, `max_exp_avg_sq`.
/// The bias corrections `lr/(1−β₁ᵗ)` and `√(1−β₂ᵗ)` are computed on the host
/// in f64 each step.
///
/// **Errors.** `lr`, `weight_decay` finite and ≥ 0; betas in [0, 1);
/// `eps` finite and > 0.
///
/// **Tolerance** (`k` in [`budget`] units from WGSL's accuracy, shared
/// with AdamW): the gradient (0, or 3 with an L2 term), `m` (an EMA: g + 4),
/// `v` (an EMA of g²: 2g + 5), `√v + eps_hat` (v/2 + 10), `m/denom` (+5),
/// `step_size_hat·…` (+2), `θ − …` (+1): 31.5 with weight decay, 25.5
/// without (eps inside the root: 25 and 19). Measured worst on llvmpipe:
/// 1.31 (Adam), 1.42 (AdamW).
///
/// ```
/// let a = wgpu_optim::Adam { betas: (0.9, 1.0), ..Default::default() };
/// assert!(a.validate().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Adam {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Coefficients (β₁, β₂) of the running averages of the gradient and its square (default (0.9, 0.999)).
    pub betas: (f64, f64),
    /// Term added to the denominator for numerical stability (default 1e-8).
    pub eps: f64,
    /// Weight decay: an L2 penalty `weight_decay·θ` added to the gradient (default 0).
    pub weight_decay: f64,
    /// Use the AMSGrad variant: divide by the running maximum of `exp_avg_sq` (default false).
    pub amsgrad: bool,
    /// Maximize the objective instead of minimizing it: the gradient is negated (default false).
    pub maximize: bool,
    /// Add eps inside the square root, `√(v̂ + eps)`, instead of after it, `√v̂ + eps` (default false).
    pub eps_inside_sqrt: bool,
}

impl Default for Adam {
    fn default() -> Self {
        Adam { lr: 1e-3, betas: (0.9, 0.999), eps: 1e-8, weight_decay: 0.0, amsgrad: false, maximize: false, eps_inside_sqrt: false }
    }
}

impl Adam {
    /// Checks every option; see the type's **Errors** section.
    pub fn validate(&self) -> Result<()> {
        check_adam_like(self.lr, self.betas, self.eps, self.weight_decay)
    }
}

crate::coefficients! {
    /// Adam's and AdamW's scalars. PyTorch's `θ − lr/(1−β₁ᵗ) · m/(√v/√(1−β₂ᵗ) + eps)`
    /// is evaluated as `θ − step_size_hat · m/(√v + eps_hat)` with
    /// `step_size_hat = lr·√(1−β₂ᵗ)/(1−β₁ᵗ)` and `eps_hat = eps·√(1−β₂ᵗ)`
    /// formed on the host in f64 (the same value, one division per element
    /// instead of two); with eps inside the root, `step_size = lr/(1−β₁ᵗ)`
    /// and `inv_bc2 = 1/(1−β₂ᵗ)`. `decay = 1 − lr·weight_decay`.
    pub struct AdamCoeffs { lr, weight_decay, beta2, one_minus_beta1, one_minus_beta2, eps, step_size, inv_bc2, step_size_hat, eps_hat, decay }
    at_step(c, f) { step_size = c.lr * f.x, step_size_hat = c.lr * f.y, inv_bc2 = f.z, eps_hat = c.eps * f.w }
}

/// The options Adam and AdamW share.
#[derive(Clone, Copy, Debug)]
pub(super) struct AdamLike {
    pub lr: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    pub weight_decay: f64,
    pub amsgrad: bool,
    pub maximize: bool,
    pub eps_inside_sqrt: bool,
    /// AdamW: decoupled weight decay instead of the L2 term.
    pub decoupled: bool,
}

impl AdamLike {
    pub fn state(&self) -> StateLayout {
        StateLayout::new(&[Some(Slot::signed("exp_avg")), Some(Slot::second_moment("exp_avg_sq")), self.amsgrad.then_some(Slot::second_moment("max_exp_avg_sq"))])
    }

    pub fn flags(&self) -> u32 {
        bit(self.decoupled, DECOUPLED) | bit(self.maximize, MAXIMIZE) | bit(self.amsgrad, AMSGRAD) | bit(self.eps_inside_sqrt, EPS_INSIDE_SQRT)
    }

    pub fn coeffs(&self, t: u32) -> AdamCoeffs {
        let (b1, b2) = self.betas;
        let (bc1, bc2) = (bias_correction(b1, t), bias_correction(b2, t));
        AdamCoeffs {
            lr: self.lr,
            weight_decay: self.weight_decay,
            beta2: b2,
            one_minus_beta1: 1.0 - b1,
            one_minus_beta2: 1.0 - b2,
            eps: self.eps,
            step_size: self.lr / bc1,
            inv_bc2: 1.0 / bc2,
            step_size_hat: self.lr * bc2.sqrt() / bc1,
            eps_hat: self.eps * bc2.sqrt(),
            decay: 1.0 - self.lr * self.weight_decay,
        }
    }

    pub fn step_factors(&self, t: u32) -> [f64; 4] {
        let (bc1, bc2) = (bias_correction(self.betas.0, t), bias_correction(self.betas.1, t));
        [1.0 / bc1, bc2.sqrt() / bc1, 1.0 / bc2, bc2.sqrt()]
    }

    /// `_single_tensor_adam` / `_single_tensor_adamw`.
    pub fn reference_step(&self, t: u32, p: &mut [f64], g: &[f64], state: &mut RefState) {
        let (b1, b2) = self.betas;
        let (bc1, bc2) = (1.0 - b1.powi(t as i32), 1.0 - b2.powi(t as i32));
        let step_size = self.lr / bc1;
        let (l2, decoupled) = if self.decoupled { (0.0, self.weight_decay) } else { (self.weight_decay, 0.0) };
        let [m, v, vmax, _] = &mut state.slots;
        for i in 0..p.len() {
            p[i] *= 1.0 - self.lr * decoupled;
            let d = effective_grad(g[i], p[i], self.maximize, l2);
            m[i] += (1.0 - b1) * (d - m[i]);
            v[i] = b2 * v[i] + (1.0 - b2) * d * d;
            let mut vv = v[i];
            if self.amsgrad {
                vmax[i] = vmax[i].max(vv);
                vv = vmax[i];
            }
            let denom = if self.eps_inside_sqrt { (vv / bc2 + self.eps).sqrt() } else { vv.sqrt() / bc2.sqrt() + self.eps };
            p[i] -= step_size * m[i] / denom;
        }
    }

    /// `exp_avg.lerp_(grad, 1−β₁)`, `exp_avg_sq.mul_(β₂).addcmul_(grad, grad, value=1−β₂)`,
    /// `denom = (exp_avg_sq.sqrt() / bc2_sqrt).add_(eps)`, `param.addcdiv_(exp_avg, denom, value=−step_size)`;
    /// AdamW first `param.mul_(1 − lr·wd)`.
    pub fn unfused(&self, t: u32) -> Option<Vec<Instr>> {
        if self.maximize || self.eps_inside_sqrt || self.amsgrad {
            return None;
        }
        let (mut out, g) = super::unfused::l2_grad(if self.decoupled { 0.0 } else { self.weight_decay });
        if self.decoupled && self.weight_decay != 0.0 {
            out.push((MulScalar, Param, Unused, Unused, 1.0 - self.lr * self.weight_decay));
        }
        let (b1, b2) = self.betas;
        let (bc1, bc2) = (1.0 - b1.powi(t as i32), 1.0 - b2.powi(t as i32));
        out.push((Lerp, State0, g, Unused, 1.0 - b1));
        out.push((MulScalar, State1, Unused, Unused, b2));
        out.push((Addcmul, State1, g, g, 1.0 - b2));
        out.push((SqrtOf, Tmp0, State1, Unused, 0.0));
        out.push((DivScalar, Tmp0, Unused, Unused, bc2.sqrt()));
        out.push((AddScalar, Tmp0, Unused, Unused, self.eps));
        out.push((Addcdiv, Param, State0, Tmp0, -self.lr / bc1));
        Some(out)
    }

    pub fn tolerance_k(&self) -> f64 {
        use budget::*;
        let g = grad(self.weight_decay != 0.0 && !self.decoupled);
        let (m, v) = (ema(g), ema(product(g, g)));
        let denom = if self.eps_inside_sqrt { root(sum(scaled(v), ROUNDED)) } else { sum(root(v), ROUNDED) };
        apply(scaled(quotient(m, denom)))
    }
}

impl From<&Adam> for AdamLike {
    fn from(c: &Adam) -> Self {
        AdamLike { lr: c.lr, betas: c.betas, eps: c.eps, weight_decay: c.weight_decay, amsgrad: c.amsgrad, maximize: c.maximize, eps_inside_sqrt: c.eps_inside_sqrt, decoupled: false }
    }
}

impl RuleConfig for Adam {
    const PYTORCH_NAME: &'static str = "adam";
    type Coeffs = AdamCoeffs;

    fn rule(&self) -> Rule {
        Rule::Adam
    }

    fn validate(&self) -> Result<()> {
        Adam::validate(self)
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
            ("adam", Adam::default()),
            ("adam amsgrad", Adam { amsgrad: true, ..Adam::default() }),
            ("adam wd", Adam { weight_decay: 0.1, betas: (0.8, 0.99), ..Adam::default() }),
            ("adam eps_inside_sqrt maximize", Adam { eps_inside_sqrt: true, maximize: true, ..Adam::default() }),
        ]
    }

    fn unfused(&self, t: u32) -> Option<Vec<Instr>> {
        AdamLike::from(self).unfused(t)
    }
}
