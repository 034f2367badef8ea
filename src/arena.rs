//! Engine-allocated parameter storage: many tensors packed into a few
//! buffers, viewed by the user as [`ParamSlice`]s.

use crate::engine::ParamSlice;
use crate::error::{scoped, OptimError, Result};

/// Params and grads of many tensors, packed by the engine into as few
/// buffers as the device allows.
///
/// Each tensor starts on a multiple of 8 elements (32 bytes), so the vector
/// kernels run (the wide one included, where the device has it).
/// A tensor that does not fit in one buffer (larger than the device's
/// `max_buffer_size`, or than `max_buffer_bytes`) is split across buffers:
/// [`ParamArena::tensor`] then returns several slices, which the optimizer
/// steps as one tensor.
///
/// ```no_run
/// use wgpu_optim::{device, AdamW, Optimizer, ParamArena};
/// let gpu = device::headless().unwrap();
/// let arena = ParamArena::new(&gpu.device, &[4096, 64, 1000]).unwrap();
/// arena.write_params(&gpu.queue, 1, &[0.5; 64]).unwrap();
/// let opt = Optimizer::new(&gpu.device, &gpu.queue, AdamW::default().into(), &arena.slices()).unwrap();
/// // Your kernels read params and write grads at the ranges arena.tensor(i) names.
/// ```
///
/// **Errors:** [`OptimError::EmptyParams`], [`OptimError::EmptyTensor`],
/// [`OptimError::ExceedsLimits`], [`OptimError::Wgpu`].
pub struct ParamArena {
    params: Vec<wgpu::Buffer>,
    grads: Vec<wgpu::Buffer>,
    tensors: Vec<Vec<ParamSlice>>,
}

/// Tensors start on multiples of this many elements.
const ALIGN: u64 = 8;

impl ParamArena {
    /// Allocates params and grads for tensors of `lens` elements, buffers up
    /// to the device's `max_buffer_size`.
    pub fn new(device: &wgpu::Device, lens: &[u64]) -> Result<Self> {
        Self::with_max_buffer_bytes(device, lens, device.limits().max_buffer_size)
    }

    /// As [`ParamArena::new`], with buffers of at most `max_buffer_bytes`
    /// (capped at the device limit); smaller values force tensors to be
    /// split across buffers.
    pub fn with_max_buffer_bytes(device: &wgpu::Device, lens: &[u64], max_buffer_bytes: u64) -> Result<Self> {
        if lens.is_empty() {
            return Err(OptimError::EmptyParams);
        }
        if let Some(index) = lens.iter().position(|&l| l == 0) {
            return Err(OptimError::EmptyTensor { index });
        }
        let cap = max_buffer_bytes.min(device.limits().max_buffer_size) / 4 / ALIGN * ALIGN;
        if cap == 0 {
            return Err(OptimError::ExceedsLimits(format!("buffers of {max_buffer_bytes} bytes hold no aligned unit")));
        }
        // Place every tensor: (buffer, offset, len) pieces, and buffer sizes.
        let mut sizes: Vec<u64> = vec![0];
        let mut placed: Vec<Vec<(usize, u64, u64)>> = Vec::with_capacity(lens.len());
        for &len in lens {
            let mut pieces = Vec::new();
            let cur = sizes.len() - 1;
            // Start a fresh buffer rather than split a tensor that would fit one.
            if sizes[cur] + len > cap && len <= cap && sizes[cur] > 0 {
                sizes.push(0);
            }
            let mut left = len;
            while left > 0 {
                let b = sizes.len() - 1;
                let room = cap - sizes[b];
                if room == 0 {
                    sizes.push(0);
                    continue;
                }
                let take = left.min(room);
                pieces.push((b, sizes[b], take));
                sizes[b] = (sizes[b] + take).next_multiple_of(ALIGN).min(cap);
                left -= take;
            }
            placed.push(pieces);
        }
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        let (params, grads) = scoped(device, || {
            let make = |label, size: u64| {
                device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size: size * 4, usage, mapped_at_creation: false })
            };
            let params: Vec<_> = sizes.iter().map(|&s| make("wgpu-optim arena params", s)).collect();
            let grads: Vec<_> = sizes.iter().map(|&s| make("wgpu-optim arena grads", s)).collect();
            (params, grads)
        })?;
        let tensors = placed
            .into_iter()
            .map(|pieces| pieces.into_iter().map(|(b, off, len)| ParamSlice::range(&params[b], off, &grads[b], off, len)).collect())
            .collect();
        Ok(ParamArena { params, grads, tensors })
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether the arena holds no tensors (never true once built).
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// The slices of tensor `i` (one, unless it was split across buffers).
    ///
    /// **Panics** if `i >= self.len()`.
    pub fn tensor(&self, i: usize) -> &[ParamSlice] {
        &self.tensors[i]
    }

    /// Puts tensor `i` in param group `group`.
    ///
    /// **Panics** if `i >= self.len()`.
    pub fn set_group(&mut self, i: usize, group: u32) {
        for s in &mut self.tensors[i] {
            s.group = group;
        }
    }

    /// Every slice of every tensor, in order: what [`crate::Optimizer`] takes.
    pub fn slices(&self) -> Vec<ParamSlice> {
        self.tensors.iter().flatten().cloned().collect()
    }

    /// The param buffers.
    pub fn param_buffers(&self) -> &[wgpu::Buffer] {
        &self.params
    }

    /// The grad buffers (same layout as the params).
    pub fn grad_buffers(&self) -> &[wgpu::Buffer] {
        &self.grads
    }

    /// Elements of tensor `i`.
    fn numel(&self, i: usize) -> Result<u64> {
        self.tensors.get(i).map(|t| t.iter().map(|s| s.len()).sum()).ok_or(OptimError::InvalidOptions("tensor index out of range"))
    }

    fn write(&self, queue: &wgpu::Queue, i: usize, data: &[f32], grads: bool) -> Result<()> {
        let n = self.numel(i)?;
        if n != data.len() as u64 {
            return Err(OptimError::LengthMismatch { index: i, param_len: n, grad_len: data.len() as u64 });
        }
        let mut at = 0usize;
        for s in &self.tensors[i] {
            let (buf, off) = if grads { (&s.grad, s.grad_offset) } else { (&s.param, s.param_offset) };
            queue.write_buffer(buf, off * 4, bytemuck::cast_slice(&data[at..at + s.len() as usize]));
            at += s.len() as usize;
        }
        Ok(())
    }

    /// Uploads the values of tensor `i`.
    ///
    /// **Errors:** [`OptimError::LengthMismatch`], [`OptimError::InvalidOptions`] for a bad index.
    pub fn write_params(&self, queue: &wgpu::Queue, i: usize, values: &[f32]) -> Result<()> {
        self.write(queue, i, values, false)
    }

    /// Uploads the gradient of tensor `i`.
    ///
    /// **Errors:** as [`ParamArena::write_params`].
    pub fn write_grads(&self, queue: &wgpu::Queue, i: usize, values: &[f32]) -> Result<()> {
        self.write(queue, i, values, true)
    }

    /// Reads tensor `i`'s params back (waits for the GPU).
    ///
    /// **Errors:** [`OptimError::InvalidOptions`] for a bad index, [`OptimError::Readback`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_params(&self, device: &wgpu::Device, queue: &wgpu::Queue, i: usize) -> Result<Vec<f32>> {
        pollster::block_on(self.read_params_async(device, queue, i))
    }

    /// [`ParamArena::read_params`] without blocking (the web's form).
    ///
    /// **Errors:** as [`ParamArena::read_params`].
    pub async fn read_params_async(&self, device: &wgpu::Device, queue: &wgpu::Queue, i: usize) -> Result<Vec<f32>> {
        self.read(device, queue, i, false).await
    }

    /// Reads tensor `i`'s grads back (waits for the GPU).
    ///
    /// **Errors:** as [`ParamArena::read_params`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_grads(&self, device: &wgpu::Device, queue: &wgpu::Queue, i: usize) -> Result<Vec<f32>> {
        pollster::block_on(self.read_grads_async(device, queue, i))
    }

    /// [`ParamArena::read_grads`] without blocking (the web's form).
    ///
    /// **Errors:** as [`ParamArena::read_params`].
    pub async fn read_grads_async(&self, device: &wgpu::Device, queue: &wgpu::Queue, i: usize) -> Result<Vec<f32>> {
        self.read(device, queue, i, true).await
    }

    async fn read(&self, device: &wgpu::Device, queue: &wgpu::Queue, i: usize, grads: bool) -> Result<Vec<f32>> {
        self.numel(i)?;
        let ranges: Vec<_> = self.tensors[i].iter().map(|s| if grads { (&s.grad, s.grad_offset, s.len()) } else { (&s.param, s.param_offset, s.len()) }).collect();
        crate::device::read_ranges_f32_async(device, queue, &ranges).await
    }
}
