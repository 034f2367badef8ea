//! The file-driven run: T steps of one optimizer over a parameter vector,
//! with the gradients of every step read from a safetensors file, on the GPU
//! or in the f64 CPU reference (`wgpu-optim run`).
//!
//! ```text
//! IN   params     f32 [N] or [R, C]          initial parameters (2-D for Muon;
//!                                             Adafactor factors a 2-D tensor)
//!      grads      f32 [T', N] or [T', R, C]  gradient of step t in row t (T' ≥ T)
//!      hessians   f32 [T', N]                newton only, optional: the Hessian diagonal of step t
//! OUT  params  (as IN)       after T steps
//!      <state>               the rule's state by PyTorch name and shape (exp_avg,
//!                            exp_avg_sq, …; Adafactor's row_var [R, 1], col_var [1, C])
//!      step    []            T
//! ```
//! OUT is f32 from the GPU and f64 from the reference. The tensor-wise
//! rules (Muon, LAMB, Adafactor) run through [`tensor`].

pub mod lbfgs;
pub mod tensor;

use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::rules::OptimizerConfig;
use crate::engine::{Optimizer, ParamSlice};
use crate::error::{OptimError, Result};
use crate::reference::ReferenceOptimizer;

/// An error in the run's input file (named "input" until [`in_file`]
/// names it).
fn input_error(msg: impl std::fmt::Display) -> OptimError {
    OptimError::Input { file: "input".into(), message: msg.to_string() }
}

/// `e`, with the input file named `path` if it is an input error.
fn in_file(e: OptimError, path: &Path) -> OptimError {
    match e {
        OptimError::Input { message, .. } => OptimError::Input { file: path.display().to_string(), message },
        other => other,
    }
}

/// The inputs of a run: parameters and `T' × N` gradients.
pub struct RunInput {
    /// The initial parameters, row-major.
    pub params: Vec<f32>,
    /// The params' shape (`[N]` or `[R, C]`).
    pub shape: Vec<usize>,
    /// The gradient of every step, one row per step.
    pub grads: Vec<f32>,
    /// Rows of `grads`: the most steps the input allows.
    pub rows: usize,
    /// Hessian diagonals, same shape as the grads (Newton's input).
    pub hessians: Option<Vec<f32>>,
}

impl RunInput {
    /// Parses IN.
    ///
    /// **Errors:** [`OptimError::Input`] for a missing or misshapen tensor.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| input_error(format!("not a safetensors file: {e}")))?;
        let read = |name: &str, ranks: &[usize]| -> Result<(Vec<f32>, Vec<usize>)> {
            let t = st.tensor(name).map_err(|_| input_error(format!("no tensor {name:?}")))?;
            if t.dtype() != Dtype::F32 || !ranks.contains(&t.shape().len()) {
                return Err(input_error(format!("tensor {name:?} must be f32 of rank {ranks:?}, is {:?} {:?}", t.dtype(), t.shape())));
            }
            Ok((t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(), t.shape().to_vec()))
        };
        let (params, param_shape) = read("params", &[1, 2])?;
        let (grads, shape) = read("grads", &[param_shape.len() + 1])?;
        if params.is_empty() {
            return Err(OptimError::EmptyParams);
        }
        if shape[1..] != param_shape[..] {
            return Err(input_error(format!("tensor \"grads\" has rows of shape {:?}, but \"params\" has shape {param_shape:?}", &shape[1..])));
        }
        let hessians = match st.tensor("hessians") {
            Ok(_) => {
                let (h, hshape) = read("hessians", &[shape.len()])?;
                if hshape != shape {
                    return Err(input_error(format!("tensor \"hessians\" has shape {hshape:?}, but \"grads\" has {shape:?}")));
                }
                Some(h)
            }
            Err(_) => None,
        };
        Ok(RunInput { params, shape: param_shape, grads, rows: shape[0], hessians })
    }

    /// The grads of step t (0-based).
    pub(crate) fn row(&self, t: usize) -> &[f32] {
        let n = self.params.len();
        &self.grads[t * n..(t + 1) * n]
    }

    /// Row t of the Hessian diagonals and the input slot they go to, if
    /// given and the rule takes one.
    fn hessian(&self, config: &OptimizerConfig, t: usize) -> Option<(usize, &[f32])> {
        let n = self.params.len();
        let slot = config.state().input()?;
        self.hessians.as_ref().map(|h| (slot, &h[t * n..(t + 1) * n]))
    }
}

/// The output of a rule with train and eval modes (schedule-free): the
/// params `eval()` gives after the run; `params` stays the train form.
pub const EVAL_PARAMS: &str = "eval_params";

/// One state tensor of a run's result.
pub struct StateOut {
    /// PyTorch's name.
    pub name: &'static str,
    /// Its shape (PyTorch's).
    pub shape: Vec<usize>,
    /// Its values, row-major.
    pub values: Vec<f64>,
}

/// Result of a run: the params (in the input's shape) and each state tensor.
pub struct RunOutput {
    /// The params after the run, row-major.
    pub params: Vec<f64>,
    /// Their shape (the input's).
    pub shape: Vec<usize>,
    /// Each state tensor, by PyTorch name.
    pub state: Vec<StateOut>,
    /// Steps taken.
    pub steps: u32,
}

impl RunOutput {
    /// OUT as safetensors bytes, in `dtype` (F32 or F64).
    ///
    /// **Errors:** [`OptimError::Checkpoint`] if serialising fails.
    pub fn to_bytes(&self, dtype: Dtype) -> Result<Vec<u8>> {
        let mut tensors: Vec<(&str, Vec<usize>, &[f64])> = vec![("params", self.shape.clone(), &self.params)];
        tensors.extend(self.state.iter().map(|s| (s.name, s.shape.clone(), s.values.as_slice())));
        let steps = [self.steps as f64];
        tensors.push(("step", vec![], &steps));
        output_bytes(&tensors, dtype)
    }
}

/// OUT's safetensors bytes: each `(name, shape, values)` in `dtype` (F64,
/// else F32).
///
/// **Errors:** [`OptimError::Checkpoint`] if serialising fails.
pub(crate) fn output_bytes(tensors: &[(&str, Vec<usize>, &[f64])], dtype: Dtype) -> Result<Vec<u8>> {
    let encode = |v: &[f64]| -> Vec<u8> {
        match dtype {
            Dtype::F64 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            _ => v.iter().flat_map(|x| (*x as f32).to_le_bytes()).collect(),
        }
    };
    let owned: Vec<(&str, &Vec<usize>, Vec<u8>)> = tensors.iter().map(|(n, s, v)| (*n, s, encode(v))).collect();
    let views = owned
        .iter()
        .map(|(n, s, d)| TensorView::new(dtype, s.to_vec(), d).map(|v| (n.to_string(), v)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| OptimError::Checkpoint(format!("writing the output: {e}")))?;
    safetensors::serialize(views, None).map_err(|e| OptimError::Checkpoint(format!("writing the output: {e}")))
}

impl RunInput {
    /// **Errors:** [`OptimError::Input`] if the grads have fewer than
    /// `steps` rows.
    pub(crate) fn check_steps(&self, steps: u32) -> Result<()> {
        if steps as usize > self.rows {
            return Err(input_error(format!("{steps} steps asked, but tensor \"grads\" has {} rows", self.rows)));
        }
        Ok(())
    }
}

/// Param and grad buffers for a run, the params written.
///
/// **Errors:** [`OptimError::Wgpu`] / [`OptimError::OutOfMemory`].
pub(crate) fn run_buffers(device: &wgpu::Device, queue: &wgpu::Queue, input: &RunInput) -> Result<(wgpu::Buffer, wgpu::Buffer)> {
    let n = input.params.len() as u64;
    let (p, g) = crate::error::scoped(device, || {
        let make = |label| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: 4 * n.next_multiple_of(4),
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            })
        };
        (make("run params"), make("run grads"))
    })?;
    queue.write_buffer(&p, 0, bytemuck::cast_slice(&input.params));
    Ok((p, g))
}

/// Runs `steps` steps on the GPU, feeding row t of the grads at step t.
///
/// **Errors:** anything the engine reports; [`OptimError::Input`] if the
/// grads have fewer than `steps` rows.
pub fn run_gpu(device: &wgpu::Device, queue: &wgpu::Queue, config: OptimizerConfig, input: &RunInput, steps: u32) -> Result<RunOutput> {
    input.check_steps(steps)?;
    let n = input.params.len() as u64;
    let (p, g) = run_buffers(device, queue, input)?;
    let mut opt = Optimizer::new(device, queue, config, &[ParamSlice::range(&p, 0, &g, 0, n)])?;
    for t in 0..steps as usize {
        // One submit per step: the write of row t lands before step t runs.
        queue.write_buffer(&g, 0, bytemuck::cast_slice(input.row(t)));
        if let Some((slot, h)) = input.hessian(&config, t) {
            opt.write_state(slot, 0, h)?;
        }
        opt.step()?;
    }
    let widen = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<_>>();
    let params = widen(crate::device::read_f32(device, queue, &p, 0, n)?);
    let mut state = Vec::new();
    for (slot, name) in opt.state_names().iter().enumerate().filter(|(_, nm)| !nm.is_empty()) {
        state.push(StateOut { name, shape: input.shape.clone(), values: widen(opt.read_state(slot, 0)?) });
    }
    if config.mode_switch(true).is_some() {
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("wgpu-optim run eval") });
        opt.eval(&mut encoder)?;
        queue.submit([encoder.finish()]);
        state.push(StateOut { name: EVAL_PARAMS, shape: input.shape.clone(), values: widen(crate::device::read_f32(device, queue, &p, 0, n)?) });
    }
    Ok(RunOutput { params, shape: input.shape.clone(), state, steps })
}

/// The same run in the f64 CPU reference.
///
/// **Errors:** as [`run_gpu`].
pub fn run_reference(config: OptimizerConfig, input: &RunInput, steps: u32) -> Result<RunOutput> {
    input.check_steps(steps)?;
    let mut r = ReferenceOptimizer::new(config, input.params.len())?;
    let mut params: Vec<f64> = input.params.iter().map(|&x| x as f64).collect();
    for t in 0..steps as usize {
        let g: Vec<f64> = input.row(t).iter().map(|&x| x as f64).collect();
        if let Some((slot, h)) = input.hessian(&config, t) {
            for (s, &x) in r.state.slots[slot].iter_mut().zip(h) {
                *s = x as f64;
            }
        }
        r.step(&mut params, &g)?;
    }
    let mut state: Vec<StateOut> = r.named_state().into_iter().map(|(name, v)| StateOut { name, shape: input.shape.clone(), values: v.to_vec() }).collect();
    if config.mode_switch(true).is_some() {
        let mut x = params.clone();
        // as the engine: no switch before the first step (z does not exist yet)
        if steps > 0 {
            config.reference_mode_switch(true, &mut x, &r.state);
        }
        state.push(StateOut { name: EVAL_PARAMS, shape: input.shape.clone(), values: x });
    }
    Ok(RunOutput { params, shape: input.shape.clone(), state, steps })
}

/// The optimizer of a run: a registered element-wise rule or a tensor-wise one.
#[derive(Clone, Copy, Debug)]
pub enum RunRule {
    /// A registered element-wise rule, run by the fused engine.
    Elementwise(OptimizerConfig),
    /// Muon, LAMB or Adafactor.
    Tensor(crate::matrix::TensorRule),
    /// L-BFGS, on an objective ([`lbfgs`]).
    Lbfgs(crate::lbfgs::Lbfgs),
}

impl RunRule {
    /// The rule `name` with `options` by PyTorch name.
    ///
    /// **Errors:** [`OptimError::UnknownOptimizer`]; as
    /// [`OptimizerConfig::from_pytorch`].
    pub fn from_pytorch(name: &str, options: &serde_json::Map<String, serde_json::Value>) -> Result<Self> {
        crate::args::known_optimizer(name)?;
        if name.eq_ignore_ascii_case("lbfgs") {
            return crate::lbfgs::Lbfgs::from_pytorch(options).map(RunRule::Lbfgs);
        }
        match crate::matrix::TensorRule::defaults(name) {
            Some(_) => crate::matrix::TensorRule::from_pytorch(name, options).map(RunRule::Tensor),
            None => OptimizerConfig::from_pytorch(name, options).map(RunRule::Elementwise),
        }
    }

    /// The PyTorch name and options.
    pub fn describe(&self) -> (&'static str, serde_json::Map<String, serde_json::Value>) {
        match self {
            RunRule::Elementwise(c) => (c.pytorch_name(), c.to_pytorch()),
            RunRule::Tensor(r) => (r.pytorch_name(), r.to_pytorch()),
            RunRule::Lbfgs(o) => ("lbfgs", o.to_pytorch()),
        }
    }
}

/// Reads IN, runs, writes OUT (f32 from the GPU, f64 from the reference).
///
/// **Errors:** [`OptimError::Io`], [`OptimError::Input`] naming `input`
/// and the tensor, and as [`run_gpu`] / [`run_reference`].
pub fn run_files(gpu: Option<(&wgpu::Device, &wgpu::Queue)>, rule: RunRule, input: &Path, steps: u32, out: &Path) -> Result<RunOutput> {
    if let RunRule::Lbfgs(_) = rule {
        return Err(OptimError::InvalidOptions("lbfgs minimises an objective: give --objective rosenbrock or quadratic (run::lbfgs::run_files)"));
    }
    let bytes = std::fs::read(input).map_err(|e| OptimError::io(input, e))?;
    let parsed = RunInput::parse(&bytes).map_err(|e| in_file(e, input))?;
    parsed.check_steps(steps).map_err(|e| in_file(e, input))?;
    let (result, dtype) = match (gpu, rule) {
        (Some((device, queue)), RunRule::Elementwise(config)) => (run_gpu(device, queue, config, &parsed, steps)?, Dtype::F32),
        (Some((device, queue)), RunRule::Tensor(rule)) => (tensor::run_gpu(device, queue, rule, &parsed, steps)?, Dtype::F32),
        (None, RunRule::Elementwise(config)) => (run_reference(config, &parsed, steps)?, Dtype::F64),
        (None, RunRule::Tensor(rule)) => (tensor::run_reference(rule, &parsed, steps)?, Dtype::F64),
        (_, RunRule::Lbfgs(_)) => unreachable!("refused above"),
    };
    crate::checkpoint::write_atomic(out, &result.to_bytes(dtype)?)?;
    Ok(result)
}
