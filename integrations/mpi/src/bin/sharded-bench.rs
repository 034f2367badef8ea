//! The sharded step against plain DDP and against the raw MPI collectives
//! on the same bytes, at 1–4 ranks on one machine, in one run:
//!
//! ```text
//! cargo run --release -p wgpu-optim-mpi --bin sharded-bench -- [--ranks 4] [--size 4194304] [--json OUT]
//! ```
//!
//! It launches `mpirun -n N` of itself for each N (`--worker`); rank 0 of
//! each run prints one JSON object, which the launcher tabulates.

use std::process::Command;
use std::time::Instant;

use mpi::collective::SystemOperation;
use mpi::traits::*;
use serde_json::{json, Value};
use wgpu_optim::bench::model_sizes;
use wgpu_optim::device;
use wgpu_optim::random::uniform;
use wgpu_optim::shard::staging::{Readback, Upload};
use wgpu_optim::shard::{Collectives, Phase, ShardedOptimizer};
use wgpu_optim::{AdamW, EngineOptions, OptimError, Optimizer, OptimizerConfig, ParamArena, ParamSlice};
use wgpu_optim_mpi::MpiCollectives;

const TENSORS: usize = 1000;
const STEPS: usize = 5;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One rank's run: sharded, DDP and raw collectives; rank 0's figures.
fn worker(comm: &MpiCollectives, size: u64) -> Result<Option<Value>, OptimError> {
    let (rank, ranks) = (comm.rank(), comm.ranks());
    let gpu = device::headless()?;
    let lens = model_sizes(TENSORS, size);
    let arena = ParamArena::new(&gpu.device, &lens)?;
    for (i, &len) in lens.iter().enumerate() {
        let g: Vec<f32> = (0..len).map(|j| uniform(rank as u64, i as u64, j)).collect();
        arena.write_grads(&gpu.queue, i, &g)?;
    }
    let config: OptimizerConfig = AdamW::default().into();
    let slices = arena.slices();
    let world = comm.world();

    // Sharded: the phases of each step, after one warm-up step. Before each
    // collective the ranks meet at a barrier, its wait timed apart, so a
    // collective's time is its own, not the wait for a slower rank.
    let mut sharded = ShardedOptimizer::new(comm, &gpu.device, &gpu.queue, &[config], &slices, EngineOptions::default())?;
    sharded.step()?;
    let mut phases: Vec<[f64; 6]> = Vec::new();
    for _ in 0..STEPS {
        world.barrier();
        let (mut last, mut times) = (Instant::now(), [0.0; 6]);
        sharded.step_observed(|phase: Phase| {
            let k = [Phase::ReadGrads, Phase::ReduceScatter, Phase::ShardStep, Phase::AllGather, Phase::WriteParams].iter().position(|&p| p == phase).expect("no grad control here");
            times[k] += last.elapsed().as_secs_f64() * 1e3;
            if matches!(phase, Phase::ReadGrads | Phase::ShardStep) {
                let wait = Instant::now();
                world.barrier();
                times[5] += wait.elapsed().as_secs_f64() * 1e3;
            }
            last = Instant::now();
        })?;
        phases.push(times);
    }
    let phase = |k: usize| median(phases.iter().map(|p| p[k]).collect());
    let sharded_ms = median(phases.iter().map(|p| p.iter().sum()).collect());
    // DDP: all-reduce of the grads, the full step on every rank; the grads
    // staged as the sharded step stages them (one read, one upload).
    let mut ddp = Optimizer::new(&gpu.device, &gpu.queue, config, &slices)?;
    let grads_in = Readback::new(&gpu.device, &slices.iter().map(|s| (&s.grad, s.grad_offset, s.len())).collect::<Vec<_>>())?;
    let grads_out = Upload::new(&gpu.device, &slices.iter().map(|s| ParamSlice::range(&s.grad, s.grad_offset, &s.grad, s.grad_offset, s.len())).collect::<Vec<_>>())?;
    let (mut grads, mut sum) = (vec![0.0f32; grads_in.len()], vec![0.0f32; grads_in.len()]);
    let mut ddp_times = Vec::new();
    for step in 0..=STEPS {
        world.barrier();
        let start = Instant::now();
        grads_in.read(&gpu.device, &gpu.queue, &mut grads)?;
        world.all_reduce_into(&grads[..], &mut sum[..], SystemOperation::sum());
        sum.iter_mut().for_each(|g| *g /= ranks as f32);
        grads_out.write(&gpu.device, &gpu.queue, &sum, 0..0);
        ddp.step()?;
        gpu.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| OptimError::Readback(e.to_string()))?;
        if step > 0 {
            ddp_times.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    // The raw collectives on the same counts, host memory only.
    let counts = sharded.plan().counts();
    let total = sharded.plan().total() as usize;
    let send: Vec<f32> = (0..total).map(|i| i as f32).collect();
    let (mut mine, mut flat) = (vec![0.0f32; counts[rank]], vec![0.0f32; total]);
    let mut raw = Vec::new();
    for _ in 0..=STEPS {
        world.barrier();
        let start = Instant::now();
        comm.reduce_scatter_sum(&send, &counts, &mut mine)?;
        comm.all_gather(&mine, &counts, &mut flat)?;
        raw.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let raw_ms = median(raw[1..].to_vec());
    let collective_ms = phase(1) + phase(3);
    let ring = 2.0 * (ranks as f64 - 1.0) / ranks as f64 * 4.0 * total as f64;
    Ok((rank == 0).then(|| {
        json!({
            "ranks": ranks,
            "params": total,
            "tensors": TENSORS,
            "state_bytes_per_rank": sharded.state_bytes(),
            "unsharded_state_bytes": 8 * total as u64,
            "bytes_sent_per_rank": ring,
            "ddp_bytes_sent_per_rank": ring,
            "sharded_step_ms": sharded_ms,
            "phases_ms": {"read_grads": phase(0), "reduce_scatter": phase(1), "shard_step": phase(2), "all_gather": phase(3), "write_params": phase(4), "barrier_wait": phase(5)},
            "ddp_step_ms": median(ddp_times),
            "raw_collectives_ms": raw_ms,
            // the collectives' throughput as a fraction of raw MPI's on the
            // same bytes: (bytes / collective_ms) / (bytes / raw_ms)
            "collective_fraction_of_raw": raw_ms / collective_ms,
        })
    }))
}

/// The sharded step against DDP and the raw MPI collectives at 1..N ranks.
#[derive(clap::Parser)]
struct Args {
    /// Runs at 1, 2, … up to this many ranks.
    #[arg(long, default_value_t = 4)]
    ranks: usize,
    /// Params of the model (1000 tensors).
    #[arg(long, default_value_t = 1 << 22)]
    size: u64,
    /// Write the runs as JSON here.
    #[arg(long)]
    json: Option<String>,
    /// (internal) Run as one rank under mpirun and print its report.
    #[arg(long, hide = true)]
    worker: bool,
}

fn main() {
    let args = <Args as clap::Parser>::parse();
    let size = args.size;
    if args.worker {
        wgpu_optim_mpi::run_rank(|comm| {
            if let Some(report) = worker(comm, size)? {
                println!("REPORT {report}");
            }
            Ok(())
        });
    }
    let max_ranks = args.ranks;
    let me = std::env::current_exe().expect("the benchmark's own path");
    let mut runs = Vec::new();
    println!("{:>5} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8}", "ranks", "state/rank", "unsharded", "sharded", "rs", "shard", "ag", "ddp", "raw coll", "of raw");
    for ranks in 1..=max_ranks {
        let out = Command::new("mpirun")
            .args(["-n", &ranks.to_string(), "--oversubscribe", "--bind-to", "none", "--mca", "btl", "self,vader"])
            .arg(&me)
            .args(["--worker", "--size", &size.to_string()])
            .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
            .output()
            .expect("mpirun (Debian: openmpi-bin) is installed");
        let text = String::from_utf8_lossy(&out.stdout);
        let Some(report) = text.lines().find_map(|l| l.strip_prefix("REPORT ")) else {
            panic!("{ranks} ranks gave no report:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
        };
        let r: Value = serde_json::from_str(report).expect("a JSON report");
        let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
        let p = |k: &str| r["phases_ms"][k].as_f64().unwrap_or(f64::NAN);
        println!(
            "{:>5} {:>9.1}M {:>9.1}M {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>8.2}",
            ranks,
            f("state_bytes_per_rank") / 1e6,
            f("unsharded_state_bytes") / 1e6,
            f("sharded_step_ms"),
            p("reduce_scatter"),
            p("shard_step"),
            p("all_gather"),
            f("ddp_step_ms"),
            f("raw_collectives_ms"),
            f("collective_fraction_of_raw")
        );
        runs.push(r);
    }
    if let Some(path) = args.json {
        std::fs::write(&path, serde_json::to_string_pretty(&json!({ "runs": runs })).expect("JSON")).expect("--json is writable");
        println!("wrote {path}");
    }
}
