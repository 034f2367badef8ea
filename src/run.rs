//! The file-driven run: T steps of one optimizer over a parameter vector,
//! with the gradients of every step read from a safetensors file, on the GPU
//! or in the f64 CPU reference (`wgpu-optim run`).
//!
//! ```text
//! IN   params     f32 [N]       initial parameters
//!      grads      f32 [T', N]   gradient of step t in row t (T' ≥ T)
//!      hessians   f32 [T', N]   newton only, optional: the Hessian diagonal of step t
//! OUT  params  [N]           after T steps
//!      <state> [N]           the rule's state by PyTorch name (exp_avg, exp_avg_sq, …)
//!      step    []            T
//! ```
//! OUT is f32 from the GPU and f64 from the reference.

use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::rules::OptimizerConfig;
use crate::engine::{Optimizer, ParamSlice};
use crate::error::{OptimError, Result};
use crate::reference::ReferenceOptimizer;

fn bad(msg: impl std::fmt::Display) -> OptimError {
    OptimError::Checkpoint(msg.to_string())
}

/// The inputs of a run: parameters and `T' × N` gradients.
pub struct RunInput {
    pub params: Vec<f32>,
    pub grads: Vec<f32>,
    pub rows: usize,
    /// Hessian diagonals, same shape as the grads (Newton's input).
    pub hessians: Option<Vec<f32>>,
}

impl RunInput {
    /// Parses IN.
    ///
    /// **Errors:** [`OptimError::Checkpoint`] for a missing or misshapen tensor.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| bad(format!("input is not safetensors: {e}")))?;
        let read = |name: &str, rank: usize| -> Result<(Vec<f32>, Vec<usize>)> {
            let t = st.tensor(name).map_err(|_| bad(format!("input lacks tensor {name:?}")))?;
            if t.dtype() != Dtype::F32 || t.shape().len() != rank {
                return Err(bad(format!("{name} must be f32 of rank {rank}, is {:?} {:?}", t.dtype(), t.shape())));
            }
            Ok((t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(), t.shape().to_vec()))
        };
        let (params, _) = read("params", 1)?;
        let (grads, shape) = read("grads", 2)?;
        if params.is_empty() {
            return Err(OptimError::EmptyParams);
        }
        if shape[1] != params.len() {
            return Err(bad(format!("grads has rows of {} elements, params has {}", shape[1], params.len())));
        }
        let hessians = match st.tensor("hessians") {
            Ok(_) => {
                let (h, hshape) = read("hessians", 2)?;
                if hshape != shape {
                    return Err(bad(format!("hessians is {hshape:?}, grads {shape:?}")));
                }
                Some(h)
            }
            Err(_) => None,
        };
        Ok(RunInput { params, grads, rows: shape[0], hessians })
    }

    fn row(&self, t: usize) -> &[f32] {
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

/// Result of a run: the params and each state tensor (PyTorch name).
pub struct RunOutput {
    pub params: Vec<f64>,
    pub state: Vec<(&'static str, Vec<f64>)>,
    pub steps: u32,
}

impl RunOutput {
    /// OUT as safetensors bytes, in `dtype` (F32 or F64).
    ///
    /// **Errors:** [`OptimError::Checkpoint`] if serialising fails.
    pub fn to_bytes(&self, dtype: Dtype) -> Result<Vec<u8>> {
        let encode = |v: &[f64]| -> Vec<u8> {
            match dtype {
                Dtype::F64 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                _ => v.iter().flat_map(|x| (*x as f32).to_le_bytes()).collect(),
            }
        };
        let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = vec![("params".into(), vec![self.params.len()], encode(&self.params))];
        for (name, v) in &self.state {
            owned.push((name.to_string(), vec![v.len()], encode(v)));
        }
        owned.push(("step".into(), vec![], encode(&[self.steps as f64])));
        let views = owned
            .iter()
            .map(|(n, s, d)| TensorView::new(dtype, s.clone(), d).map(|v| (n.clone(), v)))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(bad)?;
        safetensors::serialize(views, None).map_err(bad)
    }
}

fn check_steps(input: &RunInput, steps: u32) -> Result<()> {
    if steps as usize > input.rows {
        return Err(bad(format!("{steps} steps asked, grads has {} rows", input.rows)));
    }
    Ok(())
}

/// Runs `steps` steps on the GPU, feeding row t of the grads at step t.
///
/// **Errors:** anything the engine reports; [`OptimError::Checkpoint`] if
/// the grads have fewer than `steps` rows.
pub fn run_gpu(device: &wgpu::Device, queue: &wgpu::Queue, config: OptimizerConfig, input: &RunInput, steps: u32) -> Result<RunOutput> {
    check_steps(input, steps)?;
    let n = input.params.len() as u64;
    let make = |label| {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: 4 * n.next_multiple_of(4),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        })
    };
    let (p, g) = (make("run params"), make("run grads"));
    queue.write_buffer(&p, 0, bytemuck::cast_slice(&input.params));
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
        state.push((*name, widen(opt.read_state(slot, 0)?)));
    }
    Ok(RunOutput { params, state, steps })
}

/// The same run in the f64 CPU reference.
///
/// **Errors:** as [`run_gpu`].
pub fn run_reference(config: OptimizerConfig, input: &RunInput, steps: u32) -> Result<RunOutput> {
    check_steps(input, steps)?;
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
    let state = r.named_state().into_iter().map(|(name, v)| (name, v.to_vec())).collect();
    Ok(RunOutput { params, state, steps })
}

/// Reads IN, runs, writes OUT (f32 from the GPU, f64 from the reference).
///
/// **Errors:** [`OptimError::Io`], and as [`run_gpu`] / [`run_reference`].
pub fn run_files(gpu: Option<(&wgpu::Device, &wgpu::Queue)>, config: OptimizerConfig, input: &Path, steps: u32, out: &Path) -> Result<RunOutput> {
    let bytes = std::fs::read(input).map_err(|e| OptimError::io(input, e))?;
    let parsed = RunInput::parse(&bytes)?;
    let (result, dtype) = match gpu {
        Some((device, queue)) => (run_gpu(device, queue, config, &parsed, steps)?, Dtype::F32),
        None => (run_reference(config, &parsed, steps)?, Dtype::F64),
    };
    crate::checkpoint::write_atomic(out, &result.to_bytes(dtype)?)?;
    Ok(result)
}
