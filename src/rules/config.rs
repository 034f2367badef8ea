//! What every rule provides: the [`RuleConfig`] trait, its state slots and
//! the f64 reference state.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{CoeffSet, OptimizerConfig, Rule};
use super::unfused::Instr;
use crate::error::Result;

/// What values a state slot holds; the engine picks its 8-bit coding from
/// this (`crate::quant::Coding::of`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Quantity {
    /// Any sign: a moment (`exp_avg`, `momentum_buffer`, …) or an input.
    #[default]
    Signed,
    /// A non-negative second moment (`exp_avg_sq`, `sum`, …), whose dynamic
    /// range is the square of the gradient's.
    SecondMoment,
    /// A non-negative quantity of the gradient's own range.
    NonNegative,
}

/// One state tensor of a rule: its PyTorch `state_dict` name and what it
/// holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// The state's name in PyTorch's `state_dict` (`exp_avg`, `sum`, …).
    pub name: &'static str,
    /// What values it holds, which picks its 8-bit coding.
    pub quantity: Quantity,
    /// The user writes it before each step (Newton's `hessian`); the rule
    /// only reads it.
    pub input: bool,
    /// It starts as a copy of the param (schedule-free's `z`), not as
    /// [`RuleConfig::initial_state`].
    pub copy_of_param: bool,
}

impl Slot {
    /// A signed moment (`exp_avg`, `momentum_buffer`, …).
    pub const fn signed(name: &'static str) -> Slot {
        Slot { name, quantity: Quantity::Signed, input: false, copy_of_param: false }
    }

    /// A non-negative second moment (`exp_avg_sq`, `sum`, …).
    pub const fn second_moment(name: &'static str) -> Slot {
        Slot { name, quantity: Quantity::SecondMoment, input: false, copy_of_param: false }
    }

    /// A non-negative quantity kept in its own domain.
    pub const fn unsigned(name: &'static str) -> Slot {
        Slot { name, quantity: Quantity::NonNegative, input: false, copy_of_param: false }
    }

    /// A signed iterate that starts as a copy of the param (schedule-free's `z`).
    pub const fn param_copy(name: &'static str) -> Slot {
        Slot { name, quantity: Quantity::Signed, input: false, copy_of_param: true }
    }

    /// A signed input the user writes before each step.
    pub const fn input(name: &'static str) -> Slot {
        Slot { name, quantity: Quantity::Signed, input: true, copy_of_param: false }
    }
}

/// Most state slots a rule may declare (Adan's four). The shaders'
/// `Lanes` and the bindings of `shaders/prelude/common.wgsl` have one per
/// slot (a test parses them).
pub const MAX_SLOTS: usize = 4;

/// A rule's state slots in binding order (bindings 3, 4, 5 and 9); `None`
/// is an unused slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateLayout(pub [Option<Slot>; MAX_SLOTS]);

impl StateLayout {
    /// No state.
    pub const NONE: StateLayout = StateLayout([None; MAX_SLOTS]);

    /// The first `slots.len()` slots; the rest unused.
    ///
    /// **Panics** with more than [`MAX_SLOTS`] slots (a rule's declaration,
    /// which every rule's tests exercise).
    pub fn new(slots: &[Option<Slot>]) -> StateLayout {
        let mut all = [None; MAX_SLOTS];
        all[..slots.len()].copy_from_slice(slots);
        StateLayout(all)
    }

    /// Slot `slot` (bound at 3, 4, 5 or 9), if used.
    pub fn get(&self, slot: usize) -> Option<&Slot> {
        self.0.get(slot).and_then(|s| s.as_ref())
    }

    /// The used slots with their index.
    pub fn used(&self) -> impl Iterator<Item = (usize, &Slot)> {
        self.0.iter().enumerate().filter_map(|(i, s)| s.as_ref().map(|s| (i, s)))
    }

    /// Number of used slots.
    pub fn count(&self) -> usize {
        self.used().count()
    }

    /// Bit i set when slot i is used.
    pub fn mask(&self) -> u32 {
        self.used().fold(0, |m, (i, _)| m | 1 << i)
    }

    /// Names in binding order up to the last used slot ("" for an unused one).
    pub fn names(&self) -> Vec<&'static str> {
        let last = self.0.iter().rposition(|s| s.is_some()).map_or(0, |i| i + 1);
        self.0[..last].iter().map(|s| s.map_or("", |s| s.name)).collect()
    }

    /// The slot the user writes before each step, if any.
    pub fn input(&self) -> Option<usize> {
        self.used().find(|(_, s)| s.input).map(|(i, _)| i)
    }
}

/// The f64 state of the reference for one flat tensor.
#[derive(Clone, Debug)]
pub struct RefState {
    /// State slots in binding order (unused ones stay as initialised).
    pub slots: [Vec<f64>; MAX_SLOTS],
    /// Extra absolute error each element may show for the last step, set by
    /// rules whose result is discontinuous in its inputs (Lion's sign: 2·lr
    /// where the sign's argument was within f32 rounding of zero). Reset to
    /// zero before every step.
    pub allowance: Vec<f64>,
}

/// A config of one update rule, with everything the engine, the reference,
/// the checkpoints, the CLI and the tests need from it. Each rule implements
/// it in its own file under `src/rules/`; the registry in `src/rules/mod.rs`
/// dispatches to it.
pub trait RuleConfig: Copy + std::fmt::Debug + PartialEq + Default + Serialize + DeserializeOwned + Into<OptimizerConfig> + 'static {
    /// The `torch.optim` class name in lower case (`from_pytorch`'s key).
    const PYTORCH_NAME: &'static str;
    /// The per-step scalars of the rule's shader.
    type Coeffs: CoeffSet;

    /// The fused kernel that runs this config.
    fn rule(&self) -> Rule;
    /// Checks every option (PyTorch's `ValueError`s, as typed errors).
    fn validate(&self) -> Result<()>;
    /// The learning rate (schedules set it).
    fn lr_mut(&mut self) -> &mut f64;
    /// The weight decay, if the rule has one.
    fn weight_decay_mut(&mut self) -> Option<&mut f64>;
    /// The state slots.
    fn state(&self) -> StateLayout;
    /// Initial value of every element of state slot `slot`.
    fn initial_state(&self, _slot: usize) -> f64 {
        0.0
    }
    /// Flag bits of the step uniform (see [`flags`](super::flags)).
    fn flags(&self) -> u32;
    /// The rule's own global-norm clipping `(max_norm, eps)` (Adan's
    /// `max_grad_norm`): the engine folds it into its
    /// [`GradControl`](crate::GradControl). `None` for most rules.
    fn grad_clip(&self) -> Option<(f64, f64)> {
        None
    }
    /// The per-step scalars of step `t` (1-based), in f64.
    fn coeffs(&self, t: u32) -> Self::Coeffs;
    /// Scalars the rule carries on the host from step to step, by their
    /// PyTorch `param_group` names, with their initial values
    /// (schedule-free's `weight_sum` and `lr_max`). Checkpoints keep them.
    /// Empty for most rules.
    fn host_scalars(&self) -> &'static [(&'static str, f64)] {
        &[]
    }
    /// The per-step scalars of step `t` from the host scalars before it,
    /// which it advances, with the options as they are now (a scheduler's
    /// lr counts as in PyTorch). Without host scalars: [`Self::coeffs`].
    fn advance(&self, t: u32, _host: &mut [f64]) -> Self::Coeffs {
        self.coeffs(t)
    }
    /// The scalars of the one pass that moves the params from train to
    /// eval form (`to_eval`) or back (schedule-free's `eval()` and
    /// `train()`); the shader sees the pass as the runtime flag
    /// `MODE_SWITCH`. `None`: the rule has no modes.
    fn mode_switch(&self, _to_eval: bool) -> Option<Self::Coeffs> {
        None
    }
    /// The f64 reference of that pass over the flat params `p`, written
    /// from the reference package's `eval()`/`train()`. No-op without modes.
    fn reference_mode_switch(&self, _to_eval: bool, _p: &mut [f64], _state: &RefState) {}
    /// The step-dependent factors of step `t` for a device-side step
    /// counter (GradScaler), computed in f64; the shader's `at_step`
    /// combines them with the other scalars. Zero for rules without any.
    fn step_factors(&self, _t: u32) -> [f64; 4] {
        [0.0; 4]
    }
    /// One f64 reference step `t` of the flat tensor `p` with grads `g`,
    /// written from PyTorch's equations, independently of [`Self::coeffs`].
    fn reference_step(&self, t: u32, p: &mut [f64], g: &[f64], state: &mut RefState);
    /// The `k` of the validation bound (f32 roundings per step), derived
    /// from WGSL's stated accuracy in the rule's docs.
    fn tolerance_k(&self) -> f64;
    /// Named option sets the tests, the tour and `validate --all` check.
    fn cases() -> Vec<(&'static str, Self)>;
    /// PyTorch's single-tensor (`foreach=False`) step as one kernel per
    /// elementwise op, for the benchmark's unfused baseline; `None` where
    /// there is none.
    fn unfused(&self, _t: u32) -> Option<Vec<Instr>> {
        None
    }
}
