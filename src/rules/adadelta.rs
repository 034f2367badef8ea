//! Adadelta: `torch.optim.Adadelta`.

use serde::{Deserialize, Serialize};

use super::flags::{bit, MAXIMIZE};
use super::pieces::{budget, check_finite_nonneg, check_positive, check_unit_closed, effective_grad};
use super::{RefState, Rule, RuleConfig, Slot, StateLayout};
use super::unfused::{Buf::*, Instr, Op::*};
use crate::error::Result;

/// Adadelta, `torch.optim.Adadelta`.
///
/// ```text
/// g ← ∇f(θ)  (negated if maximize);  g ← g + weight_decay·θ
/// v ← rho·v + (1 − rho)·g²
/// Δ ← √(u + eps) / √(v + eps) · g
/// u ← rho·u + (1 − rho)·Δ²
/// θ ← θ − lr·Δ
/// ```
///
/// Defaults: `lr = 1.0`, `rho = 0.9`, `eps = 1e-6`, `weight_decay = 0`,
/// `maximize = false`. State: `square_avg` (v), `acc_delta` (u).
///
/// **Textbook variant.** Zeiler's Adadelta has no learning rate: it is
/// `lr = 1.0`, PyTorch's default. eps is inside the square roots in both.
///
/// **Errors.** `lr`, `weight_decay` finite and ≥ 0; `rho` in [0, 1];
/// `eps` finite and > 0.
///
/// **Tolerance** (`k` in [`budget`] units from WGSL's accuracy): `v` (an
/// EMA of g²: 2g + 5), `√(v + eps)` ((v + 1)/2 + 9), `√(u + eps)` (9.5),
/// the quotient (+5) times g (+g + 1): Δ is 30.5 without weight decay, 36.5
/// with; then `u ← ρu + (1 − ρ)Δ²` doubles it (2Δ + 5): 66 and 78, the
/// largest of the rule's quantities. Measured worst on llvmpipe: 4.66.
///
/// ```
/// let a = wgpu_optim::Adadelta { rho: 1.5, ..Default::default() };
/// assert!(a.validate().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Adadelta {
    /// Learning rate: a factor on the update Δ (default 1.0).
    pub lr: f64,
    /// Coefficient of the running averages of g² and Δ² (default 0.9).
    pub rho: f64,
    /// Term added inside both square roots for numerical stability (default 1e-6).
    pub eps: f64,
    /// Weight decay: an L2 penalty `weight_decay·θ` added to the gradient (default 0).
    pub weight_decay: f64,
    /// Maximize the objective instead of minimizing it: the gradient is negated (default false).
    pub maximize: bool,
}

impl Default for Adadelta {
    fn default() -> Self {
        Adadelta { lr: 1.0, rho: 0.9, eps: 1e-6, weight_decay: 0.0, maximize: false }
    }
}

impl Adadelta {
    /// Checks every option; see the type's **Errors** section.
    pub fn validate(&self) -> Result<()> {
        check_finite_nonneg("lr", self.lr)?;
        check_unit_closed("rho", self.rho)?;
        check_positive("eps", self.eps)?;
        check_finite_nonneg("weight_decay", self.weight_decay)
    }
}

crate::coefficients! {
    /// Adadelta's scalars.
    pub struct AdadeltaCoeffs { lr, weight_decay, rho, one_minus_rho, eps }
}

impl RuleConfig for Adadelta {
    const PYTORCH_NAME: &'static str = "adadelta";
    type Coeffs = AdadeltaCoeffs;

    fn rule(&self) -> Rule {
        Rule::Adadelta
    }

    fn validate(&self) -> Result<()> {
        Adadelta::validate(self)
    }

    fn lr_mut(&mut self) -> &mut f64 {
        &mut self.lr
    }

    fn weight_decay_mut(&mut self) -> Option<&mut f64> {
        Some(&mut self.weight_decay)
    }

    fn state(&self) -> StateLayout {
        StateLayout::new(&[Some(Slot::second_moment("square_avg")), Some(Slot::second_moment("acc_delta")), None])
    }

    fn flags(&self) -> u32 {
        bit(self.maximize, MAXIMIZE)
    }

    fn coeffs(&self, _t: u32) -> AdadeltaCoeffs {
        AdadeltaCoeffs { lr: self.lr, weight_decay: self.weight_decay, rho: self.rho, one_minus_rho: 1.0 - self.rho, eps: self.eps }
    }

    fn reference_step(&self, _t: u32, p: &mut [f64], g: &[f64], state: &mut RefState) {
        let [sq, acc, ..] = &mut state.slots;
        for i in 0..p.len() {
            let d = effective_grad(g[i], p[i], self.maximize, self.weight_decay);
            sq[i] = self.rho * sq[i] + (1.0 - self.rho) * d * d;
            let delta = (acc[i] + self.eps).sqrt() / (sq[i] + self.eps).sqrt() * d;
            acc[i] = self.rho * acc[i] + (1.0 - self.rho) * delta * delta;
            p[i] -= self.lr * delta;
        }
    }

    fn tolerance_k(&self) -> f64 {
        use budget::*;
        let g = grad(self.weight_decay != 0.0);
        let v = ema(product(g, g));
        let std = root(sum(v, ROUNDED));
        let delta = product(quotient(root(sum(0.0, ROUNDED)), std), g);
        let acc = ema(product(delta, delta));
        acc.max(apply(scaled(delta)))
    }

    fn cases() -> Vec<(&'static str, Self)> {
        vec![("adadelta", Adadelta::default()), ("adadelta rho wd maximize", Adadelta { rho: 0.95, weight_decay: 0.1, maximize: true, ..Adadelta::default() })]
    }

    /// `_single_tensor_adadelta`: `square_avg.mul_(rho).addcmul_(grad, grad, value=1−rho)`,
    /// `std = square_avg.add(eps).sqrt_()`, `delta = acc_delta.add(eps).sqrt_().div_(std).mul_(grad)`,
    /// `acc_delta.mul_(rho).addcmul_(delta, delta, value=1−rho)`, `param.add_(delta, alpha=−lr)`.
    fn unfused(&self, _t: u32) -> Option<Vec<Instr>> {
        if self.maximize {
            return None;
        }
        let (mut out, g) = super::unfused::l2_grad(self.weight_decay);
        out.push((MulScalar, State0, Unused, Unused, self.rho));
        out.push((Addcmul, State0, g, g, 1.0 - self.rho));
        out.push((AddScalarOf, Tmp0, State0, Unused, self.eps));
        out.push((Sqrt, Tmp0, Unused, Unused, 0.0));
        out.push((AddScalarOf, Tmp1, State1, Unused, self.eps));
        out.push((Sqrt, Tmp1, Unused, Unused, 0.0));
        out.push((Div, Tmp1, Tmp0, Unused, 0.0));
        out.push((Mul, Tmp1, g, Unused, 0.0));
        out.push((MulScalar, State1, Unused, Unused, self.rho));
        out.push((Addcmul, State1, Tmp1, Tmp1, 1.0 - self.rho));
        out.push((AddScaled, Param, Tmp1, Unused, -self.lr));
        Some(out)
    }
}
