//! The update rules and their registry.
//!
//! A rule lives in one place: its config (PyTorch option names, defaults,
//! docs, validation), state slots, flags, per-step scalars, f64 reference
//! step, tolerance and validation cases are in `src/rules/<rule>.rs`, as an
//! implementation of [`RuleConfig`]; its update body is
//! `shaders/rules/<name>.wgsl`. The registry below has one line per config
//! type, naming the kernels (shaders) it runs; everything that dispatches
//! over rules ([`Rule`], [`OptimizerConfig`], `from_pytorch`, the tests'
//! lists) is generated from it. See `CONTRIBUTING.md` for adding a rule.

mod coeffs;
mod config;
pub mod flags;
pub mod pieces;
pub mod unfused;
mod registry;

pub use coeffs::{wgsl as coeffs_wgsl, CoeffSet, Factors, Packed, N_COEFFS};
pub use config::{Quantity, RefState, RuleConfig, Slot, StateLayout, MAX_SLOTS};
pub use registry::Case;

registry::registry! {
    sgd::Sgd { Sgd = "sgd", Momentum = "momentum", Nag = "nag" }
    adagrad::Adagrad { Adagrad = "adagrad" }
    rmsprop::RmsProp { RmsProp = "rmsprop" }
    adadelta::Adadelta { Adadelta = "adadelta" }
    adam::Adam { Adam = "adam" }
    adamw::AdamW { AdamW = "adamw" }
    adamax::Adamax { Adamax = "adamax" }
    nadam::NAdam { NAdam = "nadam" }
    radam::RAdam { RAdam = "radam" }
    newton::Newton { Newton = "newton" }
    lion::Lion { Lion = "lion" }
    asgd::Asgd { Asgd = "asgd" }
    rprop::Rprop { Rprop = "rprop" }
    adan::Adan { Adan = "adan" }
    schedule_free::AdamWScheduleFree { AdamWScheduleFree = "adamw_schedulefree" }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With a GradScaler the shader rebuilds the step-dependent scalars from
    /// step 1's and the host's factors (`at_step`); they must agree with the
    /// host's own scalars of that step to f32 rounding, for every case and
    /// far into training. A rule whose scalars depend on t without factors,
    /// or with factors its `at_step` misuses, fails here.
    #[test]
    fn at_step_agrees_with_the_host_scalars() {
        for case in OptimizerConfig::all_cases() {
            if !case.config.host_scalars().is_empty() {
                continue; // scalars carried on the host: the device never forms a step's scalars (a device step is refused)
            }
            for t in [1, 2, 3, 10, 1000, 5000] {
                let (host, device) = case.config.at_step_check(t);
                for (k, (a, b)) in host.iter().zip(&device).enumerate() {
                    assert!((a - b).abs() <= 4.0 * f32::EPSILON * a.abs().max(b.abs()), "{} t={t}: scalar {k} is {a} on the host, {b} from at_step", case.name);
                }
            }
        }
    }

    #[test]
    fn names_are_unique_and_resolve() {
        for (i, r) in Rule::ALL.iter().enumerate() {
            assert_eq!(Rule::from_name(r.name()), Some(*r));
            assert!(Rule::ALL[..i].iter().all(|o| o.name() != r.name()));
            assert!(OptimizerConfig::PYTORCH_NAMES.contains(&r.pytorch_name()));
        }
        for name in OptimizerConfig::PYTORCH_NAMES {
            let c = OptimizerConfig::default_for(name).unwrap();
            assert_eq!(c.pytorch_name(), *name);
            assert_eq!(OptimizerConfig::from_pytorch(&name.to_uppercase(), &c.to_pytorch()).unwrap(), c);
        }
    }

    /// Every kernel has validation cases, every case is valid, and every
    /// case's state layout names its slots.
    #[test]
    fn every_kernel_has_valid_cases() {
        let cases = OptimizerConfig::all_cases();
        for r in Rule::ALL {
            assert!(cases.iter().any(|c| c.config.rule() == *r), "{} has no case", r.name());
        }
        for c in &cases {
            c.config.validate().unwrap_or_else(|e| panic!("{}: {e}", c.name));
            assert!(c.config.state().used().all(|(_, s)| !s.name.is_empty()));
        }
    }
}
