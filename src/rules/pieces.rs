//! Small pieces the rules share (in the spirit of optax's `transform.py`):
//! option checks, and the f64 reference's gradient and weight-decay steps.

use crate::error::{OptimError, Result};

/// `v` must be finite and ≥ 0.
pub fn check_finite_nonneg(name: &'static str, v: f64) -> Result<()> {
    if !v.is_finite() || v < 0.0 {
        return Err(OptimError::InvalidHyperparameter { name, value: v, requirement: "must be finite and >= 0" });
    }
    Ok(())
}

/// `v` must be finite and > 0.
pub fn check_positive(name: &'static str, v: f64) -> Result<()> {
    if !v.is_finite() || v <= 0.0 {
        return Err(OptimError::InvalidHyperparameter { name, value: v, requirement: "must be finite and > 0" });
    }
    Ok(())
}

/// `v` must be in [0, 1).
pub fn check_unit_halfopen(name: &'static str, v: f64) -> Result<()> {
    if !(0.0..1.0).contains(&v) {
        return Err(OptimError::InvalidHyperparameter { name, value: v, requirement: "must be in [0, 1)" });
    }
    Ok(())
}

/// `v` must be in [0, 1].
pub fn check_unit_closed(name: &'static str, v: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&v) {
        return Err(OptimError::InvalidHyperparameter { name, value: v, requirement: "must be in [0, 1]" });
    }
    Ok(())
}

/// The checks of Adam-like options: lr and weight decay ≥ 0, betas in
/// [0, 1), eps > 0.
pub fn check_adam_like(lr: f64, betas: (f64, f64), eps: f64, weight_decay: f64) -> Result<()> {
    check_finite_nonneg("lr", lr)?;
    check_unit_halfopen("betas.0", betas.0)?;
    check_unit_halfopen("betas.1", betas.1)?;
    check_positive("eps", eps)?;
    check_finite_nonneg("weight_decay", weight_decay)
}

/// The gradient as a rule sees it: negated when maximizing, plus the L2
/// weight-decay term `weight_decay·θ`.
pub fn effective_grad(g: f64, p: f64, maximize: bool, weight_decay: f64) -> f64 {
    let g = if maximize { -g } else { g };
    if weight_decay != 0.0 { g + weight_decay * p } else { g }
}

/// Weight decay as the L2 term of the gradient, or, decoupled, as the
/// factor `1 − lr·weight_decay` applied to θ first. Returns the gradient.
pub fn decayed_grad(p: &mut f64, g: f64, maximize: bool, lr: f64, weight_decay: f64, decoupled: bool) -> f64 {
    if decoupled {
        *p *= 1.0 - lr * weight_decay;
        effective_grad(g, *p, maximize, 0.0)
    } else {
        effective_grad(g, *p, maximize, weight_decay)
    }
}

/// `1 − βᵗ`, the bias correction of an EMA with decay β after t steps.
pub fn bias_correction(beta: f64, t: u32) -> f64 {
    1.0 - beta.powi(t as i32)
}
