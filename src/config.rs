//! Optimizer configurations with PyTorch's option names and defaults
//! (`torch.optim`), plus the textbook variants as explicit options.
//!
//! Each config knows how to validate itself, which fused shader ([`Rule`])
//! runs it, the PyTorch `state_dict` names of its state buffers, and how to
//! compute its per-step scalars on the host in f64 ([`Coeffs`]).

use crate::error::{OptimError, Result};

/// The fused update rules, one WGSL file each in `shaders/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// Plain SGD (`sgd.wgsl`): `SGD` with `momentum = 0`.
    Sgd,
    /// Heavy-ball momentum (`momentum.wgsl`): `SGD` with `momentum > 0`.
    Momentum,
    /// Nesterov momentum (`nag.wgsl`): `SGD` with `nesterov = true`.
    Nag,
    /// `adagrad.wgsl`.
    Adagrad,
    /// `rmsprop.wgsl`.
    RmsProp,
    /// `adadelta.wgsl`.
    Adadelta,
    /// `adam.wgsl` (L2-coupled weight decay).
    Adam,
    /// `adamw.wgsl` (decoupled weight decay).
    AdamW,
    /// `adamax.wgsl` (Adam with the infinity norm).
    Adamax,
    /// `nadam.wgsl` (Adam with Nesterov momentum, Dozat).
    NAdam,
    /// `radam.wgsl` (rectified Adam).
    RAdam,
    /// `newton.wgsl`: damped diagonal Newton with a user-supplied Hessian
    /// diagonal, optionally with Sophia's EMAs and clipping.
    Newton,
    /// `lion.wgsl` (Chen et al., 2023: sign of an interpolated momentum).
    Lion,
}

impl Rule {
    /// All rules, in the order tables print them.
    pub const ALL: [Rule; 13] = [
        Rule::Sgd,
        Rule::Momentum,
        Rule::Nag,
        Rule::Adagrad,
        Rule::RmsProp,
        Rule::Adadelta,
        Rule::Adam,
        Rule::AdamW,
        Rule::Adamax,
        Rule::NAdam,
        Rule::RAdam,
        Rule::Newton,
        Rule::Lion,
    ];

    /// Short lowercase name, as used by the CLI and the shader file name.
    pub fn name(self) -> &'static str {
        match self {
            Rule::Sgd => "sgd",
            Rule::Momentum => "momentum",
            Rule::Nag => "nag",
            Rule::Adagrad => "adagrad",
            Rule::RmsProp => "rmsprop",
            Rule::Adadelta => "adadelta",
            Rule::Adam => "adam",
            Rule::AdamW => "adamw",
            Rule::Adamax => "adamax",
            Rule::NAdam => "nadam",
            Rule::RAdam => "radam",
            Rule::Newton => "newton",
            Rule::Lion => "lion",
        }
    }

    /// The rule's WGSL source (without the shared prelude).
    pub fn shader_source(self) -> &'static str {
        match self {
            Rule::Sgd => include_str!("../shaders/sgd.wgsl"),
            Rule::Momentum => include_str!("../shaders/momentum.wgsl"),
            Rule::Nag => include_str!("../shaders/nag.wgsl"),
            Rule::Adagrad => include_str!("../shaders/adagrad.wgsl"),
            Rule::RmsProp => include_str!("../shaders/rmsprop.wgsl"),
            Rule::Adadelta => include_str!("../shaders/adadelta.wgsl"),
            Rule::Adam => include_str!("../shaders/adam.wgsl"),
            Rule::AdamW => include_str!("../shaders/adamw.wgsl"),
            Rule::Adamax => include_str!("../shaders/adamax.wgsl"),
            Rule::NAdam => include_str!("../shaders/nadam.wgsl"),
            Rule::RAdam => include_str!("../shaders/radam.wgsl"),
            Rule::Newton => include_str!("../shaders/newton.wgsl"),
            Rule::Lion => include_str!("../shaders/lion.wgsl"),
        }
    }
}

/// Bit flags passed to every shader in [`StepScalars`](crate::engine::StepScalars).
pub mod flags {
    pub const MAXIMIZE: u32 = 1;
    pub const FIRST_STEP: u32 = 2;
    pub const AMSGRAD: u32 = 4;
    pub const CENTERED: u32 = 8;
    pub const EPS_INSIDE_SQRT: u32 = 16;
    pub const MOMENTUM: u32 = 32;
    /// Clip each group's grads to a total L2 norm (`GradControl::max_norm`).
    pub const CLIP: u32 = 64;
    /// Dynamic loss scaling with non-finite skip (`GradControl::scaler`).
    pub const SCALER: u32 = 128;
    /// Decoupled weight decay (AdamW; NAdam, RAdam `decoupled_weight_decay`).
    pub const DECOUPLED: u32 = 256;
    /// Newton: keep an EMA of the Hessian diagonal (Sophia).
    pub const HESSIAN_EMA: u32 = 512;
    /// Newton: clip each coordinate of the update (Sophia).
    pub const CLIP_UPDATE: u32 = 1024;
}

/// Number of per-group f32 scalars in the step uniform.
pub const N_COEFFS: usize = 12;

/// Per-group, per-step scalars, computed on the host in f64 and rounded once
/// to f32. The meaning of each slot is given by the `Coeffs` struct of the
/// rule's shader.
pub type Coeffs = [f32; N_COEFFS];

fn check_finite_nonneg(name: &'static str, v: f64) -> Result<()> {
    if !v.is_finite() || v < 0.0 {
        return Err(OptimError::InvalidHyperparameter { name, value: v, requirement: "must be finite and >= 0" });
    }
    Ok(())
}

fn check_positive(name: &'static str, v: f64) -> Result<()> {
    if !v.is_finite() || v <= 0.0 {
        return Err(OptimError::InvalidHyperparameter { name, value: v, requirement: "must be finite and > 0" });
    }
    Ok(())
}

fn check_unit_halfopen(name: &'static str, v: f64) -> Result<()> {
    if !(0.0..1.0).contains(&v) {
        return Err(OptimError::InvalidHyperparameter { name, value: v, requirement: "must be in [0, 1)" });
    }
    Ok(())
}

fn check_unit_closed(name: &'static str, v: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&v) {
        return Err(OptimError::InvalidHyperparameter { name, value: v, requirement: "must be in [0, 1]" });
    }
    Ok(())
}

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
/// The rule used on the GPU is [`Rule::Sgd`], [`Rule::Momentum`] or
/// [`Rule::Nag`] depending on `momentum` and `nesterov`.
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
/// ```
/// use wgpu_optim::Sgd;
/// let nag = Sgd { lr: 0.1, momentum: 0.9, nesterov: true, ..Sgd::default() };
/// assert!(nag.validate().is_ok());
/// assert!(Sgd { nesterov: true, ..Sgd::default() }.validate().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sgd {
    pub lr: f64,
    pub momentum: f64,
    pub dampening: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
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
/// `eps_inside_sqrt = false`. State: `sum`.
///
/// **Errors.** `lr`, `lr_decay`, `weight_decay`, `initial_accumulator_value`
/// finite and ≥ 0; `eps` finite and > 0.
///
/// ```
/// let a = wgpu_optim::Adagrad { eps: 0.0, ..Default::default() };
/// assert!(a.validate().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Adagrad {
    pub lr: f64,
    pub lr_decay: f64,
    pub weight_decay: f64,
    pub initial_accumulator_value: f64,
    pub eps: f64,
    pub maximize: bool,
    pub eps_inside_sqrt: bool,
}

impl Default for Adagrad {
    fn default() -> Self {
        Adagrad {
            lr: 1e-2,
            lr_decay: 0.0,
            weight_decay: 0.0,
            initial_accumulator_value: 0.0,
            eps: 1e-10,
            maximize: false,
            eps_inside_sqrt: false,
        }
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

/// RMSprop, `torch.optim.RMSprop`.
///
/// ```text
/// g ← ∇f(θ)  (negated if maximize);  g ← g + weight_decay·θ
/// v ← alpha·v + (1 − alpha)·g²
/// if centered:  ḡ ← alpha·ḡ + (1 − alpha)·g;   ṽ ← v − ḡ²   else ṽ ← v
/// d ← √ṽ + eps                         PyTorch
/// d ← √(ṽ + eps)                       eps_inside_sqrt = true (Hinton's lecture form)
/// if momentum > 0:  b ← momentum·b + g/d;  θ ← θ − lr·b
/// else:             θ ← θ − lr·g/d
/// ```
///
/// Defaults: `lr = 1e-2`, `alpha = 0.99`, `eps = 1e-8`, `weight_decay = 0`,
/// `momentum = 0`, `centered = false`, `maximize = false`,
/// `eps_inside_sqrt = false`. State: `square_avg`, `momentum_buffer`, `grad_avg`.
///
/// **Errors.** `lr`, `momentum`, `weight_decay` finite and ≥ 0; `alpha` in
/// [0, 1); `eps` finite and > 0.
///
/// ```
/// let r = wgpu_optim::RmsProp { alpha: 1.0, ..Default::default() };
/// assert!(r.validate().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RmsProp {
    pub lr: f64,
    pub alpha: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub momentum: f64,
    pub centered: bool,
    pub maximize: bool,
    pub eps_inside_sqrt: bool,
}

impl Default for RmsProp {
    fn default() -> Self {
        RmsProp {
            lr: 1e-2,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
            centered: false,
            maximize: false,
            eps_inside_sqrt: false,
        }
    }
}

impl RmsProp {
    /// Checks every option; see the type's **Errors** section.
    pub fn validate(&self) -> Result<()> {
        check_finite_nonneg("lr", self.lr)?;
        check_unit_halfopen("alpha", self.alpha)?;
        check_positive("eps", self.eps)?;
        check_finite_nonneg("weight_decay", self.weight_decay)?;
        check_finite_nonneg("momentum", self.momentum)
    }
}

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
/// ```
/// let a = wgpu_optim::Adadelta { rho: 1.5, ..Default::default() };
/// assert!(a.validate().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Adadelta {
    pub lr: f64,
    pub rho: f64,
    pub eps: f64,
    pub weight_decay: f64,
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

/// Adam, `torch.optim.Adam` (weight decay is an L2 term added to the gradient).
///
/// ```text
/// g ← ∇f(θ)  (negated if maximize);  g ← g + weight_decay·θ
/// m ← β₁·m + (1 − β₁)·g
/// v ← β₂·v + (1 − β₂)·g²
/// v̂max ← max(v̂max, v)                          if amsgrad (then v ← v̂max below)
/// θ ← θ − lr/(1 − β₁ᵗ) · m / (√v/√(1 − β₂ᵗ) + eps)      PyTorch
/// θ ← θ − lr/(1 − β₁ᵗ) · m / √(v/(1 − β₂ᵗ) + eps)       eps_inside_sqrt = true
/// ```
///
/// Defaults: `lr = 1e-3`, `betas = (0.9, 0.999)`, `eps = 1e-8`,
/// `weight_decay = 0`, `amsgrad = false`, `maximize = false`,
/// `eps_inside_sqrt = false`. State: `exp_avg`, `exp_avg_sq`, `max_exp_avg_sq`.
/// The bias corrections `lr/(1−β₁ᵗ)` and `√(1−β₂ᵗ)` are computed on the host
/// in f64 each step.
///
/// **Errors.** `lr`, `weight_decay` finite and ≥ 0; betas in [0, 1);
/// `eps` finite and > 0.
///
/// ```
/// let a = wgpu_optim::Adam { betas: (0.9, 1.0), ..Default::default() };
/// assert!(a.validate().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Adam {
    pub lr: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    pub weight_decay: f64,
    pub amsgrad: bool,
    pub maximize: bool,
    pub eps_inside_sqrt: bool,
}

impl Default for Adam {
    fn default() -> Self {
        Adam {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            amsgrad: false,
            maximize: false,
            eps_inside_sqrt: false,
        }
    }
}

/// AdamW, `torch.optim.AdamW` (decoupled weight decay).
///
/// ```text
/// θ ← θ·(1 − lr·weight_decay)          (the product lr·weight_decay is formed on the host in f64)
/// then the Adam update of [`Adam`] without the L2 term.
/// ```
///
/// Defaults as [`Adam`] except `weight_decay = 1e-2`.
///
/// ```
/// assert_eq!(wgpu_optim::AdamW::default().weight_decay, 1e-2);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamW {
    pub lr: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    pub weight_decay: f64,
    pub amsgrad: bool,
    pub maximize: bool,
    pub eps_inside_sqrt: bool,
}

impl Default for AdamW {
    fn default() -> Self {
        AdamW {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 1e-2,
            amsgrad: false,
            maximize: false,
            eps_inside_sqrt: false,
        }
    }
}

fn validate_adam(lr: f64, betas: (f64, f64), eps: f64, weight_decay: f64) -> Result<()> {
    check_finite_nonneg("lr", lr)?;
    check_unit_halfopen("betas.0", betas.0)?;
    check_unit_halfopen("betas.1", betas.1)?;
    check_positive("eps", eps)?;
    check_finite_nonneg("weight_decay", weight_decay)
}

impl Adam {
    /// Checks every option; see the type's **Errors** section.
    pub fn validate(&self) -> Result<()> {
        validate_adam(self.lr, self.betas, self.eps, self.weight_decay)
    }
}

impl AdamW {
    /// Checks every option; see [`Adam`]'s **Errors** section.
    pub fn validate(&self) -> Result<()> {
        validate_adam(self.lr, self.betas, self.eps, self.weight_decay)
    }
}

/// Adamax, `torch.optim.Adamax` (Adam with the infinity norm).
///
/// ```text
/// g ← ∇ (negated if maximize) + weight_decay·θ
/// m ← m + (1 − β₁)·(g − m)                      exp_avg
/// u ← max(β₂·u, |g| + eps)                       exp_inf
/// θ ← θ − lr/(1 − β₁ᵗ) · m/u                     (lr/(1 − β₁ᵗ) on the host in f64)
/// ```
///
/// Defaults: `lr = 2e-3`, `betas = (0.9, 0.999)`, `eps = 1e-8`,
/// `weight_decay = 0`, `maximize = false`. State: `exp_avg`, `exp_inf`.
///
/// **Errors.** As [`Adam`].
///
/// ```
/// assert_eq!(wgpu_optim::Adamax::default().lr, 2e-3);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Adamax {
    pub lr: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    pub weight_decay: f64,
    pub maximize: bool,
}

impl Default for Adamax {
    fn default() -> Self {
        Adamax { lr: 2e-3, betas: (0.9, 0.999), eps: 1e-8, weight_decay: 0.0, maximize: false }
    }
}

impl Adamax {
    /// Checks every option; see [`Adam`]'s **Errors** section.
    pub fn validate(&self) -> Result<()> {
        validate_adam(self.lr, self.betas, self.eps, self.weight_decay)
    }
}

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
/// **Errors.** As [`Adam`]; `momentum_decay` finite and ≥ 0.
///
/// ```
/// assert_eq!(wgpu_optim::NAdam::default().momentum_decay, 4e-3);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NAdam {
    pub lr: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    pub weight_decay: f64,
    pub momentum_decay: f64,
    pub decoupled_weight_decay: bool,
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
        validate_adam(self.lr, self.betas, self.eps, self.weight_decay)?;
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
/// **Errors.** As [`Adam`].
///
/// ```
/// assert!(!wgpu_optim::RAdam::default().decoupled_weight_decay);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RAdam {
    pub lr: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    pub weight_decay: f64,
    pub decoupled_weight_decay: bool,
    pub maximize: bool,
}

impl Default for RAdam {
    fn default() -> Self {
        RAdam { lr: 1e-3, betas: (0.9, 0.999), eps: 1e-8, weight_decay: 0.0, decoupled_weight_decay: false, maximize: false }
    }
}

impl RAdam {
    /// Checks every option; see [`Adam`]'s **Errors** section.
    pub fn validate(&self) -> Result<()> {
        validate_adam(self.lr, self.betas, self.eps, self.weight_decay)
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

/// A damped diagonal Newton–Raphson step with a Hessian diagonal you supply,
/// optionally with Sophia's EMAs and per-coordinate clipping.
///
/// ```text
/// g ← ∇ (negated if maximize) + weight_decay·θ
/// m ← m + (1 − β₁)·(g − m)   if β₁ > 0, else m = g              exp_avg
/// h̄ ← β₂·h̄ + (1 − β₂)·h     if β₂ > 0, else h̄ = h              hessian_ema (h: hessian)
/// u = m/(|h̄| + damping);  clip: u ← clamp(u, −clip, clip)
/// θ ← θ − lr·u
/// ```
///
/// **The `hessian` state is an input**: write the diagonal estimate (for
/// example Hutchinson's, `h ≈ z ⊙ (∇²f·z)` with Rademacher `z`) into state
/// slot 0 before a step, from your own kernel (`Optimizer::state_binding`)
/// or from the host (`Optimizer::write_state`).
///
/// The full Newton step is `θ ← θ − H⁻¹∇f`: exact in one step on a quadratic,
/// but it needs the whole n × n Hessian, O(n²) memory and an O(n³) solve.
/// Keeping only the diagonal costs O(n), like Adam, and is exact when the
/// problem is separable (the Hessian is diagonal): then one step with
/// `lr = 1`, `damping = 0` reaches the optimum (tested). `|h|` and `damping`
/// keep the step a descent direction where curvature is negative or tiny;
/// Sophia (Liu et al., 2023) smooths both g and h with EMAs and clips the
/// ratio, `clip = 1` with `lr` playing the role of its step size.
///
/// Defaults: `lr = 1`, `damping = 1e-8`, `weight_decay = 0`, `beta1 = 0`,
/// `beta2 = 0`, `clip = 0` (off), `maximize = false`. Sophia-like:
/// `beta1 = 0.965`, `beta2 = 0.99`, `clip = 1`, a small `lr`.
///
/// **Errors.** `lr`, `damping`, `weight_decay`, `clip` finite and ≥ 0;
/// `beta1`, `beta2` in [0, 1).
///
/// ```
/// let n = wgpu_optim::Newton::default();
/// assert_eq!((n.lr, n.clip), (1.0, 0.0));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Newton {
    pub lr: f64,
    pub damping: f64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub clip: f64,
    pub maximize: bool,
}

impl Default for Newton {
    fn default() -> Self {
        Newton { lr: 1.0, damping: 1e-8, weight_decay: 0.0, beta1: 0.0, beta2: 0.0, clip: 0.0, maximize: false }
    }
}

impl Newton {
    /// Checks every option; see the type's **Errors** section.
    pub fn validate(&self) -> Result<()> {
        check_finite_nonneg("lr", self.lr)?;
        check_finite_nonneg("damping", self.damping)?;
        check_finite_nonneg("weight_decay", self.weight_decay)?;
        check_finite_nonneg("clip", self.clip)?;
        check_unit_halfopen("beta1", self.beta1)?;
        check_unit_halfopen("beta2", self.beta2)
    }
}

/// Lion (Chen et al., 2023, "Symbolic Discovery of Optimization
/// Algorithms"); not in `torch.optim`, names as in the paper and the common
/// PyTorch port (`lion-pytorch`).
///
/// ```text
/// g ← ∇ (negated if maximize)
/// c = β₁·m + (1 − β₁)·g
/// θ ← θ·(1 − lr·weight_decay) − lr·sign(c)          (sign(0) = 0; decoupled decay)
/// m ← β₂·m + (1 − β₂)·g                             exp_avg
/// ```
///
/// Defaults: `lr = 1e-4`, `betas = (0.9, 0.99)`, `weight_decay = 0`,
/// `maximize = false`. State: `exp_avg`.
///
/// **Errors.** `lr`, `weight_decay` finite and ≥ 0; betas in [0, 1).
///
/// ```
/// assert_eq!(wgpu_optim::Lion::default().betas, (0.9, 0.99));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Lion {
    pub lr: f64,
    pub betas: (f64, f64),
    pub weight_decay: f64,
    pub maximize: bool,
}

impl Default for Lion {
    fn default() -> Self {
        Lion { lr: 1e-4, betas: (0.9, 0.99), weight_decay: 0.0, maximize: false }
    }
}

impl Lion {
    /// Checks every option; see the type's **Errors** section.
    pub fn validate(&self) -> Result<()> {
        check_finite_nonneg("lr", self.lr)?;
        check_unit_halfopen("betas.0", self.betas.0)?;
        check_unit_halfopen("betas.1", self.betas.1)?;
        check_finite_nonneg("weight_decay", self.weight_decay)
    }
}

/// Any supported optimizer configuration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimizerConfig {
    Sgd(Sgd),
    Adagrad(Adagrad),
    RmsProp(RmsProp),
    Adadelta(Adadelta),
    Adam(Adam),
    AdamW(AdamW),
    Adamax(Adamax),
    NAdam(NAdam),
    RAdam(RAdam),
    Newton(Newton),
    Lion(Lion),
}

macro_rules! impl_from {
    ($($t:ident),*) => {$(
        impl From<$t> for OptimizerConfig {
            fn from(c: $t) -> Self { OptimizerConfig::$t(c) }
        }
    )*};
}
impl_from!(Sgd, Adagrad, RmsProp, Adadelta, Adam, AdamW, Adamax, NAdam, RAdam, Newton, Lion);

fn bit(on: bool, flag: u32) -> u32 {
    if on { flag } else { 0 }
}

impl OptimizerConfig {
    /// Checks every option of the wrapped config.
    pub fn validate(&self) -> Result<()> {
        match self {
            OptimizerConfig::Sgd(c) => c.validate(),
            OptimizerConfig::Adagrad(c) => c.validate(),
            OptimizerConfig::RmsProp(c) => c.validate(),
            OptimizerConfig::Adadelta(c) => c.validate(),
            OptimizerConfig::Adam(c) => c.validate(),
            OptimizerConfig::AdamW(c) => c.validate(),
            OptimizerConfig::Adamax(c) => c.validate(),
            OptimizerConfig::NAdam(c) => c.validate(),
            OptimizerConfig::RAdam(c) => c.validate(),
            OptimizerConfig::Newton(c) => c.validate(),
            OptimizerConfig::Lion(c) => c.validate(),
        }
    }

    /// The fused shader that runs this config.
    pub fn rule(&self) -> Rule {
        match self {
            OptimizerConfig::Sgd(c) if c.nesterov => Rule::Nag,
            OptimizerConfig::Sgd(c) if c.momentum != 0.0 => Rule::Momentum,
            OptimizerConfig::Sgd(_) => Rule::Sgd,
            OptimizerConfig::Adagrad(_) => Rule::Adagrad,
            OptimizerConfig::RmsProp(_) => Rule::RmsProp,
            OptimizerConfig::Adadelta(_) => Rule::Adadelta,
            OptimizerConfig::Adam(_) => Rule::Adam,
            OptimizerConfig::AdamW(_) => Rule::AdamW,
            OptimizerConfig::Adamax(_) => Rule::Adamax,
            OptimizerConfig::NAdam(_) => Rule::NAdam,
            OptimizerConfig::RAdam(_) => Rule::RAdam,
            OptimizerConfig::Newton(_) => Rule::Newton,
            OptimizerConfig::Lion(_) => Rule::Lion,
        }
    }

    /// The learning rate.
    pub fn lr(&self) -> f64 {
        match self {
            OptimizerConfig::Sgd(c) => c.lr,
            OptimizerConfig::Adagrad(c) => c.lr,
            OptimizerConfig::RmsProp(c) => c.lr,
            OptimizerConfig::Adadelta(c) => c.lr,
            OptimizerConfig::Adam(c) => c.lr,
            OptimizerConfig::AdamW(c) => c.lr,
            OptimizerConfig::Adamax(c) => c.lr,
            OptimizerConfig::NAdam(c) => c.lr,
            OptimizerConfig::RAdam(c) => c.lr,
            OptimizerConfig::Newton(c) => c.lr,
            OptimizerConfig::Lion(c) => c.lr,
        }
    }

    /// Replaces the learning rate (used by LR schedules; no pipeline is rebuilt).
    pub fn set_lr(&mut self, lr: f64) {
        match self {
            OptimizerConfig::Sgd(c) => c.lr = lr,
            OptimizerConfig::Adagrad(c) => c.lr = lr,
            OptimizerConfig::RmsProp(c) => c.lr = lr,
            OptimizerConfig::Adadelta(c) => c.lr = lr,
            OptimizerConfig::Adam(c) => c.lr = lr,
            OptimizerConfig::AdamW(c) => c.lr = lr,
            OptimizerConfig::Adamax(c) => c.lr = lr,
            OptimizerConfig::NAdam(c) => c.lr = lr,
            OptimizerConfig::RAdam(c) => c.lr = lr,
            OptimizerConfig::Newton(c) => c.lr = lr,
            OptimizerConfig::Lion(c) => c.lr = lr,
        }
    }

    /// The weight decay.
    pub fn weight_decay(&self) -> f64 {
        match self {
            OptimizerConfig::Sgd(c) => c.weight_decay,
            OptimizerConfig::Adagrad(c) => c.weight_decay,
            OptimizerConfig::RmsProp(c) => c.weight_decay,
            OptimizerConfig::Adadelta(c) => c.weight_decay,
            OptimizerConfig::Adam(c) => c.weight_decay,
            OptimizerConfig::AdamW(c) => c.weight_decay,
            OptimizerConfig::Adamax(c) => c.weight_decay,
            OptimizerConfig::NAdam(c) => c.weight_decay,
            OptimizerConfig::RAdam(c) => c.weight_decay,
            OptimizerConfig::Newton(c) => c.weight_decay,
            OptimizerConfig::Lion(c) => c.weight_decay,
        }
    }

    /// Replaces the weight decay.
    pub fn set_weight_decay(&mut self, wd: f64) {
        match self {
            OptimizerConfig::Sgd(c) => c.weight_decay = wd,
            OptimizerConfig::Adagrad(c) => c.weight_decay = wd,
            OptimizerConfig::RmsProp(c) => c.weight_decay = wd,
            OptimizerConfig::Adadelta(c) => c.weight_decay = wd,
            OptimizerConfig::Adam(c) => c.weight_decay = wd,
            OptimizerConfig::AdamW(c) => c.weight_decay = wd,
            OptimizerConfig::Adamax(c) => c.weight_decay = wd,
            OptimizerConfig::NAdam(c) => c.weight_decay = wd,
            OptimizerConfig::RAdam(c) => c.weight_decay = wd,
            OptimizerConfig::Newton(c) => c.weight_decay = wd,
            OptimizerConfig::Lion(c) => c.weight_decay = wd,
        }
    }

    /// PyTorch `state_dict` names of the state buffers, in binding order
    /// (bindings 3, 4, 5).
    pub fn state_names(&self) -> &'static [&'static str] {
        match self.rule() {
            Rule::Sgd => &[],
            Rule::Momentum | Rule::Nag => &["momentum_buffer"],
            Rule::Adagrad => &["sum"],
            Rule::RmsProp => {
                let OptimizerConfig::RmsProp(c) = self else { unreachable!() };
                match (c.momentum > 0.0, c.centered) {
                    (false, false) => &["square_avg"],
                    (true, false) => &["square_avg", "momentum_buffer"],
                    (false, true) => &["square_avg", "", "grad_avg"],
                    (true, true) => &["square_avg", "momentum_buffer", "grad_avg"],
                }
            }
            Rule::Adadelta => &["square_avg", "acc_delta"],
            Rule::Adam | Rule::AdamW => {
                let amsgrad = match self {
                    OptimizerConfig::Adam(c) => c.amsgrad,
                    OptimizerConfig::AdamW(c) => c.amsgrad,
                    _ => unreachable!(),
                };
                if amsgrad { &["exp_avg", "exp_avg_sq", "max_exp_avg_sq"] } else { &["exp_avg", "exp_avg_sq"] }
            }
            Rule::Adamax => &["exp_avg", "exp_inf"],
            Rule::NAdam | Rule::RAdam => &["exp_avg", "exp_avg_sq"],
            Rule::Lion => &["exp_avg"],
            Rule::Newton => {
                let OptimizerConfig::Newton(c) = self else { unreachable!() };
                match (c.beta2 > 0.0, c.beta1 > 0.0) {
                    (false, false) => &["hessian"],
                    (true, false) => &["hessian", "hessian_ema"],
                    (false, true) => &["hessian", "", "exp_avg"],
                    (true, true) => &["hessian", "hessian_ema", "exp_avg"],
                }
            }
        }
    }

    /// Initial value of every element of state slot `slot`.
    pub fn initial_state(&self, slot: usize) -> f32 {
        match (self, slot) {
            (OptimizerConfig::Adagrad(c), 0) => c.initial_accumulator_value as f32,
            _ => 0.0,
        }
    }

    /// Flag bits of the step uniform (without [`flags::FIRST_STEP`]).
    pub fn flags(&self) -> u32 {
        use flags::*;
        match self {
            OptimizerConfig::Sgd(c) => bit(c.maximize, MAXIMIZE),
            OptimizerConfig::Adagrad(c) => bit(c.maximize, MAXIMIZE) | bit(c.eps_inside_sqrt, EPS_INSIDE_SQRT),
            OptimizerConfig::RmsProp(c) => {
                bit(c.maximize, MAXIMIZE)
                    | bit(c.centered, CENTERED)
                    | bit(c.eps_inside_sqrt, EPS_INSIDE_SQRT)
                    | bit(c.momentum > 0.0, MOMENTUM)
            }
            OptimizerConfig::Adadelta(c) => bit(c.maximize, MAXIMIZE),
            OptimizerConfig::Adam(c) => {
                bit(c.maximize, MAXIMIZE) | bit(c.amsgrad, AMSGRAD) | bit(c.eps_inside_sqrt, EPS_INSIDE_SQRT)
            }
            OptimizerConfig::AdamW(c) => {
                DECOUPLED | bit(c.maximize, MAXIMIZE) | bit(c.amsgrad, AMSGRAD) | bit(c.eps_inside_sqrt, EPS_INSIDE_SQRT)
            }
            OptimizerConfig::Adamax(c) => bit(c.maximize, MAXIMIZE),
            OptimizerConfig::NAdam(c) => bit(c.maximize, MAXIMIZE) | bit(c.decoupled_weight_decay, DECOUPLED),
            OptimizerConfig::RAdam(c) => bit(c.maximize, MAXIMIZE) | bit(c.decoupled_weight_decay, DECOUPLED),
            OptimizerConfig::Newton(c) => {
                bit(c.maximize, MAXIMIZE) | bit(c.beta1 > 0.0, MOMENTUM) | bit(c.beta2 > 0.0, HESSIAN_EMA) | bit(c.clip > 0.0, CLIP_UPDATE)
            }
            OptimizerConfig::Lion(c) => DECOUPLED | bit(c.maximize, MAXIMIZE),
        }
    }

    /// Per-step scalars for step `t` (1-based), computed in f64, in the slot
    /// order of the rule shader's `Coeffs` struct.
    pub fn coeffs(&self, t: u32) -> Coeffs {
        let t = t as f64;
        match self {
            OptimizerConfig::Sgd(c) => pack(&[c.lr, c.weight_decay, c.momentum, 1.0 - c.dampening]),
            OptimizerConfig::Adagrad(c) => pack(&[c.lr / (1.0 + (t - 1.0) * c.lr_decay), c.weight_decay, c.eps, c.lr]),
            OptimizerConfig::RmsProp(c) => pack(&[c.lr, c.weight_decay, c.alpha, 1.0 - c.alpha, c.eps, c.momentum]),
            OptimizerConfig::Adadelta(c) => pack(&[c.lr, c.weight_decay, c.rho, 1.0 - c.rho, c.eps]),
            OptimizerConfig::Adam(c) => adam_coeffs(c.lr, c.betas, c.eps, c.weight_decay, t),
            OptimizerConfig::AdamW(c) => adam_coeffs(c.lr, c.betas, c.eps, c.weight_decay, t),
            OptimizerConfig::Adamax(c) => {
                let bc1 = 1.0 - c.betas.0.powi(t as i32);
                pack(&[c.lr, c.weight_decay, c.betas.0, c.betas.1, 1.0 - c.betas.0, c.eps, c.lr / bc1])
            }
            OptimizerConfig::NAdam(c) => {
                let (fg, fm, inv_bc2) = c.factors(t as u32);
                let (b1, b2) = c.betas;
                pack(&[c.lr, c.weight_decay, b1, b2, 1.0 - b1, 1.0 - b2, c.eps, c.lr * fg, c.lr * fm, inv_bc2, 1.0 - c.lr * c.weight_decay])
            }
            OptimizerConfig::RAdam(c) => {
                let (plain, rect) = c.factors(t as u32);
                let (b1, b2) = c.betas;
                pack(&[c.lr, c.weight_decay, b1, b2, 1.0 - b1, 1.0 - b2, c.eps, c.lr * plain, c.lr * rect, 1.0 - c.lr * c.weight_decay])
            }
            OptimizerConfig::Newton(c) => pack(&[c.lr, c.weight_decay, c.beta1, 1.0 - c.beta1, c.beta2, 1.0 - c.beta2, c.damping, c.clip]),
            OptimizerConfig::Lion(c) => {
                let (b1, b2) = c.betas;
                pack(&[c.lr, c.weight_decay, b1, 1.0 - b1, b2, 1.0 - b2, 1.0 - c.lr * c.weight_decay])
            }
        }
    }
}

impl OptimizerConfig {
    /// Names accepted by [`OptimizerConfig::from_pytorch`] (`torch.optim` class names, lower case).
    /// `newton` is this crate's own and `lion` the paper's (no `torch.optim` class).
    pub const PYTORCH_NAMES: [&'static str; 11] = ["sgd", "adagrad", "rmsprop", "adadelta", "adam", "adamw", "adamax", "nadam", "radam", "newton", "lion"];

    /// The config of `torch.optim.<name>(**options)`: `name` is the class
    /// name (any case), `options` maps PyTorch option names (`lr`, `betas`,
    /// `weight_decay`, `momentum`, `nesterov`, …, plus this crate's
    /// `eps_inside_sqrt`) to JSON values; every other option keeps PyTorch's
    /// default.
    ///
    /// ```
    /// use wgpu_optim::OptimizerConfig;
    /// let opts = serde_json::json!({"lr": 0.01, "betas": [0.8, 0.99]});
    /// let c = OptimizerConfig::from_pytorch("AdamW", opts.as_object().unwrap()).unwrap();
    /// assert_eq!(c.lr(), 0.01);
    /// ```
    ///
    /// **Errors:** [`OptimError::UnknownOption`] for an unknown name or an
    /// option of another optimizer; [`OptimError::InvalidHyperparameter`] and
    /// [`OptimError::InvalidOptions`] as [`OptimizerConfig::validate`].
    pub fn from_pytorch(name: &str, options: &serde_json::Map<String, serde_json::Value>) -> Result<Self> {
        use serde_json::{from_value, Value};
        let lower = name.to_ascii_lowercase();
        let default: OptimizerConfig = match lower.as_str() {
            "sgd" => Sgd::default().into(),
            "adagrad" => Adagrad::default().into(),
            "rmsprop" => RmsProp::default().into(),
            "adadelta" => Adadelta::default().into(),
            "adam" => Adam::default().into(),
            "adamw" => AdamW::default().into(),
            "adamax" => Adamax::default().into(),
            "nadam" => NAdam::default().into(),
            "radam" => RAdam::default().into(),
            "newton" => Newton::default().into(),
            "lion" => Lion::default().into(),
            _ => {
                return Err(OptimError::UnknownOption { optimizer: name.to_string(), option: "(optimizer name)".into(), known: Self::PYTORCH_NAMES.join(", ") });
            }
        };
        let mut merged = default.to_pytorch();
        for (k, v) in options {
            if !merged.contains_key(k) {
                let known = merged.keys().cloned().collect::<Vec<_>>().join(", ");
                return Err(OptimError::UnknownOption { optimizer: lower, option: k.clone(), known });
            }
            merged.insert(k.clone(), v.clone());
        }
        let bad_type = |_| OptimError::InvalidOptions("an option has the wrong type (numbers, booleans, betas as two numbers)");
        let merged = Value::Object(merged);
        let config: OptimizerConfig = match lower.as_str() {
            "sgd" => OptimizerConfig::Sgd(from_value(merged).map_err(bad_type)?),
            "adagrad" => OptimizerConfig::Adagrad(from_value(merged).map_err(bad_type)?),
            "rmsprop" => OptimizerConfig::RmsProp(from_value(merged).map_err(bad_type)?),
            "adadelta" => OptimizerConfig::Adadelta(from_value(merged).map_err(bad_type)?),
            "adam" => OptimizerConfig::Adam(from_value(merged).map_err(bad_type)?),
            "adamw" => OptimizerConfig::AdamW(from_value(merged).map_err(bad_type)?),
            "adamax" => OptimizerConfig::Adamax(from_value(merged).map_err(bad_type)?),
            "nadam" => OptimizerConfig::NAdam(from_value(merged).map_err(bad_type)?),
            "radam" => OptimizerConfig::RAdam(from_value(merged).map_err(bad_type)?),
            "newton" => OptimizerConfig::Newton(from_value(merged).map_err(bad_type)?),
            _ => OptimizerConfig::Lion(from_value(merged).map_err(bad_type)?),
        };
        config.validate()?;
        Ok(config)
    }

    /// The `torch.optim` class name, lower case (`"sgd"` for Momentum and NAG too).
    pub fn pytorch_name(&self) -> &'static str {
        match self {
            OptimizerConfig::Sgd(_) => "sgd",
            OptimizerConfig::Adagrad(_) => "adagrad",
            OptimizerConfig::RmsProp(_) => "rmsprop",
            OptimizerConfig::Adadelta(_) => "adadelta",
            OptimizerConfig::Adam(_) => "adam",
            OptimizerConfig::AdamW(_) => "adamw",
            OptimizerConfig::Adamax(_) => "adamax",
            OptimizerConfig::NAdam(_) => "nadam",
            OptimizerConfig::RAdam(_) => "radam",
            OptimizerConfig::Newton(_) => "newton",
            OptimizerConfig::Lion(_) => "lion",
        }
    }

    /// Every option by its PyTorch name, as a JSON object (the inverse of
    /// [`OptimizerConfig::from_pytorch`]).
    pub fn to_pytorch(&self) -> serde_json::Map<String, serde_json::Value> {
        let v = match self {
            OptimizerConfig::Sgd(c) => serde_json::to_value(c),
            OptimizerConfig::Adagrad(c) => serde_json::to_value(c),
            OptimizerConfig::RmsProp(c) => serde_json::to_value(c),
            OptimizerConfig::Adadelta(c) => serde_json::to_value(c),
            OptimizerConfig::Adam(c) => serde_json::to_value(c),
            OptimizerConfig::AdamW(c) => serde_json::to_value(c),
            OptimizerConfig::Adamax(c) => serde_json::to_value(c),
            OptimizerConfig::NAdam(c) => serde_json::to_value(c),
            OptimizerConfig::RAdam(c) => serde_json::to_value(c),
            OptimizerConfig::Newton(c) => serde_json::to_value(c),
            OptimizerConfig::Lion(c) => serde_json::to_value(c),
        };
        match v {
            Ok(serde_json::Value::Object(m)) => m,
            _ => unreachable!("configs serialize to JSON objects"),
        }
    }

    /// The step-dependent factors of step `t`, computed in f64, for the
    /// device-side step counter used with a [`GradScaler`](crate::engine::GradScaler)
    /// (where a skipped step does not advance `t`, and the host cannot know
    /// without a sync). The kernel multiplies them by the lr in f32:
    ///
    /// ```text
    /// Adam, AdamW   [1/(1−β₁ᵗ), √(1−β₂ᵗ), 1/(1−β₂ᵗ), 0]   step_size = lr·x
    /// Adagrad       [1/(1 + (t−1)·lr_decay), 0, 0, 0]    clr = lr·x
    /// Adamax        [1/(1−β₁ᵗ), 0, 0, 0]                 clr = lr·x
    /// NAdam         [(1−μₜ)/(1−Πₜ), μₜ₊₁/(1−Πₜμₜ₊₁), 1/(1−β₂ᵗ), 0]
    /// RAdam         [c_plain/lr, c_rect/lr, 0, 0]
    /// others        0 (no step-dependent scalar; momentum's first step is t = 1)
    /// ```
    pub fn step_factors(&self, t: u32) -> [f32; 4] {
        let t = t.max(1) as i32;
        match self {
            OptimizerConfig::Adam(Adam { betas, .. }) | OptimizerConfig::AdamW(AdamW { betas, .. }) => {
                let (bc1, bc2) = (1.0 - betas.0.powi(t), 1.0 - betas.1.powi(t));
                [(1.0 / bc1) as f32, bc2.sqrt() as f32, (1.0 / bc2) as f32, 0.0]
            }
            OptimizerConfig::Adagrad(c) => [(1.0 / (1.0 + (t - 1) as f64 * c.lr_decay)) as f32, 0.0, 0.0, 0.0],
            OptimizerConfig::Adamax(c) => [(1.0 / (1.0 - c.betas.0.powi(t))) as f32, 0.0, 0.0, 0.0],
            OptimizerConfig::NAdam(c) => {
                let (fg, fm, inv_bc2) = c.factors(t as u32);
                [fg as f32, fm as f32, inv_bc2 as f32, 0.0]
            }
            OptimizerConfig::RAdam(c) => {
                let (plain, rect) = c.factors(t as u32);
                [plain as f32, rect as f32, 0.0, 0.0]
            }
            _ => [0.0; 4],
        }
    }
}

/// Rounds f64 scalars once to f32 into the leading slots of a [`Coeffs`]
/// (no allocation: this runs on every recorded step).
fn pack(values: &[f64]) -> Coeffs {
    let mut out = [0f32; N_COEFFS];
    for (o, x) in out.iter_mut().zip(values) {
        *o = *x as f32;
    }
    out
}

/// Adam/AdamW slots: lr, weight_decay, beta1, beta2, 1−beta1, 1−beta2, eps,
/// step_size = lr/(1−β₁ᵗ), bias_correction2_sqrt = √(1−β₂ᵗ),
/// decay = 1 − lr·weight_decay, 1/(1−β₂ᵗ).
fn adam_coeffs(lr: f64, betas: (f64, f64), eps: f64, wd: f64, t: f64) -> Coeffs {
    let bc1 = 1.0 - betas.0.powi(t as i32);
    let bc2 = 1.0 - betas.1.powi(t as i32);
    pack(&[lr, wd, betas.0, betas.1, 1.0 - betas.0, 1.0 - betas.1, eps, lr / bc1, bc2.sqrt(), 1.0 - lr * wd, 1.0 / bc2])
}
