//! L-BFGS (`torch.optim.LBFGS`): closure-driven steps whose curvature comes
//! from the last `history_size` gradient differences, on the GPU.
//!
//! One step (PyTorch's `step(closure)`), with flat g the gradient of all
//! params, s = t·d the last move and y = g − g_prev:
//!
//! ```text
//! if ys = yᵀs > 1e-10: push (y, s) and ρ = 1/ys into the history (the oldest
//!                      dropped at history_size), H_diag = ys / yᵀy
//! q = −g;  for i newest..oldest: αᵢ = ρᵢ sᵢᵀq;  q −= αᵢ yᵢ
//! d = H_diag·q;  for i oldest..newest: βᵢ = ρᵢ yᵢᵀd;  d += (αᵢ − βᵢ) sᵢ
//! t = lr (the first iteration: min(1, 1/‖g‖₁)·lr), or strong-Wolfe's t
//! x ← x + t·d
//! ```
//!
//! repeated up to `max_iter` times per step, stopping early on
//! `tolerance_grad` (max |g|), `tolerance_change` (max |t·d|, |Δloss|, gᵀd)
//! or `max_eval` closure calls. The line search (`strong_wolfe`, c1 = 1e-4,
//! c2 = 0.9, 25 evaluations, PyTorch's cubic interpolation and zoom) is
//! [`line_search`], shared by the GPU optimizer ([`LbfgsOptimizer`]) and
//! the f64 reference ([`reference::ReferenceLbfgs`]); everything else is
//! written twice, once for each.
//!
//! Defaults are PyTorch's: lr 1, max_iter 20, max_eval max_iter·5/4,
//! tolerance_grad 1e-7, tolerance_change 1e-9, history_size 100, no line
//! search. As in PyTorch there is one param group; unlike PyTorch the flat
//! vector is f32 only (no complex params).

pub mod gpu;
pub mod kernels;
pub mod line_search;
pub mod objective;
pub mod reference;
pub mod state;
mod step;

pub use gpu::{LbfgsOptimizer, LossAt};
pub use objective::{Objective, ObjectiveKind};

use serde_json::{json, Map, Value};

use crate::error::{OptimError, Result};

/// The line search of a step (`line_search_fn`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LineSearch {
    /// `None`: a fixed step of t.
    #[default]
    None,
    /// `"strong_wolfe"`.
    StrongWolfe,
}

impl LineSearch {
    /// PyTorch's spelling (`None` is "none").
    pub fn name(self) -> &'static str {
        match self {
            LineSearch::None => "none",
            LineSearch::StrongWolfe => "strong_wolfe",
        }
    }

    /// From PyTorch's spelling.
    ///
    /// **Errors:** [`OptimError::UnknownOption`] for another name.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "none" => Ok(LineSearch::None),
            "strong_wolfe" => Ok(LineSearch::StrongWolfe),
            _ => Err(OptimError::UnknownOption { optimizer: "lbfgs".into(), option: format!("line_search_fn={name}"), known: "line_search_fn=none, line_search_fn=strong_wolfe".into() }),
        }
    }
}

/// `torch.optim.LBFGS`'s options, with its names and defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lbfgs {
    /// Learning rate (default 1).
    pub lr: f64,
    /// Iterations per step (default 20).
    pub max_iter: u32,
    /// Closure calls per step (default `None`: max_iter·5/4).
    pub max_eval: Option<u32>,
    /// Stop when max |g| ≤ this (default 1e-7).
    pub tolerance_grad: f64,
    /// Stop when a change falls under this (default 1e-9).
    pub tolerance_change: f64,
    /// Pairs (s, y) kept (default 100).
    pub history_size: u32,
    /// The line search (default none).
    pub line_search_fn: LineSearch,
}

impl Default for Lbfgs {
    fn default() -> Self {
        Lbfgs { lr: 1.0, max_iter: 20, max_eval: None, tolerance_grad: 1e-7, tolerance_change: 1e-9, history_size: 100, line_search_fn: LineSearch::None }
    }
}

impl Lbfgs {
    /// `max_eval`, or its default max_iter·5/4 (PyTorch's integer division).
    pub fn max_eval(&self) -> u32 {
        self.max_eval.unwrap_or(self.max_iter.saturating_mul(5) / 4)
    }

    /// Checks every option.
    ///
    /// **Errors:** [`OptimError::InvalidHyperparameter`] for a non-positive or
    /// non-finite lr, a negative tolerance, or a zero max_iter, max_eval or
    /// history_size.
    pub fn validate(&self) -> Result<()> {
        let bad = |name: &'static str, value: f64, requirement: &'static str| OptimError::InvalidHyperparameter { name, value, requirement };
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(bad("lr", self.lr, "must be finite and > 0"));
        }
        for (name, value) in [("tolerance_grad", self.tolerance_grad), ("tolerance_change", self.tolerance_change)] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(bad(name, value, "must be finite and >= 0"));
            }
        }
        for (name, value) in [("max_iter", self.max_iter), ("max_eval", self.max_eval()), ("history_size", self.history_size)] {
            if value == 0 {
                return Err(bad(name, 0.0, "must be >= 1"));
            }
        }
        Ok(())
    }

    /// The options by PyTorch name, as its `param_groups[0]` holds them
    /// (max_eval resolved, line_search_fn null for none).
    pub fn to_pytorch(&self) -> Map<String, Value> {
        let search = match self.line_search_fn {
            LineSearch::None => Value::Null,
            other => Value::from(other.name()),
        };
        let value = json!({
            "lr": self.lr, "max_iter": self.max_iter, "max_eval": self.max_eval(),
            "tolerance_grad": self.tolerance_grad, "tolerance_change": self.tolerance_change,
            "history_size": self.history_size, "line_search_fn": search,
        });
        value.as_object().cloned().unwrap_or_default()
    }

    /// The defaults as PyTorch's signature gives them (max_eval null), for
    /// the command line's option types.
    pub fn pytorch_defaults() -> Map<String, Value> {
        let mut m = Lbfgs::default().to_pytorch();
        m.insert("max_eval".into(), Value::Null);
        m
    }

    /// Options from PyTorch names; missing ones take their defaults.
    ///
    /// **Errors:** [`OptimError::UnknownOption`] for a name L-BFGS does not
    /// take; [`OptimError::InvalidOptionValue`] for a value of the wrong
    /// type; as [`Lbfgs::validate`].
    pub fn from_pytorch(options: &Map<String, Value>) -> Result<Self> {
        let known = Lbfgs::pytorch_defaults();
        let bad = |k: &str| OptimError::InvalidOptionValue { option: k.to_string(), value: options[k].to_string() };
        let mut o = Lbfgs::default();
        for (k, v) in options {
            let count = || v.as_f64().filter(|x| x.fract() == 0.0 && (0.0..=u32::MAX as f64).contains(x)).map(|x| x as u32).ok_or_else(|| bad(k));
            let number = || v.as_f64().ok_or_else(|| bad(k));
            match k.as_str() {
                "lr" => o.lr = number()?,
                "max_iter" => o.max_iter = count()?,
                "max_eval" => o.max_eval = if v.is_null() { None } else { Some(count()?) },
                "tolerance_grad" => o.tolerance_grad = number()?,
                "tolerance_change" => o.tolerance_change = number()?,
                "history_size" => o.history_size = count()?,
                "line_search_fn" => o.line_search_fn = if v.is_null() { LineSearch::None } else { LineSearch::parse(v.as_str().ok_or_else(|| bad(k))?)? },
                _ => return Err(OptimError::UnknownOption { optimizer: "lbfgs".into(), option: k.clone(), known: known.keys().cloned().collect::<Vec<_>>().join(", ") }),
            }
        }
        o.validate()?;
        Ok(o)
    }
}

/// Where a step stands between iterations: the counters PyTorch keeps in
/// its state (`n_iter`, `func_evals`) and its host scalars (`t`, `H_diag`,
/// `prev_loss`), all f64 here.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HostState {
    /// Iterations over all steps.
    pub n_iter: u64,
    /// Closure calls over all steps.
    pub func_evals: u64,
    /// The last step length.
    pub t: f64,
    /// The initial inverse-Hessian scale γ = sᵀy / yᵀy.
    pub h_diag: f64,
    /// The loss before the last iteration's move.
    pub prev_loss: f64,
}
