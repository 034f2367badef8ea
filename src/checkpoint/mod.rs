//! Optimizer checkpoints in safetensors, laid out like PyTorch's
//! `optimizer.state_dict()` so a PyTorch user can read them.
//!
//! ```text
//! tensors   state.{i}.{name}   f32 [len_i]   name ∈ exp_avg, exp_avg_sq, max_exp_avg_sq,
//!                                            momentum_buffer, square_avg, acc_delta, sum, grad_avg
//!           state.{i}.step     f32 []        the optimizer's step (PyTorch keeps it per param)
//! metadata  format        "wgpu-optim/1"
//!           rule          e.g. "adamw"
//!           param_groups  JSON list, one object per group: the hyperparameters by their
//!                         PyTorch names, "params": [i, …], "initial_lr" once a
//!                         scheduler attached (its base lr), and the rule's host
//!                         scalars and "train_mode" where it has them (schedule-free's
//!                         "weight_sum", "lr_max")
//!           lens          JSON list of the parameter lengths
//!           host_step     steps recorded, skipped ones included (a scheduler's position)
//!           grad_scaler   JSON {"scale", "_growth_tracker", "skipped"} (GradScaler's state_dict names)
//! ```
//!
//! Loading checks everything before touching the engine: a checkpoint of
//! another rule, other option flags, other parameter shapes, or a corrupt or
//! truncated file is an [`OptimError::Checkpoint`] and changes nothing.

#[cfg(not(target_arch = "wasm32"))]
pub mod lbfgs;
pub mod tensor;

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde_json::{json, Value};

use crate::rules::OptimizerConfig;
use crate::engine::{Optimizer, ParamSlice, ScalerState};
use crate::error::{OptimError, Result};

const FORMAT: &str = "wgpu-optim/1";

/// Replaces `path` with `bytes` so that at every instant the path holds
/// either its old content or the new content, whole: the bytes go to a
/// temporary file in the same directory, which is flushed to disk
/// (`sync_all`) and renamed over `path`; then the directory is synced so the
/// rename itself is durable. A process killed in the middle leaves at most
/// a stray `.wgpu-optim-*.tmp` file beside the old one.
///
/// **Errors:** [`OptimError::Io`] (the old file is untouched).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let io = |e: std::io::Error| OptimError::io(path, e);
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new().prefix(".wgpu-optim-").suffix(".tmp").tempfile_in(dir).map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    #[cfg(unix)]
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    Ok(())
}

fn corrupt(msg: impl std::fmt::Display) -> OptimError {
    OptimError::Checkpoint(msg.to_string())
}

/// A group's hyperparameters by PyTorch name, plus its param indices, its
/// `initial_lr` if a scheduler attached, and its host scalars and mode
/// where the rule has them.
fn group_json(config: &OptimizerConfig, params: Vec<usize>, initial_lr: Option<f64>, host: &[f64], train_mode: bool) -> Value {
    let mut v = config.to_pytorch();
    v.insert("params".into(), json!(params));
    if let Some(lr) = initial_lr {
        v.insert("initial_lr".into(), json!(lr));
    }
    for ((name, _), x) in config.host_scalars().iter().zip(host) {
        v.insert(name.to_string(), json!(x));
    }
    if config.mode_switch(true).is_some() {
        v.insert("train_mode".into(), json!(train_mode));
    }
    Value::Object(v)
}

/// A group's host scalars and, for a rule with modes, its mode.
struct GroupHost {
    scalars: Vec<f64>,
    train_mode: Option<bool>,
}

/// The group's host scalars and mode from its object (removed from it).
fn group_host(like: &OptimizerConfig, options: &mut serde_json::Map<String, Value>) -> Result<GroupHost> {
    let mut host = Vec::new();
    for (name, _) in like.host_scalars() {
        let x = options.remove(*name).and_then(|x| x.as_f64()).filter(|x| x.is_finite());
        host.push(x.ok_or_else(|| corrupt(format!("param group: {name} is missing or not a finite number")))?);
    }
    let train_mode = match like.mode_switch(true) {
        Some(_) => Some(options.remove("train_mode").and_then(|m| m.as_bool()).ok_or_else(|| corrupt("param group: train_mode is missing or not a boolean"))?),
        None => None,
    };
    Ok(GroupHost { scalars: host, train_mode })
}

/// Parses a group object as a config of the same optimizer as `like`, its
/// `initial_lr` if it has one, and its host scalars and mode.
fn group_config(like: &OptimizerConfig, v: &Value) -> Result<(OptimizerConfig, Option<f64>, GroupHost)> {
    let mut options = v.as_object().ok_or_else(|| corrupt("a param group is not a JSON object"))?.clone();
    options.remove("params");
    let host = group_host(like, &mut options)?;
    let initial_lr = match options.remove("initial_lr") {
        None => None,
        Some(lr) => Some(lr.as_f64().filter(|lr| lr.is_finite() && *lr >= 0.0).ok_or_else(|| corrupt(format!("param group: initial_lr {lr} is not a learning rate")))?),
    };
    let config = OptimizerConfig::from_pytorch(like.pytorch_name(), &options).map_err(|e| corrupt(format!("param group: {e}")))?;
    Ok((config, initial_lr, host))
}

/// The model a checkpoint describes: the rule, the groups' configs and
/// `initial_lr`s, the parameter tensors (lengths, groups) and the state
/// slots' names.
pub(crate) struct Model<'a> {
    pub rule: &'static str,
    pub configs: &'a [OptimizerConfig],
    pub initial_lrs: &'a [Option<f64>],
    pub params: &'a [ParamSlice],
    pub names: Vec<&'static str>,
    /// Each group's host scalars, and the mode.
    pub host: Vec<Vec<f64>>,
    pub train_mode: bool,
}

/// Everything a checkpoint holds, checked against a model, ready to be
/// written.
pub(crate) struct Loaded {
    pub configs: Vec<OptimizerConfig>,
    pub initial_lrs: Vec<Option<f64>>,
    pub host: Vec<Vec<f64>>,
    pub train_mode: bool,
    pub host_step: u32,
    pub scaler: ScalerState,
    /// (param, slot, values)
    pub state: Vec<(usize, usize, Vec<f32>)>,
}

/// The checkpoint of `model` after `host_step` steps, its state read by
/// `state(slot, param)`: one optimizer's, or the shards of many ranks
/// gathered.
///
/// **Errors:** what `state` returns; [`OptimError::Checkpoint`] if
/// serialising fails.
pub(crate) fn encode(model: &Model, host_step: u32, scaler: ScalerState, mut state: impl FnMut(usize, usize) -> Result<Vec<f32>>) -> Result<Vec<u8>> {
        let names = &model.names;
        let device_step = (host_step - scaler.skipped) as f32;
        let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        for i in 0..model.params.len() {
            for (slot, name) in names.iter().enumerate().filter(|(_, n)| !n.is_empty()) {
                let values = state(slot, i)?;
                owned.push((format!("state.{i}.{name}"), vec![values.len()], bytemuck::cast_slice(&values).to_vec()));
            }
            owned.push((format!("state.{i}.step"), vec![], device_step.to_le_bytes().to_vec()));
        }
        let groups: Vec<Value> = model
            .configs
            .iter()
            .enumerate()
            .map(|(g, c)| group_json(c, (0..model.params.len()).filter(|&i| model.params[i].group as usize == g).collect(), model.initial_lrs[g], &model.host[g], model.train_mode))
            .collect();
        let lens: Vec<u64> = model.params.iter().map(|p| p.len()).collect();
        let metadata = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("rule".to_string(), model.rule.to_string()),
            ("param_groups".to_string(), Value::Array(groups).to_string()),
            ("lens".to_string(), json!(lens).to_string()),
            ("host_step".to_string(), host_step.to_string()),
            ("grad_scaler".to_string(), json!({"scale": scaler.scale, "_growth_tracker": scaler.growth_tracker, "skipped": scaler.skipped}).to_string()),
        ]);
        let views = owned
            .iter()
            .map(|(name, shape, data)| TensorView::new(Dtype::F32, shape.clone(), data).map(|v| (name.clone(), v)))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(corrupt)?;
        safetensors::serialize(views, Some(metadata)).map_err(corrupt)
}

impl Optimizer {
    /// The model its checkpoints describe.
    fn model(&self) -> Model<'_> {
        Model { rule: self.rule().name(), configs: self.configs(), initial_lrs: self.initial_lrs(), params: self.params(), names: self.state_names(), host: self.host_scalars().to_vec(), train_mode: self.is_train_mode() }
    }

    /// The checkpoint as safetensors bytes (reads the state back: waits for
    /// the GPU).
    ///
    /// **Errors:** [`OptimError::Readback`], [`OptimError::Checkpoint`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn checkpoint_bytes(&self) -> Result<Vec<u8>> {
        pollster::block_on(self.checkpoint_bytes_async())
    }

    /// [`Optimizer::checkpoint_bytes`] without blocking (the web's form,
    /// where the bytes go to storage or a download instead of a file).
    ///
    /// **Errors:** as [`Optimizer::checkpoint_bytes`].
    pub async fn checkpoint_bytes_async(&self) -> Result<Vec<u8>> {
        let scaler = self.read_grad_control_async().await?;
        let mut state = HashMap::new();
        for i in 0..self.params().len() {
            for (slot, _) in self.state_names().iter().enumerate().filter(|(_, n)| !n.is_empty()) {
                state.insert((slot, i), self.read_state_async(slot, i).await?);
            }
        }
        encode(&self.model(), self.step_count(), scaler, |slot, i| state.remove(&(slot, i)).ok_or_else(|| OptimError::Readback(format!("state slot {slot} of tensor {i} was not read"))))
    }

    /// Writes the checkpoint to `path` atomically ([`write_atomic`]): a
    /// crash or a full disk during the save leaves the previous file whole.
    ///
    /// **Errors:** as [`Optimizer::checkpoint_bytes`], and [`OptimError::Io`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn save_checkpoint(&self, path: impl AsRef<Path>) -> Result<()> {
        write_atomic(path.as_ref(), &self.checkpoint_bytes()?)
    }

    /// Restores state, step, hyperparameters (with each group's
    /// `initial_lr`, so a scheduler made afterwards resumes) and GradScaler state from a
    /// checkpoint of an optimizer with the same rule, option flags, param
    /// groups and parameter lengths. Nothing changes unless all of it fits.
    ///
    /// **Errors:** [`OptimError::Checkpoint`] naming what does not fit.
    pub fn load_checkpoint_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        let loaded = decode(&self.model(), bytes)?;
        for (i, slot, values) in &loaded.state {
            self.write_state(*slot, *i, values)?;
        }
        self.replace_configs(loaded.configs)?;
        self.set_initial_lrs(loaded.initial_lrs);
        self.set_host_state(loaded.host, loaded.train_mode);
        self.set_step_count(loaded.host_step);
        self.write_grad_control(loaded.scaler);
        Ok(())
    }

    /// Reads `path` and loads it as [`Optimizer::load_checkpoint_bytes`].
    ///
    /// **Errors:** [`OptimError::Io`], [`OptimError::Checkpoint`].
    pub fn load_checkpoint(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| OptimError::io(path, e))?;
        self.load_checkpoint_bytes(&bytes)
    }
}

/// The tensors and metadata of a safetensors checkpoint whose `format`
/// metadata is `format`.
///
/// **Errors:** [`OptimError::Checkpoint`] for a file that is not
/// safetensors, has no metadata, or is of another format.
pub(crate) fn open<'a>(bytes: &'a [u8], format: &str) -> Result<(SafeTensors<'a>, HashMap<String, String>)> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| corrupt(format!("not a safetensors file: {e}")))?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| corrupt(format!("bad header: {e}")))?;
    let meta = header.metadata().clone().ok_or_else(|| corrupt("no metadata"))?;
    match meta.get("format") {
        Some(f) if f == format => Ok((st, meta)),
        Some(other) => Err(corrupt(format!("format {other:?} is not {format:?}"))),
        None => Err(corrupt("metadata lacks \"format\"")),
    }
}

/// Everything `bytes` holds, checked against `model`; nothing is changed.
///
/// **Errors:** [`OptimError::Checkpoint`] naming what does not fit.
pub(crate) fn decode(model: &Model, bytes: &[u8]) -> Result<Loaded> {
    let (st, meta) = open(bytes, FORMAT)?;
    let get = |k: &str| meta.get(k).ok_or_else(|| corrupt(format!("metadata lacks {k:?}")));
    if get("rule")? != model.rule {
        return Err(corrupt(format!("checkpoint of {:?}, this optimizer runs {:?}", get("rule")?, model.rule)));
    }
    let lens: Vec<u64> = serde_json::from_str(get("lens")?).map_err(|_| corrupt("lens is not a list of lengths"))?;
    let ours: Vec<u64> = model.params.iter().map(|p| p.len()).collect();
    if lens != ours {
        return Err(corrupt(format!("parameter lengths {lens:?} differ from this optimizer's {ours:?}")));
    }
    let groups: Vec<Value> = serde_json::from_str(get("param_groups")?).map_err(|_| corrupt("param_groups is not a JSON list"))?;
    if groups.len() != model.configs.len() {
        return Err(corrupt(format!("{} param groups, this optimizer has {}", groups.len(), model.configs.len())));
    }
    let (mut configs, mut initial_lrs, mut host, mut modes) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (g, (v, current)) in groups.iter().zip(model.configs).enumerate() {
        let (c, initial_lr, group_host) = group_config(current, v)?;
        if c.flags() != current.flags() || c.state_names() != current.state_names() {
            return Err(corrupt(format!("param group {g} uses other options (flags) than this optimizer")));
        }
        if c.grad_clip() != current.grad_clip() {
            return Err(corrupt(format!("param group {g} clips by max_grad_norm and eps {:?}, this optimizer by {:?}, set when it was built", c.grad_clip(), current.grad_clip())));
        }
        let members: Vec<usize> = serde_json::from_value(v["params"].clone()).map_err(|_| corrupt(format!("param group {g} lacks its params list")))?;
        let expected: Vec<usize> = (0..ours.len()).filter(|&i| model.params[i].group as usize == g).collect();
        if members != expected {
            return Err(corrupt(format!("param group {g} holds params {members:?}, this optimizer {expected:?}")));
        }
        configs.push(c);
        initial_lrs.push(initial_lr);
        host.push(group_host.scalars);
        modes.push(group_host.train_mode);
    }
    let host_step: u32 = get("host_step")?.parse().map_err(|_| corrupt("host_step is not a step count"))?;
    let sc: Value = serde_json::from_str(get("grad_scaler")?).map_err(|_| corrupt("grad_scaler is not JSON"))?;
    let scaler = ScalerState {
        scale: sc["scale"].as_f64().filter(|s| s.is_finite() && *s > 0.0).ok_or_else(|| corrupt("grad_scaler.scale"))? as f32,
        growth_tracker: sc["_growth_tracker"].as_u64().and_then(|v| u32::try_from(v).ok()).ok_or_else(|| corrupt("grad_scaler._growth_tracker"))?,
        skipped: sc["skipped"].as_u64().and_then(|v| u32::try_from(v).ok()).filter(|&s| s <= host_step).ok_or_else(|| corrupt("grad_scaler.skipped"))?,
        found_inf: 0,
    };
    let f32_tensor = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
        let t = st.tensor(name).map_err(|_| corrupt(format!("missing tensor {name}")))?;
        if t.dtype() != Dtype::F32 || t.shape() != shape {
            return Err(corrupt(format!("tensor {name} is {:?} {:?}, expected F32 {shape:?}", t.dtype(), t.shape())));
        }
        Ok(t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    };
    let names = &model.names;
    let mut state = Vec::new();
    let device_step = (host_step - scaler.skipped) as f32;
    for (i, &len) in ours.iter().enumerate() {
        for (slot, name) in names.iter().enumerate().filter(|(_, n)| !n.is_empty()) {
            state.push((i, slot, f32_tensor(&format!("state.{i}.{name}"), &[len as usize])?));
        }
        let step = f32_tensor(&format!("state.{i}.step"), &[])?;
        if step[0] != device_step {
            return Err(corrupt(format!("state.{i}.step = {} disagrees with host_step − skipped = {device_step}", step[0])));
        }
    }
    let expected_tensors = ours.len() * (1 + names.iter().filter(|n| !n.is_empty()).count());
    if st.len() != expected_tensors {
        return Err(corrupt(format!("{} tensors, expected {expected_tensors}", st.len())));
    }
    if modes.iter().any(|m| *m != modes[0]) {
        return Err(corrupt("param groups disagree on train_mode"));
    }
    Ok(Loaded { configs, initial_lrs, host, train_mode: modes[0].unwrap_or(true), host_step, scaler, state })
}
