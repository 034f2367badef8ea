//! Trains a 64 → 64 → 10 MLP on the 8×8 handwritten digits (1,797 samples,
//! `examples/data/`) entirely on the GPU: forward and backward passes in
//! WGSL (`examples/mlp/mlp.wgsl`, the model in `examples/mlp/model.rs`), and the optimizer step recorded into the same
//! command encoder. Nothing is read back during an epoch except the loss and
//! accuracy sums at its end.
//!
//! ```text
//! cargo run --release --example train_mlp -- --optimizer adamw --epochs 20
//! ```
//!
//! Weights are param group 0 (with weight decay), biases group 1 (without),
//! stepped together in one dispatch from an engine-allocated `ParamArena`.
//! With `--optimizer muon` the two weight matrices are stepped by Muon and
//! the biases by AdamW, as PyTorch's Muon documentation advises; with
//! `--optimizer lamb` all four tensors by LAMB, each with its trust ratio;
//! with `--optimizer adafactor` by Adafactor (the weights factored); with
//! `--optimizer lbfgs` by full-batch L-BFGS (strong Wolfe, history 10), one
//! `step(closure)` of up to 20 iterations per epoch, the closure recording
//! the forward and backward pass over all 1,500 training samples.

#[path = "mlp/model.rs"]
mod model;

use clap::Parser;
use model::{configs, EpochStepper, Mlp, IN, OUT, TRAIN};
use wgpu_optim::lbfgs::{Lbfgs, LbfgsOptimizer, LineSearch};
use wgpu_optim::{device, Adafactor, AdafactorOptimizer, EngineOptions, Lamb, LambOptimizer, Muon, MuonOptimizer, OptimError, Optimizer, ParamArena, ParamSlice, StateFormat};

#[derive(Parser, Clone, Debug)]
#[command(about = "Train an MLP on the 8x8 digits on the GPU with a wgpu-optim optimizer")]
pub struct TrainOptions {
    /// sgd, momentum, nag, adagrad, rmsprop, adadelta, adam, adamw, adamax,
    /// nadam, radam, asgd, rprop, adan, adamw_schedulefree, muon (weights;
    /// biases by AdamW), lamb, adafactor or lbfgs (full batch).
    #[arg(long, default_value = "adamw")]
    pub optimizer: String,
    /// Epochs over the 1,500 training samples.
    #[arg(long, default_value_t = 20)]
    pub epochs: u32,
    /// Learning rate (default: one suited to the optimizer).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Hidden units.
    #[arg(long, default_value_t = 64)]
    pub hidden: u32,
    /// Mini-batch size.
    #[arg(long, default_value_t = 64)]
    pub batch: u32,
    /// Seed of the initialisation and the shuffles.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Optimizer state precision: f32, bf16 (stochastic rounding) or int8 (blockwise).
    #[arg(long, default_value = "f32")]
    pub state: String,
}

/// What one epoch measured.
#[derive(Clone, Debug)]
pub struct EpochStats {
    pub epoch: u32,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub test_accuracy: f64,
}

/// The optimizer step of one training iteration.
enum Stepper {
    /// Every tensor by one fused optimizer.
    Fused(Optimizer),
    /// The weight matrices by Muon, the biases by a fused AdamW.
    Muon(Box<MuonOptimizer>, Optimizer),
    /// Every tensor by LAMB (one trust ratio per tensor).
    Lamb(Box<LambOptimizer>),
    /// Every tensor by Adafactor (the weights factored).
    Adafactor(Box<AdafactorOptimizer>),
    /// Every tensor by full-batch L-BFGS, stepped once per epoch.
    Lbfgs(Box<LbfgsOptimizer>),
}

impl Stepper {
    fn new(device: &wgpu::Device, queue: &wgpu::Queue, opts: &TrainOptions, arena: &ParamArena, engine: EngineOptions) -> Result<Self, OptimError> {
        let configs = configs(&opts.optimizer, opts.lr)?;
        let h = opts.hidden as u64;
        let shaped = |i: usize, shape: &[u64]| -> ParamSlice { arena.tensor(i)[0].clone().in_group(0).with_shape(shape) };
        let all = [shaped(0, &[h, IN as u64]), shaped(1, &[h]), shaped(2, &[OUT as u64, h]), shaped(3, &[OUT as u64])];
        match opts.optimizer.as_str() {
            "lamb" => {
                let lamb = Lamb { lr: opts.lr.unwrap_or(0.01), weight_decay: 0.01, ..Lamb::default() };
                return Ok(Stepper::Lamb(Box::new(LambOptimizer::new(device, queue, lamb, &all)?)));
            }
            "lbfgs" => {
                let lbfgs = Lbfgs { lr: opts.lr.unwrap_or(1.0), history_size: 10, line_search_fn: LineSearch::StrongWolfe, ..Lbfgs::default() };
                return Ok(Stepper::Lbfgs(Box::new(LbfgsOptimizer::new(device, queue, arena.slices(), lbfgs)?)));
            }
            "adafactor" => {
                let adafactor = Adafactor { lr: opts.lr.unwrap_or(0.02), ..Adafactor::default() };
                return Ok(Stepper::Adafactor(Box::new(AdafactorOptimizer::new(device, queue, adafactor, &all)?)));
            }
            _ => {}
        }
        if opts.optimizer != "muon" {
            return Ok(Stepper::Fused(Optimizer::with_groups(device, queue, &configs, &arena.slices(), engine)?));
        }
        let weights = [all[0].clone(), all[2].clone()];
        let biases: Vec<ParamSlice> = [1, 3].iter().map(|&i| arena.tensor(i)[0].clone().in_group(0)).collect();
        let muon = MuonOptimizer::new(device, queue, Muon { lr: opts.lr.unwrap_or(0.02), weight_decay: 0.0, ..Muon::default() }, &weights)?;
        Ok(Stepper::Muon(Box::new(muon), Optimizer::with_groups(device, queue, &configs[..1], &biases, engine)?))
    }

}

impl EpochStepper for Stepper {
    fn step(&mut self, enc: &mut wgpu::CommandEncoder) -> Result<(), OptimError> {
        match self {
            Stepper::Fused(opt) => opt.record_step(enc),
            Stepper::Muon(muon, adamw) => {
                muon.record_step(enc)?;
                adamw.record_step(enc)
            }
            Stepper::Lamb(lamb) => lamb.record_step(enc),
            Stepper::Adafactor(adafactor) => adafactor.record_step(enc),
            // Stepped by `step(closure)` before the epoch's batches.
            Stepper::Lbfgs(_) => Ok(()),
        }
    }

    fn set_eval(&mut self, enc: &mut wgpu::CommandEncoder, eval: bool) -> Result<(), OptimError> {
        match self {
            Stepper::Fused(opt) => opt.set_eval(enc, eval),
            _ => Ok(()),
        }
    }
}

/// Trains and returns one [`EpochStats`] per epoch.
///
/// **Errors:** anything the engine reports.
pub fn train(device: &wgpu::Device, queue: &wgpu::Queue, opts: &TrainOptions) -> Result<Vec<EpochStats>, OptimError> {
    let full_batch = opts.optimizer == "lbfgs";
    let batch = if full_batch { TRAIN as u32 } else { opts.batch };
    let mut mlp = Mlp::new(device, queue, opts.hidden, batch, opts.seed)?;
    let state_format = match opts.state.as_str() {
        "f32" => StateFormat::F32,
        "bf16" => StateFormat::Bf16 { seed: opts.seed as u32 },
        "int8" => StateFormat::Int8Blockwise,
        _ => return Err(OptimError::InvalidOptions("--state is f32, bf16 or int8")),
    };
    let engine = EngineOptions { state_format, ..EngineOptions::default() };
    let mut opt = Stepper::new(device, queue, opts, &mlp.arena, engine)?;
    let mut history = Vec::new();
    for epoch in 1..=opts.epochs {
        mlp.start_epoch(queue, epoch);
        if let Stepper::Lbfgs(lbfgs) = &mut opt {
            lbfgs.step(&mut |enc| Ok(mlp.record_full_batch(queue, enc)))?;
        }
        let mut enc = device.create_command_encoder(&Default::default());
        let batches = mlp.record_epoch(queue, &mut enc, &mut opt)?;
        queue.submit([enc.finish()]);
        let sums = mlp.read_stats(device, queue)?;
        let steps = mlp.train_steps();
        history.push(EpochStats {
            epoch,
            train_loss: sums.sum(0..steps, 0) / TRAIN as f64,
            train_accuracy: sums.sum(0..steps, 1) / TRAIN as f64,
            test_accuracy: sums.sum(steps..batches.len(), 1) / mlp.test_len() as f64,
        });
    }
    Ok(history)
}

#[allow(dead_code)]
fn main() {
    let opts = TrainOptions::parse();
    let run = || -> Result<(), OptimError> {
        let gpu = device::headless()?;
        println!("adapter: {}", gpu.describe());
        match opts.optimizer.as_str() {
            "lbfgs" => println!("optimizer: lbfgs (full batch, strong Wolfe, history 10, one step of up to 20 iterations per epoch)"),
            name => println!("optimizer: {name} ({:?})", configs(name, opts.lr)?[0]),
        }
        println!("{:>5} {:>11} {:>10} {:>10}", "epoch", "train loss", "train acc", "test acc");
        for e in train(&gpu.device, &gpu.queue, &opts)? {
            println!("{:>5} {:>11.4} {:>9.1}% {:>9.1}%", e.epoch, e.train_loss, 100.0 * e.train_accuracy, 100.0 * e.test_accuracy);
        }
        Ok(())
    };
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}
