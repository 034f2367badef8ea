//! The tensors an optimizer steps ([`ParamSlice`]) and the checks every
//! input passes before the device is touched.

use super::plan::TensorRange;
use super::table;
use super::{Optimizer, MAX_GROUPS};
use crate::error::{OptimError, Result};
use crate::rules::OptimizerConfig;

/// One parameter tensor: a range of a user param buffer and the matching
/// range of a user grad buffer, in f32 elements (any element offset), and
/// optionally its shape (row-major, as PyTorch's contiguous tensors), which
/// the matrix rules (Muon) need.
#[derive(Clone, Debug)]
pub struct ParamSlice {
    /// The user's param buffer (f32), updated in place.
    pub param: wgpu::Buffer,
    /// First element of the tensor in `param` (elements).
    pub param_offset: u64,
    /// Length of the tensor in `param` (elements).
    pub param_len: u64,
    /// The user's grad buffer (f32), only read.
    pub grad: wgpu::Buffer,
    /// First element of the tensor's grad in `grad` (elements).
    pub grad_offset: u64,
    /// Length of the grad range (elements; must equal `param_len`).
    pub grad_len: u64,
    /// Index of the param group (into the configs given to the optimizer).
    pub group: u32,
    /// The tensor's shape, if given ([`ParamSlice::with_shape`]).
    pub shape: Option<Vec<u64>>,
}

impl ParamSlice {
    /// A whole param buffer paired with a whole grad buffer, in group 0.
    pub fn whole(param: &wgpu::Buffer, grad: &wgpu::Buffer) -> Self {
        ParamSlice { param: param.clone(), param_offset: 0, param_len: param.size() / 4, grad: grad.clone(), grad_offset: 0, grad_len: grad.size() / 4, group: 0, shape: None }
    }

    /// `len` elements at `param_offset` of `param` and `grad_offset` of `grad`.
    pub fn range(param: &wgpu::Buffer, param_offset: u64, grad: &wgpu::Buffer, grad_offset: u64, len: u64) -> Self {
        ParamSlice { param: param.clone(), param_offset, param_len: len, grad: grad.clone(), grad_offset, grad_len: len, group: 0, shape: None }
    }

    /// The same slice with a shape (row-major; its product must be the
    /// slice's length, checked when an optimizer is built). For a tensor of
    /// more than two dims, Muon needs the caller to pass two (PyTorch's
    /// Muon rejects others).
    pub fn with_shape(mut self, shape: &[u64]) -> Self {
        self.shape = Some(shape.to_vec());
        self
    }

    /// The shape as (rows, cols) if it is 2-D.
    pub fn matrix(&self) -> Option<(u64, u64)> {
        match self.shape.as_deref() {
            Some(&[rows, cols]) => Some((rows, cols)),
            _ => None,
        }
    }

    /// The same slice in param group `group`.
    pub fn in_group(mut self, group: u32) -> Self {
        self.group = group;
        self
    }

    /// Number of elements.
    pub fn len(&self) -> u64 {
        self.param_len
    }

    /// Whether the slice has no elements.
    pub fn is_empty(&self) -> bool {
        self.param_len == 0
    }
}

/// Checks the configs: at least one, at most [`MAX_GROUPS`], each valid,
/// and all of one rule with the same option flags and state.
pub fn check_configs(configs: &[OptimizerConfig]) -> Result<()> {
    if configs.is_empty() {
        return Err(OptimError::EmptyParams);
    }
    if configs.len() > MAX_GROUPS {
        return Err(OptimError::TooManyGroups { groups: configs.len(), max: MAX_GROUPS });
    }
    for c in configs {
        c.validate()?;
    }
    let first = &configs[0];
    for (index, c) in configs.iter().enumerate().skip(1) {
        if c.rule() != first.rule() || c.flags() != first.flags() || c.state() != first.state() {
            return Err(OptimError::GroupMismatch { index });
        }
    }
    Ok(())
}

/// Checks one slice: lengths, group, usages, bounds, distinct buffers, and
/// that a shape (if any) covers exactly its elements.
pub(crate) fn check_slice(index: usize, p: &ParamSlice, groups: usize) -> Result<()> {
    if p.param_len != p.grad_len {
        return Err(OptimError::LengthMismatch { index, param_len: p.param_len, grad_len: p.grad_len });
    }
    if p.param_len == 0 {
        return Err(OptimError::EmptyTensor { index });
    }
    if p.group as usize >= groups {
        return Err(OptimError::UnknownGroup { index, group: p.group, groups });
    }
    for (which, buf, off, len) in [("param", &p.param, p.param_offset, p.param_len), ("grad", &p.grad, p.grad_offset, p.grad_len)] {
        if buf.size() % 4 != 0 {
            return Err(OptimError::PartialElement { index, which, bytes: buf.size() });
        }
        if !buf.usage().contains(wgpu::BufferUsages::STORAGE) {
            return Err(OptimError::MissingUsage { index, which, missing: wgpu::BufferUsages::STORAGE - buf.usage() });
        }
        let end = off.checked_add(len).ok_or(OptimError::ExceedsLimits("slice range overflows u64".into()))?;
        if end > buf.size() / 4 {
            return Err(OptimError::OutOfBounds { index, which, start: off, end, buffer_len: buf.size() / 4 });
        }
    }
    if p.param == p.grad {
        return Err(OptimError::InvalidOptions("param and grad must live in different buffers"));
    }
    if let Some(shape) = &p.shape {
        let product = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
        if product != Some(p.param_len) || shape.is_empty() {
            return Err(OptimError::ShapeMismatch { index, shape: shape.clone(), len: p.param_len });
        }
    }
    Ok(())
}

/// Checks configs and slices: everything an optimizer rejects before
/// touching the device.
pub fn check_inputs(configs: &[OptimizerConfig], params: &[ParamSlice]) -> Result<()> {
    check_configs(configs)?;
    if params.is_empty() {
        return Err(OptimError::EmptyParams);
    }
    params.iter().enumerate().try_for_each(|(i, p)| check_slice(i, p, configs.len()))?;
    check_disjoint(params)
}

/// Checks that no two parameters share a param element, and that no param
/// range is another's grad: PyTorch rejects a parameter that appears
/// twice, and here the shared elements would be stepped twice or a grad
/// changed by the step. Grads may overlap each other (they are only read).
///
/// **Errors:** [`OptimError::Overlap`] naming the first such pair.
pub fn check_disjoint(params: &[ParamSlice]) -> Result<()> {
    // (buffer, start, end, parameter, is_grad), sorted by buffer and start.
    let (buffers, _) = tensor_ranges(params);
    let id = |b: &wgpu::Buffer| buffers.iter().position(|x| x == b).unwrap_or(usize::MAX);
    let mut spans: Vec<(usize, u64, u64, usize, bool)> = Vec::with_capacity(2 * params.len());
    for (i, p) in params.iter().enumerate() {
        spans.push((id(&p.param), p.param_offset, p.param_offset + p.param_len, i, false));
        spans.push((id(&p.grad), p.grad_offset, p.grad_offset + p.grad_len, i, true));
    }
    spans.sort_unstable_by_key(|s| (s.0, s.1, s.2));
    // The param span reaching furthest so far on this buffer, and the grad
    // span likewise, as (buffer, end, parameter): a new span overlaps one
    // of them, or nothing before it.
    type Reach = Option<(usize, u64, usize)>;
    let (mut param, mut grad): (Reach, Reach) = (None, None);
    for &(buf, start, end, i, is_grad) in &spans {
        let live = |last: Reach| last.filter(|&(b, e, _)| b == buf && e > start).map(|(_, _, j)| j);
        let clash = match (is_grad, live(param), live(grad)) {
            (false, Some(j), _) => Some((j, "their param ranges share elements")),
            (false, None, Some(j)) => Some((j, "the param range of one holds grad elements of the other")),
            (true, Some(j), _) => Some((j, "the param range of one holds grad elements of the other")),
            _ => None,
        };
        if let Some((j, what)) = clash {
            return Err(OptimError::Overlap { first: i.min(j), second: i.max(j), what });
        }
        let slot = if is_grad { &mut grad } else { &mut param };
        if slot.is_none_or(|(b, e, _)| b != buf || end > e) {
            *slot = Some((buf, end, i));
        }
    }
    Ok(())
}

/// The distinct buffers of the slices, and each slice as a [`TensorRange`]
/// naming them by index.
pub fn tensor_ranges(params: &[ParamSlice]) -> (Vec<wgpu::Buffer>, Vec<TensorRange>) {
    let mut buffers: Vec<wgpu::Buffer> = Vec::new();
    let mut index_of = |b: &wgpu::Buffer| match buffers.iter().position(|x| x == b) {
        Some(i) => i,
        None => {
            buffers.push(b.clone());
            buffers.len() - 1
        }
    };
    let ranges = params
        .iter()
        .map(|p| TensorRange { param_buf: index_of(&p.param), param_offset: p.param_offset, grad_buf: index_of(&p.grad), grad_offset: p.grad_offset, len: p.param_len, group: p.group })
        .collect();
    (buffers, ranges)
}

impl Optimizer {
    /// Which tensors the following steps update: a tensor that is not
    /// active is left untouched, params and state, as PyTorch skips a param
    /// whose `grad` is None (a frozen layer, a branch the loss did not
    /// reach). Rewrites the parameter table only when the mask changes,
    /// by an upload the next recorded step records before its pass: the
    /// mask holds from that step on, in encoder order, however many steps
    /// share a submit.
    ///
    /// **Errors:** [`OptimError::LengthMismatch`] unless there is one flag
    /// per tensor.
    pub fn set_active(&mut self, active: &[bool]) -> Result<()> {
        if active.len() != self.tensors.len() {
            return Err(OptimError::LengthMismatch { index: 0, param_len: self.tensors.len() as u64, grad_len: active.len() as u64 });
        }
        if active == self.active.as_slice() {
            return Ok(());
        }
        self.active = active.to_vec();
        self.pending_tables.clear();
        let (mut first_block, mut state_base) = (0u32, 0u64);
        for d in &self.dispatches {
            let (bytes, _) = table::table(&d.rows, &self.active, self.table_stride, first_block, state_base, d.window.state_len);
            self.pending_tables.push(bytes);
            first_block += d.rows.len() as u32;
            state_base += d.window.state_len;
        }
        Ok(())
    }

    /// Which tensors the step updates (see [`Optimizer::set_active`]).
    pub fn active(&self) -> &[bool] {
        &self.active
    }
}
