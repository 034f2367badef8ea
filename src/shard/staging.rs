//! The host staging of a sharded step, allocated once and reused: the
//! grads read back, the rank's mean grads, its params read back, and the
//! gathered params written out. Reads copy each buffer's span of the
//! tensors (gaps of padding included) in one copy, not one per tensor (a
//! span ends where a gap exceeds both 1024 elements and the next tensor's
//! length); the gathered params go up in one write and are copied into each
//! tensor on the GPU, so padding between tensors is never written.

use crate::device::map_read;
use crate::engine::ParamSlice;
use crate::error::{scoped, OptimError, Result};

/// The widest gap (elements) a span reads over to join a range, beyond the
/// range's own length.
const MAX_GAP: u64 = 1024;

/// Ranges of one or more buffers read back together: each buffer's span
/// copied once into a mapped staging buffer, then each range picked out.
pub struct Readback {
    /// (buffer, first element, elements) per span.
    spans: Vec<(wgpu::Buffer, u64, u64)>,
    /// Per range: its element offset in the staging buffer and its length.
    picks: Vec<(u64, u64)>,
    staging: wgpu::Buffer,
}

impl Readback {
    /// A readback of `ranges` (buffer, element offset, elements), in order.
    ///
    /// **Errors:** [`OptimError::Wgpu`] / [`OptimError::OutOfMemory`] for the staging buffer.
    pub fn new(device: &wgpu::Device, ranges: &[(&wgpu::Buffer, u64, u64)]) -> Result<Self> {
        let mut spans: Vec<(wgpu::Buffer, u64, u64)> = Vec::new();
        let mut picks = Vec::with_capacity(ranges.len());
        let mut at = 0u64;
        for &(buffer, offset, len) in ranges {
            match spans.last_mut() {
                // the same buffer, a little after the span's end: widen the span over the gap
                Some((b, start, span)) if b == buffer && offset >= *start + *span && offset - (*start + *span) <= len.max(MAX_GAP) => {
                    let grown = offset + len - *start;
                    at += grown - *span;
                    *span = grown;
                    picks.push((at - len, len));
                }
                _ => {
                    spans.push((buffer.clone(), offset, len));
                    at += len;
                    picks.push((at - len, len));
                }
            }
        }
        let staging = scoped(device, || device.create_buffer(&wgpu::BufferDescriptor { label: Some("wgpu-optim shard readback"), size: 4 * at.max(1), usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST, mapped_at_creation: false }))?;
        Ok(Readback { spans, picks, staging })
    }

    /// Elements the ranges hold.
    pub fn len(&self) -> usize {
        self.picks.iter().map(|p| p.1 as usize).sum()
    }

    /// Whether there is nothing to read.
    pub fn is_empty(&self) -> bool {
        self.picks.is_empty()
    }

    /// Reads the ranges, concatenated, into `out` (of [`Readback::len`]
    /// elements). Waits for the GPU.
    ///
    /// **Errors:** [`OptimError::DeviceLost`], [`OptimError::Readback`].
    pub fn read(&self, device: &wgpu::Device, queue: &wgpu::Queue, out: &mut [f32]) -> Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("wgpu-optim shard readback") });
        let mut at = 0;
        for (buffer, offset, len) in &self.spans {
            enc.copy_buffer_to_buffer(buffer, 4 * offset, &self.staging, 4 * at, 4 * len);
            at += len;
        }
        queue.submit([enc.finish()]);
        map_read(device, &self.staging)?;
        {
            let view = self.staging.get_mapped_range(..).map_err(|e| OptimError::Readback(format!("{e:?}")))?;
            let words: &[f32] = bytemuck::cast_slice(&view);
            let mut to = 0;
            for &(from, len) in &self.picks {
                out[to..to + len as usize].copy_from_slice(&words[from as usize..(from + len) as usize]);
                to += len as usize;
            }
        }
        self.staging.unmap();
        Ok(())
    }
}

/// The gathered params: one upload buffer, copied into every tensor's
/// range on the GPU.
pub struct Upload {
    buffer: wgpu::Buffer,
    /// (param buffer, element offset, elements) per tensor, in flat order.
    targets: Vec<(wgpu::Buffer, u64, u64)>,
}

impl Upload {
    /// An upload of the flat params into `params`' ranges.
    ///
    /// **Errors:** [`OptimError::Wgpu`] / [`OptimError::OutOfMemory`].
    pub fn new(device: &wgpu::Device, params: &[ParamSlice]) -> Result<Self> {
        let total: u64 = params.iter().map(ParamSlice::len).sum();
        let buffer = scoped(device, || device.create_buffer(&wgpu::BufferDescriptor { label: Some("wgpu-optim shard params"), size: 4 * total.max(1), usage: wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST, mapped_at_creation: false }))?;
        Ok(Upload { buffer, targets: params.iter().map(|p| (p.param.clone(), p.param_offset, p.len())).collect() })
    }

    /// Writes `flat` (every tensor's params, in order) into the param
    /// buffers, all but the flat range `keep` (already in place): one write
    /// on each side of it, then one GPU copy per tensor piece, submitted.
    pub fn write(&self, device: &wgpu::Device, queue: &wgpu::Queue, flat: &[f32], keep: std::ops::Range<u64>) {
        let total = flat.len() as u64;
        for (lo, hi) in [(0, keep.start), (keep.end, total)].into_iter().filter(|(lo, hi)| lo < hi) {
            queue.write_buffer(&self.buffer, 4 * lo, bytemuck::cast_slice(&flat[lo as usize..hi as usize]));
        }
        let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("wgpu-optim shard params") });
        let mut at = 0;
        for (buffer, offset, len) in &self.targets {
            let (start, end) = (at, at + len);
            for (lo, hi) in [(start, end.min(keep.start)), (start.max(keep.end), end)].into_iter().filter(|(lo, hi)| lo < hi) {
                enc.copy_buffer_to_buffer(&self.buffer, 4 * lo, buffer, 4 * (offset + lo - start), 4 * (hi - lo));
            }
            at = end;
        }
        queue.submit([enc.finish()]);
    }
}

/// Everything a sharded step stages, allocated once.
pub struct Stage {
    /// Every tensor's grads.
    pub grads_in: Readback,
    /// The shard's params after its step.
    pub params_in: Readback,
    /// The gathered params out.
    pub upload: Upload,
    /// Host vectors: all grads, the shard's mean grads, the shard's params, all params.
    pub grads: Vec<f32>,
    /// The shard's mean grads.
    pub mine: Vec<f32>,
    /// The same, each piece at its offset in the shard's grad buffer.
    pub padded: Vec<f32>,
    /// (offset in `padded`, elements) per piece.
    grad_at: Vec<(usize, usize)>,
    /// The shard's params.
    pub shard_params: Vec<f32>,
    /// Every param, gathered.
    pub flat: Vec<f32>,
}

impl Stage {
    /// The staging of a step over `params` (all tensors) whose shard is
    /// stepped over `local` (its slices).
    ///
    /// **Errors:** as [`Readback::new`] and [`Upload::new`].
    pub fn new(device: &wgpu::Device, params: &[ParamSlice], local: &[ParamSlice]) -> Result<Self> {
        let grads: Vec<_> = params.iter().map(|p| (&p.grad, p.grad_offset, p.len())).collect();
        let shard: Vec<_> = local.iter().map(|p| (&p.param, p.param_offset, p.len())).collect();
        let (grads_in, params_in, upload) = (Readback::new(device, &grads)?, Readback::new(device, &shard)?, Upload::new(device, params)?);
        let (total, mine) = (grads_in.len(), params_in.len());
        let grad_at: Vec<(usize, usize)> = local.iter().map(|p| (p.grad_offset as usize, p.len() as usize)).collect();
        let padded = grad_at.last().map_or(0, |&(at, len)| at + len);
        Ok(Stage { grads_in, params_in, upload, grads: vec![0.0; total], mine: vec![0.0; mine], padded: vec![0.0; padded], grad_at, shard_params: vec![0.0; mine], flat: vec![0.0; total] })
    }

    /// Copies the shard's mean grads into their padded layout.
    pub fn pad_grads(&mut self) {
        let mut from = 0;
        for &(at, len) in &self.grad_at {
            self.padded[at..at + len].copy_from_slice(&self.mine[from..from + len]);
            from += len;
        }
    }
}
