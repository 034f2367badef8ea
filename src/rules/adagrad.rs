//! Adagrad: `torch.optim.Adagrad`.

use serde::{Deserialize, Serialize};

use super::flags::{bit, EPS_INSIDE_SQRT, MAXIMIZE};
use super::pieces::{budget, check_finite_nonneg, check_positive, effective_grad};
use super::{RefState, Rule, RuleConfig, Slot, StateLayout};
use super::unfused::{Buf::*, Instr, Op::*};
use crate::error::Result;

/// Adagrad, `torch.optim.Adagrad`.
///
/// ```text
/// g ← ∇f(θ)  (negated if maximize);  g ← g + weight_decay·θ
/// clr ← lr / (1 + (t − 1)·lr_decay)
/// sum ← sum + g²                       (sum starts at initial_accumulator_value)
/// θ ← θ − clr · g / (√sum + eps)       PyTorch
/// θ ← θ − clr · g / √(sum + eps)       eps_inside_sqrt = true (textbook)
/// ```
///
/// Defaults: `lr = 1e-2`, `lr_decay = 0`, `weight_decay = 0`,
/// `initial_accumulator_value = 0`, `eps = 1e-10`, `maximize = false`,
/// `eps_inside_sqrt = false`. State: `sum`, which starts at each param
/// group's own `initial_accumulator_value`. `clr` is computed on the host in
/// f64.
///
/// **Errors.** `lr`, `lr_decay`, `weight_decay`, `initial_accumulator_value`
/// finite and ≥ 0; `eps` finite and > 0.
///
/// **Tolerance** (`k` in [`budget`] units from WGSL's accuracy): the
/// gradient (0, or 3 with an L2 term), `sum + g²` (2g + 2), the root and
/// eps (`√s + eps`: s/2 + 10; inside: (s + 1)/2 + 9), the quotient (+5),
/// `clr·q` (+2), `θ − …` (+1): 25 with weight decay, 16 without. Measured
/// worst on llvmpipe: 1.61.
///
/// ```
/// let a = wgpu_optim::Adagrad { eps: 0.0, ..Default::default() };
/// assert!(a.validate().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Adagrad {
    /// Learning rate (default 1e-2).
    pub lr: f64,
    /// Learning-rate decay: step t uses `lr/(1 + (t − 1)·lr_decay)` (default 0).
    pub lr_decay: f64,
    /// Weight decay: an L2 penalty `weight_decay·θ` added to the gradient (default 0).
    pub weight_decay: f64,
    /// Starting value of every element of the `sum` state (default 0).
    pub initial_accumulator_value: f64,
    /// Term added to the denominator for numerical stability (default 1e-10).
    pub eps: f64,
    /// Maximize the objective instead of minimizing it: the gradient is negated (default false).
    pub maximize: bool,
    /// Add eps inside the square root, `√(sum + eps)`, instead of after it, `√sum + eps` (default false).
    pub eps_inside_sqrt: bool,
}

impl Default for Adagrad {
    fn default() -> Self {
        Adagrad { lr: 1e-2, lr_decay: 0.0, weight_decay: 0.0, initial_accumulator_value: 0.0, eps: 1e-10, maximize: false, eps_inside_sqrt: false }
    }
}

impl Adagrad {
    /// Checks every option; see the type's **Errors** section.
    pub fn validate(&self) -> Result<()> {
        check_finite_nonneg("lr", self.lr)?;
        check_finite_nonneg("lr_decay", self.lr_decay)?;
        check_finite_nonneg("weight_decay", self.weight_decay)?;
        check_finite_nonneg("initial_accumulator_value", self.initial_accumulator_value)?;
        check_positive("eps", self.eps)
    }
}

crate::coefficients! {
    /// Adagrad's scalars: `clr = lr/(1 + (t − 1)·lr_decay)`.
    pub struct AdagradCoeffs { clr, weight_decay, eps, lr }
    at_step(c, f) { clr = c.lr * f.x }
}

impl RuleConfig for Adagrad {
    const PYTORCH_NAME: &'static str = "adagrad";
    type Coeffs = AdagradCoeffs;

    fn rule(&self) -> Rule {
        Rule::Adagrad
    }

    fn validate(&self) -> Result<()> {
        Adagrad::validate(self)
    }

    fn lr_mut(&mut self) -> &mut f64 {
        &mut self.lr
    }

    fn weight_decay_mut(&mut self) -> Option<&mut f64> {
        Some(&mut self.weight_decay)
    }

    fn state(&self) -> StateLayout {
        StateLayout::new(&[Some(Slot::second_moment("sum")), None, None])
    }

    fn initial_state(&self, slot: usize) -> f64 {
        if slot == 0 { self.initial_accumulator_value as f32 as f64 } else { 0.0 }
    }

    fn flags(&self) -> u32 {
        bit(self.maximize, MAXIMIZE) | bit(self.eps_inside_sqrt, EPS_INSIDE_SQRT)
    }

    fn coeffs(&self, t: u32) -> AdagradCoeffs {
        let t = t as f64;
        AdagradCoeffs { clr: self.lr / (1.0 + (t - 1.0) * self.lr_decay), weight_decay: self.weight_decay, eps: self.eps, lr: self.lr }
    }

    fn step_factors(&self, t: u32) -> [f64; 4] {
        [1.0 / (1.0 + (t as i32 - 1) as f64 * self.lr_decay), 0.0, 0.0, 0.0]
    }

    fn reference_step(&self, t: u32, p: &mut [f64], g: &[f64], state: &mut RefState) {
        let clr = self.lr / (1.0 + (t as f64 - 1.0) * self.lr_decay);
        let sum = &mut state.slots[0];
        for i in 0..p.len() {
            let d = effective_grad(g[i], p[i], self.maximize, self.weight_decay);
            sum[i] += d * d;
            let denom = if self.eps_inside_sqrt { (sum[i] + self.eps).sqrt() } else { sum[i].sqrt() + self.eps };
            p[i] -= clr * d / denom;
        }
    }

    fn tolerance_k(&self) -> f64 {
        use budget::*;
        let g = grad(self.weight_decay != 0.0);
        let s = sum(0.0, product(g, g));
        let denom = if self.eps_inside_sqrt { root(sum(s, ROUNDED)) } else { sum(root(s), ROUNDED) };
        apply(scaled(quotient(g, denom)))
    }

    fn cases() -> Vec<(&'static str, Self)> {
        vec![
            ("adagrad", Adagrad::default()),
            ("adagrad lr_decay init wd", Adagrad { lr_decay: 0.01, initial_accumulator_value: 0.1, weight_decay: 0.05, ..Adagrad::default() }),
            ("adagrad eps_inside_sqrt maximize", Adagrad { eps_inside_sqrt: true, eps: 1e-6, maximize: true, ..Adagrad::default() }),
        ]
    }

    /// `_single_tensor_adagrad`: `state_sum.addcmul_(grad, grad, value=1)`,
    /// `std = state_sum.sqrt().add_(eps)`, `param.addcdiv_(grad, std, value=−clr)`.
    fn unfused(&self, t: u32) -> Option<Vec<Instr>> {
        if self.maximize || self.eps_inside_sqrt {
            return None;
        }
        let (mut out, g) = super::unfused::l2_grad(self.weight_decay);
        let clr = self.lr / (1.0 + (t as f64 - 1.0) * self.lr_decay);
        out.push((Addcmul, State0, g, g, 1.0));
        out.push((SqrtOf, Tmp0, State0, Unused, 0.0));
        out.push((AddScalar, Tmp0, Unused, Unused, self.eps));
        out.push((Addcdiv, Param, g, Tmp0, -clr));
        Some(out)
    }
}
