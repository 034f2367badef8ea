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

/// Error budgets for the validation bound's `k`, from WGSL's stated f32
/// accuracy (the spec's "Floating Point Accuracy" section), not from any one
/// driver: relative errors in units of u = 2⁻²⁴ (half an ULP at 1.0).
/// `+ − ×` are correctly rounded (1), and so is each host scalar when it is
/// rounded once from f64 to f32 (1); `x / y` may be off by 2.5 ULP (5);
/// `sqrt` inherits `1/inverseSqrt(x)`: 2 ULP, then 2.5 ULP (9); `abs`,
/// `min`, `max`, `clamp`, `sign`, `select` are exact.
///
/// A rule's `k` is the first-order error of one step along its longest
/// chain of operations, each function below adding what its operations may
/// add to the errors of its inputs. The harness scales `k` by
/// `Σₜ(|xₜ| + |Δxₜ|)`, which also absorbs what earlier steps' state errors
/// contribute. Inputs where terms cancel are kept out of the tests
/// (`validate::avoid_l2_cancellation`), since no per-step bound covers them.
pub mod budget {
    /// One correctly rounded operation, or one host scalar rounded to f32.
    pub const ROUNDED: f64 = 1.0;
    /// `x / y`: 2.5 ULP.
    pub const DIV: f64 = 5.0;
    /// `sqrt(x) = 1/inverseSqrt(x)`: 2 ULP + 2.5 ULP.
    pub const SQRT: f64 = 9.0;

    /// The gradient with an L2 term `g + wd·θ` (host wd, product, sum), or
    /// the plain gradient (exact; negation is exact too).
    pub fn grad(l2: bool) -> f64 {
        if l2 { 3.0 * ROUNDED } else { 0.0 }
    }

    /// `s·x` with a host scalar s.
    pub fn scaled(x: f64) -> f64 {
        x + 2.0 * ROUNDED
    }

    /// `x ± y` of like magnitudes.
    pub fn sum(x: f64, y: f64) -> f64 {
        x.max(y) + ROUNDED
    }

    /// `x · y`.
    pub fn product(x: f64, y: f64) -> f64 {
        x + y + ROUNDED
    }

    /// `x / y`.
    pub fn quotient(x: f64, y: f64) -> f64 {
        x + y + DIV
    }

    /// `sqrt(x)`: halves x's relative error.
    pub fn root(x: f64) -> f64 {
        x / 2.0 + SQRT
    }

    /// An EMA `s + (1 − β)·(x − s)` or `β·s + (1 − β)·x` of a new value with
    /// error `x`: on x's path a difference (or a host scalar), a host
    /// scalar, a product and a sum.
    pub fn ema(x: f64) -> f64 {
        x + 4.0 * ROUNDED
    }

    /// The final `θ − Δ` (or `θ·decay − Δ`).
    pub fn apply(delta: f64) -> f64 {
        delta + ROUNDED
    }
}
