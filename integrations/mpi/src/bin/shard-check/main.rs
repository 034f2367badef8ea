//! The sharded optimizer's checks, one process per rank under `mpirun`
//! (driven by `tests/mpirun.rs`); exits non-zero on any failure.
//!
//! ```text
//! mpirun -n 3 shard-check bitwise    every element-wise rule: sharded = one process on the mean grads, bitwise
//! mpirun -n 3 shard-check control    clipping and a GradScaler: the same on every rank, a NaN on one rank skips everywhere
//! mpirun -n 3 shard-check tensorwise DIR  LAMB, Adafactor, Muon by whole tensors: bitwise one process; checkpoints resume
//! mpirun -n 3 shard-check interrupted DIR  a sharded save that fails on the last rank: all fail, the old set stays
//! mpirun -n 2 shard-check disagree   rank 1 builds another model: every rank gets RanksDisagree
//! mpirun -n 2 shard-check panic      rank 1 panics before its first step: the job ends, non-zero
//! mpirun -n 2 shard-check error      rank 1 returns an error instead: the same
//! mpirun -n 4 shard-check save DIR   3 steps, then the merged checkpoint and the params in DIR
//! mpirun -n 2 shard-check resume DIR loads them, 3 more steps: bitwise 6 steps of one process
//! mpirun -n 1 shard-check merged DIR the same, resumed by one process's Optimizer
//! mpirun -n 2 shard-check resume-set DIR  the same from the set of per-rank files (merged-set DIR: by one process)
//! ```

mod control;
mod interrupted;
mod tensorwise;

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

fn bitwise(gpu: &Gpu, comm: &MpiCollectives) -> Result<bool, OptimError> {
    let (rank, ranks) = (comm.rank(), comm.ranks());
    let params = random_params(5, size());
    let mut ok = true;
    for case in one_case_per_rule() {
        let (mine, mean) = (|t, i| grad(rank, t, i), |t, i| mean_grad(ranks, t, i));
        if !case.config.host_scalars().is_empty() {
            // schedule-free is not sharded: every rank is refused alike
            let refused = train(gpu, Some(comm), &Run { configs: groups(case.config), params: &params, grad: &mine, steps: 0..STEPS, load: None, save: None });
            ok &= matches!(refused, Err(OptimError::InvalidOptions(_)));
            continue;
        }
        let sharded = train(gpu, Some(comm), &Run { configs: groups(case.config), params: &params, grad: &mine, steps: 0..STEPS, load: None, save: None })?;
        let single = train(gpu, None, &Run { configs: groups(case.config), params: &params, grad: &mean, steps: 0..STEPS, load: None, save: None })?;
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

/// One training run over the tensors: the configs (two groups), the
/// params it starts from, the grad of (step, element) each rank writes,
/// the steps, and a checkpoint to load first or to save at the end.
struct Run<'a> {
    configs: [OptimizerConfig; 2],
    params: &'a [f32],
    grad: &'a dyn Fn(u64, u64) -> f32,
    steps: std::ops::Range<u64>,
    load: Option<&'a str>,
    save: Option<&'a str>,
}

/// Loads `path`: a sharded set by its index (`*.index.json`), else a
/// merged checkpoint.
fn is_set(path: &str) -> bool {
    path.ends_with(".index.json")
}

/// The params, then every state slot, after `run`: sharded over the world
/// (`comm`), or in one process.
fn train(gpu: &Gpu, comm: Option<&MpiCollectives>, run: &Run) -> Result<Vec<u32>, OptimError> {
    let n = run.params.len() as u64;
    let (p, g) = (buffer(gpu, run.params), buffer(gpu, &vec![0.0; n as usize]));
    let slices: Vec<ParamSlice> = starts().iter().zip(LENS).enumerate().map(|(i, (&s, len))| ParamSlice::range(&p, s, &g, s, len).in_group((i % 2) as u32)).collect();
    let grads = |t: u64| {
        let values: Vec<f32> = (0..n).map(|i| (run.grad)(t, i)).collect();
        gpu.queue.write_buffer(&g, 0, bytemuck::cast_slice(&values));
    };
    let read = |read_state: &dyn Fn(usize) -> Result<Vec<f32>, OptimError>, names: Vec<&str>| -> Result<Vec<u32>, OptimError> {
        let mut out: Vec<u32> = read_f32(&gpu.device, &gpu.queue, &p, 0, n)?.iter().map(|x| x.to_bits()).collect();
        for (slot, _) in names.iter().enumerate().filter(|(_, n)| !n.is_empty()) {
            out.extend(read_state(slot)?.iter().map(|x| x.to_bits()));
        }
        Ok(out)
    };
    match comm {
        Some(comm) => {
            let mut opt = ShardedOptimizer::new(comm, &gpu.device, &gpu.queue, &run.configs, &slices, EngineOptions::default())?;
            run.load.map(|path| if is_set(path) { opt.load_sharded(path) } else { opt.load_checkpoint(path) }).transpose()?;
            for t in run.steps.clone() {
                grads(t);
                opt.step()?;
            }
            // the merged checkpoint, and the set of one file per rank beside it
            run.save.map(|path| opt.save_checkpoint(path).and_then(|()| opt.save_sharded(format!("{path}.set")))).transpose()?;
            read(&|slot| opt.gather_state(slot), opt.state_names())
        }
        None => {
            let mut opt = Optimizer::with_groups(&gpu.device, &gpu.queue, &run.configs, &slices, EngineOptions::default())?;
            run.load.map(|path| if is_set(path) { wgpu_optim::shard::files::merge(path.as_ref()).and_then(|b| opt.load_checkpoint_bytes(&b)) } else { opt.load_checkpoint(path) }).transpose()?;
            for t in run.steps.clone() {
                grads(t);
                opt.step()?;
            }
            read(&|slot| Ok((0..LENS.len()).map(|i| opt.read_state(slot, i)).collect::<Result<Vec<_>, _>>()?.concat()), opt.state_names())
        }
    }
}

/// Group 0's config, and group 1's at half its lr.
fn groups(config: OptimizerConfig) -> [OptimizerConfig; 2] {
    let mut half = config;
    half.set_lr(config.lr() * 0.5);
    [config, half]
}

fn size() -> usize {
    (starts()[4] + 64 + 3) as usize
}

/// `save DIR`: 3 sharded steps, then the merged checkpoint and the params
/// (rank 0 writes `DIR/optimizer.safetensors` and `DIR/params.f32`), and
/// the set of per-rank files `DIR/optimizer.safetensors.set.*`.
/// `resume DIR`: loads both, 3 more sharded steps, and compares with 6
/// uninterrupted steps of one process. `merged DIR`: the same, resumed by
/// one process's `Optimizer` from the merged checkpoint. `resume-set` and
/// `merged-set` load the set of per-rank files instead.
fn checkpoints(gpu: &Gpu, comm: &MpiCollectives, mode: &str, dir: &str) -> Result<bool, OptimError> {
    let (merged, params) = (format!("{dir}/optimizer.safetensors"), format!("{dir}/params.f32"));
    let set = format!("{merged}.set.index.json");
    let state = if mode.ends_with("-set") { &set } else { &merged };
    let adamw = |weight_decay| OptimizerConfig::from(wgpu_optim::AdamW { lr: 1e-2, weight_decay, ..wgpu_optim::AdamW::default() });
    let start = random_params(5, size());
    let run = |params, steps, load, save| Run { configs: [adamw(0.1), adamw(0.0)], params, grad: &same_grad, steps, load, save };
    let io = |e: std::io::Error| OptimError::io(std::path::Path::new(&params), e);
    if mode == "save" {
        let out = train(gpu, Some(comm), &run(&start, 0..3, None, Some(&merged)))?;
        if comm.rank() == 0 {
            std::fs::write(&params, out[..size()].iter().flat_map(|b| b.to_le_bytes()).collect::<Vec<u8>>()).map_err(io)?;
        }
        return Ok(true);
    }
    let saved: Vec<f32> = std::fs::read(&params).map_err(io)?.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let resumed = train(gpu, mode.starts_with("resume").then_some(comm), &run(&saved, 3..6, Some(state), None))?;
    let whole = train(gpu, None, &run(&start, 0..6, None, None))?;
    let differ = resumed.iter().zip(&whole).filter(|(a, b)| a != b).count() + resumed.len().abs_diff(whole.len());
    if differ > 0 {
        eprintln!("rank {}/{}: {mode}: {differ} of {} words differ from the uninterrupted run", comm.rank(), comm.ranks(), whole.len());
    }
    Ok(differ == 0)
}

/// Rank 1 fails with an error (not a panic) before its first step.
fn error_on_rank_one(gpu: &Gpu, comm: &MpiCollectives) -> Result<bool, OptimError> {
    let (p, g) = (buffer(gpu, &[0.5; 64]), buffer(gpu, &[0.0; 64]));
    let mut opt = ShardedOptimizer::new(comm, &gpu.device, &gpu.queue, &[wgpu_optim::AdamW::default().into()], &[ParamSlice::whole(&p, &g)], EngineOptions::default())?;
    if comm.rank() == 1 {
        return Err(OptimError::InvalidOptions("rank 1 returns an error on purpose"));
    }
    opt.step()?; // the other ranks wait here for rank 1
    Ok(true)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).cloned().unwrap_or_default();
    wgpu_optim_mpi::run_rank(|comm| {
        let gpu = device::headless()?;
        let ok = match mode.as_str() {
            "bitwise" => bitwise(&gpu, comm)?,
            "control" => control::check(&gpu, comm)?,
            "interrupted" => interrupted::check(&gpu, comm, std::path::Path::new(args.get(2).ok_or("a directory for the checkpoints")?))?,
            "tensorwise" => tensorwise::check(&gpu, comm, std::path::Path::new(args.get(2).ok_or("a directory for the checkpoints")?))?,
            "disagree" => disagree(&gpu, comm),
            "panic" => panic_on_rank_one(&gpu, comm)?,
            "error" => error_on_rank_one(&gpu, comm)?,
            "save" | "resume" | "merged" | "resume-set" | "merged-set" => checkpoints(&gpu, comm, &mode, args.get(2).ok_or("a directory for the checkpoint")?)?,
            other => return Err(format!("unknown mode {other:?}: bitwise, control, tensorwise, interrupted, disagree, panic, error, save, resume, merged, resume-set or merged-set").into()),
        };
        if !ok {
            return Err(format!("{mode} failed").into());
        }
        println!("rank {}/{}: {mode} ok", comm.rank(), comm.ranks());
        Ok(())
    })
}
