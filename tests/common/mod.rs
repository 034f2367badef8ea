//! Shared test setup: one headless device per test binary.
//!
//! Without an adapter the GPU tests print a loud SKIP locally, but when the
//! `CI` environment variable is set they fail: CI must never skip silently.

#![allow(dead_code)]

use std::sync::OnceLock;
use wgpu_optim::device::{headless, Gpu};

pub fn gpu() -> Option<&'static Gpu> {
    static GPU: OnceLock<Option<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| match headless() {
        Ok(g) => {
            eprintln!("adapter: {}", g.describe());
            Some(g)
        }
        Err(e) => {
            if std::env::var_os("CI").is_some() {
                panic!("CI is set and no GPU adapter is available: {e}");
            }
            eprintln!("SKIP: no GPU adapter ({e}); set CI=1 to make this a failure");
            None
        }
    })
    .as_ref()
}

/// `let gpu = require_gpu!();` returns from the test when there is no adapter
/// (outside CI; inside CI `gpu()` panics instead).
#[macro_export]
macro_rules! require_gpu {
    () => {
        match common::gpu() {
            Some(g) => g,
            None => return,
        }
    };
}

pub fn storage_buffer(gpu: &Gpu, data: &[f32]) -> wgpu::Buffer {
    storage_buffer_on(&gpu.device, &gpu.queue, data)
}

/// A storage buffer (copyable both ways) holding `data`, on `device`.
pub fn storage_buffer_on(device: &wgpu::Device, queue: &wgpu::Queue, data: &[f32]) -> wgpu::Buffer {
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
    let buf = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: (data.len() * 4) as u64,
        usage,
        mapped_at_creation: false,
    });
    queue.write_buffer(&buf, 0, bytemuck::cast_slice(data));
    buf
}

/// Whether the wide (64-bit packed) access paths run here: a CPU adapter
/// with SHADER_INT64, as `WideAccess::Auto` decides.
pub fn wide_capable(gpu: &Gpu) -> bool {
    gpu.device.features().contains(wgpu::Features::SHADER_INT64) && gpu.device.adapter_info().device_type == wgpu::DeviceType::Cpu
}

/// Starts of slices of `sizes` in one buffer for the access-form tests:
/// the first at `offset`, each next at least 4 elements past the last and
/// at a multiple of 8 plus `offset` (0: wide, 4: vec4, odd: scalar); and a
/// buffer length with room for the last slice's whole unit.
pub fn slice_places(sizes: &[usize], offset: usize) -> (Vec<usize>, usize) {
    let mut at = offset;
    let mut places = Vec::new();
    for &n in sizes {
        places.push(at);
        at = (at + n + 4).next_multiple_of(8) + offset;
    }
    (places, at + 16)
}
