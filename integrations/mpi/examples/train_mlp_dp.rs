//! The digits MLP (`examples/train_mlp.rs`) trained data-parallel: every
//! rank holds the whole model, computes the grads of its slice of every
//! batch, and a [`ShardedOptimizer`] averages them over the ranks and
//! steps the params with the optimizer state sharded (ZeRO-1).
//!
//! ```text
//! mpirun -n 2 target/release/examples/train_mlp_dp --optimizer adamw --epochs 20
//! ```
//!
//! Every rank starts from the same params and shuffles alike (the same
//! seed); rank r takes rows [r·B/N, (r+1)·B/N) of each batch of B. Each
//! rank's grads are the mean over its rows, and the optimizer takes their
//! mean over ranks: the full batch's mean when the slices are equal (B a
//! multiple of N), otherwise a mean that weights the ranks' rows slightly
//! unequally. Rank 0 prints the table; the test accuracy is the same on
//! every rank (the params are).

#[path = "../../../examples/mlp/model.rs"]
mod model;

use model::{configs, Mlp, TRAIN};
use wgpu_optim::shard::{Collectives, ShardedOptimizer};
use wgpu_optim::{device, EngineOptions, OptimError};
use wgpu_optim_mpi::MpiCollectives;

/// `--name value` from the command line, or `default`.
fn arg<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(i) => args.get(i + 1).and_then(|v| v.parse().ok()).ok_or(format!("{name} needs a value")),
        None => Ok(default),
    }
}

/// Rank `rank`'s rows of a batch of `rows` from `start`.
fn my_rows(start: usize, rows: usize, rank: usize, ranks: usize) -> (usize, usize) {
    let (lo, hi) = (rows * rank / ranks, rows * (rank + 1) / ranks);
    (start + lo, hi - lo)
}

/// The world's sum of this rank's `value`, the same on every rank.
fn world_sum(comm: &MpiCollectives, value: f64) -> Result<f64, OptimError> {
    let all = comm.all_gather_bytes(&value.to_le_bytes())?;
    Ok(all.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))).sum())
}

fn train(comm: &MpiCollectives) -> Result<(), Box<dyn std::error::Error>> {
    let (optimizer, epochs, lr) = (arg("--optimizer", "adamw".to_string())?, arg("--epochs", 20u32)?, arg("--lr", f64::NAN)?);
    let (hidden, batch, seed) = (arg("--hidden", 64u32)?, arg("--batch", 64u32)?, arg("--seed", 1u64)?);
    if ["muon", "lamb", "adafactor"].contains(&optimizer.as_str()) {
        return Err("this example shards the element-wise rules (sgd … rprop); ShardedOptimizer::tensorwise runs LAMB, Adafactor and Muon".into());
    }
    let gpu = device::headless()?;
    let (rank, ranks) = (comm.rank(), comm.ranks());
    let mut mlp = Mlp::new(&gpu.device, &gpu.queue, hidden, batch, seed)?;
    let groups = configs(&optimizer, (!lr.is_nan()).then_some(lr))?;
    let mut opt = ShardedOptimizer::new(comm, &gpu.device, &gpu.queue, &groups, &mlp.arena.slices(), EngineOptions::default())?;
    let unsharded = world_sum(comm, opt.state_bytes() as f64)?;
    if rank == 0 {
        println!("adapter: {}\n{ranks} ranks, {optimizer}: optimizer state {} bytes on rank 0, {unsharded} in all", gpu.describe(), opt.state_bytes());
        println!("{:>5} {:>11} {:>10} {:>10}", "epoch", "train loss", "train acc", "test acc");
    }
    for epoch in 1..=epochs {
        mlp.start_epoch(&gpu.queue, epoch);
        let batches = mlp.batches();
        let mut tests = gpu.device.create_command_encoder(&Default::default());
        for (slot, &(start, rows, training)) in batches.iter().enumerate() {
            if !training {
                mlp.record_batch(&gpu.queue, &mut tests, slot, (start, rows, false));
                continue;
            }
            let (start, rows) = my_rows(start, rows, rank, ranks);
            let mut enc = gpu.device.create_command_encoder(&Default::default());
            mlp.record_batch(&gpu.queue, &mut enc, slot, (start, rows, true));
            gpu.queue.submit([enc.finish()]);
            opt.step()?;
        }
        gpu.queue.submit([tests.finish()]);
        let sums = mlp.read_stats(&gpu.device, &gpu.queue)?;
        let steps = mlp.train_steps();
        let (loss, hits) = (world_sum(comm, sums.sum(0..steps, 0))?, world_sum(comm, sums.sum(0..steps, 1))?);
        let test = sums.sum(steps..batches.len(), 1) / mlp.test_len() as f64;
        if rank == 0 {
            println!("{epoch:>5} {:>11.4} {:>9.1}% {:>9.1}%", loss / TRAIN as f64, 100.0 * hits / TRAIN as f64, 100.0 * test);
        }
    }
    Ok(())
}

fn main() {
    wgpu_optim_mpi::run_rank(train);
}
