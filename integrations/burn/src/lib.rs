//! # wgpu-optim-burn
//!
//! [wgpu-optim](wgpu_optim)'s fused multi-tensor optimizer steps for [burn]
//! models, on burn's own wgpu device and queue: every parameter of the model
//! in one engine step (one dispatch per flat parameter tensor), instead of
//! one fused kernel per tensor.
//!
//! Swapping burn's `AdamWConfig::new().init()` for it:
//!
//! ```no_run
//! # use burn::module::Module;
//! # use burn::optim::GradientsParams;
//! # use burn::tensor::Tensor;
//! # #[derive(Module, Debug)] struct Model { w: burn::module::Param<Tensor<2>> }
//! # impl Model { fn loss(&self) -> Tensor<1> { self.w.val().sum() } }
//! # fn init(device: &burn::tensor::Device) -> Model { Model { w: burn::module::Param::from_tensor(Tensor::zeros([4, 4], device)) } }
//! # fn main() -> Result<(), wgpu_optim_burn::Error> {
//! use wgpu_optim_burn::{FusedOptimizer, SharedDevice};
//! let shared = SharedDevice::new()?;                 // burn's device, handles shared
//! let device = shared.device.clone().autodiff();
//! let model = init(&device);
//! let (mut model, mut optim) = FusedOptimizer::builder(wgpu_optim::AdamW { lr: 1e-3, ..Default::default() }.into())
//!     .no_weight_decay_on_vectors()
//!     .build(&shared, model)?;
//! for _ in 0..10 {
//!     let grads = GradientsParams::from_grads(model.loss().backward(), &model);
//!     model = optim.step(1e-3, model, grads)?;
//! }
//! # Ok(()) }
//! ```

mod adopt;
pub mod demo;
mod buffers;
mod device;
mod error;
mod optimizer;

pub use adopt::ParamInfo;
pub use buffers::{buffer_of, TensorBuffer};
pub use device::SharedDevice;
pub use error::{Error, Result};
pub use optimizer::{Builder, FusedOptimizer, GroupFn, StepPhases};

/// `docs/burn.md`'s Rust blocks, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/burn.md")]
struct Guide;
