//! One wgpu device for burn and the engine: burn creates it (with the
//! adapter's limits and features) and hands over the handles, so burn's
//! kernels and the engine's steps go to the same queue.

use burn::tensor::wgpu::{WgpuBackend, WgpuSetup};
use burn::tensor::Device;

use crate::error::{Error, Result};

/// burn's device and the wgpu device and queue behind it.
#[derive(Clone)]
pub struct SharedDevice {
    /// burn's (non-autodiff) device; train on `device.clone().autodiff()`.
    pub device: Device,
    pub wgpu_device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter: wgpu::Adapter,
}

impl SharedDevice {
    /// burn's default wgpu device, initialised here so that its handles are
    /// known. Call it before any tensor is created on that device.
    ///
    /// **Errors:** [`Error::Device`] if burn cannot create it (no adapter,
    /// or it was already initialised without us).
    pub fn new() -> Result<Self> {
        Self::with_api(WgpuBackend::default())
    }

    /// As [`SharedDevice::new`] on a chosen graphics API (e.g. Vulkan).
    ///
    /// **Errors:** as [`SharedDevice::new`].
    pub fn with_api(api: WgpuBackend) -> Result<Self> {
        let (device, setup): (Device, WgpuSetup) = Device::wgpu_options().graphics_api(api).init_with_setup().map_err(|e| Error::Device(format!("{e:?}")))?;
        Ok(SharedDevice { device, wgpu_device: setup.device, queue: setup.queue, adapter: setup.adapter })
    }

    /// A one-line description of the adapter.
    pub fn describe(&self) -> String {
        let info = self.adapter.get_info();
        format!("{} [{:?}, {:?}] driver: {} {}", info.name, info.backend, info.device_type, info.driver, info.driver_info)
    }
}
