//! The sharded optimizer's checks, one process per rank under `mpirun`
//! (driven by `tests/mpirun.rs`); exits non-zero on any failure.
//!
//! ```text
//! mpirun -n 3 shard-check bitwise    every element-wise rule: sharded = one process on the mean grads, bitwise
//! mpirun -n 2 shard-check disagree   rank 1 builds another model: every rank gets RanksDisagree
//! mpirun -n 2 shard-check panic      rank 1 panics before its first step: the job ends, non-zero
//! mpirun -n 4 shard-check save DIR   3 steps, then the merged checkpoint and the params in DIR
//! mpirun -n 2 shard-check resume DIR loads them, 3 more steps: bitwise 6 steps of one process
//! mpirun -n 1 shard-check merged DIR the same, resumed by one process's Optimizer
//! ```

use wgpu_optim::device::{self, read_f32, Gpu};
use wgpu_optim::random::{random_params, uniform};
use wgpu_optim::shard::{Collectives, ShardedOptimizer};
use wgpu_optim::validate::one_case_per_rule;
use wgpu_optim::{EngineOptions, OptimError, Optimizer, OptimizerConfig, ParamSlice};
use wgpu_optim_mpi::MpiCollectives;

/// The tensors, at odd offsets of one buffer pair.
const LENS: [u64; 5] = [1000, 37, 513, 5, 64];
const STEPS: u64 = 6;

fn starts() -> Vec<u64> {
    LENS.iter().scan(3, |at, &l| Some(std::mem::replace(at, *at + l + 5))).collect()
}

fn buffer(gpu: &Gpu, data: &[f32]) -> wgpu::Buffer {
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
    let b = gpu.device.create_buffer(&wgpu::BufferDescriptor { label: None, size: 4 * data.len() as u64, usage, mapped_at_creation: false });
    gpu.queue.write_buffer(&b, 0, bytemuck::cast_slice(data));
    b
}

/// Rank r's grad of element i at step t: (1 + r)·k·2⁻¹⁰ with a small
/// integer k, so sums over ranks and their mean are exact in f32.
fn grad(rank: usize, t: u64, i: u64) -> f32 {
    (uniform(7, t, i) * 512.0).round() / 1024.0 * (1 + rank) as f32
}

/// The mean over `ranks` of the grads, as the sharded step computes it.
fn mean_grad(ranks: usize, t: u64, i: u64) -> f32 {
    (0..ranks).map(|r| grad(r, t, i)).sum::<f32>() / ranks as f32
}

/// Params, then every state slot, after `STEPS` steps: sharded over the
/// world, or one process fed the mean grads.
fn run(gpu: &Gpu, comm: Option<&MpiCollectives>, config: OptimizerConfig, ranks: usize, rank: usize) -> Result<Vec<u32>, OptimError> {
    let size = (starts()[4] + 64 + 3) as usize;
    let (p, g) = (buffer(gpu, &random_params(5, size)), buffer(gpu, &vec![0.0; size]));
    let slices: Vec<ParamSlice> = starts().iter().zip(LENS).enumerate().map(|(i, (&s, len))| ParamSlice::range(&p, s, &g, s, len).in_group((i % 2) as u32)).collect();
    let mut group1 = config;
    group1.set_lr(config.lr() * 0.5);
    let configs = [config, group1];
    let write_grads = |f: &dyn Fn(u64) -> f32| {
        let values: Vec<f32> = (0..size as u64).map(f).collect();
        gpu.queue.write_buffer(&g, 0, bytemuck::cast_slice(&values));
    };
    let mut out = Vec::new();
    match comm {
        Some(comm) => {
            let mut opt = ShardedOptimizer::new(comm, &gpu.device, &gpu.queue, &configs, &slices, EngineOptions::default())?;
            for t in 0..STEPS {
                write_grads(&|i| grad(rank, t, i));
                opt.step()?;
            }
            out.extend(read_f32(&gpu.device, &gpu.queue, &p, 0, size as u64)?.iter().map(|x| x.to_bits()));
            for (slot, _) in opt.state_names().iter().enumerate().filter(|(_, n)| !n.is_empty()) {
                out.extend(opt.gather_state(slot)?.iter().map(|x| x.to_bits()));
            }
        }
        None => {
            let mut opt = Optimizer::with_groups(&gpu.device, &gpu.queue, &configs, &slices, EngineOptions::default())?;
            for t in 0..STEPS {
                write_grads(&|i| mean_grad(ranks, t, i));
                opt.step()?;
            }
            out.extend(read_f32(&gpu.device, &gpu.queue, &p, 0, size as u64)?.iter().map(|x| x.to_bits()));
            for (slot, _) in opt.state_names().iter().enumerate().filter(|(_, n)| !n.is_empty()) {
                out.extend((0..LENS.len()).map(|i| opt.read_state(slot, i)).collect::<Result<Vec<_>, _>>()?.concat().iter().map(|x| x.to_bits()));
            }
        }
    }
    Ok(out)
}

fn bitwise(gpu: &Gpu, comm: &MpiCollectives) -> Result<bool, OptimError> {
    let (rank, ranks) = (comm.rank(), comm.ranks());
    let mut ok = true;
    for case in one_case_per_rule() {
        let sharded = run(gpu, Some(comm), case.config, ranks, rank)?;
        let single = run(gpu, None, case.config, ranks, rank)?;
        let differ = sharded.iter().zip(&single).filter(|(a, b)| a != b).count() + sharded.len().abs_diff(single.len());
        if differ > 0 {
            eprintln!("rank {rank}/{ranks}: {}: {differ} of {} words differ from one process", case.name, single.len());
            ok = false;
        }
    }
    Ok(ok)
}

fn disagree(gpu: &Gpu, comm: &MpiCollectives) -> bool {
    let (p, g) = (buffer(gpu, &[0.5; 64]), buffer(gpu, &[0.0; 64]));
    let len = if comm.rank() == 1 { 40 } else { 32 };
    let slices = [ParamSlice::range(&p, 0, &g, 0, len)];
    match ShardedOptimizer::new(comm, &gpu.device, &gpu.queue, &[wgpu_optim::AdamW::default().into()], &slices, EngineOptions::default()) {
        Err(e @ OptimError::RanksDisagree { rank: 1, .. }) => {
            println!("rank {}: {e}", comm.rank());
            true
        }
        other => {
            eprintln!("rank {}: expected RanksDisagree, got {:?}", comm.rank(), other.err());
            false
        }
    }
}

fn panic_on_rank_one(gpu: &Gpu, comm: &MpiCollectives) -> Result<bool, OptimError> {
    let (p, g) = (buffer(gpu, &[0.5; 64]), buffer(gpu, &[0.0; 64]));
    let mut opt = ShardedOptimizer::new(comm, &gpu.device, &gpu.queue, &[wgpu_optim::AdamW::default().into()], &[ParamSlice::whole(&p, &g)], EngineOptions::default())?;
    if comm.rank() == 1 {
        panic!("rank 1 fails on purpose");
    }
    opt.step()?; // the other ranks wait here for rank 1
    Ok(true)
}

/// The same grads on every rank: the mean is the grad at any N, so runs at
/// different N continue each other.
fn same_grad(t: u64, i: u64) -> f32 {
    grad(0, t, i)
}

/// AdamW over the tensors from `params`, stepped from step `from` to `to`
/// on the same grads: sharded over the world (loading `checkpoint` first
/// if given), or in one process. Returns the params and every state slot.
fn resume(gpu: &Gpu, comm: Option<&MpiCollectives>, params: &[f32], checkpoint: Option<&str>, from: u64, to: u64, save: Option<&str>) -> Result<Vec<u32>, OptimError> {
    let (p, g) = (buffer(gpu, params), buffer(gpu, &vec![0.0; params.len()]));
    let slices: Vec<ParamSlice> = starts().iter().zip(LENS).enumerate().map(|(i, (&s, len))| ParamSlice::range(&p, s, &g, s, len).in_group((i % 2) as u32)).collect();
    let decay = |weight_decay| OptimizerConfig::from(wgpu_optim::AdamW { lr: 1e-2, weight_decay, ..wgpu_optim::AdamW::default() });
    let configs = [decay(0.1), decay(0.0)];
    let grads = |t: u64| {
        let values: Vec<f32> = (0..params.len() as u64).map(|i| same_grad(t, i)).collect();
        gpu.queue.write_buffer(&g, 0, bytemuck::cast_slice(&values));
    };
    let mut out = Vec::new();
    match comm {
        Some(comm) => {
            let mut opt = ShardedOptimizer::new(comm, &gpu.device, &gpu.queue, &configs, &slices, EngineOptions::default())?;
            if let Some(path) = checkpoint {
                opt.load_checkpoint(path)?;
            }
            for t in from..to {
                grads(t);
                opt.step()?;
            }
            if let Some(path) = save {
                opt.save_checkpoint(path)?;
            }
            out.extend(read_f32(&gpu.device, &gpu.queue, &p, 0, params.len() as u64)?.iter().map(|x| x.to_bits()));
            for (slot, _) in opt.state_names().iter().enumerate().filter(|(_, n)| !n.is_empty()) {
                out.extend(opt.gather_state(slot)?.iter().map(|x| x.to_bits()));
            }
        }
        None => {
            let mut opt = Optimizer::with_groups(&gpu.device, &gpu.queue, &configs, &slices, EngineOptions::default())?;
            if let Some(path) = checkpoint {
                opt.load_checkpoint(path)?;
            }
            for t in from..to {
                grads(t);
                opt.step()?;
            }
            out.extend(read_f32(&gpu.device, &gpu.queue, &p, 0, params.len() as u64)?.iter().map(|x| x.to_bits()));
            for (slot, _) in opt.state_names().iter().enumerate().filter(|(_, n)| !n.is_empty()) {
                out.extend((0..LENS.len()).map(|i| opt.read_state(slot, i)).collect::<Result<Vec<_>, _>>()?.concat().iter().map(|x| x.to_bits()));
            }
        }
    }
    Ok(out)
}

/// `save DIR`: 3 sharded steps, then the merged checkpoint and the params
/// (rank 0 writes `DIR/optimizer.safetensors` and `DIR/params.f32`).
/// `resume DIR`: loads both, 3 more sharded steps, and compares with 6
/// uninterrupted steps of one process. `merged DIR`: the same, resumed by
/// one process's `Optimizer` from the merged checkpoint.
fn checkpoints(gpu: &Gpu, comm: &MpiCollectives, mode: &str, dir: &str) -> Result<bool, OptimError> {
    let size = (starts()[4] + 64 + 3) as usize;
    let (state, params) = (format!("{dir}/optimizer.safetensors"), format!("{dir}/params.f32"));
    if mode == "save" {
        let out = resume(gpu, Some(comm), &random_params(5, size), None, 0, 3, Some(&state))?;
        if comm.rank() == 0 {
            let bits: Vec<u8> = out[..size].iter().flat_map(|b| b.to_le_bytes()).collect();
            std::fs::write(&params, bits).map_err(|e| OptimError::io(std::path::Path::new(&params), e))?;
        }
        return Ok(true);
    }
    let bytes = std::fs::read(&params).map_err(|e| OptimError::io(std::path::Path::new(&params), e))?;
    let saved: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let resumed = resume(gpu, (mode == "resume").then_some(comm), &saved, Some(&state), 3, 6, None)?;
    let whole = resume(gpu, None, &random_params(5, size), None, 0, 6, None)?;
    let differ = resumed.iter().zip(&whole).filter(|(a, b)| a != b).count() + resumed.len().abs_diff(whole.len());
    if differ > 0 {
        eprintln!("rank {}/{}: {mode}: {differ} of {} words differ from the uninterrupted run", comm.rank(), comm.ranks(), whole.len());
    }
    Ok(differ == 0)
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let comm = MpiCollectives::init().expect("MPI initialises once");
    let gpu = device::headless().expect("a GPU adapter on every rank");
    let ok = match mode.as_str() {
        "bitwise" => bitwise(&gpu, &comm).unwrap_or_else(|e| panic!("rank {}: {e}", comm.rank())),
        "disagree" => disagree(&gpu, &comm),
        "panic" => panic_on_rank_one(&gpu, &comm).unwrap_or_else(|e| panic!("{e}")),
        "save" | "resume" | "merged" => {
            let dir = std::env::args().nth(2).expect("a directory for the checkpoint");
            checkpoints(&gpu, &comm, &mode, &dir).unwrap_or_else(|e| panic!("rank {}: {e}", comm.rank()))
        }
        other => panic!("unknown mode {other:?}: bitwise, disagree, panic, save, resume or merged"),
    };
    if ok {
        println!("rank {}/{}: {mode} ok", comm.rank(), comm.ranks());
    }
    drop(comm);
    std::process::exit(if ok { 0 } else { 1 });
}
