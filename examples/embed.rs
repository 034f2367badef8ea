//! The embedding guide's program (`docs/embedding.md`), end to end: your own
//! WGSL backward pass writes the grads of an engine-allocated arena, and the
//! fused AdamW step follows it in the same encoder, ten steps per submit.
//! Two param groups (the bias without weight decay), clipping by one norm
//! over both, a cosine schedule with warmup; then save at step 30, rebuild
//! everything as a fresh process would, load, make the scheduler, and
//! finish: the resumed params are bitwise those of the run without a break.
//!
//! ```text
//! cargo run --release --example embed
//! ```
//!
//! The model is least squares, `loss = ½·mean((x·w + b − y)²)`, over 256
//! samples of 31 features.

use wgpu_optim::schedule::{Schedule, Scheduler};
use wgpu_optim::validate::uniform;
use wgpu_optim::{device, AdamW, ClipScope, EngineOptions, GradControl, OptimError, Optimizer, OptimizerConfig, ParamArena};

const SAMPLES: u32 = 256;
const FEATURES: u32 = 31;
const STEPS: u32 = 60;
const PER_SUBMIT: u32 = 10;

/// The backward pass: invocation j < FEATURES writes ∂loss/∂w_j, invocation
/// FEATURES writes ∂loss/∂b and the loss. `W` and `B` are the arena offsets
/// of the two tensors, filled in by `backward_source`.
const BACKWARD: &str = r#"
@group(0) @binding(0) var<storage, read> data: array<f32>;        // rows of x then y
@group(0) @binding(1) var<storage, read> params: array<f32>;      // the arena's param buffer
@group(0) @binding(2) var<storage, read_write> grads: array<f32>; // the arena's grad buffer
@group(0) @binding(3) var<storage, read_write> loss: array<f32>;

@compute @workgroup_size(64)
fn backward(@builtin(global_invocation_id) id: vec3<u32>) {
    let j = id.x;
    if (j > D) { return; }
    var acc = 0.0;
    var sq = 0.0;
    for (var i = 0u; i < N; i++) {
        let row = i * (D + 1u);
        var pred = params[B];
        for (var k = 0u; k < D; k++) { pred += data[row + k] * params[W + k]; }
        let r = pred - data[row + D];
        acc += select(r, r * data[row + j], j < D);
        sq += r * r;
    }
    if (j < D) { grads[W + j] = acc / f32(N); } else { grads[B] = acc / f32(N); loss[0] = 0.5 * sq / f32(N); }
}
"#;

fn backward_source(w: u64, b: u64) -> String {
    format!("const N: u32 = {SAMPLES}u;\nconst D: u32 = {FEATURES}u;\nconst W: u32 = {w}u;\nconst B: u32 = {b}u;\n{BACKWARD}")
}

/// A training run: the arena, the optimizer and the backward pipeline.
struct Trainer {
    arena: ParamArena,
    opt: Optimizer,
    backward: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    loss: wgpu::Buffer,
}

impl Trainer {
    /// Everything a fresh process builds: the same code before and after a resume.
    fn new(gpu: &device::Gpu, data: &wgpu::Buffer, params: &[Vec<f32>]) -> Result<Trainer, OptimError> {
        let (device, queue) = (&gpu.device, &gpu.queue);
        let mut arena = ParamArena::new(device, &[FEATURES as u64, 1])?;
        arena.set_group(1, 1); // the bias: no weight decay
        for (i, values) in params.iter().enumerate() {
            arena.write_params(queue, i, values)?;
        }
        let decay = |weight_decay| OptimizerConfig::from(AdamW { lr: 0.05, weight_decay, ..AdamW::default() });
        let options = EngineOptions { grad_control: GradControl { max_norm: Some(0.5), clip_scope: ClipScope::Global, ..GradControl::default() }, ..EngineOptions::default() };
        let opt = Optimizer::with_groups(device, queue, &[decay(0.01), decay(0.0)], &arena.slices(), options)?;
        let (w, b) = (&arena.tensor(0)[0], &arena.tensor(1)[0]);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some("backward"), source: wgpu::ShaderSource::Wgsl(backward_source(w.param_offset, b.param_offset).into()) });
        let backward = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor { label: Some("backward"), layout: None, module: &module, entry_point: Some("backward"), compilation_options: Default::default(), cache: None });
        let loss = device.create_buffer(&wgpu::BufferDescriptor { label: Some("loss"), size: 4, usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC, mapped_at_creation: false });
        let resources = [data, &w.param, &w.grad, &loss];
        let entries: Vec<_> = resources.iter().enumerate().map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32, resource: b.as_entire_binding() }).collect();
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some("backward"), layout: &backward.get_bind_group_layout(0), entries: &entries });
        Ok(Trainer { arena, opt, backward, bind_group, loss })
    }

    /// Trains until the optimizer has taken `until` steps, `PER_SUBMIT`
    /// steps (backward, then the fused step) into each encoder.
    fn train(&mut self, gpu: &device::Gpu, scheduler: &Scheduler, until: u32) -> Result<(), OptimError> {
        while self.opt.step_count() < until {
            let mut encoder = gpu.device.create_command_encoder(&Default::default());
            for _ in 0..PER_SUBMIT.min(until - self.opt.step_count()) {
                {
                    let mut pass = encoder.begin_compute_pass(&Default::default());
                    pass.set_pipeline(&self.backward);
                    pass.set_bind_group(0, &self.bind_group, &[]);
                    pass.dispatch_workgroups(1, 1, 1);
                }
                scheduler.apply(&mut self.opt)?;
                self.opt.record_step(&mut encoder)?;
            }
            gpu.queue.submit([encoder.finish()]);
            let loss = device::read_f32(&gpu.device, &gpu.queue, &self.loss, 0, 1)?[0];
            println!("step {:>2}  lr {:.5}  loss {loss:.6}  grad norm {:.4}", self.opt.step_count(), self.opt.config(0).map_or(0.0, |c| c.lr()), self.opt.read_grad_norms()?[0]);
        }
        Ok(())
    }

    fn params(&self, gpu: &device::Gpu) -> Result<Vec<Vec<f32>>, OptimError> {
        (0..self.arena.len()).map(|i| self.arena.read_params(&gpu.device, &gpu.queue, i)).collect()
    }
}

/// Samples of a noisy linear model, rows of x then y.
fn samples() -> Vec<f32> {
    let truth: Vec<f32> = (0..=FEATURES as u64).map(|k| uniform(7, 0, k)).collect();
    let mut rows = Vec::new();
    for i in 0..SAMPLES as u64 {
        let x: Vec<f32> = (0..FEATURES as u64).map(|k| uniform(8, i, k)).collect();
        let y = x.iter().zip(&truth).map(|(a, b)| a * b).sum::<f32>() + truth[FEATURES as usize] + 0.01 * uniform(9, i, 0);
        rows.extend(x.into_iter().chain([y]));
    }
    rows
}

fn main() -> Result<(), OptimError> {
    let gpu = device::headless()?;
    println!("adapter: {}", gpu.describe());
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST;
    let data = gpu.device.create_buffer(&wgpu::BufferDescriptor { label: Some("data"), size: 4 * (SAMPLES * (FEATURES + 1)) as u64, usage, mapped_at_creation: false });
    gpu.queue.write_buffer(&data, 0, bytemuck::cast_slice(&samples()));
    let start = vec![vec![0.0; FEATURES as usize], vec![0.0]];
    let schedule = Schedule::CosineWithWarmup { warmup_steps: 5, total_steps: STEPS as u64, min_factor: 0.1 };

    println!("-- one run of {STEPS} steps");
    let mut whole = Trainer::new(&gpu, &data, &start)?;
    let scheduler = Scheduler::new(schedule.clone(), &mut whole.opt)?;
    whole.train(&gpu, &scheduler, STEPS)?;

    println!("-- the same run, saved at step 30 and resumed");
    let checkpoint = std::env::temp_dir().join(format!("wgpu-optim-embed-{}.safetensors", std::process::id()));
    let mut first = Trainer::new(&gpu, &data, &start)?;
    let scheduler = Scheduler::new(schedule.clone(), &mut first.opt)?;
    first.train(&gpu, &scheduler, 30)?;
    first.opt.save_checkpoint(&checkpoint)?;
    let saved_params = first.params(&gpu)?;
    drop(first);
    // A new process: the same construction, then the checkpoint, then the scheduler.
    let mut resumed = Trainer::new(&gpu, &data, &saved_params)?;
    resumed.opt.load_checkpoint(&checkpoint)?;
    let _ = std::fs::remove_file(&checkpoint);
    let scheduler = Scheduler::new(schedule, &mut resumed.opt)?;
    resumed.train(&gpu, &scheduler, STEPS)?;

    let bits = |t: &Trainer| -> Result<Vec<u32>, OptimError> { Ok(t.params(&gpu)?.iter().flatten().map(|x| x.to_bits()).collect()) };
    let bitwise = bits(&resumed)? == bits(&whole)?;
    println!("resumed run bitwise equal to the unbroken one: {bitwise}");
    if !bitwise {
        return Err(OptimError::Checkpoint("the resumed run differs from the unbroken one".into()));
    }
    Ok(())
}
