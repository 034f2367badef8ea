//! Sharded checkpoint sets: each rank writes its own shard, and rank 0 an
//! index; a merge gives the ordinary one-process checkpoint.
//!
//! ```text
//! NAME.rank{r}-of-{N}.safetensors   rank r's slice, in the merged file's layout: every
//!                                   tensor `state.{i}.{name}` by PyTorch name, holding
//!                                   the elements rank r owns (none where it owns none),
//!                                   the merged file's metadata, and "shard": JSON
//!                                   {"save", "rank", "ranks"}
//! NAME.index.json                   {"format": "wgpu-optim-shard-index/1", "save", "ranks",
//!                                    "files": [the N file names]}
//! ```
//!
//! A save is crash-safe: every rank writes `FILE.next` atomically; once all
//! have, rank 0 replaces the index (the commit point); once that is done,
//! every rank renames `FILE.next` over `FILE`. A reader takes each rank's
//! file whose `save` matches the index's, `FILE` or else `FILE.next`, so a
//! save interrupted at any point on any rank leaves the previous set, or
//! the new one, loadable. A committed `FILE.next` left unpublished by a
//! crash is published before the next save stages over it.
//!
//! Merging concatenates each tensor's non-empty slices in rank order (a
//! multi-dimensional tensor, of a tensor-wise rule, comes whole from one
//! rank) and takes the scalars and metadata, which every rank must agree
//! on, from rank 0.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde_json::{json, Value};

use crate::error::{OptimError, Result};

const INDEX_FORMAT: &str = "wgpu-optim-shard-index/1";

fn corrupt(msg: impl std::fmt::Display) -> OptimError {
    OptimError::Checkpoint(msg.to_string())
}

/// `NAME.index.json`.
pub fn index_path(name: &Path) -> PathBuf {
    suffixed(name, ".index.json")
}

/// `NAME.rank{r}-of-{N}.safetensors`.
pub fn rank_path(name: &Path, rank: usize, ranks: usize) -> PathBuf {
    suffixed(name, &format!(".rank{rank}-of-{ranks}.safetensors"))
}

fn suffixed(name: &Path, suffix: &str) -> PathBuf {
    let mut s = name.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn next_path(file: &Path) -> PathBuf {
    suffixed(file, ".next")
}

/// `bytes` (a safetensors file) with the "shard" metadata added.
pub fn tag(bytes: &[u8], save: u64, rank: usize, ranks: usize) -> Result<Vec<u8>> {
    let st = SafeTensors::deserialize(bytes).map_err(corrupt)?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(corrupt)?;
    let mut meta = header.metadata().clone().unwrap_or_default();
    meta.insert("shard".into(), json!({"save": save, "rank": rank, "ranks": ranks}).to_string());
    safetensors::serialize(st.tensors(), Some(meta)).map_err(corrupt)
}

/// The steps of a crash-safe save, for one rank (see the module docs).
pub mod save {
    use super::*;

    /// Step 1: this rank's tagged file, written atomically to `FILE.next`.
    /// A `FILE.next` that the current index already names (a save that
    /// committed but did not publish) is published first, so the staging
    /// never overwrites the only copy of the committed set.
    ///
    /// **Errors:** [`OptimError::Io`].
    pub fn stage(name: &Path, rank: usize, ranks: usize, tagged: &[u8]) -> Result<()> {
        let (file, next) = (rank_path(name, rank, ranks), next_path(&rank_path(name, rank, ranks)));
        if let (Ok(index), Ok(staged)) = (std::fs::read_to_string(index_path(name)), std::fs::read(&next)) {
            let committed = serde_json::from_str::<Value>(&index).ok().and_then(|v| v["save"].as_u64());
            if committed.is_some_and(|save| shard_of(&staged).is_ok_and(|s| s == (save, rank, ranks))) {
                std::fs::rename(&next, &file).map_err(|e| OptimError::io(&file, e))?;
            }
        }
        crate::checkpoint::write_atomic(&next, tagged)
    }

    /// Step 2, rank 0 only, once every rank has staged: the index.
    ///
    /// **Errors:** [`OptimError::Io`].
    pub fn commit(name: &Path, save: u64, ranks: usize) -> Result<()> {
        let file_name = |r| rank_path(name, r, ranks).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        let index = json!({"format": INDEX_FORMAT, "save": save, "ranks": ranks, "files": (0..ranks).map(file_name).collect::<Vec<_>>()});
        crate::checkpoint::write_atomic(&index_path(name), index.to_string().as_bytes())
    }

    /// Step 3, once the index is written: `FILE.next` renamed over `FILE`.
    ///
    /// **Errors:** [`OptimError::Io`].
    pub fn publish(name: &Path, rank: usize, ranks: usize) -> Result<()> {
        let file = rank_path(name, rank, ranks);
        std::fs::rename(next_path(&file), &file).map_err(|e| OptimError::io(&file, e))
    }
}

/// The save id and the rank files' bytes of the set an index names, each
/// the file or its `.next` whose save id matches the index's.
///
/// **Errors:** [`OptimError::Io`]; [`OptimError::Checkpoint`] for a
/// corrupt index or a rank with no file of the index's save.
pub fn read_set(index: &Path) -> Result<Vec<Vec<u8>>> {
    let text = std::fs::read_to_string(index).map_err(|e| OptimError::io(index, e))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| corrupt(format!("{}: {e}", index.display())))?;
    if v["format"] != INDEX_FORMAT {
        return Err(corrupt(format!("{}: format {} is not {INDEX_FORMAT:?}", index.display(), v["format"])));
    }
    let (save, ranks) = (v["save"].as_u64().ok_or_else(|| corrupt("index: save"))?, v["ranks"].as_u64().ok_or_else(|| corrupt("index: ranks"))? as usize);
    if ranks == 0 {
        return Err(corrupt("index: a set of no ranks"));
    }
    let files = v["files"].as_array().filter(|f| f.len() == ranks).ok_or_else(|| corrupt("index: files"))?;
    let dir = index.parent().unwrap_or(Path::new("."));
    files
        .iter()
        .enumerate()
        .map(|(rank, f)| {
            let file = dir.join(f.as_str().ok_or_else(|| corrupt("index: a file name"))?);
            [file.clone(), next_path(&file)]
                .iter()
                .filter_map(|p| std::fs::read(p).ok())
                .find(|bytes| shard_of(bytes).is_ok_and(|s| s == (save, rank, ranks)))
                .ok_or_else(|| corrupt(format!("{}: no file of save {save} for rank {rank}", file.display())))
        })
        .collect()
}

/// A rank file's (save, rank, ranks).
fn shard_of(bytes: &[u8]) -> Result<(u64, usize, usize)> {
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(corrupt)?;
    let shard = header.metadata().as_ref().and_then(|m| m.get("shard")).ok_or_else(|| corrupt("not a rank's file: no \"shard\" metadata"))?;
    let v: Value = serde_json::from_str(shard).map_err(corrupt)?;
    let field = |k: &str| v[k].as_u64().ok_or_else(|| corrupt(format!("shard.{k}")));
    Ok((field("save")?, field("rank")? as usize, field("ranks")? as usize))
}

/// The merged one-process checkpoint of the set an index names.
///
/// **Errors:** as [`read_set`]; [`OptimError::Checkpoint`] where the ranks'
/// files disagree (metadata, tensor names, scalars) or a tensor's slices
/// do not fit together.
pub fn merge(index: &Path) -> Result<Vec<u8>> {
    let files = read_set(index)?;
    let sets = files.iter().map(|b| SafeTensors::deserialize(b).map_err(corrupt)).collect::<Result<Vec<_>>>()?;
    let metas = files.iter().map(|b| meta_without_shard(b)).collect::<Result<Vec<_>>>()?;
    if let Some(r) = sets.iter().position(|s| s.len() != sets[0].len()) {
        return Err(corrupt(format!("rank {r}'s file holds {} tensors, rank 0's {}", sets[r].len(), sets[0].len())));
    }
    if let Some(r) = metas.iter().position(|m| *m != metas[0]) {
        return Err(corrupt(format!("rank {r}'s file disagrees with rank 0's metadata")));
    }
    let mut names: Vec<String> = sets[0].names().into_iter().map(str::to_string).collect();
    names.sort();
    let mut merged: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for name in names {
        let parts = sets.iter().map(|s| s.tensor(&name).map_err(|_| corrupt(format!("a rank's file lacks {name}")))).collect::<Result<Vec<_>>>()?;
        merged.push(join(&name, &parts)?);
    }
    let views = merged.iter().map(|(n, shape, data)| TensorView::new(Dtype::F32, shape.clone(), data).map(|v| (n.clone(), v))).collect::<std::result::Result<Vec<_>, _>>().map_err(corrupt)?;
    safetensors::serialize(views, Some(metas[0].clone())).map_err(corrupt)
}

fn meta_without_shard(bytes: &[u8]) -> Result<HashMap<String, String>> {
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(corrupt)?;
    let mut meta = header.metadata().clone().unwrap_or_default();
    meta.remove("shard");
    Ok(meta)
}

/// One tensor from its ranks' slices: a scalar all ranks agree on, the
/// non-empty 1-D slices end to end, or the one rank's whole tensor.
fn join(name: &str, parts: &[TensorView]) -> Result<(String, Vec<usize>, Vec<u8>)> {
    if parts.iter().any(|p| p.dtype() != Dtype::F32) {
        return Err(corrupt(format!("{name} is not f32")));
    }
    if parts[0].shape().is_empty() {
        if parts.iter().any(|p| p.data() != parts[0].data()) {
            return Err(corrupt(format!("the ranks disagree on {name}")));
        }
        return Ok((name.into(), vec![], parts[0].data().to_vec()));
    }
    let full: Vec<&TensorView> = parts.iter().filter(|p| !p.data().is_empty()).collect();
    match full.as_slice() {
        [one] => Ok((name.into(), one.shape().to_vec(), one.data().to_vec())),
        many if many.iter().all(|p| p.shape().len() == 1) => {
            let data: Vec<u8> = many.iter().flat_map(|p| p.data().iter().copied()).collect();
            Ok((name.into(), vec![data.len() / 4], data))
        }
        _ => Err(corrupt(format!("{name}: slices of a multi-dimensional tensor on several ranks, or none"))),
    }
}

/// Whether two safetensors files hold the same tensors (names, dtypes,
/// shapes and bytes) and the same metadata, whatever the order they were
/// serialised in.
///
/// **Errors:** [`OptimError::Checkpoint`] for a file that is not safetensors.
pub fn same_content(a: &[u8], b: &[u8]) -> Result<bool> {
    type Content = (Vec<(String, Dtype, Vec<usize>, Vec<u8>)>, HashMap<String, String>);
    let content = |bytes: &[u8]| -> Result<Content> {
        let st = SafeTensors::deserialize(bytes).map_err(corrupt)?;
        let mut tensors: Vec<_> = st.tensors().into_iter().map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec())).collect();
        tensors.sort_by(|x, y| x.0.cmp(&y.0));
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(corrupt)?;
        Ok((tensors, header.metadata().clone().unwrap_or_default()))
    };
    Ok(content(a)? == content(b)?)
}
