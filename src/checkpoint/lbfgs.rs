//! Checkpoints of [`LbfgsOptimizer`], by `torch.optim.LBFGS`'s state names:
//!
//! ```text
//! tensors   d, prev_flat_grad     f32 [n]
//!           old_dirs, old_stps    f32 [k, n]   the history, oldest first (k ≤ history_size)
//!           ro                    f32 [k]
//!           t, H_diag, prev_loss  f64 []
//!           n_iter, func_evals    i64 []
//! metadata  format   "wgpu-optim-lbfgs/1"
//!           config   the options by PyTorch name (JSON)
//! ```
//!
//! Loading checks the whole file (names, dtypes, shapes, the options'
//! validity, the same history_size) before changing anything, then adopts
//! the file's options, as PyTorch's `load_state_dict` does; the next step
//! is bitwise the one the saved optimizer would have taken.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde_json::Value;

use crate::error::{OptimError, Result};
use crate::lbfgs::state::LbfgsState;
use crate::lbfgs::{HostState, Lbfgs, LbfgsOptimizer};

const FORMAT: &str = "wgpu-optim-lbfgs/1";

fn corrupt(msg: impl std::fmt::Display) -> OptimError {
    OptimError::Checkpoint(msg.to_string())
}

/// The checkpoint of `opt` as safetensors bytes.
///
/// **Errors:** as [`LbfgsOptimizer::read_state`]; [`OptimError::Checkpoint`]
/// if serialising fails.
pub fn to_bytes(opt: &LbfgsOptimizer) -> Result<Vec<u8>> {
    let s = opt.read_state()?;
    let (n, k) = (s.d.len(), s.ro.len());
    let f32s = |v: &[f32]| bytemuck::cast_slice::<f32, u8>(v).to_vec();
    let h = s.host;
    let owned: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)> = vec![
        ("d", Dtype::F32, vec![n], f32s(&s.d)),
        ("prev_flat_grad", Dtype::F32, vec![n], f32s(&s.prev_flat_grad)),
        ("old_dirs", Dtype::F32, vec![k, n], f32s(&s.old_dirs.concat())),
        ("old_stps", Dtype::F32, vec![k, n], f32s(&s.old_stps.concat())),
        ("ro", Dtype::F32, vec![k], f32s(&s.ro)),
        ("t", Dtype::F64, vec![], h.t.to_le_bytes().to_vec()),
        ("H_diag", Dtype::F64, vec![], h.h_diag.to_le_bytes().to_vec()),
        ("prev_loss", Dtype::F64, vec![], h.prev_loss.to_le_bytes().to_vec()),
        ("n_iter", Dtype::I64, vec![], (h.n_iter as i64).to_le_bytes().to_vec()),
        ("func_evals", Dtype::I64, vec![], (h.func_evals as i64).to_le_bytes().to_vec()),
    ];
    let views = owned.iter().map(|(name, dtype, shape, data)| TensorView::new(*dtype, shape.clone(), data).map(|v| (name.to_string(), v))).collect::<std::result::Result<Vec<_>, _>>().map_err(corrupt)?;
    let metadata = HashMap::from([("format".to_string(), FORMAT.to_string()), ("config".to_string(), Value::Object(opt.options().to_pytorch()).to_string())]);
    safetensors::serialize(views, Some(metadata)).map_err(corrupt)
}

/// Writes the checkpoint of `opt` to `path` atomically.
///
/// **Errors:** as [`to_bytes`], and [`OptimError::Io`].
pub fn save(opt: &LbfgsOptimizer, path: impl AsRef<Path>) -> Result<()> {
    super::write_atomic(path.as_ref(), &to_bytes(opt)?)
}

/// A tensor's raw bytes, checked for its dtype and shape.
fn tensor<'a>(st: &'a SafeTensors, name: &str, dtype: Dtype, shape: &[usize]) -> Result<&'a [u8]> {
    let t = st.tensor(name).map_err(|_| corrupt(format!("lacks {name}")))?;
    if t.dtype() != dtype || t.shape() != shape {
        return Err(corrupt(format!("{name} is {:?} {:?}, expected {dtype:?} {shape:?}", t.dtype(), t.shape())));
    }
    Ok(t.data())
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn scalar8(bytes: &[u8]) -> [u8; 8] {
    bytes.try_into().expect("a checked 0-d 8-byte tensor")
}

/// The state a checkpoint holds for an optimizer of `n` elements.
fn decode(st: &SafeTensors, n: usize) -> Result<LbfgsState> {
    let k = st.tensor("ro").map_err(|_| corrupt("lacks ro"))?.shape().first().copied().ok_or_else(|| corrupt("ro is not a vector"))?;
    let rows = |name| tensor(st, name, Dtype::F32, &[k, n]).map(|b| f32s(b).chunks_exact(n).map(<[f32]>::to_vec).collect::<Vec<_>>());
    let f64_of = |name| tensor(st, name, Dtype::F64, &[]).map(|b| f64::from_le_bytes(scalar8(b)));
    let count = |name| {
        let v = tensor(st, name, Dtype::I64, &[]).map(|b| i64::from_le_bytes(scalar8(b)))?;
        u64::try_from(v).map_err(|_| corrupt(format!("{name} is negative")))
    };
    let host = HostState { n_iter: count("n_iter")?, func_evals: count("func_evals")?, t: f64_of("t")?, h_diag: f64_of("H_diag")?, prev_loss: f64_of("prev_loss")? };
    if st.len() != 10 {
        return Err(corrupt(format!("{} tensors, expected 10", st.len())));
    }
    Ok(LbfgsState {
        d: f32s(tensor(st, "d", Dtype::F32, &[n])?),
        old_dirs: rows("old_dirs")?,
        old_stps: rows("old_stps")?,
        ro: f32s(tensor(st, "ro", Dtype::F32, &[k])?),
        prev_flat_grad: f32s(tensor(st, "prev_flat_grad", Dtype::F32, &[n])?),
        host,
    })
}

/// Restores `opt` from checkpoint bytes; on any error nothing changed.
///
/// **Errors:** [`OptimError::Checkpoint`] for a corrupt file, another
/// length or history_size; the options' validation errors.
pub fn load_bytes(opt: &mut LbfgsOptimizer, bytes: &[u8]) -> Result<()> {
    let (st, meta) = super::open(bytes, FORMAT)?;
    let config: Value = serde_json::from_str(meta.get("config").ok_or_else(|| corrupt("metadata lacks \"config\""))?).map_err(|e| corrupt(format!("config: {e}")))?;
    let options = config.as_object().ok_or_else(|| corrupt("config is not an object")).and_then(Lbfgs::from_pytorch)?;
    if options.history_size != opt.options().history_size {
        return Err(corrupt(format!("history_size {} in the file, {} here", options.history_size, opt.options().history_size)));
    }
    let state = decode(&st, opt.len() as usize)?;
    opt.write_state(&state)?;
    opt.set_options(options)
}

/// Restores `opt` from the checkpoint at `path`.
///
/// **Errors:** [`OptimError::Io`], and as [`load_bytes`].
pub fn load(opt: &mut LbfgsOptimizer, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| OptimError::io(path, e))?;
    load_bytes(opt, &bytes)
}
