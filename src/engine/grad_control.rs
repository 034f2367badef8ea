//! Clipping and loss scaling on the GPU, before the update, in the same
//! recorded step: settings, the control buffer (binding 7) and the
//! step-factor table (binding 8) the device-side step counter indexes.

use super::{Optimizer, MAX_GROUPS};
use crate::error::{scoped, OptimError, Result};
use crate::rules::{flags, OptimizerConfig};

/// `torch.amp.GradScaler` settings: grads are divided by a loss scale kept
/// on the GPU; a step with any non-finite grad is skipped for every tensor
/// (params, state and the optimizer's step count stay bitwise unchanged),
/// the scale is multiplied by `backoff_factor`; after `growth_interval`
/// clean steps in a row it is multiplied by `growth_factor`. No host sync.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GradScaler {
    /// Initial loss scale (default 2^16).
    pub init_scale: f64,
    /// Factor the scale grows by after `growth_interval` clean steps (default 2.0).
    pub growth_factor: f64,
    /// Factor the scale shrinks by on a step with a non-finite grad (default 0.5).
    pub backoff_factor: f64,
    /// Clean steps in a row before the scale grows (default 2000).
    pub growth_interval: u32,
}

impl Default for GradScaler {
    /// PyTorch's defaults: 2^16, 2.0, 0.5, 2000.
    fn default() -> Self {
        GradScaler { init_scale: 65536.0, growth_factor: 2.0, backoff_factor: 0.5, growth_interval: 2000 }
    }
}

/// Which grads one clipping norm covers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClipScope {
    /// One norm over every tensor of every param group, as
    /// `clip_grad_norm_(model.parameters(), max_norm)`.
    #[default]
    Global,
    /// Each param group clipped by its own norm, as calling
    /// `clip_grad_norm_(group["params"], max_norm)` once per group (not
    /// PyTorch's usual recipe: an explicit choice).
    PerGroup,
}

/// What happens to the grads on the GPU before the update, in the same
/// recorded step: optional global-norm clipping
/// (`torch.nn.utils.clip_grad_norm_`: scale by
/// `min(1, max_norm/(norm + norm_eps))`, `norm_eps` 1e-6 by default, the norm taken after unscaling over
/// every tensor of every group, or of each group with
/// [`ClipScope::PerGroup`]), and optional dynamic loss scaling.
///
/// Without a scaler, `skip_nonfinite` guards training against a bad batch:
/// a step whose grads hold a NaN or an infinity (found by the same exponent
/// bit test) is skipped for every tensor on the GPU and counted
/// ([`Optimizer::skipped_steps`]); the optimizer's step then lives on the
/// device as with a scaler. Off by default, as in PyTorch (which steps
/// into NaN).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GradControl {
    /// Clipping threshold of the grads' L2 norm, taken per `clip_scope` (`None`: no clipping; default).
    pub max_norm: Option<f64>,
    /// What one norm covers (default [`ClipScope::Global`]).
    pub clip_scope: ClipScope,
    /// Dynamic loss scaling (`None`: grads are not scaled; default).
    pub scaler: Option<GradScaler>,
    /// Without a scaler, skip (and count) a step whose grads hold a NaN or an infinity (default false).
    pub skip_nonfinite: bool,
    /// What the clip factor adds to the norm, `max_norm/(norm + norm_eps)` (`None`: `clip_grad_norm_`'s 1e-6; Adan's `max_grad_norm` sets its `eps`).
    pub norm_eps: Option<f64>,
}

impl GradControl {
    /// Checks the settings.
    ///
    /// **Errors:** [`OptimError::InvalidHyperparameter`].
    pub fn validate(&self) -> Result<()> {
        let bad = |name, value: f64, requirement| Err(OptimError::InvalidHyperparameter { name, value, requirement });
        if let Some(m) = self.max_norm
            && !(m.is_finite() && m > 0.0)
        {
            return bad("max_norm", m, "must be finite and positive");
        }
        if let Some(e) = self.norm_eps
            && !(e.is_finite() && e >= 0.0)
        {
            return bad("norm_eps", e, "must be finite and >= 0");
        }
        if let Some(sc) = self.scaler {
            if !(sc.init_scale.is_finite() && sc.init_scale > 0.0) {
                return bad("init_scale", sc.init_scale, "must be finite and positive");
            }
            if !(sc.growth_factor.is_finite() && sc.growth_factor > 1.0) {
                return bad("growth_factor", sc.growth_factor, "must be finite and > 1");
            }
            if !(sc.backoff_factor > 0.0 && sc.backoff_factor < 1.0) {
                return bad("backoff_factor", sc.backoff_factor, "must be in (0, 1)");
            }
            if sc.growth_interval == 0 {
                return bad("growth_interval", 0.0, "must be at least 1");
            }
        }
        Ok(())
    }

    /// What the clip factor adds to the norm.
    pub fn norm_eps(&self) -> f64 {
        self.norm_eps.unwrap_or(1e-6)
    }

    /// These settings with the rule's own clipping folded in (Adan's
    /// `max_grad_norm`, [`OptimizerConfig::grad_clip`]): one global norm, the
    /// rule's threshold and eps.
    ///
    /// **Errors:** [`OptimError::InvalidOptions`] when groups disagree on it,
    /// or when `max_norm`, `norm_eps` or a per-group scope says otherwise.
    pub fn with_rule(mut self, configs: &[OptimizerConfig]) -> Result<GradControl> {
        let Some(clip) = configs.first().and_then(|c| c.grad_clip()) else { return Ok(self) };
        if configs.iter().any(|c| c.grad_clip() != Some(clip)) {
            return Err(OptimError::InvalidOptions("param groups disagree on the rule's max_grad_norm or eps"));
        }
        if self.max_norm.is_some_and(|m| m != clip.0) || self.norm_eps.is_some_and(|e| e != clip.1) || self.clip_scope != ClipScope::Global {
            return Err(OptimError::InvalidOptions("the rule's max_grad_norm clips by one global norm with its eps: GradControl::max_norm, norm_eps and clip_scope must agree with it"));
        }
        self.max_norm = Some(clip.0);
        self.norm_eps = Some(clip.1);
        Ok(self)
    }

    /// The step-uniform flags these settings turn on.
    pub fn flags(&self) -> u32 {
        let per_group = self.clip_scope == ClipScope::PerGroup;
        flags::bit(self.max_norm.is_some(), flags::CLIP) | flags::bit(self.scaler.is_some(), flags::SCALER) | flags::bit(self.device_step(), flags::SKIP_NONFINITE) | flags::bit(per_group && self.active(), flags::CLIP_PER_GROUP)
    }

    /// Whether non-finite steps are skipped on the device, so that the
    /// optimizer's step counter lives there (with a scaler, or `skip_nonfinite`).
    pub fn device_step(&self) -> bool {
        self.scaler.is_some() || self.skip_nonfinite
    }

    /// Whether the reduce and finalize passes run before the update.
    pub fn active(&self) -> bool {
        self.max_norm.is_some() || self.device_step()
    }
}

/// The GradScaler's state on the GPU (read with
/// [`Optimizer::read_grad_control`](super::Optimizer::read_grad_control)).
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct ScalerState {
    /// The current loss scale (1 without a scaler).
    pub scale: f32,
    /// Clean steps since the last scale change (PyTorch's `_growth_tracker`).
    pub growth_tracker: u32,
    /// Steps skipped so far (the optimizer's step is the host count less this).
    pub skipped: u32,
    /// Whether the last step was skipped.
    pub found_inf: u32,
}

/// Byte size of the control buffer's header (scale … found_inf, then one
/// vec4 per group: norm, grad multiplier).
pub const CONTROL_HEAD: u64 = 16 + 16 * MAX_GROUPS as u64;

/// The control buffer: the header, then one partial sum per workgroup.
pub fn control_buffer(device: &wgpu::Device, queue: &wgpu::Queue, control: &GradControl, workgroups: u64) -> wgpu::Buffer {
    let partials = if control.active() { workgroups.max(2) } else { 2 };
    let buffer = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("wgpu-optim grad control"),
        size: CONTROL_HEAD + 8 * partials,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut head = vec![0u32; (CONTROL_HEAD / 4) as usize];
    head[0] = control.scaler.map_or(1.0, |sc| sc.init_scale as f32).to_bits();
    for g in 0..MAX_GROUPS {
        head[4 + 4 * g + 1] = 1f32.to_bits();
    }
    queue.write_buffer(&buffer, 0, bytemuck::cast_slice(&head));
    buffer
}

impl Optimizer {
    /// Makes the step-factor table (GradScaler mode) hold steps `0..=steps`,
    /// doubling it, and rebinds. Rare: amortised O(1) per step.
    pub(super) fn grow_factors(&mut self, steps: u32) -> Result<()> {
        let scaler = self.grad_control.device_step();
        let capacity = if scaler { steps.max(1).next_power_of_two().max(self.factor_capacity * 2) } else { 0 };
        let mut rows: Vec<[f32; 4]> = Vec::new();
        if scaler {
            rows.extend((0..=capacity).flat_map(|t| self.configs.iter().map(move |c| c.step_factors(t).map(|x| x as f32))));
        }
        if rows.is_empty() {
            rows.push([0.0; 4]);
        }
        let device = self.device.clone();
        scoped(&device, || {
            let factors = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("wgpu-optim step factors"),
                size: (rows.len() * 16) as u64,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            self.queue.write_buffer(&factors, 0, bytemuck::cast_slice(&rows));
            self.shared.factors = factors;
            for (d, state) in self.dispatches.iter_mut().zip(&self.state.buffers) {
                d.bind_group = self.shared.bind_group(&device, &d.param, &d.grad, &d.table, state);
            }
        })?;
        self.factor_capacity = capacity;
        Ok(())
    }

    /// The total grad norms of the last recorded step (after unscaling,
    /// before clipping) as the clip scope takes them: one norm over every
    /// group with [`ClipScope::Global`], one per group with
    /// [`ClipScope::PerGroup`]. Read back (waits for the GPU). Only
    /// computed with clipping or loss scaling on.
    ///
    /// **Errors:** [`OptimError::InvalidOptions`] without grad control; [`OptimError::Readback`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_grad_norms(&self) -> Result<Vec<f32>> {
        pollster::block_on(self.read_grad_norms_async())
    }

    /// [`Optimizer::read_grad_norms`] without blocking (the web's form).
    ///
    /// **Errors:** as [`Optimizer::read_grad_norms`].
    pub async fn read_grad_norms_async(&self) -> Result<Vec<f32>> {
        if !self.grad_control.active() {
            return Err(OptimError::InvalidOptions("grad norms are computed only with clipping or loss scaling"));
        }
        let head = crate::device::read_f32_async(&self.device, &self.queue, &self.shared.control, 0, CONTROL_HEAD / 4).await?;
        let norms = match self.grad_control.clip_scope {
            ClipScope::Global => 1,
            ClipScope::PerGroup => self.configs.len(),
        };
        Ok((0..norms).map(|g| head[4 + 4 * g]).collect())
    }

    /// The GradScaler state on the GPU (waits for the GPU).
    ///
    /// **Errors:** [`OptimError::Readback`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_grad_control(&self) -> Result<ScalerState> {
        pollster::block_on(self.read_grad_control_async())
    }

    /// [`Optimizer::read_grad_control`] without blocking (the web's form).
    ///
    /// **Errors:** as [`Optimizer::read_grad_control`].
    pub async fn read_grad_control_async(&self) -> Result<ScalerState> {
        let head = crate::device::read_f32_async(&self.device, &self.queue, &self.shared.control, 0, 4).await?;
        Ok(bytemuck::cast_slice::<f32, ScalerState>(&head)[0])
    }

    /// Steps skipped so far for non-finite grads (GradScaler or
    /// `skip_nonfinite`; always 0 without them). Waits for the GPU.
    ///
    /// **Errors:** [`OptimError::Readback`], [`OptimError::DeviceLost`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn skipped_steps(&self) -> Result<u32> {
        pollster::block_on(self.skipped_steps_async())
    }

    /// [`Optimizer::skipped_steps`] without blocking (the web's form).
    ///
    /// **Errors:** as [`Optimizer::skipped_steps`].
    pub async fn skipped_steps_async(&self) -> Result<u32> {
        Ok(self.read_grad_control_async().await?.skipped)
    }

    /// The optimizer's step (PyTorch's `state['step']`): recorded steps less
    /// skipped ones. Waits for the GPU only when steps can be skipped.
    ///
    /// **Errors:** as [`Optimizer::skipped_steps`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn device_step_count(&self) -> Result<u32> {
        pollster::block_on(self.device_step_count_async())
    }

    /// [`Optimizer::device_step_count`] without blocking (the web's form).
    ///
    /// **Errors:** as [`Optimizer::skipped_steps`].
    pub async fn device_step_count_async(&self) -> Result<u32> {
        let skipped = if self.grad_control.device_step() { self.skipped_steps_async().await? } else { 0 };
        Ok(self.step - skipped)
    }

    /// Overwrites the GradScaler state (e.g. from a checkpoint).
    pub fn write_grad_control(&self, state: ScalerState) {
        self.queue.write_buffer(&self.shared.control, 0, bytemuck::bytes_of(&state));
    }

    /// The buffer holding the loss scale (f32 at byte 0), for your backward
    /// kernels to multiply the loss gradient by, on the GPU.
    pub fn grad_control_buffer(&self) -> &wgpu::Buffer {
        &self.shared.control
    }

    /// The clipping and loss-scaling settings.
    pub fn grad_control(&self) -> GradControl {
        self.grad_control
    }
}
