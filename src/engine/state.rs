//! Optimizer state on the GPU: formats (f32, bf16, blockwise 8-bit), the
//! engine-owned state buffers of each window, and reading and writing one
//! tensor's state from the host.

use super::plan::{TensorRange, Window};
use super::Optimizer;
use crate::error::{OptimError, Result};
use crate::quant;
use crate::rules::{OptimizerConfig, StateLayout, MAX_SLOTS};

/// How the optimizer state (moments, accumulators) is stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum StateFormat {
    /// f32, 4 bytes per element and slot.
    #[default]
    F32,
    /// bfloat16 packed two per u32, 2 bytes per element and slot. The
    /// update computes in f32; each stored value is rounded stochastically
    /// with a counter-based hash of (seed, step, element), so a run is
    /// reproducible and the rounding is unbiased (a small update to a large
    /// moment is kept in expectation instead of being rounded away).
    Bf16 {
        /// Seed of the stochastic-rounding hash.
        seed: u32,
    },
    /// Blockwise 8-bit (bitsandbytes style): one byte per element, a code
    /// into a 256-entry dynamic map (`quant::dynamic_map`: signed for
    /// moments that can be negative, unsigned otherwise), scaled by the
    /// absmax of its block; one block per workgroup row (4·WG·chunks
    /// elements, 4096 by default), so one f32 scale per 4096 values. Round
    /// to nearest.
    Int8Blockwise,
}

/// How a pipeline reads and writes the state slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StateKind {
    /// f32 slots ([`StateFormat::F32`]).
    F32,
    /// bf16 slots, two per u32 ([`StateFormat::Bf16`]).
    Bf16,
    /// Blockwise 8-bit codes and block scales ([`StateFormat::Int8Blockwise`]).
    Int8,
}

impl StateFormat {
    /// The bytes of `values` in this format (bf16: round to nearest even,
    /// padded to whole u32 words; 8-bit: codes of whole `block`s, then their
    /// scales).
    pub fn encode(self, values: &[f32], coding: quant::Coding, block: u64) -> Vec<u8> {
        match self {
            StateFormat::F32 => bytemuck::cast_slice(values).to_vec(),
            StateFormat::Bf16 { .. } => {
                let mut halves: Vec<u16> = values.iter().map(|&v| bf16_round(v)).collect();
                if halves.len() % 2 == 1 {
                    halves.push(0);
                }
                bytemuck::cast_slice(&halves).to_vec()
            }
            StateFormat::Int8Blockwise => {
                let (mut codes, scales) = quant::encode(values, block as usize, coding);
                codes.extend_from_slice(bytemuck::cast_slice(&scales));
                codes
            }
        }
    }

    /// The pipeline's view of this format.
    pub fn kind(self) -> StateKind {
        match self {
            StateFormat::F32 => StateKind::F32,
            StateFormat::Bf16 { .. } => StateKind::Bf16,
            StateFormat::Int8Blockwise => StateKind::Int8,
        }
    }

    /// Bytes per state element.
    pub fn bytes(self) -> u64 {
        match self {
            StateFormat::F32 => 4,
            StateFormat::Bf16 { .. } => 2,
            StateFormat::Int8Blockwise => 1,
        }
    }

    /// Bytes of a window's state buffer of `len` elements (8-bit: codes,
    /// then one f32 scale per block).
    fn buffer_size(self, len: u64, block: u64) -> u64 {
        len * self.bytes() + if self == StateFormat::Int8Blockwise { 4 * (len / block) } else { 0 }
    }
}

/// bf16 bits of `x`, rounded to nearest even (host-side writes of state).
pub fn bf16_round(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) | 0x40) as u16;
    }
    let rounding = 0x7fff + ((b >> 16) & 1);
    (b.wrapping_add(rounding) >> 16) as u16
}

/// Slots whose 8-bit codes use the signed map, and (bits 8–11) those
/// quantised in the square-root domain.
pub fn q8_mask(layout: &StateLayout) -> u32 {
    layout.used().map(|(i, s)| (i, quant::Coding::of(s.quantity))).fold(0, |m, (i, c)| m | (c.signed as u32) << i | (c.sqrt as u32) << (8 + i))
}

/// A contiguous piece of one tensor's state in one window.
#[derive(Clone, Copy, Debug)]
struct Piece {
    param_index: usize,
    len: u64,
    window: usize,
    state_offset: u64,
}

/// The state buffers of every window, and where each tensor's state is.
pub struct StateStore {
    /// How the state is stored.
    pub format: StateFormat,
    /// The rule's state slots in binding order.
    pub layout: StateLayout,
    /// Elements per state block (8-bit scales; 4 otherwise).
    pub block: u64,
    /// Per window: one buffer per used slot.
    pub buffers: Vec<[Option<wgpu::Buffer>; MAX_SLOTS]>,
    /// Per window: the first u32 of the 8-bit block scales.
    pub scale_offsets: Vec<u64>,
    pieces: Vec<Piece>,
}

impl StateStore {
    /// Allocates and initialises the state of every window; each tensor's
    /// state starts at its own param group's initial values.
    pub fn new(device: &wgpu::Device, queue: &wgpu::Queue, configs: &[OptimizerConfig], windows: &[Window], tensors: &[TensorRange], format: StateFormat, block: u64) -> Self {
        let layout = configs[0].state();
        let mut store = StateStore { format, layout, block, buffers: Vec::new(), scale_offsets: Vec::new(), pieces: Vec::new() };
        for (w, window) in windows.iter().enumerate() {
            let offsets = window.state_offsets(block);
            for (&(param_index, _, len), &state_offset) in window.segments.iter().zip(&offsets) {
                store.pieces.push(Piece { param_index, len, window: w, state_offset });
            }
            store.scale_offsets.push(window.state_len / 4);
            let bufs = std::array::from_fn(|slot| {
                let s = layout.get(slot)?;
                let buf = device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(s.name),
                    size: format.buffer_size(window.state_len, block),
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                for (&(i, _, len), &offset) in window.segments.iter().zip(&offsets) {
                    let init = configs[tensors[i].group as usize].initial_state(slot) as f32;
                    if init != 0.0 {
                        store.fill(queue, &buf, offset, len.next_multiple_of(block), init, quant::Coding::of(s.quantity));
                    }
                }
                Some(buf)
            });
            store.buffers.push(bufs);
        }
        store
    }

    /// Sets the slots that start as a copy of the params (f32 state, which
    /// `modes::check_options` ensures) from each tensor's params.
    pub fn copy_params(&self, device: &wgpu::Device, queue: &wgpu::Queue, windows: &[Window], tensors: &[TensorRange], params: &[wgpu::Buffer]) {
        let slots: Vec<usize> = self.layout.used().filter(|(_, s)| s.copy_of_param).map(|(i, _)| i).collect();
        if slots.is_empty() {
            return;
        }
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("wgpu-optim state from params") });
        for (window, bufs) in windows.iter().zip(&self.buffers) {
            for (&(i, start, len), offset) in window.segments.iter().zip(window.state_offsets(self.block)) {
                let t = &tensors[i];
                for &slot in &slots {
                    let state = bufs[slot].as_ref().expect("a used slot has its buffer");
                    encoder.copy_buffer_to_buffer(&params[t.param_buf], (t.param_offset + start) * 4, state, offset * 4, len * 4);
                }
            }
        }
        queue.submit([encoder.finish()]);
    }

    /// Writes `len` elements of `value` at element `offset` of a window's
    /// state buffer, in chunks of whole blocks (no host copy of the whole
    /// window). Only 8-bit state needs the window's scale offset, which
    /// `offset` and `len` keep block-aligned.
    fn fill(&self, queue: &wgpu::Queue, buf: &wgpu::Buffer, offset: u64, len: u64, value: f32, coding: quant::Coding) {
        let chunk = (1u64 << 20).next_multiple_of(self.block);
        let mut at = 0;
        while at < len {
            let n = chunk.min(len - at);
            let bytes = self.format.encode(&vec![value; n as usize], coding, self.block);
            if self.format == StateFormat::Int8Blockwise {
                let codes = n as usize;
                queue.write_buffer(buf, offset + at, &bytes[..codes]);
                let scale_at = *self.scale_offsets.last().expect("the window's scale offset is set first") + (offset + at) / self.block;
                queue.write_buffer(buf, scale_at * 4, &bytes[codes..]);
            } else {
                queue.write_buffer(buf, (offset + at) * self.format.bytes(), &bytes);
            }
            at += n;
        }
    }

    fn pieces_of(&self, param_index: usize) -> impl Iterator<Item = &Piece> {
        self.pieces.iter().filter(move |p| p.param_index == param_index)
    }

    /// (buffer, first element, elements) of each piece of one tensor's slot.
    fn ranges(&self, slot: usize, param_index: usize) -> Result<Vec<(&Piece, &wgpu::Buffer)>> {
        let mut out = Vec::new();
        for piece in self.pieces_of(param_index) {
            let buf = self.buffers[piece.window].get(slot).and_then(|b| b.as_ref()).ok_or(OptimError::InvalidOptions("this rule has no such state slot"))?;
            out.push((piece, buf));
        }
        if out.is_empty() {
            return Err(OptimError::InvalidOptions("parameter index out of range"));
        }
        Ok(out)
    }

    /// Reads slot `slot` of tensor `param_index` back (waits for the GPU).
    pub async fn read(&self, device: &wgpu::Device, queue: &wgpu::Queue, slot: usize, param_index: usize) -> Result<Vec<f32>> {
        let ranges = self.ranges(slot, param_index)?;
        let mut out = Vec::new();
        match self.format {
            StateFormat::F32 => {
                let r: Vec<_> = ranges.iter().map(|(p, b)| (*b, p.state_offset, p.len)).collect();
                out = crate::device::read_ranges_f32_async(device, queue, &r).await?;
            }
            StateFormat::Bf16 { .. } => {
                // Whole words (pieces start on a vec4), then drop the padding.
                let words: Vec<_> = ranges.iter().map(|(p, b)| (*b, p.state_offset / 2, p.len.div_ceil(2))).collect();
                let raw = crate::device::read_ranges_f32_async(device, queue, &words).await?;
                let mut at = 0usize;
                for (p, _) in &ranges {
                    let halves = raw[at..at + p.len.div_ceil(2) as usize].iter().flat_map(|w| {
                        let b = w.to_bits();
                        [f32::from_bits(b << 16), f32::from_bits(b & 0xffff_0000)]
                    });
                    out.extend(halves.take(p.len as usize));
                    at += p.len.div_ceil(2) as usize;
                }
            }
            StateFormat::Int8Blockwise => {
                let coding = self.layout.get(slot).map(|s| quant::Coding::of(s.quantity)).unwrap_or_default();
                for (p, buf) in &ranges {
                    let scale_at = self.scale_offsets[p.window] + p.state_offset / self.block;
                    let raw = crate::device::read_ranges_f32_async(device, queue, &[(buf, p.state_offset / 4, p.len.div_ceil(4)), (buf, scale_at, p.len.div_ceil(self.block))]).await?;
                    let (words, scales) = raw.split_at(p.len.div_ceil(4) as usize);
                    let codes: Vec<u8> = words.iter().flat_map(|w| w.to_bits().to_le_bytes()).take(p.len as usize).collect();
                    out.extend(quant::decode(&codes, scales, self.block as usize, coding));
                }
            }
        }
        Ok(out)
    }

    /// Overwrites slot `slot` of tensor `param_index`.
    pub fn write(&self, queue: &wgpu::Queue, slot: usize, param_index: usize, values: &[f32]) -> Result<()> {
        let ranges = self.ranges(slot, param_index)?;
        let total: u64 = ranges.iter().map(|(p, _)| p.len).sum();
        if total != values.len() as u64 {
            return Err(OptimError::LengthMismatch { index: param_index, param_len: total, grad_len: values.len() as u64 });
        }
        let coding = self.layout.get(slot).map(|s| quant::Coding::of(s.quantity)).unwrap_or_default();
        let mut at = 0usize;
        for (p, buf) in ranges {
            let part = &values[at..at + p.len as usize];
            if self.format == StateFormat::Int8Blockwise {
                // Whole blocks (a piece's state is padded to whole blocks).
                let (mut codes, scales) = quant::encode(part, self.block as usize, coding);
                codes.resize(codes.len().next_multiple_of(4), 0);
                queue.write_buffer(buf, p.state_offset, &codes);
                let scale_at = self.scale_offsets[p.window] + p.state_offset / self.block;
                queue.write_buffer(buf, scale_at * 4, bytemuck::cast_slice(&scales));
            } else {
                queue.write_buffer(buf, p.state_offset * self.format.bytes(), &self.format.encode(part, coding, self.block));
            }
            at += p.len as usize;
        }
        Ok(())
    }
}

impl Optimizer {
    /// PyTorch `state_dict` names of the state slots (empty name: slot unused).
    pub fn state_names(&self) -> Vec<&'static str> {
        self.state.layout.names()
    }

    /// Bytes read plus written per parameter element by one step: param
    /// (read + write), grad (read), each state slot (read + write).
    pub fn bytes_per_element(&self) -> u64 {
        4 * 3 + 2 * self.state_bytes_per_element()
    }

    /// Bytes of optimizer state per parameter element.
    pub fn state_bytes_per_element(&self) -> u64 {
        self.state.layout.count() as u64 * self.state.format.bytes()
    }

    /// How the state is stored.
    pub fn state_format(&self) -> StateFormat {
        self.state.format
    }

    /// Reads state slot `slot` of parameter `param_index` back to the host
    /// (waits for the GPU).
    ///
    /// **Errors:** [`OptimError::InvalidOptions`] for an unused slot or a bad
    /// index; [`OptimError::Readback`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_state(&self, slot: usize, param_index: usize) -> Result<Vec<f32>> {
        pollster::block_on(self.read_state_async(slot, param_index))
    }

    /// [`Optimizer::read_state`] without blocking (the web's form).
    ///
    /// **Errors:** as [`Optimizer::read_state`].
    pub async fn read_state_async(&self, slot: usize, param_index: usize) -> Result<Vec<f32>> {
        self.state.read(&self.device, &self.queue, slot, param_index).await
    }

    /// Overwrites state slot `slot` of parameter `param_index` (e.g. from a
    /// checkpoint, or Newton's Hessian diagonal).
    ///
    /// **Errors:** as [`Optimizer::read_state`], plus
    /// [`OptimError::LengthMismatch`] if `values` has the wrong length.
    pub fn write_state(&self, slot: usize, param_index: usize, values: &[f32]) -> Result<()> {
        self.state.write(&self.queue, slot, param_index, values)
    }
}
