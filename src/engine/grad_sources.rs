//! Grads read in place for one step: [`Optimizer::record_step_with_grads`]
//! binds each window's grads from wherever the caller's backward pass left
//! them (a framework's fresh allocation every step), so no copy into the
//! registered grad buffer is needed.

use super::Optimizer;
use crate::error::{scoped, OptimError, Result};

/// Where one tensor's grad lies for one step: `offset` f32 elements into
/// `buffer` (which needs [`wgpu::BufferUsages::STORAGE`]).
#[derive(Clone, Copy, Debug)]
pub struct GradSource<'a> {
    /// The buffer holding the grad.
    pub buffer: &'a wgpu::Buffer,
    /// First element of the grad in `buffer`.
    pub offset: u64,
}

/// One window's grads, bound in place: a buffer and the bound element range.
type Rebound<'a> = (&'a wgpu::Buffer, u64, u64);

impl Optimizer {
    /// [`Optimizer::record_step`], reading the grad of every tensor `i` with
    /// `grads[i] = Some(source)` from `source` for this step only (`None`:
    /// from the grad buffer it was registered with). Bitwise the same step
    /// as copying each grad into its registered range first, without the
    /// copy's 8 bytes per element.
    ///
    /// Each binding window is bound as a whole, so the tensors a window
    /// covers (see [`Optimizer::dispatch_count`]) must all be given, or
    /// none of them (a tensor left out by [`Optimizer::set_active`] may be
    /// `None` either way), and lie in one buffer at the same distance from
    /// their registered offsets. That distance must keep the binding's
    /// start on the device's `min_storage_buffer_offset_alignment`.
    ///
    /// **Errors**, all before anything is recorded or changed:
    /// [`OptimError::LengthMismatch`] unless there is one entry per tensor;
    /// [`OptimError::GradSource`] for a source that does not fit as above,
    /// runs past its buffer, lacks `STORAGE`, or is the window's param
    /// buffer or one of the optimizer's own; those of
    /// [`Optimizer::record_step`]; [`OptimError::Wgpu`] for a buffer the
    /// device rejects (another device's, a destroyed one).
    pub fn record_step_with_grads(&mut self, encoder: &mut wgpu::CommandEncoder, grads: &[Option<GradSource<'_>>]) -> Result<()> {
        if grads.len() != self.tensors.len() {
            return Err(OptimError::LengthMismatch { index: 0, param_len: self.tensors.len() as u64, grad_len: grads.len() as u64 });
        }
        let rebound = (0..self.dispatches.len()).map(|d| self.rebind(d, grads)).collect::<Result<Vec<_>>>()?;
        let step = self.prepare_step()?;
        let bind_groups = scoped(&self.device, || self.bind_groups(&rebound))?;
        self.record_prepared(encoder, step, Some(&bind_groups))
    }

    /// Each dispatch's bind group: its own, or one over its rebound grads.
    fn bind_groups(&self, rebound: &[Option<Rebound<'_>>]) -> Vec<wgpu::BindGroup> {
        let dispatches = self.dispatches.iter().zip(&self.state.buffers);
        rebound
            .iter()
            .zip(dispatches)
            .map(|(r, (d, state))| match r {
                Some((buffer, lo, hi)) => self.shared.bind_group(&self.device, &d.param, &((*buffer).clone(), *lo, *hi), &d.table, state),
                None => d.bind_group.clone(),
            })
            .collect()
    }

    /// Where dispatch `d` reads its grads from this step: `None` for its
    /// registered range, or a buffer and the element range to bind.
    fn rebind<'a>(&self, d: usize, grads: &[Option<GradSource<'a>>]) -> Result<Option<Rebound<'a>>> {
        let window = &self.dispatches[d].window;
        let mut found: Option<(usize, GradSource<'a>, i128)> = None;
        let mut missing = None;
        for &(index, _, _) in &window.segments {
            let Some(source) = grads[index] else {
                if self.active[index] {
                    missing = Some(index);
                }
                continue;
            };
            let delta = source.offset as i128 - self.tensors[index].grad_offset as i128;
            match found {
                None => found = Some((index, source, delta)),
                Some((_, first, first_delta)) if first.buffer == source.buffer && first_delta == delta => {}
                Some((first, ..)) => return Err(grad_source(index, format!("its window is bound as one range, but it does not lie where parameter {first}'s source puts it"))),
            }
        }
        let Some((index, source, delta)) = found else { return Ok(None) };
        if let Some(other) = missing {
            return Err(grad_source(other, format!("no source given, but parameter {index} of its window has one (a window is bound as a whole)")));
        }
        self.check_binding(index, source.buffer, window.g_lo as i128 + delta, window.g_hi as i128 + delta, d)?;
        Ok(Some((source.buffer, (window.g_lo as i128 + delta) as u64, (window.g_hi as i128 + delta) as u64)))
    }

    /// Checks that elements `[lo, hi)` of `buffer` can be bound as the grads
    /// of dispatch `d` (for the error, `index` is a tensor of it).
    fn check_binding(&self, index: usize, buffer: &wgpu::Buffer, lo: i128, hi: i128, d: usize) -> Result<()> {
        if !buffer.usage().contains(wgpu::BufferUsages::STORAGE) {
            return Err(grad_source(index, "the buffer lacks usage STORAGE".to_string()));
        }
        if *buffer == self.dispatches[d].param.0 {
            return Err(grad_source(index, "the buffer is its window's param buffer, which the step writes".to_string()));
        }
        let state = self.state.buffers[d].iter().flatten();
        if [&self.shared.control, &self.shared.factors].into_iter().chain(state).any(|b| b == buffer) {
            return Err(grad_source(index, "the buffer is one of the optimizer's own (state, grad control)".to_string()));
        }
        let align = self.device.limits().min_storage_buffer_offset_alignment as i128;
        let len = buffer.size() as i128 / 4;
        if lo < 0 || hi > len {
            return Err(grad_source(index, format!("its window binds elements [{lo}, {hi}) of a buffer of {len}")));
        }
        if (lo * 4) % align != 0 {
            return Err(grad_source(index, format!("its window would be bound at byte {}, not a multiple of the device's min_storage_buffer_offset_alignment ({align})", lo * 4)));
        }
        Ok(())
    }
}

fn grad_source(index: usize, why: String) -> OptimError {
    OptimError::GradSource { index, why }
}
