//! Adan: the adaptive Nesterov momentum algorithm (Xie et al., 2022), as
//! `pytorch_optimizer.Adan`.

use serde::{Deserialize, Serialize};

use super::flags::{bit, DECOUPLED, MAXIMIZE};
use super::pieces::{bias_correction, budget, check_finite_nonneg, check_unit_halfopen};
use super::{RefState, Rule, RuleConfig, Slot, StateLayout};
use crate::error::Result;

/// Adan, `pytorch_optimizer.Adan`: Nesterov-style momentum of the gradient
/// difference, with three EMAs.
///
/// ```text
/// g ← ∇f(θ)  (negated if maximize; times the clip factor with max_grad_norm)
/// Δ ← g − g_prev                          (0 on the first step)
/// m ← β₁·m + (1 − β₁)·g                   exp_avg
/// d ← β₂·d + (1 − β₂)·Δ                   exp_avg_diff
/// n ← β₃·n + (1 − β₃)·(g + β₂·Δ)²         exp_avg_sq
/// denom = √n/√(1 − β₃ᵗ) + eps
/// θ ← θ·(1 − lr·weight_decay)                                  weight_decouple
/// θ ← θ − lr/(1 − β₁ᵗ)·m/denom − lr·β₂/(1 − β₂ᵗ)·d/denom
/// θ ← θ/(1 + lr·weight_decay)                                  otherwise (proximal)
/// ```
///
/// Defaults: `lr = 1e-3`, `betas = (0.98, 0.92, 0.99)`, `eps = 1e-8`,
/// `weight_decay = 0`, `weight_decouple = false`, `max_grad_norm = 0` (no
/// clipping), `maximize = false`. State, with `pytorch_optimizer`'s names
/// and values: `exp_avg`, `exp_avg_sq`, `exp_avg_diff` and `previous_grad`
/// (which holds **−g** of the last step, as there).
///
/// `max_grad_norm > 0` clips through the engine's global-norm clipping
/// ([`GradControl`](crate::GradControl)): one norm over every tensor, and,
/// as in `pytorch_optimizer`, the factor `min(1, max_grad_norm/(‖g‖ + eps))`
/// with Adan's `eps` (where `clip_grad_norm_` adds 1e-6). Setting
/// `GradControl::max_norm` to another value as well is an error.
///
/// **Differences from `pytorch_optimizer`:** the step count is shared by all
/// tensors (see `docs/semantics.md`); `1/(1 + lr·weight_decay)` is formed on
/// the host in f64 and multiplied, where it divides; with `maximize`, the
/// first step's difference is 0 as the algorithm defines it, where
/// `pytorch_optimizer` seeds `previous_grad` from the un-negated gradient
/// (a first difference of twice the negated gradient).
///
/// **Errors.** `lr`, `weight_decay`, `max_grad_norm` and `eps` finite and
/// ≥ 0 (as `pytorch_optimizer` checks them); betas in [0, 1).
///
/// **Tolerance:** Δ (a difference: 1), `g + β₂·Δ` (host scalar, product,
/// sum: 4), its square (9) into the EMA n (13), `√n + eps_hat` (16.5); the
/// EMAs d of Δ (5) and m of g (4), each divided by it (26.5, 25.5) and
/// scaled (28.5), their sum (29.5), the decay or proximal factor (31.5) and
/// the final difference: k = 32.5.
///
/// ```
/// let a = wgpu_optim::Adan::default();
/// assert_eq!(a.betas, (0.98, 0.92, 0.99));
/// assert!(wgpu_optim::Adan { betas: (0.9, 1.0, 0.99), ..a }.validate().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Adan {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// (β₁, β₂, β₃): the EMAs of the gradient, of its difference, and of the squared Nesterov gradient (default (0.98, 0.92, 0.99)).
    pub betas: (f64, f64, f64),
    /// Term added to the denominator, and to the norm when clipping (default 1e-8).
    pub eps: f64,
    /// Weight decay: proximal (θ/(1 + lr·wd)) or, with `weight_decouple`, decoupled (default 0).
    pub weight_decay: f64,
    /// Decoupled weight decay θ·(1 − lr·wd) before the update, instead of the proximal division after it (default false).
    pub weight_decouple: bool,
    /// Clip the gradients to this global L2 norm first; 0 does not clip (default 0).
    pub max_grad_norm: f64,
    /// Maximize the objective instead of minimizing it: the gradient is negated (default false).
    pub maximize: bool,
}

impl Default for Adan {
    fn default() -> Self {
        Adan { lr: 1e-3, betas: (0.98, 0.92, 0.99), eps: 1e-8, weight_decay: 0.0, weight_decouple: false, max_grad_norm: 0.0, maximize: false }
    }
}

impl Adan {
    /// Checks every option; see the type's **Errors** section.
    pub fn validate(&self) -> Result<()> {
        check_finite_nonneg("lr", self.lr)?;
        check_unit_halfopen("betas.0", self.betas.0)?;
        check_unit_halfopen("betas.1", self.betas.1)?;
        check_unit_halfopen("betas.2", self.betas.2)?;
        check_finite_nonneg("weight_decay", self.weight_decay)?;
        check_finite_nonneg("max_grad_norm", self.max_grad_norm)?;
        check_finite_nonneg("eps", self.eps)
    }
}

crate::coefficients! {
    /// Adan's scalars: `denom = √n/√bc₃ + eps` is evaluated as
    /// `(√n + eps_hat)/√bc₃`, so the two steps are `step_m = lr·√bc₃/bc₁`
    /// and `step_d = lr·β₂·√bc₃/bc₂` times `m/(√n + eps_hat)` and
    /// `d/(√n + eps_hat)`, `eps_hat = eps·√bc₃`. `decay = 1 − lr·wd`
    /// (decoupled) and `prox = 1/(1 + lr·wd)` (proximal).
    pub struct AdanCoeffs { lr, beta2, beta3, one_minus_beta1, one_minus_beta2, one_minus_beta3, eps, step_m, step_d, eps_hat, decay, prox }
    at_step(c, f) { step_m = c.lr * f.x, step_d = c.lr * c.beta2 * f.y, eps_hat = c.eps * f.z }
}

impl RuleConfig for Adan {
    const PYTORCH_NAME: &'static str = "adan";
    type Coeffs = AdanCoeffs;

    fn rule(&self) -> Rule {
        Rule::Adan
    }

    fn validate(&self) -> Result<()> {
        Adan::validate(self)
    }

    fn lr_mut(&mut self) -> &mut f64 {
        &mut self.lr
    }

    fn weight_decay_mut(&mut self) -> Option<&mut f64> {
        Some(&mut self.weight_decay)
    }

    fn state(&self) -> StateLayout {
        StateLayout::new(&[Some(Slot::signed("exp_avg")), Some(Slot::second_moment("exp_avg_sq")), Some(Slot::signed("exp_avg_diff")), Some(Slot::signed("previous_grad"))])
    }

    fn flags(&self) -> u32 {
        bit(self.maximize, MAXIMIZE) | bit(self.weight_decouple, DECOUPLED)
    }

    fn grad_clip(&self) -> Option<(f64, f64)> {
        (self.max_grad_norm > 0.0).then_some((self.max_grad_norm, self.eps))
    }

    fn coeffs(&self, t: u32) -> AdanCoeffs {
        let (b1, b2, b3) = self.betas;
        let [fm, fd, fe, _] = self.step_factors(t);
        AdanCoeffs {
            lr: self.lr,
            beta2: b2,
            beta3: b3,
            one_minus_beta1: 1.0 - b1,
            one_minus_beta2: 1.0 - b2,
            one_minus_beta3: 1.0 - b3,
            eps: self.eps,
            step_m: self.lr * fm,
            step_d: self.lr * b2 * fd,
            eps_hat: self.eps * fe,
            decay: 1.0 - self.lr * self.weight_decay,
            prox: 1.0 / (1.0 + self.lr * self.weight_decay),
        }
    }

    fn step_factors(&self, t: u32) -> [f64; 4] {
        let (b1, b2, b3) = self.betas;
        let bc3 = bias_correction(b3, t).sqrt();
        [bc3 / bias_correction(b1, t), bc3 / bias_correction(b2, t), bc3, 0.0]
    }

    /// `pytorch_optimizer.Adan.step`, clip factor included (the reference
    /// sees the whole flat vector, so its norm is the global one).
    fn reference_step(&self, t: u32, p: &mut [f64], g: &[f64], state: &mut RefState) {
        let (b1, b2, b3) = self.betas;
        let (bc1, bc2, bc3) = (1.0 - b1.powi(t as i32), 1.0 - b2.powi(t as i32), 1.0 - b3.powi(t as i32));
        let clip = match self.max_grad_norm {
            0.0 => 1.0,
            m => (m / (g.iter().map(|x| x * x).sum::<f64>().sqrt() + self.eps)).min(1.0),
        };
        let [m, n, d, prev] = &mut state.slots;
        for i in 0..p.len() {
            let grad = if self.maximize { -g[i] } else { g[i] } * clip;
            if t == 1 {
                prev[i] = -grad;
            }
            let mut diff = prev[i] + grad;
            m[i] = m[i] * b1 + (1.0 - b1) * grad;
            d[i] = d[i] * b2 + (1.0 - b2) * diff;
            diff = diff * b2 + grad;
            n[i] = n[i] * b3 + (1.0 - b3) * diff * diff;
            let denom = n[i].sqrt() / bc3.sqrt() + self.eps;
            if self.weight_decouple {
                p[i] *= 1.0 - self.lr * self.weight_decay;
            }
            p[i] -= self.lr / bc1 * m[i] / denom;
            p[i] -= self.lr * b2 / bc2 * d[i] / denom;
            if !self.weight_decouple {
                p[i] /= 1.0 + self.lr * self.weight_decay;
            }
            prev[i] = -grad;
        }
    }

    fn tolerance_k(&self) -> f64 {
        use budget::*;
        let diff = sum(0.0, 0.0);
        let nesterov = sum(scaled(diff), 0.0);
        let n = ema(product(nesterov, nesterov));
        let denom = sum(root(n), ROUNDED);
        let steps = sum(scaled(quotient(ema(diff), denom)), scaled(quotient(ema(0.0), denom)));
        apply(scaled(steps))
    }

    fn cases() -> Vec<(&'static str, Self)> {
        vec![
            ("adan", Adan::default()),
            ("adan proximal wd", Adan { weight_decay: 0.05, lr: 1e-2, ..Adan::default() }),
            ("adan decoupled wd maximize", Adan { weight_decay: 0.02, weight_decouple: true, maximize: true, betas: (0.9, 0.9, 0.999), ..Adan::default() }),
            ("adan max_grad_norm", Adan { max_grad_norm: 0.5, ..Adan::default() }),
        ]
    }
}
