//! wgpu-optim in the browser.
