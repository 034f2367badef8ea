//! Schedule-free AdamW (Defazio et al., 2024), as
//! `schedulefree.AdamWScheduleFree` (package version 1.4.1).

use serde::{Deserialize, Serialize};

use super::pieces::{budget, check_adam_like, check_finite_nonneg};
use super::{RefState, Rule, RuleConfig, Slot, StateLayout};
use crate::error::{OptimError, Result};

/// Schedule-free AdamW, `schedulefree.AdamWScheduleFree`: no learning-rate
/// schedule; the params in train mode are y, an interpolation between the
/// base iterate z and the average x.
///
/// ```text
/// k = t − 1;  sched = min(1, (k + 1)/warmup_steps)     (1 without warmup)
/// lr_t = lr·sched·√(1 − β₂ᵗ);  lr_max ← max(lr_max, lr_t)
/// weight = tʳ·lr_maxᵂ (W = weight_lr_power);  weight_sum ← weight_sum + weight
/// ckp1 = weight/weight_sum                       (host, f64, carried across steps)
/// v ← β₂·v + (1 − β₂)·g²                         exp_avg_sq
/// u = g/(√v + eps) + weight_decay·y
/// y ← lerp(y, z, ckp1);  y ← y + lr_t·(β₁·(1 − ckp1) − 1)·u
/// z ← z − lr_t·u                                 z (a copy of the params at the first step)
/// eval():  θ ← lerp(θ, z, 1 − 1/β₁)  (y to x);  train():  θ ← lerp(θ, z, 1 − β₁)  (x to y)
/// ```
///
/// Defaults: `lr = 0.0025`, `betas = (0.9, 0.999)`, `eps = 1e-8`,
/// `weight_decay = 0`, `warmup_steps = 0`, `r = 0`, `weight_lr_power = 2`.
/// State: `z`, `exp_avg_sq`; the group's `weight_sum`, `lr_max` (host
/// scalars, in checkpoints with the mode, as in the package's
/// `param_groups`).
///
/// [`Optimizer::eval`](crate::Optimizer::eval) and
/// [`Optimizer::train`](crate::Optimizer::train) switch every tensor in one
/// pass recorded into the caller's encoder; a step in eval mode is
/// [`OptimError::NotInTrainMode`].
///
/// **Differences from the package:** the step count is shared by all
/// tensors (see `docs/semantics.md`); z is also set to the params when the
/// optimizer is built (the package creates it at a tensor's first step,
/// which the engine also does, at step 1), so a tensor first stepped later
/// starts from the params it was built with. The state is f32 (z is an
/// iterate; bf16 or 8-bit z is refused), and the step count stays on the
/// host: a GradScaler or `skip_nonfinite` is refused, since the weights of
/// every later step depend on which steps ran.
///
/// **Errors.** As [`AdamW`](super::adamw::AdamW), plus `r`,
/// `weight_lr_power` finite and ≥ 0, and `betas.0 > 0` (`eval()` divides
/// by it).
///
/// **Tolerance:** v (an EMA of g²: 5), `√v + eps` (12.5), `g/…` (17.5),
/// the decay term at y (18.5), scaled by the host's lr (20.5); the lerp
/// toward z (a difference, a scaled product, a sum: 3) and the final sum
/// (21.5), then the last rounding: k = 22.5.
///
/// ```
/// assert_eq!(wgpu_optim::AdamWScheduleFree::default().lr, 0.0025);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamWScheduleFree {
    /// Learning rate (default 0.0025).
    pub lr: f64,
    /// (β₁, β₂): the interpolation between z and x, and the EMA of g² (default (0.9, 0.999)).
    pub betas: (f64, f64),
    /// Term added to the denominator (default 1e-8).
    pub eps: f64,
    /// Weight decay, evaluated at y (default 0).
    pub weight_decay: f64,
    /// Linear warmup of the lr over this many steps (default 0).
    pub warmup_steps: u32,
    /// Polynomial weighting tʳ of the average (default 0).
    pub r: f64,
    /// The average weights lr_max to this power (default 2).
    pub weight_lr_power: f64,
}

impl Default for AdamWScheduleFree {
    fn default() -> Self {
        AdamWScheduleFree { lr: 0.0025, betas: (0.9, 0.999), eps: 1e-8, weight_decay: 0.0, warmup_steps: 0, r: 0.0, weight_lr_power: 2.0 }
    }
}

impl AdamWScheduleFree {
    /// Checks every option; see the type's **Errors** section.
    pub fn validate(&self) -> Result<()> {
        check_adam_like(self.lr, self.betas, self.eps, self.weight_decay)?;
        check_finite_nonneg("r", self.r)?;
        check_finite_nonneg("weight_lr_power", self.weight_lr_power)?;
        if self.betas.0 == 0.0 {
            return Err(OptimError::InvalidHyperparameter { name: "betas.0", value: 0.0, requirement: "must be > 0 (eval() interpolates with 1 − 1/β₁)" });
        }
        Ok(())
    }

    /// The scheduled lr of step `t`: warmup and `√(1 − β₂ᵗ)`.
    fn lr_at(&self, t: u32) -> f64 {
        let sched = if t <= self.warmup_steps { t as f64 / self.warmup_steps as f64 } else { 1.0 };
        self.lr * sched * (1.0 - self.betas.1.powi(t as i32)).sqrt()
    }
}

crate::coefficients! {
    /// Schedule-free's scalars of one step: `lr` is the scheduled `lr_t`,
    /// `y_lr = lr_t·(β₁·(1 − ckp1) − 1)`. A mode switch uses only `ckp1`,
    /// as the interpolation weight.
    pub struct ScheduleFreeCoeffs { lr, beta2, one_minus_beta2, eps, weight_decay, ckp1, y_lr }
}

/// The host scalars, by the package's names: `weight_sum`, `lr_max`.
const HOST: [(&str, f64); 2] = [("weight_sum", 0.0), ("lr_max", -1.0)];

impl RuleConfig for AdamWScheduleFree {
    /// Not a `torch.optim` class: the rule's own name, as `run` and the
    /// registry's other lookups take it.
    const PYTORCH_NAME: &'static str = "adamw_schedulefree";
    type Coeffs = ScheduleFreeCoeffs;

    fn rule(&self) -> Rule {
        Rule::AdamWScheduleFree
    }

    fn validate(&self) -> Result<()> {
        AdamWScheduleFree::validate(self)
    }

    fn lr_mut(&mut self) -> &mut f64 {
        &mut self.lr
    }

    fn weight_decay_mut(&mut self) -> Option<&mut f64> {
        Some(&mut self.weight_decay)
    }

    fn state(&self) -> StateLayout {
        StateLayout::new(&[Some(Slot::param_copy("z")), Some(Slot::second_moment("exp_avg_sq"))])
    }

    fn flags(&self) -> u32 {
        0
    }

    fn host_scalars(&self) -> &'static [(&'static str, f64)] {
        &HOST
    }

    fn advance(&self, t: u32, host: &mut [f64]) -> ScheduleFreeCoeffs {
        let lr = self.lr_at(t);
        host[1] = host[1].max(lr);
        let weight = (t as f64).powf(self.r) * host[1].powf(self.weight_lr_power);
        host[0] += weight;
        let ckp1 = if host[0] == 0.0 { 0.0 } else { weight / host[0] };
        let (b1, b2) = self.betas;
        ScheduleFreeCoeffs { lr, beta2: b2, one_minus_beta2: 1.0 - b2, eps: self.eps, weight_decay: self.weight_decay, ckp1, y_lr: lr * (b1 * (1.0 - ckp1) - 1.0) }
    }

    /// Step `t`'s scalars with these options at every step since the first.
    fn coeffs(&self, t: u32) -> ScheduleFreeCoeffs {
        let mut host = HOST.map(|(_, v)| v);
        for k in 1..t {
            self.advance(k, &mut host);
        }
        self.advance(t.max(1), &mut host)
    }

    fn mode_switch(&self, to_eval: bool) -> Option<ScheduleFreeCoeffs> {
        let b1 = self.betas.0;
        Some(ScheduleFreeCoeffs { ckp1: if to_eval { 1.0 - 1.0 / b1 } else { 1.0 - b1 }, ..Default::default() })
    }

    /// `eval()`: `p.lerp_(z, 1 − 1/β₁)`; `train()`: `p.lerp_(z, 1 − β₁)`.
    fn reference_mode_switch(&self, to_eval: bool, p: &mut [f64], state: &RefState) {
        let b1 = self.betas.0;
        let w = if to_eval { 1.0 - 1.0 / b1 } else { 1.0 - b1 };
        p.iter_mut().zip(&state.slots[0]).for_each(|(p, z)| *p += w * (z - *p));
    }

    /// `AdamWScheduleFree.step` (its single-tensor branch), its group
    /// scalars replayed from step 1 with these options.
    fn reference_step(&self, t: u32, p: &mut [f64], g: &[f64], state: &mut RefState) {
        let (b1, b2) = self.betas;
        let (mut lr_max, mut weight_sum, mut weight, mut lr) = (-1.0f64, 0.0, 0.0, 0.0);
        for k in 0..t {
            let sched = if k < self.warmup_steps { (k + 1) as f64 / self.warmup_steps as f64 } else { 1.0 };
            lr = self.lr * sched * (1.0 - b2.powi(k as i32 + 1)).sqrt();
            lr_max = lr_max.max(lr);
            weight = ((k + 1) as f64).powf(self.r) * lr_max.powf(self.weight_lr_power);
            weight_sum += weight;
        }
        let ckp1 = if weight_sum == 0.0 { 0.0 } else { weight / weight_sum };
        let [z, v, ..] = &mut state.slots;
        if t == 1 {
            z.copy_from_slice(p);
        }
        for i in 0..p.len() {
            v[i] = v[i] * b2 + (1.0 - b2) * g[i] * g[i];
            let u = g[i] / (v[i].sqrt() + self.eps) + self.weight_decay * p[i];
            p[i] += ckp1 * (z[i] - p[i]);
            p[i] += lr * (b1 * (1.0 - ckp1) - 1.0) * u;
            z[i] -= lr * u;
        }
    }

    fn tolerance_k(&self) -> f64 {
        use budget::*;
        let denom = sum(root(ema(product(0.0, 0.0))), ROUNDED);
        let u = sum(quotient(0.0, denom), scaled(0.0));
        apply(sum(scaled(u), 3.0 * ROUNDED))
    }

    fn cases() -> Vec<(&'static str, Self)> {
        vec![
            ("adamw_schedulefree", AdamWScheduleFree::default()),
            ("adamw_schedulefree warmup wd r", AdamWScheduleFree { warmup_steps: 5, weight_decay: 0.05, r: 0.5, weight_lr_power: 1.0, betas: (0.95, 0.99), ..AdamWScheduleFree::default() }),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The carried scalars follow the package's recurrence when the lr
    /// changes between steps (a scheduler), which a replay from the
    /// current options alone cannot: lr_max keeps the largest lr seen.
    #[test]
    fn host_scalars_follow_a_changing_lr() {
        let mut c = AdamWScheduleFree { warmup_steps: 2, r: 1.0, ..Default::default() };
        let mut host = HOST.map(|(_, v)| v);
        let (mut lr_max, mut weight_sum, mut last) = (-1.0f64, 0.0, 0.0);
        for (k, lr) in [0.01, 0.02, 0.005, 0.001].into_iter().enumerate() {
            c.lr = lr;
            let got = c.advance(k as u32 + 1, &mut host);
            let sched = ((k + 1) as f64 / 2.0).min(1.0);
            let lr_t = lr * sched * (1.0 - 0.999f64.powi(k as i32 + 1)).sqrt();
            lr_max = lr_max.max(lr_t);
            let weight = (k + 1) as f64 * lr_max * lr_max;
            weight_sum += weight;
            assert_eq!((got.lr, got.ckp1, host), (lr_t, weight / weight_sum, [weight_sum, lr_max]));
            last = got.ckp1;
        }
        assert_ne!(c.coeffs(4).ckp1, last, "a replay of the last options alone differs once the lr fell");
    }
}
