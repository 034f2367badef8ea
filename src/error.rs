//! The crate's error type. Every fallible entry point returns [`OptimError`];
//! wgpu validation errors are captured with error scopes and converted here,
//! so bad input never panics.

use thiserror::Error;

/// Everything that can go wrong when building or stepping an optimizer.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum OptimError {
    /// No parameter tensors (or no parameter groups) were given.
    #[error("empty parameter list: an optimizer needs at least one parameter tensor")]
    EmptyParams,
    /// A parameter tensor has zero elements.
    #[error("parameter {index} has zero elements")]
    EmptyTensor { index: usize },
    /// A param and its grad disagree in length.
    #[error("parameter {index}: param has {param_len} elements but grad has {grad_len}")]
    LengthMismatch { index: usize, param_len: u64, grad_len: u64 },
    /// A slice reaches past the end of its buffer.
    #[error("parameter {index}: {which} range [{start}, {end}) elements exceeds buffer of {buffer_len} elements")]
    OutOfBounds { index: usize, which: &'static str, start: u64, end: u64, buffer_len: u64 },
    /// A buffer lacks a usage the engine needs.
    #[error("parameter {index}: {which} buffer lacks usage {missing:?}")]
    MissingUsage { index: usize, which: &'static str, missing: wgpu::BufferUsages },
    /// A hyperparameter is outside its valid domain.
    #[error("invalid hyperparameter {name} = {value}: {requirement}")]
    InvalidHyperparameter { name: &'static str, value: f64, requirement: &'static str },
    /// An option combination PyTorch also rejects (e.g. nesterov without momentum).
    #[error("invalid option combination: {0}")]
    InvalidOptions(&'static str),
    /// An optimizer name or a PyTorch option name that does not apply.
    #[error("{optimizer}: no option {option:?} (options: {known})")]
    UnknownOption { optimizer: String, option: String, known: String },
    /// A command-line option value of the wrong type.
    #[error("option {option}: cannot use {value:?} (expected a number, true/false, a comma-separated list or none)")]
    InvalidOptionValue { option: String, value: String },
    /// Param groups of one optimizer must share the update rule and flag options.
    #[error("param group {index} uses a different rule or option flags than group 0")]
    GroupMismatch { index: usize },
    /// More param groups than the step uniform can hold.
    #[error("{groups} param groups given; at most {max} are supported")]
    TooManyGroups { groups: usize, max: usize },
    /// A param refers to a group that does not exist.
    #[error("parameter {index} refers to param group {group}, but the optimizer has {}", count(*groups, "group"))]
    UnknownGroup { index: usize, group: u32, groups: usize },
    /// A call names a param group that does not exist (`set_lr`, say).
    #[error("no param group {group}: the optimizer has {}", count(*groups, "group"))]
    GroupOutOfRange { group: usize, groups: usize },
    /// Two parameters share elements of one buffer: the overlap would be
    /// stepped twice, or a grad changed by the step. (Grads may be shared.)
    #[error("parameters {first} and {second} overlap in one buffer: {what}")]
    Overlap { first: usize, second: usize, what: &'static str },
    /// A buffer whose size is not a whole number of f32 elements.
    #[error("parameter {index}: the {which} buffer has {bytes} bytes, not a whole number of f32 elements")]
    PartialElement { index: usize, which: &'static str, bytes: u64 },
    /// A tensor's shape does not match its length (or is empty).
    #[error("parameter {index}: shape {shape:?} does not have its {len} elements")]
    ShapeMismatch { index: usize, shape: Vec<u64>, len: u64 },
    /// A rule needs a tensor's shape and it has none, or not one it supports.
    #[error("parameter {index}: {rule} needs {need} (ParamSlice::with_shape); got {shape:?}")]
    ShapeRequired { index: usize, rule: &'static str, need: &'static str, shape: Option<Vec<u64>> },
    /// A size the device cannot represent.
    #[error("size exceeds device limits: {0}")]
    ExceedsLimits(String),
    /// The u32 step counter would overflow.
    #[error("step counter overflow (u32::MAX steps taken)")]
    StepOverflow,
    /// No adapter could be found (not even a software one).
    #[error("no wgpu adapter found (backends: {backends}); install mesa-vulkan-drivers for lavapipe or libegl-mesa0 for llvmpipe")]
    NoAdapter { backends: String },
    /// `WGPU_ADAPTER_NAME` was set but nothing matched.
    #[error("WGPU_ADAPTER_NAME={0:?} matches no adapter")]
    AdapterNotFound(String),
    /// The adapter refused to create a device.
    #[error("request_device failed: {0}")]
    RequestDevice(String),
    /// A wgpu validation or internal error captured by an error scope.
    #[error("wgpu error: {0}")]
    Wgpu(String),
    /// The device ran out of memory (captured by an error scope); nothing
    /// was built.
    #[error("out of GPU memory: {0}")]
    OutOfMemory(String),
    /// The device is lost (destroyed, reset, or out of memory): found by the
    /// next call that waits for the GPU.
    #[error("the GPU device is lost: {0}")]
    DeviceLost(String),
    /// Mapping a buffer for readback failed.
    #[error("buffer readback failed: {0}")]
    Readback(String),
    /// Reading or writing a file failed.
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    /// A checkpoint or input file is malformed or does not fit this optimizer.
    #[error("checkpoint error: {0}")]
    Checkpoint(String),
}

impl OptimError {
    /// An [`OptimError::Io`] for `path`.
    pub fn io(path: &std::path::Path, e: impl std::fmt::Display) -> Self {
        OptimError::Io { path: path.display().to_string(), message: e.to_string() }
    }
}

/// "1 group", "3 groups".
fn count(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

/// Shorthand for `Result<T, OptimError>`.
pub type Result<T> = std::result::Result<T, OptimError>;

impl From<wgpu::Error> for OptimError {
    fn from(e: wgpu::Error) -> Self {
        match e {
            wgpu::Error::OutOfMemory { .. } => OptimError::OutOfMemory(e.to_string()),
            _ => OptimError::Wgpu(e.to_string()),
        }
    }
}

/// Runs `f` inside validation and out-of-memory error scopes and converts any
/// captured wgpu error: [`OptimError::OutOfMemory`] when memory ran out (the
/// validation errors that follow from it, such as binding a buffer that
/// could not be allocated, are its consequences), else [`OptimError::Wgpu`].
pub(crate) fn scoped<T>(device: &wgpu::Device, f: impl FnOnce() -> T) -> Result<T> {
    let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let out = f();
    let v = pollster::block_on(validation.pop());
    let o = pollster::block_on(oom.pop());
    match o.or(v) {
        Some(e) => Err(e.into()),
        None => Ok(out),
    }
}
