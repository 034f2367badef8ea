//! Trains a 64 → 64 → 10 MLP on the 8×8 handwritten digits (1,797 samples,
//! `examples/data/`) entirely on the GPU: forward and backward passes in
//! WGSL (`examples/mlp.wgsl`), and the optimizer step recorded into the same
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
//! with `--optimizer adafactor` by Adafactor (the weights factored).

use clap::Parser;
use wgpu_optim::validate::uniform;
use wgpu_optim::{
    device, Adadelta, Adafactor, AdafactorOptimizer, Adagrad, Adam, AdamW, Adamax, Asgd, EngineOptions, Lamb, LambOptimizer, Muon, MuonOptimizer, NAdam, OptimError, Optimizer, OptimizerConfig, ParamArena, ParamSlice, RAdam, RmsProp, Rprop, Sgd, StateFormat,
};

const DIGITS: &str = include_str!("data/digits.csv");
const SHADER: &str = include_str!("mlp.wgsl");
const IN: u32 = 64;
const OUT: u32 = 10;
const TRAIN: usize = 1500;
const SLOT: u64 = 256;

#[derive(Parser, Clone, Debug)]
#[command(about = "Train an MLP on the 8x8 digits on the GPU with a wgpu-optim optimizer")]
pub struct TrainOptions {
    /// sgd, momentum, nag, adagrad, rmsprop, adadelta, adam, adamw, adamax,
    /// nadam, radam, asgd, rprop, muon (weights; biases by AdamW), lamb or adafactor.
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

/// Pixels scaled to [0, 1] (samples × 64) and labels.
pub fn load_digits() -> (Vec<f32>, Vec<u32>) {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for line in DIGITS.lines().filter(|l| !l.trim().is_empty()) {
        let v: Vec<u32> = line.split(',').map(|t| t.trim().parse().expect("digits.csv holds integers")).collect();
        x.extend(v[..64].iter().map(|&p| p as f32 / 16.0));
        y.push(v[64]);
    }
    (x, y)
}

/// The two param groups (weights with weight decay, biases without) for a
/// named optimizer.
///
/// **Errors:** [`OptimError::InvalidOptions`] for an unknown name.
pub fn configs(name: &str, lr: Option<f64>) -> Result<[OptimizerConfig; 2], OptimError> {
    let wd = 1e-4;
    let weights: OptimizerConfig = match name {
        "sgd" => Sgd { lr: lr.unwrap_or(0.2), weight_decay: wd, ..Sgd::default() }.into(),
        "momentum" => Sgd { lr: lr.unwrap_or(0.05), momentum: 0.9, weight_decay: wd, ..Sgd::default() }.into(),
        "nag" => Sgd { lr: lr.unwrap_or(0.05), momentum: 0.9, nesterov: true, weight_decay: wd, ..Sgd::default() }.into(),
        "adagrad" => Adagrad { lr: lr.unwrap_or(0.05), weight_decay: wd, ..Adagrad::default() }.into(),
        "rmsprop" => RmsProp { lr: lr.unwrap_or(2e-3), weight_decay: wd, ..RmsProp::default() }.into(),
        "adadelta" => Adadelta { lr: lr.unwrap_or(1.0), weight_decay: wd, ..Adadelta::default() }.into(),
        "adam" => Adam { lr: lr.unwrap_or(5e-3), weight_decay: wd, ..Adam::default() }.into(),
        "adamw" => AdamW { lr: lr.unwrap_or(5e-3), weight_decay: 0.01, ..AdamW::default() }.into(),
        "adamax" => Adamax { lr: lr.unwrap_or(1e-2), weight_decay: wd, ..Adamax::default() }.into(),
        "nadam" => NAdam { lr: lr.unwrap_or(5e-3), weight_decay: wd, ..NAdam::default() }.into(),
        "radam" => RAdam { lr: lr.unwrap_or(5e-2), weight_decay: wd, ..RAdam::default() }.into(),
        "asgd" => Asgd { lr: lr.unwrap_or(0.2), weight_decay: wd, t0: 500.0, ..Asgd::default() }.into(),
        "rprop" => Rprop { lr: lr.unwrap_or(1e-3), step_sizes: (1e-6, 0.01), ..Rprop::default() }.into(),
        "muon" | "lamb" | "adafactor" => AdamW { lr: 5e-3, weight_decay: 0.0, ..AdamW::default() }.into(),
        _ => return Err(OptimError::InvalidOptions("unknown optimizer name")),
    };
    let mut biases = weights;
    biases.set_weight_decay(0.0);
    Ok([weights, biases])
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

    fn record(&mut self, enc: &mut wgpu::CommandEncoder) -> Result<(), OptimError> {
        match self {
            Stepper::Fused(opt) => opt.record_step(enc),
            Stepper::Muon(muon, adamw) => {
                muon.record_step(enc)?;
                adamw.record_step(enc)
            }
            Stepper::Lamb(lamb) => lamb.record_step(enc),
            Stepper::Adafactor(adafactor) => adafactor.record_step(enc),
        }
    }
}

/// Deterministic Fisher–Yates shuffle.
fn shuffle(v: &mut [u32], seed: u64, round: u64) {
    for i in (1..v.len()).rev() {
        let r = ((uniform(seed, round, i as u64) as f64 + 1.0) * 0.5 * (i + 1) as f64) as usize;
        v.swap(i, r.min(i));
    }
}

/// Trains and returns one [`EpochStats`] per epoch.
///
/// **Errors:** anything the engine reports.
pub fn train(device: &wgpu::Device, queue: &wgpu::Queue, opts: &TrainOptions) -> Result<Vec<EpochStats>, OptimError> {
    let (x, y) = load_digits();
    let n = y.len();
    let (h, b) = (opts.hidden, opts.batch);
    let mut split: Vec<u32> = (0..n as u32).collect();
    shuffle(&mut split, opts.seed, u64::MAX);
    let (train_idx, test_idx) = split.split_at(TRAIN);

    // Params in an engine-allocated arena: W1, b1 (group 1), W2, b2 (group 1).
    let lens = [(h * IN) as u64, h as u64, (OUT * h) as u64, OUT as u64];
    let mut arena = ParamArena::new(device, &lens)?;
    arena.set_group(1, 1);
    arena.set_group(3, 1);
    let init = |i: usize, fan_in: u32| -> Vec<f32> {
        let bound = (6.0 / fan_in as f32).sqrt();
        (0..lens[i]).map(|k| bound * uniform(opts.seed, i as u64, k)).collect()
    };
    arena.write_params(queue, 0, &init(0, IN))?;
    arena.write_params(queue, 1, &vec![0.01; h as usize])?;
    arena.write_params(queue, 2, &init(2, h))?;
    arena.write_params(queue, 3, &vec![0.0; OUT as usize])?;
    let state_format = match opts.state.as_str() {
        "f32" => StateFormat::F32,
        "bf16" => StateFormat::Bf16 { seed: opts.seed as u32 },
        "int8" => StateFormat::Int8Blockwise,
        _ => return Err(OptimError::InvalidOptions("--state is f32, bf16 or int8")),
    };
    let engine = EngineOptions { state_format, ..EngineOptions::default() };
    let mut opt = Stepper::new(device, queue, opts, &arena, engine)?;
    let offset = |i: usize| arena.tensor(i)[0].param_offset as u32;

    let storage = |label: &str, bytes: &[u8], extra: wgpu::BufferUsages| {
        let buf = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (bytes.len() as u64).max(16),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | extra,
            mapped_at_creation: false,
        });
        queue.write_buffer(&buf, 0, bytes);
        buf
    };
    let x_buf = storage("digits", bytemuck::cast_slice(&x), wgpu::BufferUsages::empty());
    let y_buf = storage("labels", bytemuck::cast_slice(&y), wgpu::BufferUsages::empty());
    let order_buf = storage("order", &vec![0u8; 4 * n], wgpu::BufferUsages::empty());
    let act = storage("activations", &vec![0u8; 4 * (2 * b * h + b * OUT) as usize], wgpu::BufferUsages::empty());
    let steps = TRAIN.div_ceil(b as usize);
    let evals = test_idx.len().div_ceil(b as usize);
    let stats = storage("stats", &vec![0u8; 8 * (steps + evals)], wgpu::BufferUsages::COPY_SRC);
    let ring = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("mlp steps"),
        size: SLOT * (steps + evals) as u64,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });

    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some("mlp"), source: wgpu::ShaderSource::Wgsl(SHADER.into()) });
    let entry = |binding, ty| wgpu::BindGroupLayoutEntry { binding, visibility: wgpu::ShaderStages::COMPUTE, ty, count: None };
    let store = |read_only| wgpu::BindingType::Buffer { ty: wgpu::BufferBindingType::Storage { read_only }, has_dynamic_offset: false, min_binding_size: None };
    let uniform_ty = wgpu::BindingType::Buffer { ty: wgpu::BufferBindingType::Uniform, has_dynamic_offset: true, min_binding_size: wgpu::BufferSize::new(32) };
    let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some("mlp"),
        entries: &[entry(0, uniform_ty), entry(1, store(true)), entry(2, store(true)), entry(3, store(true)), entry(4, store(true)), entry(5, store(false)), entry(6, store(false)), entry(7, store(false))],
    });
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor { label: Some("mlp"), bind_group_layouts: &[Some(&layout)], immediate_size: 0 });
    let pipeline = |name: &str| {
        device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(name),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some(name),
            compilation_options: wgpu::PipelineCompilationOptions { constants: &[("H", h as f64), ("B", b as f64)], zero_initialize_workgroup_memory: false },
            cache: None,
        })
    };
    let [fwd_h, fwd_o, reduce, grad_o, bwd_h, grad_h] = ["forward_hidden", "forward_output", "reduce_stats", "grad_output", "backward_hidden", "grad_hidden"].map(pipeline);
    let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("mlp"),
        layout: &layout,
        entries: &[
            wgpu::BindGroupEntry { binding: 0, resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: &ring, offset: 0, size: wgpu::BufferSize::new(32) }) },
            wgpu::BindGroupEntry { binding: 1, resource: x_buf.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 2, resource: y_buf.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 3, resource: order_buf.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 4, resource: arena.param_buffers()[0].as_entire_binding() },
            wgpu::BindGroupEntry { binding: 5, resource: arena.grad_buffers()[0].as_entire_binding() },
            wgpu::BindGroupEntry { binding: 6, resource: act.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 7, resource: stats.as_entire_binding() },
        ],
    });
    let dispatch = |enc: &mut wgpu::CommandEncoder, slot: usize, p: &wgpu::ComputePipeline, threads: u32| {
        let mut pass = enc.begin_compute_pass(&Default::default());
        pass.set_pipeline(p);
        pass.set_bind_group(0, &bind_group, &[(slot as u64 * SLOT) as u32]);
        pass.dispatch_workgroups(threads.div_ceil(64).max(1), 1, 1);
    };

    let mut order: Vec<u32> = train_idx.to_vec();
    order.extend_from_slice(test_idx);
    let mut history = Vec::new();
    for epoch in 1..=opts.epochs {
        shuffle(&mut order[..TRAIN], opts.seed, epoch as u64);
        queue.write_buffer(&order_buf, 0, bytemuck::cast_slice(&order));
        let mut enc = device.create_command_encoder(&Default::default());
        // Training steps, then the test set in batches (forward only).
        let batches = (0..steps).map(|s| (s * b as usize, (TRAIN - s * b as usize).min(b as usize), true));
        let tests = (0..evals).map(|e| (TRAIN + e * b as usize, (test_idx.len() - e * b as usize).min(b as usize), false));
        for (slot, (start, rows, training)) in batches.chain(tests).enumerate() {
            let step = [start as u32, rows as u32, slot as u32, 0, offset(0), offset(1), offset(2), offset(3)];
            queue.write_buffer(&ring, slot as u64 * SLOT, bytemuck::cast_slice(&step));
            let rows = rows as u32;
            dispatch(&mut enc, slot, &fwd_h, rows * h);
            dispatch(&mut enc, slot, &fwd_o, rows);
            dispatch(&mut enc, slot, &reduce, 1);
            if training {
                dispatch(&mut enc, slot, &grad_o, OUT * h + OUT);
                dispatch(&mut enc, slot, &bwd_h, rows * h);
                dispatch(&mut enc, slot, &grad_h, h * IN + h);
                opt.record(&mut enc)?;
            }
        }
        queue.submit([enc.finish()]);
        let s = device::read_f32(device, queue, &stats, 0, 2 * (steps + evals) as u64)?;
        let sum = |range: std::ops::Range<usize>, k: usize| range.map(|i| s[2 * i + k] as f64).sum::<f64>();
        history.push(EpochStats {
            epoch,
            train_loss: sum(0..steps, 0) / TRAIN as f64,
            train_accuracy: sum(0..steps, 1) / TRAIN as f64,
            test_accuracy: sum(steps..steps + evals, 1) / test_idx.len() as f64,
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
        println!("optimizer: {} ({:?})", opts.optimizer, configs(&opts.optimizer, opts.lr)?[0]);
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
