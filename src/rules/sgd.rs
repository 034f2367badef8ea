//! SGD, with and without (Nesterov) momentum: `torch.optim.SGD`.

use serde::{Deserialize, Serialize};

use super::flags::{bit, MAXIMIZE};
use super::pieces::{budget, check_finite_nonneg, check_unit_closed, effective_grad};
use super::{RefState, Rule, RuleConfig, Slot, StateLayout};
use super::unfused::{Buf::*, Instr, Op::*};
use crate::error::{OptimError, Result};

/// Stochastic gradient descent, `torch.optim.SGD`.
///
/// ```text
/// g ← ∇f(θ)            (−∇f(θ) if maximize)
/// g ← g + weight_decay·θ                       if weight_decay ≠ 0
/// if momentum ≠ 0:
///     b ← g                                    at step 1
///     b ← momentum·b + (1 − dampening)·g       afterwards
///     g ← g + momentum·b   if nesterov, else g ← b
/// θ ← θ − lr·g
/// ```
///
/// Defaults: `lr = 1e-3`, `momentum = 0`, `dampening = 0`,
/// `weight_decay = 0`, `nesterov = false`, `maximize = false`.
/// State: `momentum_buffer` (with momentum). The kernel is
/// [`Rule::Sgd`], [`Rule::Momentum`] or [`Rule::Nag`] depending on
/// `momentum` and `nesterov` (`shaders/rules/{sgd,momentum,nag}.wgsl`).
///
/// **Textbook variants.**
/// * Momentum as an EMA, `b ← β·b + (1−β)·g`, is `dampening = β`:
///   see [`Sgd::ema_momentum`]. As in PyTorch, the first step still sets
///   `b ← g` (the textbook EMA started at zero would give `(1−β)·g`).
/// * Sutskever's NAG, `v ← μ·v − lr·∇f(θ + μ·v)`, `θ ← θ + v`, evaluates the
///   gradient at the look-ahead point. PyTorch's `nesterov = true` stores the
///   look-ahead point itself: with `φ = θ + μ·v` and `b = −v/lr` (and
///   `dampening = 0`) both produce identical iterates.
///   [`Sgd::textbook_nag_point`] converts back.
///
/// **Errors.** `lr`, `momentum`, `weight_decay` must be finite and ≥ 0,
/// `dampening` in [0, 1]; `nesterov` needs `momentum > 0` and
/// `dampening = 0` (as in PyTorch).
///
/// **Tolerance** (`k`, derived in [`budget`] units from WGSL's accuracy):
/// the L2 term `g + wd·θ` (3), `lr·g` (2), `θ − …` (1): 3 without weight
/// decay, 6 with; momentum adds the buffer `μ·b + (1−d)·g` (an EMA, 4) and
/// Nesterov `g + μ·b` (3): 10 and 13. Measured worst on llvmpipe: 0.66
/// (SGD), 1.74 (momentum), 1.34 (NAG).
///
/// ```
/// use wgpu_optim::Sgd;
/// let nag = Sgd { lr: 0.1, momentum: 0.9, nesterov: true, ..Sgd::default() };
/// assert!(nag.validate().is_ok());
/// assert!(Sgd { nesterov: true, ..Sgd::default() }.validate().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sgd {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Momentum factor; 0 is plain SGD (default 0).
    pub momentum: f64,
    /// Dampening for momentum: the gradient enters the buffer times `1 − dampening` (default 0).
    pub dampening: f64,
    /// Weight decay: an L2 penalty `weight_decay·θ` added to the gradient (default 0).
    pub weight_decay: f64,
    /// Use Nesterov momentum (default false).
    pub nesterov: bool,
    /// Maximize the objective instead of minimizing it: the gradient is negated (default false).
    pub maximize: bool,
}

impl Default for Sgd {
    fn default() -> Self {
        Sgd { lr: 1e-3, momentum: 0.0, dampening: 0.0, weight_decay: 0.0, nesterov: false, maximize: false }
    }
}

impl Sgd {
    /// Momentum written as an exponential moving average, `b ← β·b + (1−β)·g`
    /// (i.e. `momentum = dampening = beta`).
    pub fn ema_momentum(lr: f64, beta: f64) -> Self {
        Sgd { lr, momentum: beta, dampening: beta, ..Sgd::default() }
    }

    /// Converts PyTorch's Nesterov iterate `p` and momentum buffer `b` into
    /// the textbook (Sutskever) parameter `θ = p − μ·v = p + lr·μ·b`, where
    /// the textbook velocity is `v = −lr·b`.
    pub fn textbook_nag_point(&self, p: f64, b: f64) -> f64 {
        p + self.lr * self.momentum * b
    }

    /// Checks every option; see the type's **Errors** section.
    pub fn validate(&self) -> Result<()> {
        check_finite_nonneg("lr", self.lr)?;
        check_finite_nonneg("momentum", self.momentum)?;
        check_unit_closed("dampening", self.dampening)?;
        check_finite_nonneg("weight_decay", self.weight_decay)?;
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(OptimError::InvalidOptions("nesterov momentum requires a momentum and zero dampening"));
        }
        Ok(())
    }
}

crate::coefficients! {
    /// SGD's scalars (all three kernels).
    pub struct SgdCoeffs { lr, weight_decay, momentum, one_minus_dampening }
}

impl RuleConfig for Sgd {
    const PYTORCH_NAME: &'static str = "sgd";
    type Coeffs = SgdCoeffs;

    fn rule(&self) -> Rule {
        if self.nesterov {
            Rule::Nag
        } else if self.momentum != 0.0 {
            Rule::Momentum
        } else {
            Rule::Sgd
        }
    }

    fn validate(&self) -> Result<()> {
        Sgd::validate(self)
    }

    fn lr_mut(&mut self) -> &mut f64 {
        &mut self.lr
    }

    fn weight_decay_mut(&mut self) -> Option<&mut f64> {
        Some(&mut self.weight_decay)
    }

    fn state(&self) -> StateLayout {
        if self.momentum != 0.0 { StateLayout::new(&[Some(Slot::signed("momentum_buffer")), None, None]) } else { StateLayout::NONE }
    }

    fn flags(&self) -> u32 {
        bit(self.maximize, MAXIMIZE)
    }

    fn coeffs(&self, _t: u32) -> SgdCoeffs {
        SgdCoeffs { lr: self.lr, weight_decay: self.weight_decay, momentum: self.momentum, one_minus_dampening: 1.0 - self.dampening }
    }

    fn reference_step(&self, t: u32, p: &mut [f64], g: &[f64], state: &mut RefState) {
        let buf = &mut state.slots[0];
        for i in 0..p.len() {
            let mut d = effective_grad(g[i], p[i], self.maximize, self.weight_decay);
            if self.momentum != 0.0 {
                let b = if t == 1 { d } else { self.momentum * buf[i] + (1.0 - self.dampening) * d };
                buf[i] = b;
                d = if self.nesterov { d + self.momentum * b } else { b };
            }
            p[i] -= self.lr * d;
        }
    }

    fn tolerance_k(&self) -> f64 {
        let g = budget::grad(self.weight_decay != 0.0);
        let d = match (self.momentum != 0.0, self.nesterov) {
            (false, _) => g,
            (true, false) => budget::ema(g),
            (true, true) => budget::sum(g, budget::scaled(budget::ema(g))),
        };
        budget::apply(budget::scaled(d))
    }

    fn cases() -> Vec<(&'static str, Self)> {
        vec![
            ("sgd", Sgd { lr: 0.01, ..Sgd::default() }),
            ("sgd wd maximize", Sgd { lr: 0.01, weight_decay: 0.1, maximize: true, ..Sgd::default() }),
            ("momentum", Sgd { lr: 0.01, momentum: 0.9, ..Sgd::default() }),
            ("momentum dampening wd", Sgd { lr: 0.01, momentum: 0.8, dampening: 0.5, weight_decay: 0.05, ..Sgd::default() }),
            ("momentum ema", Sgd::ema_momentum(0.05, 0.9)),
            ("nag", Sgd { lr: 0.01, momentum: 0.9, nesterov: true, ..Sgd::default() }),
            ("nag wd maximize", Sgd { lr: 0.01, momentum: 0.7, nesterov: true, weight_decay: 0.1, maximize: true, ..Sgd::default() }),
        ]
    }

    /// `_single_tensor_sgd`: `buf.mul_(momentum).add_(grad, alpha=1−dampening)`,
    /// `grad.add(buf, alpha=momentum)` for Nesterov, `param.add_(grad, alpha=−lr)`.
    fn unfused(&self, t: u32) -> Option<Vec<Instr>> {
        if self.maximize {
            return None;
        }
        let (mut out, g) = super::unfused::l2_grad(self.weight_decay);
        if self.momentum == 0.0 {
            out.push((AddScaled, Param, g, Unused, -self.lr));
            return Some(out);
        }
        if t == 1 {
            out.push((AddScalarOf, State0, g, Unused, 0.0)); // buf = clone(grad)
        } else {
            out.push((MulScalar, State0, Unused, Unused, self.momentum));
            out.push((AddScaled, State0, g, Unused, 1.0 - self.dampening));
        }
        if self.nesterov {
            out.push((AddOf, Tmp0, g, State0, self.momentum)); // grad = grad.add(buf, alpha=momentum)
            out.push((AddScaled, Param, Tmp0, Unused, -self.lr));
        } else {
            out.push((AddScaled, Param, State0, Unused, -self.lr));
        }
        Some(out)
    }
}
