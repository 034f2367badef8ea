//! `wgpu-optim run --optimizer lbfgs --objective rosenbrock|quadratic`:
//! T calls of `step(closure)` on an objective whose loss and gradient the
//! GPU computes (`crate::lbfgs::objective`), or the f64 reference.
//!
//! ```text
//! IN   params      f32 [N]      the start
//!      A, b        f32 [N, N], [N]   quadratic only: f = ½ xᵀAx − bᵀx
//! OUT  params      [N]          after T steps
//!      loss        [T]          what each step returned (the loss at its start, as PyTorch's)
//!      func_evals  []           closure calls over the run
//!      n_iter      []           iterations over the run
//! ```
//! OUT is f32 from the GPU and f64 from the reference.

use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors};

use super::input_error;
use crate::error::{OptimError, Result};
use crate::lbfgs::reference::ReferenceLbfgs;
use crate::lbfgs::{Lbfgs, LbfgsOptimizer, Objective, ObjectiveKind};

/// The objectives `run` takes.
pub const OBJECTIVES: [&str; 2] = ["rosenbrock", "quadratic"];

/// What a run of L-BFGS gives.
#[derive(Clone, Debug, PartialEq)]
pub struct LbfgsRun {
    /// The params after the run.
    pub params: Vec<f64>,
    /// What each step returned.
    pub loss: Vec<f64>,
    /// Closure calls.
    pub func_evals: u64,
    /// Iterations.
    pub n_iter: u64,
}

/// The objective `name` and the start, from IN's bytes.
///
/// **Errors:** [`OptimError::Input`] for an unknown objective or a missing
/// or misshapen tensor.
pub fn parse(name: &str, bytes: &[u8]) -> Result<(ObjectiveKind, Vec<f32>)> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| input_error(format!("not a safetensors file: {e}")))?;
    let read = |tensor: &str, shape: &dyn Fn(&[usize]) -> bool, want: &str| -> Result<Vec<f32>> {
        let t = st.tensor(tensor).map_err(|_| input_error(format!("no tensor {tensor:?} (the {name} objective needs it)")))?;
        if t.dtype() != Dtype::F32 || !shape(t.shape()) {
            return Err(input_error(format!("tensor {tensor:?} must be f32 {want}, is {:?} {:?}", t.dtype(), t.shape())));
        }
        Ok(t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    };
    let params = read("params", &|s| s.len() == 1 && s[0] > 0, "[N], N > 0")?;
    let n = params.len();
    let kind = match name {
        "rosenbrock" => ObjectiveKind::Rosenbrock,
        "quadratic" => ObjectiveKind::Quadratic { a: read("A", &|s| s == [n, n], &format!("[{n}, {n}]"))?, b: read("b", &|s| s == [n], &format!("[{n}]"))? },
        other => return Err(OptimError::UnknownOption { optimizer: "lbfgs".into(), option: format!("objective={other}"), known: OBJECTIVES.join(", ") }),
    };
    Ok((kind, params))
}

/// `steps` steps on the GPU.
///
/// **Errors:** as [`LbfgsOptimizer::new`] and its `step`.
pub fn run_gpu(device: &wgpu::Device, queue: &wgpu::Queue, options: Lbfgs, kind: ObjectiveKind, x0: &[f32], steps: u32) -> Result<LbfgsRun> {
    let objective = Objective::new(device, kind, x0)?;
    let mut opt = LbfgsOptimizer::new(device, queue, objective.slices(&[x0.len() as u64]), options)?;
    let loss = (0..steps).map(|_| opt.step(&mut |encoder| Ok(objective.record(encoder)))).collect::<Result<Vec<_>>>()?;
    let params = crate::device::read_f32(device, queue, objective.params(), 0, x0.len() as u64)?.into_iter().map(f64::from).collect();
    let host = opt.host_state();
    Ok(LbfgsRun { params, loss, func_evals: host.func_evals, n_iter: host.n_iter })
}

/// The same run in the f64 reference.
///
/// **Errors:** as [`Lbfgs::validate`].
pub fn run_reference(options: Lbfgs, kind: &ObjectiveKind, x0: &[f32], steps: u32) -> Result<LbfgsRun> {
    let mut opt = ReferenceLbfgs::new(options)?;
    let mut x: Vec<f64> = x0.iter().map(|&v| v as f64).collect();
    let loss = (0..steps).map(|_| opt.step(&mut x, &mut |x| kind.host_value(x))).collect();
    Ok(LbfgsRun { params: x, loss, func_evals: opt.host.func_evals, n_iter: opt.host.n_iter })
}

impl LbfgsRun {
    /// OUT as safetensors bytes, in `dtype` (F32 or F64).
    ///
    /// **Errors:** [`OptimError::Checkpoint`] if serialising fails.
    pub fn to_bytes(&self, dtype: Dtype) -> Result<Vec<u8>> {
        let (evals, iters) = ([self.func_evals as f64], [self.n_iter as f64]);
        let tensors: [(&str, Vec<usize>, &[f64]); 4] = [("params", vec![self.params.len()], &self.params), ("loss", vec![self.loss.len()], &self.loss), ("func_evals", vec![], &evals), ("n_iter", vec![], &iters)];
        super::output_bytes(&tensors, dtype)
    }
}

/// Reads IN, runs, writes OUT.
///
/// **Errors:** [`OptimError::Io`], [`OptimError::Input`] naming `input`,
/// and as [`run_gpu`] / [`run_reference`].
pub fn run_files(gpu: Option<(&wgpu::Device, &wgpu::Queue)>, options: Lbfgs, objective: &str, input: &Path, steps: u32, out: &Path) -> Result<LbfgsRun> {
    let bytes = std::fs::read(input).map_err(|e| OptimError::io(input, e))?;
    let (kind, x0) = parse(objective, &bytes).map_err(|e| super::in_file(e, input))?;
    let (result, dtype) = match gpu {
        Some((device, queue)) => (run_gpu(device, queue, options, kind, &x0, steps)?, Dtype::F32),
        None => (run_reference(options, &kind, &x0, steps)?, Dtype::F64),
    };
    crate::checkpoint::write_atomic(out, &result.to_bytes(dtype)?)?;
    Ok(result)
}
