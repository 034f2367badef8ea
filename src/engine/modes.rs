//! What rules with host scalars and train/eval modes (schedule-free AdamW)
//! need from the engine: the scalars each group carries between steps,
//! the checks of options such a rule cannot take, and `train()`/`eval()`
//! as one pass over every tensor recorded into the caller's encoder.

use super::{EngineOptions, Optimizer, ParamSlice, StateFormat};
use crate::error::{OptimError, Result};
use crate::rules::OptimizerConfig;

/// Each group's host scalars at their initial values.
pub(crate) fn initial_host(configs: &[OptimizerConfig]) -> Vec<Vec<f64>> {
    configs.iter().map(|c| c.host_scalars().iter().map(|(_, v)| *v).collect()).collect()
}

/// Refuses what a rule's declaration rules out.
///
/// **Errors:** [`OptimError::InvalidOptions`]: a device-side step count (a
/// GradScaler or `skip_nonfinite`) for a rule whose scalars are carried on
/// the host; bf16 or 8-bit state for a slot that is a copy of the params
/// (an iterate, not a moment). [`OptimError::MissingUsage`]: a param
/// buffer without `COPY_SRC` for such a slot, which starts as its copy.
pub(crate) fn check_options(config: &OptimizerConfig, params: &[ParamSlice], options: &EngineOptions) -> Result<()> {
    if !config.host_scalars().is_empty() && options.grad_control.device_step() {
        return Err(OptimError::InvalidOptions("this rule carries its scalars on the host from step to step, which a GradScaler's or skip_nonfinite's device-side step count would not follow"));
    }
    if config.state().used().any(|(_, s)| s.copy_of_param) && options.state_format != StateFormat::F32 {
        return Err(OptimError::InvalidOptions("this rule keeps an iterate (a copy of the params) in its state, which is f32 only"));
    }
    if config.state().used().any(|(_, s)| s.copy_of_param) {
        let copy = wgpu::BufferUsages::COPY_SRC;
        if let Some(index) = params.iter().position(|p| !p.param.usage().contains(copy)) {
            return Err(OptimError::MissingUsage { index, which: "param", missing: copy });
        }
    }
    Ok(())
}

impl Optimizer {
    /// Moves the params to their eval form (schedule-free's `eval()`: y to
    /// x), one pass over every tensor recorded into `encoder`. Nothing
    /// happens in eval mode already, or before the first step (the package
    /// switches only tensors that have a `z`).
    ///
    /// **Errors:** [`OptimError::InvalidOptions`] for a rule without modes,
    /// or while a tensor is inactive (the switch must move every tensor);
    /// wgpu errors of the recording.
    pub fn eval(&mut self, encoder: &mut wgpu::CommandEncoder) -> Result<()> {
        self.switch_mode(encoder, false)
    }

    /// Moves the params back to their train form (schedule-free's
    /// `train()`: x to y); see [`Optimizer::eval`].
    ///
    /// **Errors:** as [`Optimizer::eval`].
    pub fn train(&mut self, encoder: &mut wgpu::CommandEncoder) -> Result<()> {
        self.switch_mode(encoder, true)
    }

    /// Whether the params are in train form (always, for rules without modes).
    pub fn is_train_mode(&self) -> bool {
        self.train_mode
    }

    /// Each group's scalars carried between steps, by
    /// [`OptimizerConfig::host_scalars`]' names (empty for most rules).
    pub fn host_scalars(&self) -> &[Vec<f64>] {
        &self.host
    }

    /// Sets the mode and each group's host scalars (a checkpoint's).
    pub(crate) fn set_host_state(&mut self, host: Vec<Vec<f64>>, train_mode: bool) {
        debug_assert_eq!(host.len(), self.configs.len());
        (self.host, self.train_mode) = (host, train_mode);
    }

    fn switch_mode(&mut self, encoder: &mut wgpu::CommandEncoder, train: bool) -> Result<()> {
        let switches: Option<Vec<_>> = self.configs.iter().map(|c| c.mode_switch(!train)).collect();
        let switches = switches.ok_or(OptimError::InvalidOptions("this rule has no train and eval modes"))?;
        if self.train_mode == train {
            return Ok(());
        }
        if self.active.iter().any(|a| !a) {
            return Err(OptimError::InvalidOptions("train() and eval() move every tensor: set them all active first"));
        }
        if self.step > 0 {
            self.scalars.head = self.head(self.step);
            self.scalars.groups.iter_mut().zip(switches).for_each(|(slot, s)| *slot = s);
            self.record_scalars_and_tables(encoder)?;
            self.record_passes(encoder, true, None);
        }
        self.train_mode = train;
        Ok(())
    }
}
