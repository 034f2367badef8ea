//! Rprop: `torch.optim.Rprop`.

use serde::{Deserialize, Serialize};

use super::flags::{bit, MAXIMIZE};
use super::pieces::{budget, check_finite_nonneg, effective_grad};
use super::{RefState, Rule, RuleConfig, Slot, StateLayout};
use crate::error::{OptimError, Result};

/// Resilient backpropagation, `torch.optim.Rprop`.
///
/// ```text
/// g ← ∇ (negated if maximize)
/// f = etas.1 if g·prev > 0,  etas.0 if g·prev < 0,  1 otherwise
/// step_size ← min(max(step_size·f, step_sizes.0), step_sizes.1)
/// g ← 0 where g·prev < 0
/// θ ← θ − step_size·sign(g)
/// prev ← g
/// ```
///
/// Defaults: `lr = 1e-2`, `etas = (0.5, 1.2)`, `step_sizes = (1e-6, 50)`,
/// `maximize = false`. State: `prev` (starts at 0) and `step_size` (starts
/// at `lr`, so `lr` only matters before the first step, as in PyTorch, where
/// it is read when the state is created). The clamp applies every step, as
/// in PyTorch's code (its docs show none for an unchanged sign).
///
/// **Errors.** `lr` finite and ≥ 0, `0 < etas.0 < 1 < etas.1` (as PyTorch);
/// `step_sizes` finite with `0 ≤ step_sizes.0 ≤ step_sizes.1` (PyTorch
/// accepts any pair).
///
/// **Tolerance** (`k` in [`budget`] units): every sign is exact (`prev` is
/// the grad itself), so `step_size` carries one rounding per step of its
/// own value (the scale sums its trajectory): 1; θ moves by ± it (+1): 2.
///
/// ```
/// let r = wgpu_optim::Rprop { etas: (1.2, 0.5), ..Default::default() };
/// assert!(r.validate().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rprop {
    /// Learning rate: the initial per-element step size (default 1e-2).
    pub lr: f64,
    /// Multiplicative decrease and increase factors (etaminus, etaplus) (default (0.5, 1.2)).
    pub etas: (f64, f64),
    /// Minimal and maximal step sizes (default (1e-6, 50)).
    pub step_sizes: (f64, f64),
    /// Maximize the objective instead of minimizing it: the gradient is negated (default false).
    pub maximize: bool,
}

impl Default for Rprop {
    fn default() -> Self {
        Rprop { lr: 1e-2, etas: (0.5, 1.2), step_sizes: (1e-6, 50.0), maximize: false }
    }
}

impl Rprop {
    /// Checks every option; see the type's **Errors** section.
    pub fn validate(&self) -> Result<()> {
        check_finite_nonneg("lr", self.lr)?;
        let (minus, plus) = self.etas;
        if !(minus > 0.0 && minus < 1.0) {
            return Err(OptimError::InvalidHyperparameter { name: "etas.0", value: minus, requirement: "must be in (0, 1)" });
        }
        if !(plus > 1.0 && plus.is_finite()) {
            return Err(OptimError::InvalidHyperparameter { name: "etas.1", value: plus, requirement: "must be finite and > 1" });
        }
        let (lo, hi) = self.step_sizes;
        check_finite_nonneg("step_sizes.0", lo)?;
        check_finite_nonneg("step_sizes.1", hi)?;
        if lo > hi {
            return Err(OptimError::InvalidHyperparameter { name: "step_sizes.1", value: hi, requirement: "must be >= step_sizes.0" });
        }
        Ok(())
    }
}

crate::coefficients! {
    /// Rprop's scalars (none depends on the step).
    pub struct RpropCoeffs { eta_minus, eta_plus, step_size_min, step_size_max }
}

impl RuleConfig for Rprop {
    const PYTORCH_NAME: &'static str = "rprop";
    type Coeffs = RpropCoeffs;

    fn rule(&self) -> Rule {
        Rule::Rprop
    }

    fn validate(&self) -> Result<()> {
        Rprop::validate(self)
    }

    fn lr_mut(&mut self) -> &mut f64 {
        &mut self.lr
    }

    fn weight_decay_mut(&mut self) -> Option<&mut f64> {
        None
    }

    fn state(&self) -> StateLayout {
        StateLayout::new(&[Some(Slot::signed("prev")), Some(Slot::unsigned("step_size")), None])
    }

    fn initial_state(&self, slot: usize) -> f64 {
        if slot == 1 { self.lr as f32 as f64 } else { 0.0 }
    }

    fn flags(&self) -> u32 {
        bit(self.maximize, MAXIMIZE)
    }

    fn coeffs(&self, _t: u32) -> RpropCoeffs {
        RpropCoeffs { eta_minus: self.etas.0, eta_plus: self.etas.1, step_size_min: self.step_sizes.0, step_size_max: self.step_sizes.1 }
    }

    fn reference_step(&self, _t: u32, p: &mut [f64], g: &[f64], state: &mut RefState) {
        let [prev, step_size, ..] = &mut state.slots;
        let (lo, hi) = (self.step_sizes.0 as f32 as f64, self.step_sizes.1 as f32 as f64);
        for i in 0..p.len() {
            let mut d = effective_grad(g[i], p[i], self.maximize, 0.0);
            let s = d * prev[i];
            let f = if s > 0.0 { self.etas.1 as f32 as f64 } else if s < 0.0 { self.etas.0 as f32 as f64 } else { 1.0 };
            step_size[i] = (step_size[i] * f).max(lo).min(hi);
            if s < 0.0 {
                d = 0.0;
            }
            p[i] -= step_size[i] * d.signum() * (d != 0.0) as u8 as f64;
            prev[i] = d;
        }
    }

    fn tolerance_k(&self) -> f64 {
        use budget::*;
        apply(ROUNDED)
    }

    fn cases() -> Vec<(&'static str, Self)> {
        vec![
            ("rprop", Rprop::default()),
            ("rprop tight clamp maximize", Rprop { lr: 0.05, etas: (0.3, 1.5), step_sizes: (1e-3, 0.2), maximize: true }),
        ]
    }
}
