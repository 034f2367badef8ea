//! RAdam: `torch.optim.RAdam` (Liu et al.'s rectified Adam).

use serde::{Deserialize, Serialize};

use super::flags::{bit, DECOUPLED, MAXIMIZE};
use super::pieces::{budget, check_adam_like, decayed_grad};
use super::{RefState, Rule, RuleConfig, Slot, StateLayout};
use crate::error::Result;

/// RAdam, `torch.optim.RAdam` (Liu et al.'s rectified Adam).
///
/// ```text
/// g ← ∇ (negated if maximize) + weight_decay·θ      or, decoupled: θ ← θ·(1 − lr·weight_decay)
/// m ← m + (1 − β₁)·(g − m);  v ← β₂·v + (1 − β₂)·g²     exp_avg, exp_avg_sq
/// ρ∞ = 2/(1 − β₂) − 1,  ρₜ = ρ∞ − 2t·β₂ᵗ/(1 − β₂ᵗ)
/// ρₜ > 5:  r = √((ρₜ−4)(ρₜ−2)ρ∞ / ((ρ∞−4)(ρ∞−2)ρₜ)),  θ ← θ − lr·r·√(1 − β₂ᵗ)/(1 − β₁ᵗ) · m/(√v + eps)
/// else:    θ ← θ − lr/(1 − β₁ᵗ) · m
/// ```
///
/// Both coefficients are computed on the host in f64; the kernel evaluates
/// `θ − m·(c_plain + c_rect/(√v + eps))` with one of them zero.
///
/// Defaults: `lr = 1e-3`, `betas = (0.9, 0.999)`, `eps = 1e-8`,
/// `weight_decay = 0`, `decoupled_weight_decay = false`, `maximize = false`.
///
/// **Errors.** As [`Adam`](super::adam::Adam).
///
/// **Tolerance** (`k` in [`budget`] units from WGSL's accuracy): the
/// gradient (0 or 3), `m` (g + 4), `v` (2g + 5), `c_rect/(√v + eps)`
/// (v/2 + 16), `c_plain + …` (+1), `m·(…)` (+1), `θ − …` (+1): 31.5 with
/// weight decay, 25.5 without. Measured worst on llvmpipe: 1.31.
///
/// ```
/// assert!(!wgpu_optim::RAdam::default().decoupled_weight_decay);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RAdam {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Coefficients (β₁, β₂) of the running averages of the gradient and its square (default (0.9, 0.999)).
    pub betas: (f64, f64),
    /// Term added to the denominator for numerical stability (default 1e-8).
    pub eps: f64,
    /// Weight decay: an L2 penalty, or decoupled with `decoupled_weight_decay` (default 0).
    pub weight_decay: f64,
    /// Scale θ by `1 − lr·weight_decay` (AdamW-style) instead of adding an L2 term (default false).
    pub decoupled_weight_decay: bool,
    /// Maximize the objective instead of minimizing it: the gradient is negated (default false).
    pub maximize: bool,
}

impl Default for RAdam {
    fn default() -> Self {
        RAdam { lr: 1e-3, betas: (0.9, 0.999), eps: 1e-8, weight_decay: 0.0, decoupled_weight_decay: false, maximize: false }
    }
}

impl RAdam {
    /// Checks every option; see [`Adam`](super::adam::Adam)'s **Errors** section.
    pub fn validate(&self) -> Result<()> {
        check_adam_like(self.lr, self.betas, self.eps, self.weight_decay)
    }

    /// (c_plain, c_rect) without lr.
    fn factors(&self, t: u32) -> (f64, f64) {
        let (b1, b2) = self.betas;
        let bc1 = 1.0 - b1.powi(t as i32);
        let bc2 = 1.0 - b2.powi(t as i32);
        let rho_inf = 2.0 / (1.0 - b2) - 1.0;
        let rho_t = rho_inf - 2.0 * t as f64 * b2.powi(t as i32) / bc2;
        if rho_t > 5.0 {
            let rect = ((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t)).sqrt();
            (0.0, rect * bc2.sqrt() / bc1)
        } else {
            (1.0 / bc1, 0.0)
        }
    }
}

crate::coefficients! {
    /// RAdam's scalars: one of `c_plain`, `c_rect` is zero each step.
    pub struct RAdamCoeffs { lr, weight_decay, beta1, beta2, one_minus_beta1, one_minus_beta2, eps, c_plain, c_rect, decay }
    at_step(c, f) { c_plain = c.lr * f.x, c_rect = c.lr * f.y }
}

impl RuleConfig for RAdam {
    const PYTORCH_NAME: &'static str = "radam";
    type Coeffs = RAdamCoeffs;

    fn rule(&self) -> Rule {
        Rule::RAdam
    }

    fn validate(&self) -> Result<()> {
        RAdam::validate(self)
    }

    fn lr_mut(&mut self) -> &mut f64 {
        &mut self.lr
    }

    fn weight_decay_mut(&mut self) -> Option<&mut f64> {
        Some(&mut self.weight_decay)
    }

    fn state(&self) -> StateLayout {
        StateLayout::new(&[Some(Slot::signed("exp_avg")), Some(Slot::second_moment("exp_avg_sq")), None])
    }

    fn flags(&self) -> u32 {
        bit(self.maximize, MAXIMIZE) | bit(self.decoupled_weight_decay, DECOUPLED)
    }

    fn coeffs(&self, t: u32) -> RAdamCoeffs {
        let (plain, rect) = self.factors(t);
        let (b1, b2) = self.betas;
        RAdamCoeffs {
            lr: self.lr,
            weight_decay: self.weight_decay,
            beta1: b1,
            beta2: b2,
            one_minus_beta1: 1.0 - b1,
            one_minus_beta2: 1.0 - b2,
            eps: self.eps,
            c_plain: self.lr * plain,
            c_rect: self.lr * rect,
            decay: 1.0 - self.lr * self.weight_decay,
        }
    }

    fn step_factors(&self, t: u32) -> [f64; 4] {
        let (plain, rect) = self.factors(t);
        [plain, rect, 0.0, 0.0]
    }

    fn reference_step(&self, t: u32, p: &mut [f64], g: &[f64], state: &mut RefState) {
        let (b1, b2) = self.betas;
        let (bc1, bc2) = (1.0 - b1.powi(t as i32), 1.0 - b2.powi(t as i32));
        let rho_inf = 2.0 / (1.0 - b2) - 1.0;
        let rho_t = rho_inf - 2.0 * t as f64 * b2.powi(t as i32) / bc2;
        let [m, v, ..] = &mut state.slots;
        for i in 0..p.len() {
            let d = decayed_grad(&mut p[i], g[i], self.maximize, self.lr, self.weight_decay, self.decoupled_weight_decay);
            m[i] += (1.0 - b1) * (d - m[i]);
            v[i] = b2 * v[i] + (1.0 - b2) * d * d;
            let corrected = m[i] / bc1;
            if rho_t > 5.0 {
                let rect = ((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t)).sqrt();
                let adaptive = bc2.sqrt() / (v[i].sqrt() + self.eps);
                p[i] -= corrected * self.lr * adaptive * rect;
            } else {
                p[i] -= corrected * self.lr;
            }
        }
    }

    fn tolerance_k(&self) -> f64 {
        use budget::*;
        let g = grad(self.weight_decay != 0.0 && !self.decoupled_weight_decay);
        let rect = quotient(ROUNDED, sum(root(ema(product(g, g))), ROUNDED));
        apply(product(ema(g), sum(ROUNDED, rect)))
    }

    fn cases() -> Vec<(&'static str, Self)> {
        vec![
            ("radam", RAdam::default()),
            ("radam decoupled wd maximize", RAdam { weight_decay: 0.1, decoupled_weight_decay: true, maximize: true, betas: (0.9, 0.99), ..RAdam::default() }),
        ]
    }
}
