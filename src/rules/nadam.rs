//! NAdam: `torch.optim.NAdam` (Dozat's Adam with Nesterov momentum).

use serde::{Deserialize, Serialize};

use super::flags::{bit, DECOUPLED, MAXIMIZE};
use super::pieces::{budget, check_adam_like, check_finite_nonneg, decayed_grad};
use super::{RefState, Rule, RuleConfig, Slot, StateLayout};
use crate::error::Result;

/// NAdam, `torch.optim.NAdam` (Dozat's Adam with Nesterov momentum).
///
/// ```text
/// g ← ∇ (negated if maximize) + weight_decay·θ      or, decoupled: θ ← θ·(1 − lr·weight_decay)
/// μₜ = β₁·(1 − ½·0.96^(t·ψ)),  Πₜ = μ₁·…·μₜ           ψ = momentum_decay
/// m ← m + (1 − β₁)·(g − m)                           exp_avg
/// v ← β₂·v + (1 − β₂)·g²                             exp_avg_sq
/// d = √(v/(1 − β₂ᵗ)) + eps
/// θ ← θ − lr·(1 − μₜ)/(1 − Πₜ) · g/d − lr·μₜ₊₁/(1 − Πₜ·μₜ₊₁) · m/d
/// ```
///
/// The two coefficients and `1/(1 − β₂ᵗ)` are computed on the host in f64;
/// Πₜ is kept incrementally (PyTorch keeps it as the state `mu_product`; here
/// it is a function of t, so checkpoints do not store it).
///
/// Defaults: `lr = 2e-3`, `betas = (0.9, 0.999)`, `eps = 1e-8`,
/// `weight_decay = 0`, `momentum_decay = 4e-3`,
/// `decoupled_weight_decay = false`, `maximize = false`.
///
/// **Errors.** As [`Adam`](super::adam::Adam); `momentum_decay` finite and ≥ 0.
///
/// **Tolerance** (`k` in [`budget`] units from WGSL's accuracy): the
/// gradient (0, or 3 with an L2 term), `m` (g + 4), `v` (2g + 5),
/// `d = √(v/(1−β₂ᵗ)) + eps` (v/2 + 11), the two terms `c·x/d` (x + d + 7),
/// and two subtractions: 32.5 with weight decay, 26.5 without. Measured
/// worst on llvmpipe: 1.87.
///
/// ```
/// assert_eq!(wgpu_optim::NAdam::default().momentum_decay, 4e-3);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct NAdam {
    /// Learning rate (default 2e-3).
    pub lr: f64,
    /// Coefficients (β₁, β₂) of the running averages of the gradient and its square (default (0.9, 0.999)).
    pub betas: (f64, f64),
    /// Term added to the denominator for numerical stability (default 1e-8).
    pub eps: f64,
    /// Weight decay: an L2 penalty, or decoupled with `decoupled_weight_decay` (default 0).
    pub weight_decay: f64,
    /// Momentum decay ψ of the schedule `μₜ = β₁·(1 − ½·0.96^(t·ψ))` (default 4e-3).
    pub momentum_decay: f64,
    /// Scale θ by `1 − lr·weight_decay` (AdamW-style) instead of adding an L2 term (default false).
    pub decoupled_weight_decay: bool,
    /// Maximize the objective instead of minimizing it: the gradient is negated (default false).
    pub maximize: bool,
}

impl Default for NAdam {
    fn default() -> Self {
        NAdam { lr: 2e-3, betas: (0.9, 0.999), eps: 1e-8, weight_decay: 0.0, momentum_decay: 4e-3, decoupled_weight_decay: false, maximize: false }
    }
}

impl NAdam {
    /// Checks every option; see the type's **Errors** section.
    pub fn validate(&self) -> Result<()> {
        check_adam_like(self.lr, self.betas, self.eps, self.weight_decay)?;
        check_finite_nonneg("momentum_decay", self.momentum_decay)
    }

    /// μₜ of the momentum schedule.
    fn mu(&self, t: f64) -> f64 {
        self.betas.0 * (1.0 - 0.5 * 0.96f64.powf(t * self.momentum_decay))
    }

    /// Πₜ = μ₁·…·μₜ, in f64. Kept in a per-thread cache so stepping through
    /// t = 1, 2, 3, … costs O(1) per step.
    fn mu_product(&self, t: u32) -> f64 {
        use std::cell::Cell;
        thread_local! {
            static CACHE: Cell<(u64, u64, u32, f64)> = const { Cell::new((0, 0, 0, 1.0)) };
        }
        CACHE.with(|cache| {
            let key = (self.betas.0.to_bits(), self.momentum_decay.to_bits());
            let (b, m, mut at, mut prod) = cache.get();
            if (b, m) != key || at > t {
                (at, prod) = (0, 1.0);
            }
            while at < t {
                at += 1;
                prod *= self.mu(at as f64);
            }
            cache.set((key.0, key.1, at, prod));
            prod
        })
    }

    /// (g coefficient, m coefficient) without lr, and 1/(1 − β₂ᵗ).
    fn factors(&self, t: u32) -> (f64, f64, f64) {
        let tf = t as f64;
        let (mu, mu_next) = (self.mu(tf), self.mu(tf + 1.0));
        let prod = self.mu_product(t);
        ((1.0 - mu) / (1.0 - prod), mu_next / (1.0 - prod * mu_next), 1.0 / (1.0 - self.betas.1.powi(t as i32)))
    }
}

crate::coefficients! {
    /// NAdam's scalars: `c_g = lr·(1 − μₜ)/(1 − Πₜ)`, `c_m = lr·μₜ₊₁/(1 − Πₜμₜ₊₁)`,
    /// `inv_bc2 = 1/(1 − β₂ᵗ)`, `decay = 1 − lr·weight_decay`.
    pub struct NAdamCoeffs { lr, weight_decay, beta1, beta2, one_minus_beta1, one_minus_beta2, eps, c_g, c_m, inv_bc2, decay }
    at_step(c, f) { c_g = c.lr * f.x, c_m = c.lr * f.y, inv_bc2 = f.z }
}

impl RuleConfig for NAdam {
    const PYTORCH_NAME: &'static str = "nadam";
    type Coeffs = NAdamCoeffs;

    fn rule(&self) -> Rule {
        Rule::NAdam
    }

    fn validate(&self) -> Result<()> {
        NAdam::validate(self)
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

    fn coeffs(&self, t: u32) -> NAdamCoeffs {
        let (fg, fm, inv_bc2) = self.factors(t);
        let (b1, b2) = self.betas;
        NAdamCoeffs {
            lr: self.lr,
            weight_decay: self.weight_decay,
            beta1: b1,
            beta2: b2,
            one_minus_beta1: 1.0 - b1,
            one_minus_beta2: 1.0 - b2,
            eps: self.eps,
            c_g: self.lr * fg,
            c_m: self.lr * fm,
            inv_bc2,
            decay: 1.0 - self.lr * self.weight_decay,
        }
    }

    fn step_factors(&self, t: u32) -> [f64; 4] {
        let (fg, fm, inv_bc2) = self.factors(t);
        [fg, fm, inv_bc2, 0.0]
    }

    /// μₜ and Πₜ in f64 straight from their definitions.
    fn reference_step(&self, t: u32, p: &mut [f64], g: &[f64], state: &mut RefState) {
        let (b1, b2) = self.betas;
        let mu = |i: f64| b1 * (1.0 - 0.5 * 0.96f64.powf(i * self.momentum_decay));
        let prod: f64 = (1..=t).map(|i| mu(i as f64)).product();
        let (mu_t, mu_next) = (mu(t as f64), mu(t as f64 + 1.0));
        let bc2 = 1.0 - b2.powi(t as i32);
        let [m, v, ..] = &mut state.slots;
        for i in 0..p.len() {
            let d = decayed_grad(&mut p[i], g[i], self.maximize, self.lr, self.weight_decay, self.decoupled_weight_decay);
            m[i] += (1.0 - b1) * (d - m[i]);
            v[i] = b2 * v[i] + (1.0 - b2) * d * d;
            let denom = (v[i] / bc2).sqrt() + self.eps;
            p[i] -= self.lr * (1.0 - mu_t) / (1.0 - prod) * d / denom;
            p[i] -= self.lr * mu_next / (1.0 - prod * mu_next) * m[i] / denom;
        }
    }

    fn tolerance_k(&self) -> f64 {
        use budget::*;
        let g = grad(self.weight_decay != 0.0 && !self.decoupled_weight_decay);
        let d = sum(root(scaled(ema(product(g, g)))), ROUNDED);
        let (from_g, from_m) = (scaled(quotient(g, d)), scaled(quotient(ema(g), d)));
        apply(apply(from_g.max(from_m)))
    }

    fn cases() -> Vec<(&'static str, Self)> {
        vec![
            ("nadam", NAdam::default()),
            ("nadam wd momentum_decay", NAdam { weight_decay: 0.05, momentum_decay: 0.01, ..NAdam::default() }),
            ("nadam decoupled wd maximize", NAdam { weight_decay: 0.1, decoupled_weight_decay: true, maximize: true, ..NAdam::default() }),
        ]
    }
}
