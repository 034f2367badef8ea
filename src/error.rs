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
    EmptyTensor {
        /// Index of the parameter in the list given.
        index: usize,
    },
    /// A param and its grad disagree in length.
    #[error("parameter {index}: param has {param_len} elements but grad has {grad_len}")]
    LengthMismatch {
        /// Index of the parameter in the list given.
        index: usize,
        /// Elements in the param (or the tensor written).
        param_len: u64,
        /// Elements in the grad (or the values given).
        grad_len: u64,
    },
    /// A slice reaches past the end of its buffer.
    #[error("parameter {index}: {which} range [{start}, {end}) elements exceeds buffer of {buffer_len} elements")]
    OutOfBounds {
        /// Index of the parameter in the list given.
        index: usize,
        /// Which slice is out of bounds: `"param"` or `"grad"`.
        which: &'static str,
        /// First element of the slice (its offset in the buffer).
        start: u64,
        /// One past the last element of the slice.
        end: u64,
        /// Size of the buffer in f32 elements.
        buffer_len: u64,
    },
    /// A grad given for one step ([`crate::Optimizer::record_step_with_grads`])
    /// cannot be bound where it lies.
    #[error("parameter {index}: grad source cannot be bound: {why}")]
    GradSource {
        /// Index of the parameter in the list given.
        index: usize,
        /// What does not fit.
        why: String,
    },
    /// A buffer lacks a usage the engine needs.
    #[error("parameter {index}: {which} buffer lacks usage {missing:?}")]
    MissingUsage {
        /// Index of the parameter in the list given.
        index: usize,
        /// Which buffer lacks the usage: `"param"` or `"grad"`.
        which: &'static str,
        /// The usages the buffer lacks.
        missing: wgpu::BufferUsages,
    },
    /// A hyperparameter is outside its valid domain.
    #[error("invalid hyperparameter {name} = {value}: {requirement}")]
    InvalidHyperparameter {
        /// Name of the hyperparameter, as PyTorch spells it.
        name: &'static str,
        /// The value given.
        value: f64,
        /// The domain it must lie in, e.g. `"must be in [0, 1)"`.
        requirement: &'static str,
    },
    /// An option combination PyTorch also rejects (e.g. nesterov without momentum).
    #[error("invalid option combination: {0}")]
    InvalidOptions(&'static str),
    /// An optimizer name or a PyTorch option name that does not apply.
    #[error("{optimizer}: no option {option:?} (options: {known})")]
    UnknownOption {
        /// The optimizer name given.
        optimizer: String,
        /// The option name given, or `"(optimizer name)"` when the optimizer itself is unknown.
        option: String,
        /// The valid option (or optimizer) names, comma-separated.
        known: String,
    },
    /// A command-line option value of the wrong type.
    #[error("option {option}: cannot use {value:?} (expected a number, true/false, a comma-separated list or none)")]
    InvalidOptionValue {
        /// The option the value was given for.
        option: String,
        /// The value given, as written.
        value: String,
    },
    /// A command-line option given NaN or an infinity (JSON, which carries
    /// options, has neither).
    #[error("invalid hyperparameter {option} = {value}: must be finite")]
    NonFiniteOption {
        /// The option the value was given for.
        option: String,
        /// The value given.
        value: f64,
    },
    /// A command-line list of the wrong length (`--betas 0.9,0.99,0.5`).
    #[error("{option} takes {expected} numbers, got {got}")]
    OptionArity {
        /// The option the list was given for.
        option: String,
        /// The length the option takes.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// An optimizer name that no rule answers to.
    #[error("unknown optimizer {name:?} (known: {known})")]
    UnknownOptimizer {
        /// The name given.
        name: String,
        /// Every name accepted, comma-separated.
        known: String,
    },
    /// Param groups of one optimizer must share the update rule and flag options.
    #[error("param group {index} uses a different rule or option flags than group 0")]
    GroupMismatch {
        /// Index of the first param group that differs from group 0.
        index: usize,
    },
    /// More param groups than the step uniform can hold.
    #[error("{groups} param groups given; at most {max} are supported")]
    TooManyGroups {
        /// Number of param groups given.
        groups: usize,
        /// Most param groups supported.
        max: usize,
    },
    /// A param refers to a group that does not exist.
    #[error("parameter {index} refers to param group {group}, but the optimizer has {}", count(*groups, "group"))]
    UnknownGroup {
        /// Index of the parameter in the list given.
        index: usize,
        /// The param group it refers to.
        group: u32,
        /// Number of param groups the optimizer has.
        groups: usize,
    },
    /// A call names a param group that does not exist (`set_lr`, say).
    #[error("no param group {group}: the optimizer has {}", count(*groups, "group"))]
    GroupOutOfRange {
        /// The param group named.
        group: usize,
        /// Number of param groups the optimizer has.
        groups: usize,
    },
    /// Two parameters share elements of one buffer: the overlap would be
    /// stepped twice, or a grad changed by the step. (Grads may be shared.)
    #[error("parameters {first} and {second} overlap in one buffer: {what}")]
    Overlap {
        /// Index of the first of the two parameters (the lower).
        first: usize,
        /// Index of the second of the two parameters (the higher).
        second: usize,
        /// Which ranges overlap, in words.
        what: &'static str,
    },
    /// A buffer whose size is not a whole number of f32 elements.
    #[error("parameter {index}: the {which} buffer has {bytes} bytes, not a whole number of f32 elements")]
    PartialElement {
        /// Index of the parameter in the list given.
        index: usize,
        /// Which buffer: `"param"` or `"grad"`.
        which: &'static str,
        /// Size of the buffer in bytes.
        bytes: u64,
    },
    /// A tensor's shape does not match its length (or is empty).
    #[error("parameter {index}: shape {shape:?} does not have its {len} elements")]
    ShapeMismatch {
        /// Index of the parameter in the list given.
        index: usize,
        /// The shape given.
        shape: Vec<u64>,
        /// Number of elements in the tensor.
        len: u64,
    },
    /// A rule needs a tensor's shape and it has none, or not one it supports.
    #[error("parameter {index}: {rule} needs {need} (ParamSlice::with_shape); got {shape:?}")]
    ShapeRequired {
        /// Index of the parameter in the list given.
        index: usize,
        /// The rule that needs the shape, e.g. `"muon"`.
        rule: &'static str,
        /// The shape it needs, e.g. `"a 2-D shape"`.
        need: &'static str,
        /// The shape the tensor has, if any.
        shape: Option<Vec<u64>>,
    },
    /// A size the device cannot represent.
    #[error("size exceeds device limits: {0}")]
    ExceedsLimits(String),
    /// The u32 step counter would overflow.
    #[error("step counter overflow (u32::MAX steps taken)")]
    StepOverflow,
    /// A step of a rule with train and eval modes (schedule-free) while the
    /// params are in eval form: call `Optimizer::train` first.
    #[error("the optimizer is in eval mode: call train() before stepping")]
    NotInTrainMode,
    /// No adapter could be found (not even a software one).
    #[error("no wgpu adapter found (backends: {backends}); without a GPU on Linux, install mesa-vulkan-drivers for lavapipe or libegl-mesa0 for llvmpipe; in a browser, WebGPU must be enabled")]
    NoAdapter {
        /// The wgpu backends searched, debug-formatted.
        backends: String,
    },
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
    Io {
        /// The file path.
        path: String,
        /// The underlying I/O error message.
        message: String,
    },
    /// Data-parallel ranks that build different models (or one that refused
    /// its inputs): every rank returns this at construction.
    #[error("ranks disagree about the model: rank {rank} differs in {what}")]
    RanksDisagree {
        /// The first rank that differs from rank 0 (or refused).
        rank: usize,
        /// What differs.
        what: &'static str,
    },
    /// A checkpoint is malformed or does not fit this optimizer.
    #[error("checkpoint error: {0}")]
    Checkpoint(String),
    /// An input file (`wgpu-optim run`'s) lacks a tensor or has one of the
    /// wrong type or shape.
    #[error("{file}: {message}")]
    Input {
        /// The file, as given.
        file: String,
        /// What is wrong, naming the tensor.
        message: String,
    },
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
///
/// On native the scopes are answered at once. On the web the browser
/// answers them later, so the scopes are kept and the error is returned by
/// the next [`settle`] (every async readback settles first).
pub(crate) fn scoped<T>(device: &wgpu::Device, f: impl FnOnce() -> T) -> Result<T> {
    let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let out = f();
    let (v, o) = (validation.pop(), oom.pop());
    #[cfg(not(target_arch = "wasm32"))]
    return scope_result(pollster::block_on(v), pollster::block_on(o)).map(|()| out);
    #[cfg(target_arch = "wasm32")]
    {
        PENDING.with(|p| p.borrow_mut().push(Box::pin(async move { scope_result(v.await, o.await) })));
        Ok(out)
    }
}

fn scope_result(validation: Option<wgpu::Error>, oom: Option<wgpu::Error>) -> Result<()> {
    match oom.or(validation) {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

#[cfg(target_arch = "wasm32")]
type Pending = std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>>>>;

#[cfg(target_arch = "wasm32")]
thread_local! {
    /// The error scopes the browser has not answered yet, oldest first.
    static PENDING: std::cell::RefCell<Vec<Pending>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Waits for every error scope the engine has opened so far and returns the
/// first wgpu error they caught, typed as every other call types it.
///
/// On native every call already reported its own errors, so this returns
/// `Ok` at once. On the web (WebGPU answers error scopes asynchronously) a
/// call such as `Optimizer::new` or `record_step` returns before the browser
/// has judged its commands: await this, or any `*_async` readback, which
/// settles first, to learn whether they were valid. A command buffer that
/// failed validation is not executed by WebGPU, so nothing it would have
/// written has changed.
///
/// **Errors:** [`OptimError::Wgpu`] or [`OptimError::OutOfMemory`].
pub async fn settle() -> Result<()> {
    #[cfg(target_arch = "wasm32")]
    {
        let mut first = Ok(());
        for scope in PENDING.with(|p| std::mem::take(&mut *p.borrow_mut())) {
            let r = scope.await;
            first = first.and(r);
        }
        first
    }
    #[cfg(not(target_arch = "wasm32"))]
    Ok(())
}
