//! Checkpoints of the tensor-wise optimizers, laid out like the
//! element-wise engine's (`crate::checkpoint`), PyTorch's `state_dict`
//! names and shapes:
//!
//! ```text
//! tensors   state.{i}.{name}   f32, the state's shape   momentum_buffer (Muon); exp_avg, exp_avg_sq
//!                                                      (LAMB); row_var [.., R, 1], col_var [.., 1, C]
//!                                                      or variance (Adafactor)
//! metadata  format   "wgpu-optim-tensor/1"
//!           rule     "muon" | "lamb" | "adafactor"
//!           config   the hyperparameters by PyTorch name (JSON)
//!           step     steps taken (LAMB, Adafactor; 0 for Muon, which has none)
//! ```
//!
//! Loading checks the whole file against the optimizer (rule, tensor count,
//! every name and shape, the config's validity) before changing anything,
//! then restores the state, the step and the config.

use std::collections::HashMap;
use std::path::Path;

use futures::future::LocalBoxFuture;

use safetensors::tensor::{Dtype, TensorView};
use serde_json::Value;

use crate::matrix::adafactor::StateTensor;
use crate::matrix::{AdafactorOptimizer, LambOptimizer, MuonOptimizer, TensorRule};
use crate::error::{OptimError, Result};

const FORMAT: &str = "wgpu-optim-tensor/1";

fn corrupt(msg: impl std::fmt::Display) -> OptimError {
    OptimError::Checkpoint(msg.to_string())
}

/// What checkpoints need from a tensor-wise optimizer.
pub trait TensorState {
    /// The config as a [`TensorRule`].
    fn rule(&self) -> TensorRule;
    /// Tensors in order.
    fn tensor_count(&self) -> usize;
    /// Steps taken.
    fn steps(&self) -> u32;
    /// Tensor `index`'s state names and shapes, in `named_state`'s order
    /// (nothing is read back).
    fn state_layout(&self, index: usize) -> Vec<(&'static str, Vec<u64>)>;
    /// Tensor `index`'s state by PyTorch name and shape (reads back).
    ///
    /// **Errors:** as the optimizer's `read_state`.
    #[cfg(not(target_arch = "wasm32"))]
    fn named_state(&self, index: usize) -> Result<Vec<StateTensor>> {
        pollster::block_on(self.named_state_async(index))
    }
    /// [`TensorState::named_state`] without blocking (the web's form).
    ///
    /// **Errors:** as the optimizer's `read_state`.
    fn named_state_async(&self, index: usize) -> LocalBoxFuture<'_, Result<Vec<StateTensor>>>;
    /// Writes tensor `index`'s state (names and shapes as `named_state`'s).
    ///
    /// **Errors:** as the optimizer's `write_state`.
    fn restore(&mut self, index: usize, state: &[StateTensor]) -> Result<()>;
    /// Sets the step count and the config (checked by the caller).
    ///
    /// **Errors:** [`OptimError::Checkpoint`] for a config of another rule.
    fn resume(&mut self, rule: TensorRule, steps: u32) -> Result<()>;
}

/// The checkpoint of `opt` as safetensors bytes.
///
/// **Errors:** [`OptimError::Readback`] / [`OptimError::DeviceLost`];
/// [`OptimError::Checkpoint`] if serialising fails.
#[cfg(not(target_arch = "wasm32"))]
pub fn to_bytes(opt: &(impl TensorState + ?Sized)) -> Result<Vec<u8>> {
    pollster::block_on(to_bytes_async(opt))
}

/// [`to_bytes`] without blocking (the web's form).
///
/// **Errors:** as [`to_bytes`].
pub async fn to_bytes_async(opt: &(impl TensorState + ?Sized)) -> Result<Vec<u8>> {
    let mut owned = Vec::new();
    for i in 0..opt.tensor_count() {
        for s in opt.named_state_async(i).await? {
            let shape: Vec<usize> = s.shape.iter().map(|&d| d as usize).collect();
            owned.push((format!("state.{i}.{}", s.name), shape, bytemuck::cast_slice::<f32, u8>(&s.values).to_vec()));
        }
    }
    let views = owned.iter().map(|(n, s, d)| TensorView::new(Dtype::F32, s.clone(), d).map(|v| (n.clone(), v))).collect::<std::result::Result<Vec<_>, _>>().map_err(corrupt)?;
    let rule = opt.rule();
    let metadata = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("rule".to_string(), rule.pytorch_name().to_string()),
        ("config".to_string(), Value::Object(rule.to_pytorch()).to_string()),
        ("step".to_string(), opt.steps().to_string()),
    ]);
    safetensors::serialize(views, Some(metadata)).map_err(corrupt)
}

/// Writes the checkpoint of `opt` to `path` atomically (see
/// [`super::write_atomic`]).
///
/// **Errors:** as [`to_bytes`], and [`OptimError::Io`].
#[cfg(not(target_arch = "wasm32"))]
pub fn save(opt: &impl TensorState, path: impl AsRef<Path>) -> Result<()> {
    super::write_atomic(path.as_ref(), &to_bytes(opt)?)
}

/// Restores `opt` from checkpoint bytes; on any error nothing changed.
///
/// **Errors:** [`OptimError::Checkpoint`] for a corrupt file or one of
/// another rule, tensor count, name or shape; the config's validation
/// errors.
pub fn load_bytes(opt: &mut (impl TensorState + ?Sized), bytes: &[u8]) -> Result<()> {
    let (st, meta) = super::open(bytes, FORMAT)?;
    let get = |k: &str| meta.get(k).ok_or_else(|| corrupt(format!("metadata lacks {k:?}")));
    let mine = opt.rule().pytorch_name();
    if get("rule")? != mine {
        return Err(corrupt(format!("a checkpoint of {:?}, not {mine:?}", get("rule")?)));
    }
    let config: serde_json::Map<String, Value> = serde_json::from_str(get("config")?).map_err(|e| corrupt(format!("config: {e}")))?;
    let rule = TensorRule::from_pytorch(mine, &config)?;
    let steps: u32 = get("step")?.parse().map_err(|e| corrupt(format!("step: {e}")))?;
    let mut restored = Vec::new();
    for i in 0..opt.tensor_count() {
        let mut tensors = Vec::new();
        for (name, expected) in opt.state_layout(i) {
            let key = format!("state.{i}.{name}");
            let t = st.tensor(&key).map_err(|_| corrupt(format!("lacks {key}")))?;
            let shape: Vec<u64> = t.shape().iter().map(|&d| d as u64).collect();
            if t.dtype() != Dtype::F32 || shape != expected {
                return Err(corrupt(format!("{key} is {:?} {shape:?}, expected F32 {expected:?}", t.dtype())));
            }
            let values = t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            tensors.push(StateTensor { name, shape, values });
        }
        restored.push(tensors);
    }
    if st.len() != restored.iter().map(Vec::len).sum::<usize>() {
        return Err(corrupt(format!("{} tensors, expected {}", st.len(), restored.iter().map(Vec::len).sum::<usize>())));
    }
    for (i, tensors) in restored.iter().enumerate() {
        opt.restore(i, tensors)?;
    }
    opt.resume(rule, steps)
}

/// Restores `opt` from the checkpoint at `path`.
///
/// **Errors:** [`OptimError::Io`], and as [`load_bytes`].
pub fn load(opt: &mut impl TensorState, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| OptimError::io(path, e))?;
    load_bytes(opt, &bytes)
}

/// `values` of the state named `name` (checked by `load_bytes`).
fn values<'a>(state: &'a [StateTensor], name: &str) -> &'a [f32] {
    state.iter().find(|s| s.name == name).map_or(&[], |s| &s.values)
}

impl TensorState for MuonOptimizer {
    fn rule(&self) -> TensorRule {
        TensorRule::Muon(*self.config())
    }
    fn tensor_count(&self) -> usize {
        self.params().len()
    }
    fn steps(&self) -> u32 {
        0
    }
    fn state_layout(&self, index: usize) -> Vec<(&'static str, Vec<u64>)> {
        self.params().get(index).map_or_else(Vec::new, |p| self.rule().state_layout(p.shape.as_deref().unwrap_or(&[p.len()])))
    }
    fn named_state_async(&self, index: usize) -> LocalBoxFuture<'_, Result<Vec<StateTensor>>> {
        Box::pin(async move {
            let values = self.read_state_async(index).await?;
            Ok(self.state_layout(index).into_iter().map(|(name, shape)| StateTensor { name, shape, values: values.clone() }).collect())
        })
    }
    fn restore(&mut self, index: usize, state: &[StateTensor]) -> Result<()> {
        self.write_state(index, values(state, "momentum_buffer"))
    }
    fn resume(&mut self, rule: TensorRule, _steps: u32) -> Result<()> {
        let TensorRule::Muon(config) = rule else { return Err(corrupt("not a Muon config")) };
        self.set_config(config)
    }
}

impl TensorState for LambOptimizer {
    fn rule(&self) -> TensorRule {
        TensorRule::Lamb(*self.config())
    }
    fn tensor_count(&self) -> usize {
        self.params().len()
    }
    fn steps(&self) -> u32 {
        self.step_count()
    }
    fn state_layout(&self, index: usize) -> Vec<(&'static str, Vec<u64>)> {
        self.params().get(index).map_or_else(Vec::new, |p| self.rule().state_layout(p.shape.as_deref().unwrap_or(&[p.len()])))
    }
    fn named_state_async(&self, index: usize) -> LocalBoxFuture<'_, Result<Vec<StateTensor>>> {
        Box::pin(async move {
            let (m, v) = self.read_state_async(index).await?;
            Ok(self.state_layout(index).into_iter().zip([m, v]).map(|((name, shape), values)| StateTensor { name, shape, values }).collect())
        })
    }
    fn restore(&mut self, index: usize, state: &[StateTensor]) -> Result<()> {
        let step = self.step_count();
        self.write_state(index, values(state, "exp_avg"), values(state, "exp_avg_sq"), step)
    }
    fn resume(&mut self, rule: TensorRule, steps: u32) -> Result<()> {
        let TensorRule::Lamb(config) = rule else { return Err(corrupt("not a LAMB config")) };
        self.set_config(config, steps)
    }
}

impl TensorState for AdafactorOptimizer {
    fn rule(&self) -> TensorRule {
        TensorRule::Adafactor(*self.config())
    }
    fn tensor_count(&self) -> usize {
        self.params().len()
    }
    fn steps(&self) -> u32 {
        self.step_count()
    }
    fn state_layout(&self, index: usize) -> Vec<(&'static str, Vec<u64>)> {
        AdafactorOptimizer::state_layout(self, index)
    }
    fn named_state_async(&self, index: usize) -> LocalBoxFuture<'_, Result<Vec<StateTensor>>> {
        Box::pin(self.read_state_async(index))
    }
    fn restore(&mut self, index: usize, state: &[StateTensor]) -> Result<()> {
        self.write_state(index, state)
    }
    fn resume(&mut self, rule: TensorRule, steps: u32) -> Result<()> {
        let TensorRule::Adafactor(config) = rule else { return Err(corrupt("not an Adafactor config")) };
        self.set_config(config, steps)
    }
}
