//! wgpu-optim in the browser: the optimizer playground page and its
//! end-to-end test, and the engine's validation in headless Chromium
//! (`tests/browser.rs`).
//!
//! - [`playground`]: the page's runs and the bound its numbers keep to
//!   (both targets).
//! - `page` and `train` (wasm32 only): what `www/playground.js` calls, the
//!   engine on the visitor's GPU through WebGPU.
//! - `src/bin/serve.rs` (native): builds the page and serves it.

pub mod playground;

#[cfg(target_arch = "wasm32")]
mod page;
#[cfg(target_arch = "wasm32")]
mod train;
