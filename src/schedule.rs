//! Learning-rate schedules, applied on the host before each step: they only
//! change the lr written into the per-step uniform, so no pipeline is ever
//! rebuilt. Each is PyTorch's `torch.optim.lr_scheduler` closed form (or
//! Hugging Face's cosine-with-warmup), as a factor of the base lr.

use crate::engine::Optimizer;
use crate::error::{OptimError, Result};

/// A learning-rate schedule: `lr(t) = base_lr · factor(t)`, where `t` is the
/// number of steps already taken (PyTorch's `last_epoch` when stepping the
/// scheduler once per optimizer step).
///
/// ```text
/// Constant                         1
/// Step { step_size, gamma }        gamma^⌊t / step_size⌋                       (StepLR)
/// Exponential { gamma }            gamma^t                                     (ExponentialLR)
/// LinearWarmup { start_factor, total_iters }
///                                  start + (1 − start)·min(t, total)/total     (LinearLR, end_factor = 1)
/// CosineWithWarmup { warmup_steps, total_steps, min_factor }
///                                  t/warmup                          for t < warmup
///                                  min + (1 − min)·½(1 + cos(π·p))   p = min(1, (t − warmup)/(total − warmup))
/// Chain(a, b, …)                   product of the factors                      (ChainedScheduler)
/// Sequential { schedules, milestones }
///                                  schedule i from milestone i−1 on, its t counted from there (SequentialLR)
/// ```
///
/// ```
/// use wgpu_optim::schedule::Schedule;
/// let s = Schedule::Step { step_size: 10, gamma: 0.5 };
/// assert_eq!(s.factor(25), 0.25);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum Schedule {
    /// The base lr at every step (factor 1).
    Constant,
    /// `StepLR`: the lr decays by `gamma` every `step_size` steps.
    Step {
        /// Period of the decay, in steps; at least 1.
        step_size: u64,
        /// Multiplicative factor of the decay, applied once per period.
        gamma: f64,
    },
    /// `ExponentialLR`: the lr decays by `gamma` every step.
    Exponential {
        /// Multiplicative factor of the decay, applied every step.
        gamma: f64,
    },
    /// `LinearLR` with `end_factor = 1`: the factor rises linearly from
    /// `start_factor` to 1 over `total_iters` steps, then stays 1.
    LinearWarmup {
        /// The factor at step 0, in (0, 1].
        start_factor: f64,
        /// Steps until the factor reaches 1; at least 1.
        total_iters: u64,
    },
    /// Hugging Face's cosine schedule with warmup: linear from 0 to 1 over
    /// the warmup, then a half cosine from 1 down to `min_factor`.
    CosineWithWarmup {
        /// Steps of linear warmup from factor 0 to 1 (`num_warmup_steps`).
        warmup_steps: u64,
        /// Step at which the cosine reaches `min_factor` and stays there
        /// (`num_training_steps`); must exceed `warmup_steps`.
        total_steps: u64,
        /// The factor the cosine ends at, in [0, 1] (`min_lr_rate`).
        min_factor: f64,
    },
    /// `ChainedScheduler`: the product of the schedules' factors at each step.
    Chain(Vec<Schedule>),
    /// `SequentialLR`: each schedule in turn, switching at the milestones.
    Sequential {
        /// The schedules, in order; one more than the milestones.
        schedules: Vec<Schedule>,
        /// Strictly increasing steps at which the next schedule takes over,
        /// its own step count starting from 0 there.
        milestones: Vec<u64>,
    },
}

impl Schedule {
    /// Checks the parameters (PyTorch's constructor checks).
    ///
    /// **Errors:** [`OptimError::InvalidHyperparameter`], [`OptimError::InvalidOptions`].
    pub fn validate(&self) -> Result<()> {
        let bad = |name, value: f64, requirement| Err(OptimError::InvalidHyperparameter { name, value, requirement });
        match self {
            Schedule::Constant => Ok(()),
            Schedule::Step { step_size, gamma } => {
                if *step_size == 0 {
                    return bad("step_size", 0.0, "must be at least 1");
                }
                if !(gamma.is_finite() && *gamma >= 0.0) {
                    return bad("gamma", *gamma, "must be finite and non-negative");
                }
                Ok(())
            }
            Schedule::Exponential { gamma } => {
                if !(gamma.is_finite() && *gamma >= 0.0) {
                    return bad("gamma", *gamma, "must be finite and non-negative");
                }
                Ok(())
            }
            Schedule::LinearWarmup { start_factor, total_iters } => {
                if !(*start_factor > 0.0 && *start_factor <= 1.0) {
                    return bad("start_factor", *start_factor, "must be in (0, 1]");
                }
                if *total_iters == 0 {
                    return bad("total_iters", 0.0, "must be at least 1");
                }
                Ok(())
            }
            Schedule::CosineWithWarmup { warmup_steps, total_steps, min_factor } => {
                if total_steps <= warmup_steps {
                    return Err(OptimError::InvalidOptions("total_steps must exceed warmup_steps"));
                }
                if !(0.0..=1.0).contains(min_factor) {
                    return bad("min_factor", *min_factor, "must be in [0, 1]");
                }
                Ok(())
            }
            Schedule::Chain(list) => list.iter().try_for_each(Schedule::validate),
            Schedule::Sequential { schedules, milestones } => {
                if schedules.is_empty() || milestones.len() + 1 != schedules.len() {
                    return Err(OptimError::InvalidOptions("Sequential needs one milestone fewer than schedules"));
                }
                if milestones.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(OptimError::InvalidOptions("Sequential milestones must increase"));
                }
                schedules.iter().try_for_each(Schedule::validate)
            }
        }
    }

    /// The factor of the base lr after `t` steps.
    pub fn factor(&self, t: u64) -> f64 {
        match self {
            Schedule::Constant => 1.0,
            Schedule::Step { step_size, gamma } => gamma.powf((t / step_size.max(&1)) as f64),
            Schedule::Exponential { gamma } => gamma.powf(t as f64),
            Schedule::LinearWarmup { start_factor, total_iters } => {
                start_factor + (1.0 - start_factor) * t.min(*total_iters) as f64 / *total_iters.max(&1) as f64
            }
            Schedule::CosineWithWarmup { warmup_steps, total_steps, min_factor } => {
                if t < *warmup_steps {
                    return t as f64 / *warmup_steps as f64;
                }
                let p = ((t - warmup_steps) as f64 / total_steps.saturating_sub(*warmup_steps).max(1) as f64).min(1.0);
                min_factor + (1.0 - min_factor) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
            }
            Schedule::Chain(list) => list.iter().map(|s| s.factor(t)).product(),
            Schedule::Sequential { schedules, milestones } => {
                let i = milestones.iter().take_while(|&&m| t >= m).count();
                let start = if i == 0 { 0 } else { milestones[i - 1] };
                schedules[i].factor(t - start)
            }
        }
    }
}

/// A schedule bound to the base lr of every param group of an optimizer.
///
/// Its position is the optimizer's step count (steps recorded, skipped ones
/// included), PyTorch's `last_epoch` when the scheduler is stepped once per
/// optimizer step; its base lrs are the groups' `initial_lr`. Both are in
/// the optimizer's checkpoint, so building the optimizer, loading a
/// checkpoint and then creating the scheduler resumes exactly.
#[derive(Clone, Debug)]
pub struct Scheduler {
    schedule: Schedule,
    base_lrs: Vec<f64>,
}

impl Scheduler {
    /// Binds `schedule` to `optimizer`'s groups. A group's base lr is its
    /// `initial_lr`, set to its current lr if it has none yet (PyTorch's
    /// `setdefault('initial_lr', lr)`), so a scheduler made after loading a
    /// checkpoint scales the lr the run started from, not the last
    /// scheduled one.
    ///
    /// **Errors:** as [`Schedule::validate`].
    pub fn new(schedule: Schedule, optimizer: &mut Optimizer) -> Result<Self> {
        schedule.validate()?;
        Ok(Scheduler { schedule, base_lrs: optimizer.attach_scheduler() })
    }

    /// The schedule.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// The base lr of each group (their `initial_lr`).
    pub fn base_lrs(&self) -> &[f64] {
        &self.base_lrs
    }

    /// The lr of `group` after `t` steps.
    ///
    /// **Panics** if `group` is not one of the optimizer's groups.
    pub fn lr(&self, group: usize, t: u64) -> f64 {
        self.base_lrs[group] * self.schedule.factor(t)
    }

    /// Sets every group's lr for the optimizer's next step (call before
    /// recording it): `initial_lr · factor(step_count)`.
    ///
    /// **Errors:** [`OptimError::InvalidOptions`] for an optimizer with
    /// another number of groups than the one the scheduler was made for
    /// (nothing changes); as [`Optimizer::set_lr`].
    pub fn apply(&self, optimizer: &mut Optimizer) -> Result<()> {
        if optimizer.configs().len() != self.base_lrs.len() {
            return Err(OptimError::InvalidOptions("the scheduler was made for an optimizer with another number of param groups"));
        }
        let t = optimizer.step_count() as u64;
        (0..self.base_lrs.len()).try_for_each(|group| optimizer.set_lr(group, self.lr(group, t)))
    }
}
