//! The registry machinery: from one line per config type, the
//! [`registry!`] macro generates `Rule` (the kernels), `OptimizerConfig`
//! (any config), their conversions and name tables; every method that
//! dispatches over configs goes through [`DynRule`], so no other code
//! matches over rules.

use super::{CoeffSet, Packed, RefState, Rule, RuleConfig, StateLayout};
use super::unfused::Instr;
use crate::error::{OptimError, Result};

/// A named config to validate.
#[derive(Clone, Debug)]
pub struct Case {
    /// The case's name, shown in test and `validate` output.
    pub name: String,
    /// The config to validate.
    pub config: super::OptimizerConfig,
}

impl Case {
    /// A case named `name`.
    pub fn new(name: &str, config: impl Into<super::OptimizerConfig>) -> Self {
        Case { name: name.to_string(), config: config.into() }
    }
}

/// [`RuleConfig`] as an object: what `OptimizerConfig` dispatches to.
pub trait DynRule {
    fn rule(&self) -> Rule;
    fn validate(&self) -> Result<()>;
    fn lr_mut(&mut self) -> &mut f64;
    fn weight_decay_mut(&mut self) -> Option<&mut f64>;
    fn state(&self) -> StateLayout;
    fn initial_state(&self, slot: usize) -> f64;
    fn flags(&self) -> u32;
    fn grad_clip(&self) -> Option<(f64, f64)>;
    fn host_scalars(&self) -> &'static [(&'static str, f64)];
    fn packed_advance(&self, t: u32, host: &mut [f64]) -> Packed;
    fn packed_mode_switch(&self, to_eval: bool) -> Option<Packed>;
    fn reference_mode_switch(&self, to_eval: bool, p: &mut [f64], state: &RefState);
    fn packed_coeffs(&self, t: u32) -> Packed;
    fn step_factors(&self, t: u32) -> [f64; 4];
    fn at_step_check(&self, t: u32) -> (Packed, Packed);
    fn reference_step(&self, t: u32, p: &mut [f64], g: &[f64], state: &mut RefState);
    fn tolerance_k(&self) -> f64;
    fn unfused(&self, t: u32) -> Option<Vec<Instr>>;
    fn pytorch_name(&self) -> &'static str;
    fn to_json(&self) -> serde_json::Value;
}

impl<T: RuleConfig> DynRule for T {
    fn rule(&self) -> Rule {
        RuleConfig::rule(self)
    }
    fn validate(&self) -> Result<()> {
        RuleConfig::validate(self)
    }
    fn lr_mut(&mut self) -> &mut f64 {
        RuleConfig::lr_mut(self)
    }
    fn weight_decay_mut(&mut self) -> Option<&mut f64> {
        RuleConfig::weight_decay_mut(self)
    }
    fn state(&self) -> StateLayout {
        RuleConfig::state(self)
    }
    fn initial_state(&self, slot: usize) -> f64 {
        RuleConfig::initial_state(self, slot)
    }
    fn flags(&self) -> u32 {
        RuleConfig::flags(self)
    }
    fn grad_clip(&self) -> Option<(f64, f64)> {
        RuleConfig::grad_clip(self)
    }
    fn host_scalars(&self) -> &'static [(&'static str, f64)] {
        RuleConfig::host_scalars(self)
    }
    fn packed_advance(&self, t: u32, host: &mut [f64]) -> Packed {
        RuleConfig::advance(self, t, host).pack()
    }
    fn packed_mode_switch(&self, to_eval: bool) -> Option<Packed> {
        RuleConfig::mode_switch(self, to_eval).map(|c| c.pack())
    }
    fn reference_mode_switch(&self, to_eval: bool, p: &mut [f64], state: &RefState) {
        RuleConfig::reference_mode_switch(self, to_eval, p, state)
    }
    fn packed_coeffs(&self, t: u32) -> Packed {
        RuleConfig::coeffs(self, t).pack()
    }
    fn step_factors(&self, t: u32) -> [f64; 4] {
        RuleConfig::step_factors(self, t)
    }
    /// (the host's scalars of step `t`, `at_step` applied to step 1's
    /// packed scalars with step `t`'s factors rounded to f32).
    fn at_step_check(&self, t: u32) -> (Packed, Packed) {
        let base = T::Coeffs::unpack(&RuleConfig::coeffs(self, 1).pack());
        let f = RuleConfig::step_factors(self, t).map(|x| x as f32 as f64);
        (RuleConfig::coeffs(self, t).pack(), base.at_step(f.into()).pack())
    }
    fn reference_step(&self, t: u32, p: &mut [f64], g: &[f64], state: &mut RefState) {
        RuleConfig::reference_step(self, t, p, g, state)
    }
    fn tolerance_k(&self) -> f64 {
        RuleConfig::tolerance_k(self)
    }
    fn unfused(&self, t: u32) -> Option<Vec<Instr>> {
        RuleConfig::unfused(self, t)
    }
    fn pytorch_name(&self) -> &'static str {
        T::PYTORCH_NAME
    }
    fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("configs serialize to JSON")
    }
}

/// The error for a name no registered config has.
pub(super) fn unknown_optimizer(name: &str, known: &[&str]) -> OptimError {
    OptimError::UnknownOption { optimizer: name.to_string(), option: "(optimizer name)".into(), known: known.join(", ") }
}

/// Generates the registry from `module::Config { Kernel = "name", … }` lines
/// (see `src/rules/mod.rs`): each line declares the module, re-exports the
/// config type, adds its kernels to [`Rule`](super::Rule) (shader
/// `shaders/rules/<name>.wgsl`) and the config to
/// [`OptimizerConfig`](super::OptimizerConfig).
macro_rules! registry {
    ($($module:ident :: $config:ident { $($rule:ident = $name:literal),+ $(,)? })+) => {
        $(pub mod $module;)+

        /// Every config type, re-exported at the crate root.
        pub mod configs {
            $(pub use super::$module::$config;)+
        }

        /// The fused kernels, one WGSL file each in `shaders/rules/`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Rule {
            $($(
                #[doc = concat!("The `", $name, "` kernel, `shaders/rules/", $name, ".wgsl`, run by [`", stringify!($config), "`](", stringify!($module), "::", stringify!($config), ").")]
                $rule,
            )+)+
        }

        impl Rule {
            /// Every kernel, in registry order (the order tables print).
            pub const ALL: &'static [Rule] = &[$($(Rule::$rule,)+)+];

            /// Short lowercase name: the CLI's and the shader file's.
            pub fn name(self) -> &'static str {
                match self {
                    $($(Rule::$rule => $name,)+)+
                }
            }

            /// The rule with this [`Rule::name`].
            pub fn from_name(name: &str) -> Option<Rule> {
                Rule::ALL.iter().copied().find(|r| r.name() == name)
            }

            /// The rule's update body, `shaders/rules/<name>.wgsl`.
            pub fn shader_source(self) -> &'static str {
                match self {
                    $($(Rule::$rule => include_str!(concat!("../../shaders/rules/", $name, ".wgsl")),)+)+
                }
            }

            /// The WGSL `struct Coeffs` and `at_step` of the rule, generated
            /// from its `coefficients!` declaration.
            pub fn coeffs_wgsl(self) -> String {
                match self {
                    $($(Rule::$rule => $crate::rules::coeffs_wgsl::<<$module::$config as $crate::rules::RuleConfig>::Coeffs>(),)+)+
                }
            }

            /// The `torch.optim` class name of the config that runs it.
            pub fn pytorch_name(self) -> &'static str {
                match self {
                    $($(Rule::$rule => <$module::$config as $crate::rules::RuleConfig>::PYTORCH_NAME,)+)+
                }
            }
        }

        /// Any supported optimizer configuration.
        #[derive(Clone, Copy, Debug, PartialEq)]
        pub enum OptimizerConfig {
            $(
                #[doc = concat!("A [`", stringify!($config), "`](", stringify!($module), "::", stringify!($config), ") config.")]
                $config($module::$config),
            )+
        }

        $(impl From<$module::$config> for OptimizerConfig {
            fn from(c: $module::$config) -> Self {
                OptimizerConfig::$config(c)
            }
        })+

        impl OptimizerConfig {
            /// Names accepted by [`OptimizerConfig::from_pytorch`] (`torch.optim`
            /// class names, lower case; `newton` is this crate's own and `lion`
            /// the paper's).
            pub const PYTORCH_NAMES: &'static [&'static str] = &[$(<$module::$config as $crate::rules::RuleConfig>::PYTORCH_NAME),+];

            /// The config as a [`RuleConfig`] object.
            pub(crate) fn as_dyn(&self) -> &dyn $crate::rules::registry::DynRule {
                match self {
                    $(OptimizerConfig::$config(c) => c,)+
                }
            }

            fn as_dyn_mut(&mut self) -> &mut dyn $crate::rules::registry::DynRule {
                match self {
                    $(OptimizerConfig::$config(c) => c,)+
                }
            }

            /// PyTorch's defaults for the class `name` (lower case).
            pub fn default_for(name: &str) -> $crate::error::Result<Self> {
                $(if name == <$module::$config as $crate::rules::RuleConfig>::PYTORCH_NAME {
                    return Ok(<$module::$config>::default().into());
                })+
                Err($crate::rules::registry::unknown_optimizer(name, Self::PYTORCH_NAMES))
            }

            /// A config of the same class as `self` from every option by name.
            fn with_options(&self, options: serde_json::Value) -> std::result::Result<Self, serde_json::Error> {
                match self {
                    $(OptimizerConfig::$config(_) => serde_json::from_value::<$module::$config>(options).map(Into::into),)+
                }
            }

            /// Every registered config's validation cases.
            pub fn all_cases() -> Vec<$crate::rules::Case> {
                let mut out = Vec::new();
                $(out.extend(<$module::$config as $crate::rules::RuleConfig>::cases().into_iter().map(|(name, c)| $crate::rules::Case { name: name.to_string(), config: c.into() }));)+
                out
            }
        }
    };
}

pub(super) use registry;

impl super::OptimizerConfig {
    /// Checks every option of the wrapped config.
    pub fn validate(&self) -> Result<()> {
        self.as_dyn().validate()
    }

    /// The fused kernel that runs this config.
    pub fn rule(&self) -> Rule {
        self.as_dyn().rule()
    }

    /// The learning rate.
    pub fn lr(&self) -> f64 {
        let mut c = *self;
        *c.as_dyn_mut().lr_mut()
    }

    /// Replaces the learning rate (used by LR schedules; no pipeline is rebuilt).
    pub fn set_lr(&mut self, lr: f64) {
        *self.as_dyn_mut().lr_mut() = lr;
    }

    /// The weight decay (0 for rules without one).
    pub fn weight_decay(&self) -> f64 {
        let mut c = *self;
        c.as_dyn_mut().weight_decay_mut().map_or(0.0, |w| *w)
    }

    /// Replaces the weight decay (no effect on rules without one).
    pub fn set_weight_decay(&mut self, wd: f64) {
        if let Some(w) = self.as_dyn_mut().weight_decay_mut() {
            *w = wd;
        }
    }

    /// The state slots.
    pub fn state(&self) -> StateLayout {
        self.as_dyn().state()
    }

    /// PyTorch `state_dict` names of the state buffers in binding order
    /// (bindings 3, 4, 5, 9), up to the last used one ("" for an unused slot).
    pub fn state_names(&self) -> Vec<&'static str> {
        self.state().names()
    }

    /// Initial value of every element of state slot `slot` (rounded to f32,
    /// as the state is stored).
    pub fn initial_state(&self, slot: usize) -> f64 {
        self.as_dyn().initial_state(slot)
    }

    /// Flag bits of the step uniform (without [`flags::FIRST_STEP`](super::flags::FIRST_STEP)).
    pub fn flags(&self) -> u32 {
        self.as_dyn().flags()
    }

    /// The rule's own global-norm clipping `(max_norm, eps)` (Adan's
    /// `max_grad_norm`), which the engine folds into its grad control.
    pub fn grad_clip(&self) -> Option<(f64, f64)> {
        self.as_dyn().grad_clip()
    }

    /// The scalars the rule carries on the host between steps, by their
    /// PyTorch names, with initial values (schedule-free's `weight_sum`,
    /// `lr_max`); empty for most rules.
    pub fn host_scalars(&self) -> &'static [(&'static str, f64)] {
        self.as_dyn().host_scalars()
    }

    /// Step `t`'s scalars from the host scalars before it, which it
    /// advances ([`RuleConfig::advance`]); packed as [`OptimizerConfig::coeffs`](super::OptimizerConfig::coeffs).
    pub fn advance(&self, t: u32, host: &mut [f64]) -> Packed {
        self.as_dyn().packed_advance(t, host)
    }

    /// The scalars of the pass between train and eval form, for a rule
    /// with modes ([`RuleConfig::mode_switch`]).
    pub fn mode_switch(&self, to_eval: bool) -> Option<Packed> {
        self.as_dyn().packed_mode_switch(to_eval)
    }

    /// The f64 reference of the pass between train and eval form (a no-op
    /// for rules without modes).
    pub fn reference_mode_switch(&self, to_eval: bool, p: &mut [f64], state: &RefState) {
        self.as_dyn().reference_mode_switch(to_eval, p, state)
    }

    /// Per-step scalars for step `t` (1-based), computed in f64 and rounded
    /// once to f32, in the order of the shader's generated `struct Coeffs`.
    pub fn coeffs(&self, t: u32) -> Packed {
        self.as_dyn().packed_coeffs(t)
    }

    /// The step-dependent factors of step `t` (at least 1) for the
    /// device-side step counter used with a GradScaler, computed in f64.
    pub fn step_factors(&self, t: u32) -> [f64; 4] {
        self.as_dyn().step_factors(t.max(1))
    }

    /// `(coeffs(t), at_step(coeffs(1), step_factors(t)))`: the host's
    /// scalars of step `t`, and what the shader's `at_step` makes of step
    /// 1's with step `t`'s factors (the two agree to f32 rounding).
    pub fn at_step_check(&self, t: u32) -> (Packed, Packed) {
        self.as_dyn().at_step_check(t)
    }

    /// One f64 reference step (see [`RuleConfig::reference_step`]).
    pub fn reference_step(&self, t: u32, p: &mut [f64], g: &[f64], state: &mut RefState) {
        self.as_dyn().reference_step(t, p, g, state)
    }

    /// The `k` of the validation bound.
    pub fn tolerance_k(&self) -> f64 {
        self.as_dyn().tolerance_k()
    }

    /// The unfused baseline's launches of step `t`, if there is a baseline.
    pub fn unfused(&self, t: u32) -> Option<Vec<Instr>> {
        self.as_dyn().unfused(t)
    }

    /// The `torch.optim` class name, lower case (`"sgd"` for Momentum and NAG too).
    pub fn pytorch_name(&self) -> &'static str {
        self.as_dyn().pytorch_name()
    }

    /// Every option by its PyTorch name, as a JSON object (the inverse of
    /// [`from_pytorch`](Self::from_pytorch)).
    pub fn to_pytorch(&self) -> serde_json::Map<String, serde_json::Value> {
        match self.as_dyn().to_json() {
            serde_json::Value::Object(m) => m,
            _ => unreachable!("configs serialize to JSON objects"),
        }
    }

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
    /// [`OptimError::InvalidOptions`] as [`OptimizerConfig::validate`](crate::rules::OptimizerConfig::validate).
    pub fn from_pytorch(name: &str, options: &serde_json::Map<String, serde_json::Value>) -> Result<Self> {
        let lower = name.to_ascii_lowercase();
        let default = Self::default_for(&lower).map_err(|_| unknown_optimizer(name, Self::PYTORCH_NAMES))?;
        let mut merged = default.to_pytorch();
        for (k, v) in options {
            if !merged.contains_key(k) {
                let known = merged.keys().cloned().collect::<Vec<_>>().join(", ");
                return Err(OptimError::UnknownOption { optimizer: lower, option: k.clone(), known });
            }
            merged.insert(k.clone(), v.clone());
        }
        let config = default
            .with_options(serde_json::Value::Object(merged))
            .map_err(|_| OptimError::InvalidOptions("an option has the wrong type (numbers, booleans, betas as a list of numbers)"))?;
        config.validate()?;
        Ok(config)
    }
}
