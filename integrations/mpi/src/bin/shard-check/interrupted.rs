//! `shard-check interrupted DIR`: a sharded save that fails on one rank.
//! Every rank saves a set after 2 steps; then, after 2 more, the last rank
//! cannot write its shard (a directory stands where its staged file goes).
//! Every rank must return an error naming that rank, and the set on disk
//! must still be the first save's: merged, bitwise what the optimizer held
//! then.

use std::path::Path;

use wgpu_optim::device::Gpu;
use wgpu_optim::shard::{files, Collectives, ShardedOptimizer};
use wgpu_optim::{AdamW, EngineOptions, OptimError, ParamSlice};
use wgpu_optim_mpi::MpiCollectives;

use super::{buffer, grad};

pub fn check(gpu: &Gpu, comm: &MpiCollectives, dir: &Path) -> Result<bool, OptimError> {
    let (rank, ranks) = (comm.rank(), comm.ranks());
    let (p, g) = (buffer(gpu, &[0.5; 300]), buffer(gpu, &[0.0; 300]));
    let slices = [ParamSlice::range(&p, 0, &g, 0, 200), ParamSlice::range(&p, 203, &g, 203, 97)];
    let mut opt = ShardedOptimizer::new(comm, &gpu.device, &gpu.queue, &[AdamW::default().into()], &slices, EngineOptions::default())?;
    let steps = |opt: &mut ShardedOptimizer<&MpiCollectives>, range: std::ops::Range<u64>| -> Result<(), OptimError> {
        for t in range {
            let values: Vec<f32> = (0..300).map(|i| grad(rank, t, i)).collect();
            gpu.queue.write_buffer(&g, 0, bytemuck::cast_slice(&values));
            opt.step()?;
        }
        Ok(())
    };
    let name = dir.join("interrupted");
    steps(&mut opt, 0..2)?;
    let first = opt.checkpoint_bytes()?;
    opt.save_sharded(&name)?;
    steps(&mut opt, 2..4)?;
    let blocker = Path::new(&format!("{}.next", files::rank_path(&name, ranks - 1, ranks).display())).to_path_buf();
    if rank + 1 == ranks {
        std::fs::create_dir_all(blocker.join("in-the-way")).map_err(|e| OptimError::io(&blocker, e))?;
    }
    comm.all_gather_bytes(&[0])?; // the blocker is in place before anyone saves
    let failed = match opt.save_sharded(&name) {
        Err(OptimError::Io { .. }) if rank + 1 == ranks => true,
        Err(OptimError::Checkpoint(m)) => m.starts_with(&format!("rank {} failed to write its shard", ranks - 1)),
        other => {
            eprintln!("rank {rank}: expected the save to fail, got {other:?}");
            false
        }
    };
    let kept = files::merge(&files::index_path(&name))?;
    let same = files::same_content(&kept, &first)?;
    if !same {
        eprintln!("rank {rank}: the set on disk is not the first save's");
    }
    comm.all_gather_bytes(&[0])?; // every rank has read the set before it goes
    if rank + 1 == ranks {
        std::fs::remove_dir_all(&blocker).ok();
    }
    Ok(failed && same)
}
