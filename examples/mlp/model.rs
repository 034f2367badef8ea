//! The digits MLP (64 → H → 10, ReLU, softmax cross-entropy) on the GPU:
//! its params in an engine-allocated arena, its forward and backward passes
//! in WGSL (`mlp.wgsl`), recorded batch by batch into the caller's encoder.
//! Shared by `examples/train_mlp.rs` (one process),
//! `integrations/mpi/examples/train_mlp_dp.rs` (data-parallel ranks) and the
//! browser playground (`integrations/web`, on WebGPU).

use wgpu_optim::validate::uniform;
#[cfg(not(target_arch = "wasm32"))]
use wgpu_optim::lbfgs::LossAt;
use wgpu_optim::{device, Adadelta, Adagrad, Adam, AdamW, AdamWScheduleFree, Adan, Adamax, Asgd, NAdam, OptimError, Optimizer, OptimizerConfig, ParamArena, RAdam, RmsProp, Rprop, Sgd};

const DIGITS: &str = include_str!("../data/digits.csv");
const SHADER: &str = include_str!("mlp.wgsl");
/// Inputs (8×8 pixels).
pub const IN: u32 = 64;
/// Classes.
pub const OUT: u32 = 10;
/// Training samples; the rest of the 1,797 are the test set.
pub const TRAIN: usize = 1500;
const SLOT: u64 = 256;

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

/// Deterministic Fisher–Yates shuffle.
pub fn shuffle(v: &mut [u32], seed: u64, round: u64) {
    for i in (1..v.len()).rev() {
        let r = ((uniform(seed, round, i as u64) as f64 + 1.0) * 0.5 * (i + 1) as f64) as usize;
        v.swap(i, r.min(i));
    }
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
        "adan" => Adan { lr: lr.unwrap_or(5e-3), weight_decay: 0.01, ..Adan::default() }.into(),
        "adamw_schedulefree" => AdamWScheduleFree { lr: lr.unwrap_or(5e-3), weight_decay: wd, warmup_steps: 20, ..AdamWScheduleFree::default() }.into(),
        "muon" | "lamb" | "adafactor" | "lbfgs" => AdamW { lr: 5e-3, weight_decay: 0.0, ..AdamW::default() }.into(),
        _ => return Err(OptimError::InvalidOptions("unknown optimizer name")),
    };
    let mut biases = weights;
    biases.set_weight_decay(0.0);
    Ok([weights, biases])
}

/// The model, its data on the GPU, and its pipelines.
pub struct Mlp {
    /// W1 [H, 64], b1 (group 1), W2 [10, H], b2 (group 1).
    pub arena: ParamArena,
    /// Hidden units.
    pub hidden: u32,
    /// Rows per batch.
    pub batch: u32,
    seed: u64,
    /// Sample indices: the training ones (shuffled each epoch), then the test ones.
    order: Vec<u32>,
    order_buf: wgpu::Buffer,
    stats: wgpu::Buffer,
    ring: wgpu::Buffer,
    /// forward_hidden, forward_output, reduce_stats, grad_output, backward_hidden, grad_hidden.
    pipelines: [wgpu::ComputePipeline; 6],
    bind_group: wgpu::BindGroup,
}

/// One batch: its first position in the order, its rows, and whether it trains.
pub type Batch = (usize, usize, bool);

/// What steps the model during an epoch: the optimizer's step after each
/// training batch, and the move of the params to their eval form before the
/// test batches (and back). (The data-parallel example records its epoch
/// its own way, across ranks.)
#[allow(dead_code)]
pub trait EpochStepper {
    /// Records one optimizer step.
    fn step(&mut self, enc: &mut wgpu::CommandEncoder) -> Result<(), OptimError>;
    /// Moves the params to their eval (or train) form, for a rule that has
    /// them (schedule-free AdamW); nothing for the others.
    fn set_eval(&mut self, enc: &mut wgpu::CommandEncoder, eval: bool) -> Result<(), OptimError>;
}

impl EpochStepper for Optimizer {
    fn step(&mut self, enc: &mut wgpu::CommandEncoder) -> Result<(), OptimError> {
        self.record_step(enc)
    }

    fn set_eval(&mut self, enc: &mut wgpu::CommandEncoder, eval: bool) -> Result<(), OptimError> {
        match self.configs()[0].mode_switch(eval) {
            Some(_) if eval => self.eval(enc),
            Some(_) => self.train(enc),
            None => Ok(()),
        }
    }
}

/// Loss and accuracy sums of an epoch, read back.
pub struct Sums {
    /// Per slot: loss sum, correct count.
    pub per_slot: Vec<f32>,
}

fn storage(device: &wgpu::Device, queue: &wgpu::Queue, label: &str, bytes: &[u8], extra: wgpu::BufferUsages) -> wgpu::Buffer {
    let buf = device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size: (bytes.len() as u64).max(16), usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | extra, mapped_at_creation: false });
    queue.write_buffer(&buf, 0, bytes);
    buf
}

impl Mlp {
    /// The model with its params initialised from `seed` (the same on every
    /// process given the same seed), and the digits uploaded.
    ///
    /// **Errors:** the arena's.
    pub fn new(device: &wgpu::Device, queue: &wgpu::Queue, hidden: u32, batch: u32, seed: u64) -> Result<Self, OptimError> {
        let (x, y) = load_digits();
        let (h, b) = (hidden, batch);
        let mut order: Vec<u32> = (0..y.len() as u32).collect();
        shuffle(&mut order, seed, u64::MAX);
        let lens = [(h * IN) as u64, h as u64, (OUT * h) as u64, OUT as u64];
        let mut arena = ParamArena::new(device, &lens)?;
        arena.set_group(1, 1);
        arena.set_group(3, 1);
        let init = |i: usize, fan_in: u32| -> Vec<f32> {
            let bound = (6.0 / fan_in as f32).sqrt();
            (0..lens[i]).map(|k| bound * uniform(seed, i as u64, k)).collect()
        };
        arena.write_params(queue, 0, &init(0, IN))?;
        arena.write_params(queue, 1, &vec![0.01; h as usize])?;
        arena.write_params(queue, 2, &init(2, h))?;
        arena.write_params(queue, 3, &vec![0.0; OUT as usize])?;
        let none = wgpu::BufferUsages::empty();
        let x_buf = storage(device, queue, "digits", bytemuck::cast_slice(&x), none);
        let y_buf = storage(device, queue, "labels", bytemuck::cast_slice(&y), none);
        let order_buf = storage(device, queue, "order", &vec![0u8; 4 * y.len()], none);
        let act = storage(device, queue, "activations", &vec![0u8; 4 * (2 * b * h + b * OUT) as usize], none);
        let slots = TRAIN.div_ceil(b as usize) + (y.len() - TRAIN).div_ceil(b as usize);
        // One f32 past the slots: the mean loss of a full-batch closure.
        let stats = storage(device, queue, "stats", &vec![0u8; 8 * slots + 4], wgpu::BufferUsages::COPY_SRC);
        let ring = device.create_buffer(&wgpu::BufferDescriptor { label: Some("mlp steps"), size: SLOT * slots as u64, usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST, mapped_at_creation: false });
        let (pipelines, layout) = Self::pipelines(device, h, b);
        let bind = [&x_buf, &y_buf, &order_buf, &arena.param_buffers()[0], &arena.grad_buffers()[0], &act, &stats];
        let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: &ring, offset: 0, size: wgpu::BufferSize::new(32) }) }];
        entries.extend(bind.iter().enumerate().map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32 + 1, resource: b.as_entire_binding() }));
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some("mlp"), layout: &layout, entries: &entries });
        Ok(Mlp { arena, hidden, batch, seed, order, order_buf, stats, ring, pipelines, bind_group })
    }

    fn pipelines(device: &wgpu::Device, h: u32, b: u32) -> ([wgpu::ComputePipeline; 6], wgpu::BindGroupLayout) {
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
        (["forward_hidden", "forward_output", "reduce_stats", "grad_output", "backward_hidden", "grad_hidden"].map(pipeline), layout)
    }

    /// Test samples.
    pub fn test_len(&self) -> usize {
        self.order.len() - TRAIN
    }

    /// Training batches per epoch.
    pub fn train_steps(&self) -> usize {
        TRAIN.div_ceil(self.batch as usize)
    }

    /// Reshuffles the training samples for `epoch` (the same on every
    /// process with the same seed) and uploads the order.
    pub fn start_epoch(&mut self, queue: &wgpu::Queue, epoch: u32) {
        shuffle(&mut self.order[..TRAIN], self.seed, epoch as u64);
        queue.write_buffer(&self.order_buf, 0, bytemuck::cast_slice(&self.order));
    }

    /// The epoch's training batches, then its test batches (forward only).
    pub fn batches(&self) -> Vec<Batch> {
        let b = self.batch as usize;
        let train = (0..self.train_steps()).map(|s| (s * b, (TRAIN - s * b).min(b), true));
        let tests = (0..self.test_len().div_ceil(b)).map(|e| (TRAIN + e * b, (self.test_len() - e * b).min(b), false));
        train.chain(tests).collect()
    }

    /// Records one epoch into `enc`: the params in train form, each
    /// training batch and its step, then the test batches on the params'
    /// eval form. Returns the epoch's batches (their stats slots in order).
    ///
    /// **Errors:** the stepper's.
    #[allow(dead_code)]
    pub fn record_epoch(&self, queue: &wgpu::Queue, enc: &mut wgpu::CommandEncoder, stepper: &mut impl EpochStepper) -> Result<Vec<Batch>, OptimError> {
        stepper.set_eval(enc, false)?;
        let batches = self.batches();
        for (slot, &batch) in batches.iter().enumerate() {
            if !batch.2 && slot > 0 && batches[slot - 1].2 {
                stepper.set_eval(enc, true)?; // the test batches see the averaged params
            }
            self.record_batch(queue, enc, slot, batch);
            if batch.2 {
                stepper.step(enc)?;
            }
        }
        Ok(batches)
    }

    /// Records the forward pass of `rows` samples from position `start`
    /// (loss and hits into stats slot `slot`) and, when training, the
    /// backward pass into the grads.
    pub fn record_batch(&self, queue: &wgpu::Queue, enc: &mut wgpu::CommandEncoder, slot: usize, batch: Batch) {
        self.record_pass(queue, enc, slot, batch, 0);
    }

    fn record_pass(&self, queue: &wgpu::Queue, enc: &mut wgpu::CommandEncoder, slot: usize, (start, rows, training): Batch, mean_at: u32) {
        let offset = |i: usize| self.arena.tensor(i)[0].param_offset as u32;
        let step = [start as u32, rows as u32, slot as u32, mean_at, offset(0), offset(1), offset(2), offset(3)];
        queue.write_buffer(&self.ring, slot as u64 * SLOT, bytemuck::cast_slice(&step));
        let (rows, h) = (rows as u32, self.hidden);
        let threads = [rows * h, rows, 1, OUT * h + OUT, rows * h, h * IN + h];
        let passes = if training { 6 } else { 3 };
        for (p, &n) in self.pipelines.iter().zip(&threads).take(passes) {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(p);
            pass.set_bind_group(0, &self.bind_group, &[(slot as u64 * SLOT) as u32]);
            pass.dispatch_workgroups(n.div_ceil(64).max(1), 1, 1);
        }
    }

    /// Records the forward and backward pass of the whole training set
    /// (slot 0; the model must have been built with a batch of at least
    /// [`TRAIN`] rows) and says where its mean loss will be: the closure of
    /// a full-batch L-BFGS step (the data-parallel example has none).
    #[allow(dead_code)]
    #[cfg(not(target_arch = "wasm32"))]
    pub fn record_full_batch(&self, queue: &wgpu::Queue, enc: &mut wgpu::CommandEncoder) -> LossAt {
        let mean_at = (self.stats.size() / 4 - 1) as u32;
        self.record_pass(queue, enc, 0, (0, TRAIN, true), mean_at);
        LossAt { buffer: self.stats.clone(), offset: mean_at as u64 * 4 }
    }

    /// The stats of every slot, read back (waits for the GPU).
    ///
    /// **Errors:** the readback's.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_stats(&self, device: &wgpu::Device, queue: &wgpu::Queue) -> Result<Sums, OptimError> {
        pollster::block_on(self.read_stats_async(device, queue))
    }

    /// [`Mlp::read_stats`] without blocking (the browser's form).
    ///
    /// **Errors:** the readback's.
    #[allow(dead_code)]
    pub async fn read_stats_async(&self, device: &wgpu::Device, queue: &wgpu::Queue) -> Result<Sums, OptimError> {
        Ok(Sums { per_slot: device::read_f32_async(device, queue, &self.stats, 0, self.stats.size() / 4).await? })
    }
}

impl Sums {
    /// Sum of field `k` (0 loss, 1 hits) over `slots`.
    pub fn sum(&self, slots: std::ops::Range<usize>, k: usize) -> f64 {
        slots.map(|i| self.per_slot[2 * i + k] as f64).sum()
    }
}
