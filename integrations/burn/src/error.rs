//! The integration's error type.

use thiserror::Error;

/// What can go wrong when stepping a burn model with the fused engine.
#[derive(Debug, Error)]
pub enum Error {
    /// The engine rejected something (see `wgpu_optim::OptimError`).
    #[error(transparent)]
    Engine(#[from] wgpu_optim::OptimError),
    /// burn could not create the shared wgpu device.
    #[error("burn's wgpu device: {0}")]
    Device(String),
    /// A tensor is not an f32 tensor of burn's cubecl wgpu backend.
    #[error("parameter {path}: {why}")]
    Unsupported { path: String, why: String },
    /// A parameter no longer lives where the optimizer put it (the model
    /// was reloaded, moved to another device, or its tensors replaced):
    /// adopt the model again.
    #[error("parameter {0} was moved out of the optimizer's buffer; call FusedOptimizer::adopt on the model again")]
    ParamMoved(String),
    /// The model's parameters differ from the ones the optimizer adopted.
    #[error("the model's parameters differ from the optimizer's: {0}")]
    ModelMismatch(String),
}

/// Shorthand for `Result<T, Error>`.
pub type Result<T> = std::result::Result<T, Error>;
