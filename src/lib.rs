//! # wgpu-optim
//!
//! Fused GPU optimizer update rules as WGSL compute shaders. Each rule does
//! the whole step (moment updates, bias correction, weight decay) in one pass
//! over the parameter, gradient and state buffers; per-step scalars are
//! computed on the host in f64. Every rule has an f64 CPU reference in
//! [`reference`](mod@reference) with the same config types, and semantics follow PyTorch's
//! documented `torch.optim` equations with the same option names and
//! defaults.
//!
//! Set up once with your `&wgpu::Device` and `&wgpu::Queue`, then record one
//! step per iteration into your own `CommandEncoder` with
//! [`Optimizer::record_step`].

#![warn(missing_docs)]

pub mod arena;
#[cfg(not(target_arch = "wasm32"))]
pub mod args;
#[cfg(not(target_arch = "wasm32"))]
pub mod bench;
pub mod checkpoint;
pub mod device;
pub mod ema;
pub mod engine;
pub mod error;
#[cfg(not(target_arch = "wasm32"))]
pub mod lbfgs;
pub mod matrix;
#[cfg(feature = "cli")]
pub mod plot;
pub mod quant;
pub mod random;
pub mod reference;
pub mod rules;
#[cfg(not(target_arch = "wasm32"))]
pub mod run;
pub mod schedule;
#[cfg(not(target_arch = "wasm32"))]
pub mod shard;
pub mod surfaces;
pub mod validate;

pub use arena::ParamArena;
pub use rules::configs::*;
pub use rules::{OptimizerConfig, Rule, RuleConfig};
pub use ema::WeightEma;
pub use matrix::rows::{RowAccess, RowForm};
pub use matrix::{Adafactor, AdafactorOptimizer, AdjustLr, Lamb, LambOptimizer, Muon, MuonOptimizer, TrustRatio};
pub use engine::{Access, ClipScope, EngineOptions, Entry, GradControl, GradScaler, GradSource, Kernel, Optimizer, ParamSlice, PipelineCache, PipelineKey, ScalerState, StateFormat, StepScalars, WideAccess};
pub use error::{OptimError, Result};

/// The README's and the guides' Rust blocks, compiled as doctests so that
/// they cannot drift from the API.
#[cfg(doctest)]
mod guides {
    #[doc = include_str!("../README.md")]
    struct Readme;
    #[doc = include_str!("../docs/embedding.md")]
    struct Embedding;
    #[doc = include_str!("../docs/training-loop.md")]
    struct TrainingLoop;
    #[doc = include_str!("../docs/tensor-wise.md")]
    struct TensorWise;
    #[doc = include_str!("../docs/lbfgs.md")]
    struct Lbfgs;
    #[doc = include_str!("../docs/rules.md")]
    struct Rules;
    #[doc = include_str!("../docs/semantics.md")]
    struct Semantics;
    #[doc = include_str!("../docs/correctness.md")]
    struct Correctness;
    #[doc = include_str!("../docs/benchmarks.md")]
    struct Benchmarks;
    #[doc = include_str!("../docs/commands.md")]
    struct Commands;
    #[doc = include_str!("../docs/layout.md")]
    struct Layout;
    #[doc = include_str!("../docs/sharding.md")]
    struct Sharding;
    #[doc = include_str!("../docs/browser.md")]
    struct Browser;
}
