//! Headless device creation for standalone use (CLI, tests, benches).
//!
//! The engine itself never creates a device: it takes the user's
//! `&wgpu::Device` and `&wgpu::Queue`. This helper is only for programs that
//! have none.

use crate::error::{OptimError, Result};

/// A device, its queue, and what was chosen.
pub struct Gpu {
    /// The logical device.
    pub device: wgpu::Device,
    /// The device's queue.
    pub queue: wgpu::Queue,
    /// The adapter the device was created on.
    pub adapter: wgpu::Adapter,
    /// The adapter's name, backend, device type and driver.
    pub info: wgpu::AdapterInfo,
}

impl Gpu {
    /// One line describing the adapter, e.g. `llvmpipe (LLVM 15.0.6, 256 bits) [Vulkan, Cpu]`.
    pub fn describe(&self) -> String {
        format!("{} [{:?}, {:?}] driver: {} {}", self.info.name, self.info.backend, self.info.device_type, self.info.driver, self.info.driver_info)
    }

    /// Whether the adapter is a software rasterizer (lavapipe / llvmpipe / WARP).
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }
}

/// The optional features the engine uses that `adapter` has: request them
/// (`DeviceDescriptor::required_features`) when you create your device.
/// Today that is `SHADER_INT64`, which the wide access path needs
/// ([`crate::WideAccess`]); without it the engine runs the vec4 path, with
/// bitwise the same results.
pub fn engine_features(adapter: &wgpu::Adapter) -> wgpu::Features {
    adapter.features() & wgpu::Features::SHADER_INT64
}

/// Creates a headless device with the adapter's full limits.
///
/// Honours `WGPU_BACKEND` (e.g. `vulkan`, `gl`) and `WGPU_ADAPTER_NAME`
/// (substring, case-insensitive), prefers a high-performance adapter, and
/// falls back to a software adapter (Vulkan lavapipe, GL llvmpipe) where
/// there is no GPU. `GPU timestamp queries` are requested where available.
///
/// **Errors:** [`OptimError::NoAdapter`], [`OptimError::AdapterNotFound`],
/// [`OptimError::RequestDevice`].
#[cfg(not(target_arch = "wasm32"))]
pub fn headless() -> Result<Gpu> {
    pollster::block_on(headless_async())
}

/// [`headless`] without blocking: the way to get a device on the web, where
/// the backend is the browser's WebGPU and the environment variables do not
/// exist.
///
/// **Errors:** as [`headless`].
pub async fn headless_async() -> Result<Gpu> {
    let adapter = choose_adapter().await?;
    let info = adapter.get_info();
    // Timestamps for the benchmark, and what the engine can use.
    let features = engine_features(&adapter) | (adapter.features() & (wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES));
    let (device, queue) = adapter
        .request_device(&wgpu::DeviceDescriptor {
            label: Some("wgpu-optim"),
            required_features: features,
            required_limits: adapter.limits(),
            ..Default::default()
        })
        .await
        .map_err(|e| OptimError::RequestDevice(e.to_string()))?;
    Ok(Gpu { device, queue, adapter, info })
}

#[cfg(not(target_arch = "wasm32"))]
async fn choose_adapter() -> Result<wgpu::Adapter> {
    // WGPU_BACKEND picks the backends; otherwise Vulkan/Metal/DX12 first and
    // GL (llvmpipe through EGL) only if those have no compute adapter.
    match wgpu::Backends::from_env() {
        Some(b) => pick_adapter(b).await,
        None => match pick_adapter(wgpu::Backends::PRIMARY).await {
            Err(OptimError::NoAdapter { .. }) => pick_adapter(wgpu::Backends::GL).await,
            other => other,
        },
    }
}

/// The browser's WebGPU adapter (high performance where there is a choice).
#[cfg(target_arch = "wasm32")]
async fn choose_adapter() -> Result<wgpu::Adapter> {
    let backends = wgpu::Backends::BROWSER_WEBGPU;
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = backends;
    let options = wgpu::RequestAdapterOptions { power_preference: wgpu::PowerPreference::HighPerformance, ..Default::default() };
    wgpu::Instance::new(desc).request_adapter(&options).await.map_err(|_| OptimError::NoAdapter { backends: format!("{backends:?}") })
}

#[cfg(not(target_arch = "wasm32"))]
async fn pick_adapter(backends: wgpu::Backends) -> Result<wgpu::Adapter> {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = backends;
    let instance = wgpu::Instance::new(desc);
    let mut adapters = instance.enumerate_adapters(backends).await;
    adapters.retain(|a| a.get_downlevel_capabilities().flags.contains(wgpu::DownlevelFlags::COMPUTE_SHADERS));
    if let Ok(name) = std::env::var("WGPU_ADAPTER_NAME") {
        let want = name.to_lowercase();
        return adapters
            .into_iter()
            .find(|a| a.get_info().name.to_lowercase().contains(&want))
            .ok_or(OptimError::AdapterNotFound(name));
    }
    // Prefer real GPUs over virtual ones over software rasterizers.
    adapters.sort_by_key(|a| match a.get_info().device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    });
    match adapters.into_iter().next() {
        Some(a) => Ok(a),
        None => instance
            .request_adapter(&wgpu::RequestAdapterOptions { force_fallback_adapter: true, ..Default::default() })
            .await
            .map_err(|_| OptimError::NoAdapter { backends: format!("{backends:?}") }),
    }
}

/// Maps `staging` (unmapped, `MAP_READ`, its copies submitted) for reading
/// and waits for the GPU; read it with `get_mapped_range`, then `unmap`.
///
/// **Errors:** [`OptimError::DeviceLost`] when the device is gone,
/// [`OptimError::Readback`] if mapping fails otherwise.
#[cfg(not(target_arch = "wasm32"))]
pub fn map_read(device: &wgpu::Device, staging: &wgpu::Buffer) -> Result<()> {
    pollster::block_on(map_read_async(device, staging))
}

/// [`map_read`] without blocking: resolves when the mapping does. On native
/// it waits for the device first; on the web the browser's event loop
/// completes the mapping, so await it there (for example with
/// `wasm_bindgen_futures::spawn_local`).
///
/// **Errors:** as [`map_read`].
pub async fn map_read_async(device: &wgpu::Device, staging: &wgpu::Buffer) -> Result<()> {
    let (tx, rx) = futures::channel::oneshot::channel();
    // An unmapped MAP_READ buffer can fail mapping validation only by being
    // invalid, which a lost (destroyed, reset) device makes of every buffer
    // it creates.
    crate::error::scoped(device, || {
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        })
    })
    .map_err(|e| OptimError::DeviceLost(e.to_string()))?;
    #[cfg(not(target_arch = "wasm32"))]
    device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| OptimError::Readback(e.to_string()))?;
    rx.await.map_err(|e| OptimError::Readback(e.to_string()))?.map_err(|e| OptimError::Readback(e.to_string()))
}

/// Copies `len` f32 elements starting at element `offset` of `buffer` (which
/// needs `COPY_SRC`) back to the host. This waits for the GPU.
///
/// **Errors:** [`OptimError::Wgpu`] for a bad range or usage (a destroyed
/// buffer, say), [`OptimError::DeviceLost`] when the device is gone,
/// [`OptimError::Readback`] if mapping fails otherwise.
#[cfg(not(target_arch = "wasm32"))]
pub fn read_f32(device: &wgpu::Device, queue: &wgpu::Queue, buffer: &wgpu::Buffer, offset: u64, len: u64) -> Result<Vec<f32>> {
    pollster::block_on(read_f32_async(device, queue, buffer, offset, len))
}

/// [`read_f32`] without blocking.
///
/// **Errors:** as [`read_f32`].
pub async fn read_f32_async(device: &wgpu::Device, queue: &wgpu::Queue, buffer: &wgpu::Buffer, offset: u64, len: u64) -> Result<Vec<f32>> {
    read_ranges_f32_async(device, queue, &[(buffer, offset, len)]).await
}

/// Reads several `(buffer, element offset, element count)` ranges with one
/// staging buffer and one wait, concatenated in order.
///
/// **Errors:** as [`read_f32`].
#[cfg(not(target_arch = "wasm32"))]
pub fn read_ranges_f32(device: &wgpu::Device, queue: &wgpu::Queue, ranges: &[(&wgpu::Buffer, u64, u64)]) -> Result<Vec<f32>> {
    pollster::block_on(read_ranges_f32_async(device, queue, ranges))
}

/// [`read_ranges_f32`] without blocking. On the web, where error scopes are
/// answered asynchronously, it also settles every scope recorded before it
/// ([`crate::error::settle`]): a wgpu error from an earlier step is returned
/// here, typed, instead of these values.
///
/// **Errors:** as [`read_f32`].
pub async fn read_ranges_f32_async(device: &wgpu::Device, queue: &wgpu::Queue, ranges: &[(&wgpu::Buffer, u64, u64)]) -> Result<Vec<f32>> {
    let total: u64 = ranges.iter().map(|r| r.2).sum();
    if total == 0 {
        return crate::error::settle().await.map(|_| Vec::new());
    }
    let staging = crate::error::scoped(device, || {
        let staging = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wgpu-optim readback"),
            size: total * 4,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = device.create_command_encoder(&Default::default());
        let mut at = 0;
        for &(buf, off, len) in ranges {
            enc.copy_buffer_to_buffer(buf, off * 4, &staging, at * 4, len * 4);
            at += len;
        }
        queue.submit([enc.finish()]);
        staging
    })?;
    let mapped = map_read_async(device, &staging).await;
    crate::error::settle().await?;
    mapped?;
    let out = {
        let view = staging.get_mapped_range(..).map_err(|e| OptimError::Readback(format!("{e:?}")))?;
        bytemuck::cast_slice::<u8, f32>(&view).to_vec()
    };
    staging.unmap();
    Ok(out)
}
