//! Sharded checkpoint sets (one file per rank and an index) over a world of
//! one process: a save interrupted at each point leaves a loadable set
//! (the previous one, or the new one), a rank file of another save is a
//! typed error, and `wgpu-optim checkpoint merge` writes the checkpoint one
//! process's `Optimizer` loads. `integrations/mpi` saves and resumes sets
//! across real ranks.

mod common;

use std::path::Path;

use wgpu_optim::shard::{files, ShardedOptimizer, SingleProcess};
use wgpu_optim::validate::{random_params, uniform};
use wgpu_optim::*;

/// A sharded AdamW over two tensors after `steps` steps, and its buffers.
fn trained(gpu: &device::Gpu, steps: u64) -> ShardedOptimizer<SingleProcess> {
    let p = common::storage_buffer(gpu, &random_params(3, 300));
    let g = common::storage_buffer(gpu, &vec![0.0; 300]);
    let slices = [ParamSlice::range(&p, 0, &g, 0, 200), ParamSlice::range(&p, 205, &g, 205, 95)];
    let config = OptimizerConfig::from(AdamW { lr: 1e-2, ..AdamW::default() });
    let mut opt = ShardedOptimizer::new(SingleProcess, &gpu.device, &gpu.queue, &[config], &slices, EngineOptions::default()).unwrap();
    for t in 0..steps {
        let grads: Vec<f32> = (0..300).map(|i| uniform(4, t, i)).collect();
        gpu.queue.write_buffer(&g, 0, bytemuck::cast_slice(&grads));
        opt.step().unwrap();
    }
    opt
}

/// Every tensor's bytes by name, and the metadata.
type Contents = (Vec<(String, Vec<u8>)>, std::collections::HashMap<String, String>);

/// What a merged checkpoint holds.
fn contents(bytes: &[u8]) -> Contents {
    let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let mut tensors: Vec<(String, Vec<u8>)> = st.tensors().into_iter().map(|(n, v)| (n, v.data().to_vec())).collect();
    tensors.sort();
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes).unwrap();
    (tensors, header.metadata().clone().unwrap())
}

fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap();
}

#[test]
fn an_interrupted_save_leaves_a_loadable_set() {
    let gpu = require_gpu!();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (trained(gpu, 3), trained(gpu, 5));
    let (name, other) = (dir.path().join("ck"), dir.path().join("other"));
    a.save_sharded(&name).unwrap();
    b.save_sharded(&other).unwrap();
    let (index, file) = (files::index_path(&name), files::rank_path(&name, 0, 1));
    let (b_index, b_file) = (files::index_path(&other), files::rank_path(&other, 0, 1));
    let merged = || contents(&files::merge(&index).unwrap());
    let (want_a, want_b) = (contents(&a.checkpoint_bytes().unwrap()), contents(&b.checkpoint_bytes().unwrap()));
    assert_eq!(merged(), want_a, "a complete set merges to the optimizer's own checkpoint");
    assert_ne!(want_a, want_b);
    // B staged (FILE.next written) but not committed: still A
    let next = Path::new(&format!("{}.next", file.display())).to_path_buf();
    copy(&b_file, &next);
    assert_eq!(merged(), want_a);
    // B's index committed (it names this set's files), not yet published: B, from FILE.next
    let b_index_text = std::fs::read_to_string(&b_index).unwrap().replace("other.rank", "ck.rank");
    std::fs::write(&index, b_index_text).unwrap();
    assert_eq!(merged(), want_b);
    // a new save staged over it before B was published: B is published
    // first, so a new save that then fails before its commit leaves B
    let c = files::tag(&a.checkpoint_bytes().unwrap(), 77, 0, 1).unwrap();
    files::save::stage(&name, 0, 1, &c).unwrap();
    assert_eq!(merged(), want_b);
    std::fs::remove_file(&next).unwrap();
    // published: B
    assert_eq!(merged(), want_b);
    // an index of no ranks, and a rank file of another save with no
    // FILE.next: typed errors
    let empty = dir.path().join("empty.index.json");
    std::fs::write(&empty, r#"{"format": "wgpu-optim-shard-index/1", "save": 1, "ranks": 0, "files": []}"#).unwrap();
    assert!(matches!(files::merge(&empty), Err(OptimError::Checkpoint(_))));
    copy(&files::rank_path(&name, 0, 1), &next);
    a.save_sharded(dir.path().join("third")).unwrap();
    copy(&files::rank_path(&dir.path().join("third"), 0, 1), &file);
    std::fs::remove_file(&next).unwrap();
    assert!(matches!(files::merge(&index), Err(OptimError::Checkpoint(_))));
}

#[test]
fn the_merge_command_writes_what_one_process_loads() {
    let gpu = require_gpu!();
    let dir = tempfile::tempdir().unwrap();
    let opt = trained(gpu, 4);
    opt.save_sharded(dir.path().join("ck")).unwrap();
    let out = dir.path().join("merged.safetensors");
    let index = files::index_path(&dir.path().join("ck"));
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_wgpu-optim")).args(["checkpoint", "merge", "--index"]).arg(&index).arg("--out").arg(&out).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let (q, g) = (common::storage_buffer(gpu, &[0.0; 300]), common::storage_buffer(gpu, &[0.0; 300]));
    let slices = [ParamSlice::range(&q, 0, &g, 0, 200), ParamSlice::range(&q, 205, &g, 205, 95)];
    let mut one = Optimizer::new(&gpu.device, &gpu.queue, AdamW { lr: 1e-2, ..AdamW::default() }.into(), &slices).unwrap();
    one.load_checkpoint(&out).unwrap();
    assert_eq!(one.step_count(), 4);
    for slot in [0, 1] {
        let loaded: Vec<f32> = (0..2).flat_map(|i| one.read_state(slot, i).unwrap()).collect();
        assert_eq!(loaded, opt.gather_state(slot).unwrap(), "slot {slot}");
    }
    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_wgpu-optim")).args(["checkpoint", "merge", "--index"]).arg(dir.path().join("none.index.json")).arg("--out").arg(&out).output().unwrap();
    assert_eq!(missing.status.code(), Some(2), "a missing index is an error");
}
