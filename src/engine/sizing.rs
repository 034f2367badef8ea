//! How a step is laid out on a device: elements per table row, the plan
//! limits the device allows, and the widest access form every window takes.

use super::plan::{self, PlanLimits, TensorRange, Window};
use super::table::{TABLE_BYTES, TABLE_ROWS};
use super::{params, Access, EngineOptions, ParamSlice, StateFormat, Q8_MAX_CHUNKS};
use crate::error::{OptimError, Result};

/// Access units per invocation: at most [`Q8_MAX_CHUNKS`] for 8-bit state
/// (a block is a table row), 1 for the scalar-access kernel (whose
/// lane-by-lane loads, repeated in a loop, lavapipe runs about 100 times
/// slower); for the wide path, as many as give the vec4 path's rows (so the
/// same reductions).
pub(super) fn chunks(options: &EngineOptions, access: Access) -> u32 {
    let vec4_chunks = options.chunks_per_invocation.max(1);
    match access {
        _ if options.state_format == StateFormat::Int8Blockwise => vec4_chunks.min(Q8_MAX_CHUNKS),
        Access::Scalar => 1,
        Access::Vec4 => vec4_chunks,
        Access::Wide => (vec4_chunks * 4 / Access::Wide.unit(options.state_format.kind()) as u32).max(1),
    }
}

/// Elements of one table row.
pub(super) fn per_block(options: &EngineOptions, access: Access) -> u64 {
    access.unit(options.state_format.kind()) * options.workgroup_size as u64 * chunks(options, access) as u64
}

/// The plan limits of `device` under `options`, or why it cannot run.
pub(super) fn plan_limits(device: &wgpu::Device, options: &EngineOptions) -> Result<PlanLimits> {
    let limits = device.limits();
    let wg = options.workgroup_size;
    if wg == 0 || wg > limits.max_compute_workgroup_size_x || wg > limits.max_compute_invocations_per_workgroup {
        return Err(OptimError::ExceedsLimits(format!("workgroup size {wg} not supported by the device")));
    }
    let widest = per_block(options, Access::Vec4).max(per_block(options, Access::Wide));
    if widest > 0xffff {
        return Err(OptimError::ExceedsLimits(format!("{widest} elements per table row (4 · workgroup size · chunks per invocation) exceed 65535")));
    }
    let power_of_two_needed = options.state_format == StateFormat::Int8Blockwise || options.grad_control.active();
    if power_of_two_needed && !wg.is_power_of_two() {
        return Err(OptimError::InvalidOptions("8-bit state, grad clipping and loss scaling need a power-of-two workgroup size"));
    }
    if limits.max_uniform_buffer_binding_size < TABLE_BYTES || (limits.max_compute_workgroups_per_dimension as usize) < TABLE_ROWS {
        return Err(OptimError::ExceedsLimits("the device allows less than 16 KiB per uniform binding or 1023 workgroups per dispatch".into()));
    }
    let align = (limits.min_storage_buffer_offset_alignment as u64 / 4).max(1);
    let limit_bytes = options.max_binding_bytes.map_or(u64::MAX, |cap| cap).min(limits.max_storage_buffer_binding_size).min(limits.max_buffer_size);
    // A multiple of the alignment (and so of every access unit), so bound
    // ranges rounded up to whole units stay within it.
    let binding = (limit_bytes / 4).min(u32::MAX as u64 / 2) / align * align;
    if binding < 2 * align {
        return Err(OptimError::ExceedsLimits(format!("binding limit of {limit_bytes} bytes is too small")));
    }
    // Every segment's state starts on a whole access unit of any form.
    let state_align = if options.state_format == StateFormat::Int8Blockwise { per_block(options, Access::Vec4) } else { Access::Wide.alignment() };
    Ok(PlanLimits { binding, align, state_align })
}

/// The dispatch plan of an optimizer.
pub(super) struct Planned {
    /// The distinct user buffers; windows and tensors name them by index.
    pub(super) buffers: Vec<wgpu::Buffer>,
    pub(super) tensors: Vec<TensorRange>,
    pub(super) windows: Vec<Window>,
    pub(super) limits: PlanLimits,
    /// The access form every window allows.
    pub(super) access: Access,
}

/// The access forms `options` allow on `device`, widest first.
pub(super) fn wanted_access(device: &wgpu::Device, options: &EngineOptions) -> Vec<Access> {
    let wide = options.vec4 && options.state_format != StateFormat::Int8Blockwise && options.wide.wanted(device);
    let vec4 = options.vec4.then_some(Access::Vec4);
    wide.then_some(Access::Wide).into_iter().chain(vec4).collect()
}

/// Plans the windows of `params`, and the widest of the `wanted` access
/// forms (else scalar) every window allows.
pub(super) fn plan(params: &[ParamSlice], limits: PlanLimits, wanted: &[Access]) -> Planned {
    let (buffers, tensors) = params::tensor_ranges(params);
    let mut windows = plan::plan_windows(&tensors, &limits);
    let fits = |unit| windows.iter().all(|w| w.aligned_to(unit, &tensors, buffers[w.param_buf].size() / 4, buffers[w.grad_buf].size() / 4));
    let access = wanted.iter().copied().find(|a| fits(a.alignment())).unwrap_or(Access::Scalar);
    windows.iter_mut().for_each(|w| w.round_to(access.alignment()));
    Planned { buffers, tensors, windows, limits, access }
}
