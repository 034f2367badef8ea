//! [`LbfgsOptimizer`]: the buffers of L-BFGS on the GPU and the phases a
//! step is made of. Every phase is one command buffer ending in one read of
//! the `scalars` buffer (the loss, the dot products, max and sums); no
//! vector is read back. The algorithm's control flow is in `step.rs`.

use std::rc::Rc;

use super::kernels::{slot, Batch, Coef, Kernels, View};
use super::{HostState, Lbfgs};
use crate::engine::ParamSlice;
use crate::error::{scoped, OptimError, Result};

/// Where a closure left the loss: one f32 at byte `offset` of `buffer`
/// (which needs `COPY_SRC`).
#[derive(Clone, Debug)]
pub struct LossAt {
    /// The buffer.
    pub buffer: wgpu::Buffer,
    /// The loss's first byte (a multiple of 4).
    pub offset: u64,
}

/// A closure: records the forward and backward pass at the current params
/// into the encoder (grads into the params' grad ranges) and says where
/// the loss will be.
pub type Closure<'a> = dyn FnMut(&mut wgpu::CommandEncoder) -> Result<LossAt> + 'a;

/// A flat gradient in a GPU buffer, with its max |g| and Σ |g|.
#[derive(Clone, Debug)]
pub struct GpuGrad {
    pub(super) buffer: Rc<wgpu::Buffer>,
    pub(super) abs_max: f64,
    pub(super) abs_sum: f64,
}

/// The history's slots: `cap` = history_size + 1 slots, of which `len`
/// from `head` on are the pairs oldest first; the slot after them is where
/// the next pair is written before the host accepts it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Ring {
    pub head: u32,
    pub len: u32,
    pub cap: u32,
}

impl Ring {
    /// The slot of pair `i` (0: the oldest).
    pub fn slot(&self, i: u32) -> u32 {
        (self.head + i) % self.cap
    }
    /// The slot the next pair is written to.
    pub fn spare(&self) -> u32 {
        self.slot(self.len)
    }
    /// Accepts the spare slot's pair, dropping the oldest when full.
    pub fn push(&mut self) {
        if self.len + 1 == self.cap {
            self.head = (self.head + 1) % self.cap;
        } else {
            self.len += 1;
        }
    }
}

/// ρ of slot `s` in `scalars`.
pub(super) fn ro_slot(s: u32) -> u32 {
    slot::RING + s
}

/// α of slot `s` in `scalars` (after the ring's ρ's).
pub(super) fn al_slot(cap: u32, s: u32) -> u32 {
    slot::RING + cap + s
}

/// `torch.optim.LBFGS` on the GPU, over params that may span many tensors
/// (one flat vector, as PyTorch's `_gather_flat_grad`).
pub struct LbfgsOptimizer {
    pub(super) device: wgpu::Device,
    pub(super) queue: wgpu::Queue,
    pub(super) options: Lbfgs,
    pub(super) params: Vec<ParamSlice>,
    pub(super) n: u64,
    vector_bytes: u64,
    pub(super) kernels: Kernels,
    pub(super) x0: wgpu::Buffer,
    pub(super) trial: wgpu::Buffer,
    pub(super) d: wgpu::Buffer,
    pub(super) g_prev: wgpu::Buffer,
    pub(super) s_ring: wgpu::Buffer,
    pub(super) y_ring: wgpu::Buffer,
    pool: Vec<Rc<wgpu::Buffer>>,
    pub(super) ring: Ring,
    pub(super) host: HostState,
    staging: wgpu::Buffer,
}

fn check_usage(index: usize, which: &'static str, buffer: &wgpu::Buffer, need: wgpu::BufferUsages) -> Result<()> {
    match buffer.usage().contains(need) {
        true => Ok(()),
        false => Err(OptimError::MissingUsage { index, which, missing: need - buffer.usage() }),
    }
}

/// One command buffer of a step and its dispatches so far.
pub(super) struct Phase {
    pub encoder: wgpu::CommandEncoder,
    pub first_op: u64,
}

impl LbfgsOptimizer {
    /// An optimizer over `params` (their groups are ignored: L-BFGS has one).
    /// Params need `COPY_SRC | COPY_DST` and grads `COPY_SRC`, as well as
    /// `STORAGE`.
    ///
    /// **Errors:** as [`Lbfgs::validate`]; the param checks of the engine
    /// (lengths, bounds, overlaps); [`OptimError::MissingUsage`];
    /// [`OptimError::ExceedsLimits`] when the history does not fit one
    /// buffer or the flat vector one binding.
    pub fn new(device: &wgpu::Device, queue: &wgpu::Queue, params: Vec<ParamSlice>, options: Lbfgs) -> Result<Self> {
        options.validate()?;
        if params.is_empty() {
            return Err(OptimError::EmptyParams);
        }
        use wgpu::BufferUsages as U;
        for (index, p) in params.iter().enumerate() {
            crate::engine::params::check_slice(index, &ParamSlice { group: 0, ..p.clone() }, 1)?;
            check_usage(index, "param", &p.param, U::COPY_SRC | U::COPY_DST)?;
            check_usage(index, "grad", &p.grad, U::COPY_SRC)?;
        }
        crate::engine::params::check_disjoint(&params)?;
        let n: u64 = params.iter().map(|p| p.param_len).sum();
        let limits = device.limits();
        // Ring slots are bound at multiples of this: 256 bytes or the
        // device's storage offset alignment.
        let vector_bytes = (n * 4).next_multiple_of(256.max(limits.min_storage_buffer_offset_alignment as u64));
        let cap = options.history_size as u64 + 1;
        if n > u32::MAX as u64 || vector_bytes > limits.max_storage_buffer_binding_size {
            return Err(OptimError::ExceedsLimits(format!("{n} L-BFGS elements: one binding takes at most {} bytes", limits.max_storage_buffer_binding_size)));
        }
        let too_big = |what: String| Err(OptimError::ExceedsLimits(what));
        let history_bytes = cap.checked_mul(vector_bytes).filter(|&b| b <= limits.max_buffer_size);
        if history_bytes.is_none() {
            return too_big(format!("history_size {} of {n} elements: each history buffer would pass the device's {} bytes", options.history_size, limits.max_buffer_size));
        }
        let scalar_count = slot::RING as u64 + 2 * cap;
        if scalar_count * 4 > limits.max_storage_buffer_binding_size {
            return too_big(format!("history_size {}: {} scalars pass one binding", options.history_size, scalar_count));
        }
        // One dispatch's uniform per 256 bytes, at u32 dynamic offsets.
        let op_capacity = 6 * cap + 32;
        if op_capacity * 256 > limits.max_buffer_size.min(u32::MAX as u64) {
            return too_big(format!("history_size {}: {op_capacity} dispatches of the two-loop recursion pass one uniform buffer", options.history_size));
        }
        let kernels = Kernels::new(device, n as u32, scalar_count as u32, op_capacity)?;
        let vector = |label| device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size: vector_bytes, usage: U::STORAGE | U::COPY_SRC | U::COPY_DST, mapped_at_creation: false });
        let ring = |label| device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size: cap * vector_bytes, usage: U::STORAGE | U::COPY_SRC | U::COPY_DST, mapped_at_creation: false });
        let made = scoped(device, || {
            let staging = device.create_buffer(&wgpu::BufferDescriptor { label: Some("lbfgs readback"), size: scalar_count * 4, usage: U::MAP_READ | U::COPY_DST, mapped_at_creation: false });
            (vector("lbfgs x"), vector("lbfgs trial"), vector("lbfgs d"), vector("lbfgs prev_flat_grad"), ring("lbfgs old_stps"), ring("lbfgs old_dirs"), staging)
        })?;
        let (x0, trial, d, g_prev, s_ring, y_ring, staging) = made;
        queue.write_buffer(&kernels.scalars, slot::ONE as u64 * 4, bytemuck::bytes_of(&1.0f32));
        queue.write_buffer(&kernels.scalars, slot::H_DIAG as u64 * 4, bytemuck::bytes_of(&1.0f32));
        let ring = Ring { head: 0, len: 0, cap: cap as u32 };
        let host = HostState { h_diag: 1.0, ..HostState::default() };
        Ok(LbfgsOptimizer { device: device.clone(), queue: queue.clone(), options, params, n, vector_bytes, kernels, x0, trial, d, g_prev, s_ring, y_ring, pool: Vec::new(), ring, host, staging })
    }

    /// The options.
    pub fn options(&self) -> Lbfgs {
        self.options
    }

    /// Changes the options (PyTorch's `param_groups[0]`, say its lr); the
    /// history's size is fixed at construction.
    ///
    /// **Errors:** as [`Lbfgs::validate`]; [`OptimError::InvalidOptions`]
    /// for another history_size. Nothing changes then.
    pub fn set_options(&mut self, options: Lbfgs) -> Result<()> {
        options.validate()?;
        if options.history_size != self.options.history_size {
            return Err(OptimError::InvalidOptions("L-BFGS's history_size is fixed when the optimizer is built"));
        }
        self.options = options;
        Ok(())
    }

    /// Elements of the flat vector.
    pub fn len(&self) -> u64 {
        self.n
    }

    /// Whether the flat vector is empty (never: `new` refuses that).
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The counters (`n_iter`, `func_evals`) and host scalars (`t`,
    /// `H_diag`, `prev_loss`).
    pub fn host_state(&self) -> HostState {
        self.host
    }

    /// Pairs in the history.
    pub fn history_len(&self) -> u32 {
        self.ring.len
    }

    /// Bytes of a flat vector and of a ring slot.
    pub(super) fn vector_bytes(&self) -> u64 {
        self.vector_bytes
    }

    pub(super) fn view(&self, buffer: &wgpu::Buffer) -> View {
        View { buffer: buffer.clone(), offset: 0, size: self.vector_bytes() }
    }

    pub(super) fn ring_view(&self, ring: &wgpu::Buffer, slot: u32) -> View {
        View { buffer: ring.clone(), offset: slot as u64 * self.vector_bytes(), size: self.vector_bytes() }
    }

    pub(super) fn phase(&self) -> Phase {
        Phase { encoder: self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("lbfgs") }), first_op: 0 }
    }

    pub(super) fn record(&self, phase: &mut Phase, batch: Batch) -> Result<()> {
        batch.record(&self.queue, &mut phase.encoder, &mut phase.first_op)
    }

    /// Submits the phase and reads the scalars back.
    ///
    /// **Errors:** [`OptimError::Wgpu`] for a validation error recorded in
    /// the phase (the closure's included), [`OptimError::DeviceLost`],
    /// [`OptimError::Readback`].
    pub(super) fn finish(&self, mut phase: Phase) -> Result<Vec<f32>> {
        let size = self.staging.size();
        scoped(&self.device, || {
            phase.encoder.copy_buffer_to_buffer(&self.kernels.scalars, 0, &self.staging, 0, size);
            self.queue.submit([phase.encoder.finish()]);
        })?;
        crate::device::map_read(&self.device, &self.staging)?;
        let out = {
            let view = self.staging.get_mapped_range(..).map_err(|e| OptimError::Readback(format!("{e:?}")))?;
            bytemuck::cast_slice::<u8, f32>(&view).to_vec()
        };
        self.staging.unmap();
        Ok(out)
    }

    /// Copies the params (`into` false: the grads) into a flat vector.
    pub(super) fn gather(&self, encoder: &mut wgpu::CommandEncoder, into: &wgpu::Buffer, params: bool) {
        let mut at = 0;
        for p in &self.params {
            let (buffer, offset) = if params { (&p.param, p.param_offset) } else { (&p.grad, p.grad_offset) };
            encoder.copy_buffer_to_buffer(buffer, offset * 4, into, at * 4, p.param_len * 4);
            at += p.param_len;
        }
    }

    /// Copies a flat vector into the params.
    pub(super) fn scatter(&self, encoder: &mut wgpu::CommandEncoder, from: &wgpu::Buffer) {
        let mut at = 0;
        for p in &self.params {
            encoder.copy_buffer_to_buffer(from, at * 4, &p.param, p.param_offset * 4, p.param_len * 4);
            at += p.param_len;
        }
    }

    /// A gradient buffer no handle holds.
    pub(super) fn free_grad(&mut self) -> Result<Rc<wgpu::Buffer>> {
        if let Some(free) = self.pool.iter().find(|b| Rc::strong_count(b) == 1) {
            return Ok(free.clone());
        }
        let bytes = self.vector_bytes();
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
        let buffer = scoped(&self.device, || self.device.create_buffer(&wgpu::BufferDescriptor { label: Some("lbfgs flat_grad"), size: bytes, usage, mapped_at_creation: false }))?;
        self.pool.push(Rc::new(buffer));
        Ok(self.pool.last().expect("just pushed").clone())
    }

    /// Checks where a closure put the loss.
    pub(super) fn check_loss(loss: &LossAt) -> Result<()> {
        check_usage(0, "loss", &loss.buffer, wgpu::BufferUsages::COPY_SRC)?;
        if !loss.offset.is_multiple_of(4) || loss.offset + 4 > loss.buffer.size() {
            return Err(OptimError::OutOfBounds { index: 0, which: "loss", start: loss.offset / 4, end: loss.offset / 4 + 1, buffer_len: loss.buffer.size() / 4 });
        }
        Ok(())
    }

    /// Writes scalar `slot` of the GPU's scalars (before the next submit).
    pub(super) fn write_scalar(&self, slot: u32, value: f32) {
        self.queue.write_buffer(&self.kernels.scalars, slot as u64 * 4, bytemuck::bytes_of(&value));
    }

    /// Puts the params back at x (a failed line search's evaluation left
    /// them at a trial point).
    pub(super) fn restore_x0(&self) -> Result<()> {
        let mut phase = self.phase();
        self.scatter(&mut phase.encoder, &self.x0);
        scoped(&self.device, || self.queue.submit([phase.encoder.finish()]))?;
        Ok(())
    }

    /// Records the move of the params to x + t·d (x: the params when the
    /// direction was taken).
    pub(super) fn record_move(&self, phase: &mut Phase, t: f64) -> Result<()> {
        let mut batch = Batch::new(&self.kernels);
        batch.moved(&self.view(&self.trial), &self.view(&self.x0), &self.view(&self.d), Coef::host(t));
        self.record(phase, batch)?;
        self.scatter(&mut phase.encoder, &self.trial);
        Ok(())
    }

    /// Moves the params to x + t·d, submitted.
    pub(super) fn move_to(&self, t: f64) -> Result<()> {
        let mut phase = self.phase();
        self.record_move(&mut phase, t)?;
        scoped(&self.device, || self.queue.submit([phase.encoder.finish()]))?;
        Ok(())
    }
}
