//! burn's own optimizers (fusion on) against wgpu-optim, on burn's device,
//! in one run; wall clock per step, every step flushed (as a training loop
//! must, so the next forward pass sees the update) and the device synced
//! around each timed block.
//!
//! ```text
//! cargo run --release -p wgpu-optim-burn --bin bench -- [--k 5] [--warmup 2] [--rounds 3] [--rules-log2 20,24]
//!     [--model-log2 22] [--tensors 256] [--gemm-shapes 2] [--json out.json]
//! ```
//!
//! * `rules`: one tensor of 2^L elements, each classic rule: burn's per-tensor
//!   `Optimizer::step` on a fixed grad against the engine stepping the same
//!   bytes in place (its own buffers on the same device).
//! * `model`: burn's `ModuleOptimizer` (AdamW) against `FusedOptimizer`
//!   on the same burn model, grads registered each step as `from_grads`
//!   would: one tensor of 2^22 elements, and 256 tensors of log-uniform
//!   sizes (2^6 … 2^16 relative) totalling 2^22. The one tensor runs twice:
//!   its grad read where burn left it (the default), and copied into the
//!   engine's buffer (`grads_in_place(false)`); the many tensors' grads are
//!   copied (they share flat tensors).

use std::time::Instant;

use burn::module::{Module, Param};
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdaGradConfig, AdamConfig, AdamWConfig, GradientsParams, ModuleOptimizer, Optimizer as BurnOptimizer, RmsPropConfig, SgdConfig};
use burn::tensor::{Device, Distribution, Tensor};
use wgpu_optim::{OptimizerConfig, ParamSlice};
use wgpu_optim_burn::{FusedOptimizer, SharedDevice, StepPhases};

const LR: f64 = 1e-3;

#[derive(Module, Debug)]
struct Many {
    ps: Vec<Param<Tensor<1>>>,
}

/// burn 0.22.1's optimizers and matmul against wgpu-optim on burn's own
/// wgpu device.
#[derive(clap::Parser)]
struct Args {
    /// Timed steps per measurement.
    #[arg(long, default_value_t = 5)]
    k: usize,
    /// Untimed steps before each measurement.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Rounds of (burn, ours) timings, interleaved; the best of each side is
    /// reported (the machine's load varies from second to second).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Sizes (log2 of the elements) of the one-tensor rule comparisons,
    /// comma-separated; empty: none.
    #[arg(long, value_delimiter = ',', default_value = "20,24")]
    rules_log2: Vec<String>,
    /// log2 of the model comparisons' total params.
    #[arg(long, default_value_t = 22)]
    model_log2: u32,
    /// Tensors of the many-tensor model.
    #[arg(long, default_value_t = 256)]
    tensors: usize,
    /// How many of the GEMM shapes (square 1024, then 1024 × 4096) to time.
    #[arg(long, default_value_t = GEMM_SHAPES.len())]
    gemm_shapes: usize,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<String>,
}

/// The options; the rule sizes as numbers (an empty list: none).
fn args() -> (Args, Vec<u32>) {
    let a = <Args as clap::Parser>::parse();
    let sizes = a.rules_log2.iter().filter(|s| !s.is_empty()).map(|s| s.parse().unwrap_or_else(|_| clap::Error::raw(clap::error::ErrorKind::ValueValidation, format!("--rules-log2: {s} is not a number\n")).exit())).collect();
    (a, sizes)
}

/// Mean seconds per step of `k` steps after `warmup`, each step followed by
/// `flush`, the device synced before and after the timed block.
fn timed(device: &Device, warmup: usize, k: usize, mut step: impl FnMut()) -> f64 {
    for _ in 0..warmup {
        step();
        device.flush().expect("flush");
    }
    device.sync().expect("sync");
    let t0 = Instant::now();
    for _ in 0..k {
        step();
        device.flush().expect("flush");
    }
    device.sync().expect("sync");
    t0.elapsed().as_secs_f64() / k as f64
}

/// burn's per-tensor step of `n` elements.
fn burn_rule<O: BurnOptimizer>(o: &O, device: &Device, n: usize, a: &Args) -> f64 {
    let mut p = Tensor::<1>::random([n], Distribution::Uniform(-1.0, 1.0), device);
    let g = Tensor::<1>::random([n], Distribution::Normal(0.0, 1.0), device);
    let mut state = None;
    timed(device, a.warmup, a.k, || {
        let (np, ns) = o.step(LR, p.clone(), g.clone(), state.take());
        p = np;
        state = ns;
    })
}

/// The engine's step of `n` elements in place, on the same device, with
/// standard WGSL (`vec4<f32>` access) or the wide path (`vec4<u64>`).
fn ours_rule(shared: &SharedDevice, config: OptimizerConfig, wide: bool, n: usize, a: &Args) -> f64 {
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST;
    let mk = || shared.wgpu_device.create_buffer(&wgpu::BufferDescriptor { label: None, size: 4 * n as u64, usage, mapped_at_creation: false });
    let (p, g) = (mk(), mk());
    shared.queue.write_buffer(&g, 0, &vec![0x3c; 4 * n]);
    let options = wgpu_optim::EngineOptions { wide: if wide { wgpu_optim::WideAccess::Always } else { wgpu_optim::WideAccess::Never }, ..Default::default() };
    let mut opt = wgpu_optim::Optimizer::with_groups(&shared.wgpu_device, &shared.queue, &[config], &[ParamSlice::whole(&p, &g)], options).expect("engine");
    timed(&shared.device, a.warmup, a.k, || opt.step().expect("step"))
}

/// The best of `rounds` interleaved timings of each of `runs` (burn's and ours).
fn best_of(rounds: usize, runs: &mut [&mut dyn FnMut() -> f64]) -> Vec<f64> {
    let mut best = vec![f64::INFINITY; runs.len()];
    for _ in 0..rounds.max(1) {
        for (b, run) in best.iter_mut().zip(runs.iter_mut()) {
            *b = b.min(run());
        }
    }
    best
}

/// (name, bytes per element, [burn, ours vec4, ours wide] seconds) of every
/// classic rule at 2^log2.
fn rules(shared: &SharedDevice, log2: u32, a: &Args) -> Vec<(String, u64, Vec<f64>)> {
    let (n, dev) = (1usize << log2, &shared.device);
    let momentum = MomentumConfig { momentum: 0.9, dampening: 0.0, nesterov: false };
    type Case<'a> = (&'a str, u64, Box<dyn Fn() -> f64 + 'a>, OptimizerConfig);
    let cases: Vec<Case> = vec![
        ("sgd momentum", 20, Box::new(|| burn_rule(&SgdConfig::new().with_momentum(Some(momentum.clone())).build(), dev, n, a)), wgpu_optim::Sgd { lr: LR, momentum: 0.9, ..Default::default() }.into()),
        ("adagrad", 20, Box::new(|| burn_rule(&AdaGradConfig::new().build(), dev, n, a)), wgpu_optim::Adagrad { lr: LR, eps: 1e-5, ..Default::default() }.into()),
        ("rmsprop", 20, Box::new(|| burn_rule(&RmsPropConfig::new().with_alpha(0.99).with_momentum(0.0).build(), dev, n, a)), wgpu_optim::RmsProp { lr: LR, eps: 1e-5, ..Default::default() }.into()),
        ("adam", 28, Box::new(|| burn_rule(&AdamConfig::new().build(), dev, n, a)), wgpu_optim::Adam { lr: LR, eps: 1e-5, ..Default::default() }.into()),
        ("adamw", 28, Box::new(|| burn_rule(&AdamWConfig::new().with_weight_decay(0.01).build(), dev, n, a)), wgpu_optim::AdamW { lr: LR, eps: 1e-5, weight_decay: 0.01, ..Default::default() }.into()),
    ];
    cases
        .into_iter()
        .map(|(name, bytes, burn, config)| {
            let times = best_of(a.rounds, &mut [&mut || burn(), &mut || ours_rule(shared, config, false, n, a), &mut || ours_rule(shared, config, true, n, a)]);
            (name.to_string(), bytes, times)
        })
        .collect()
}

/// `count` sizes, log-uniform over 2^6 … 2^16 (relative), totalling `total`.
fn model_sizes(count: usize, total: usize) -> Vec<usize> {
    let w: Vec<f64> = (0..count as u64).map(|i| 2f64.powf(6.0 + 10.0 * (wgpu_optim::validate::uniform(99, 0, i) as f64 + 1.0) / 2.0)).collect();
    let sum: f64 = w.iter().sum();
    let mut sizes: Vec<usize> = w.iter().map(|x| ((x / sum * total as f64) as usize).max(1)).collect();
    let used: usize = sizes.iter().sum();
    if let Some(last) = sizes.last_mut() {
        *last = (*last + total).saturating_sub(used).max(1);
    }
    sizes
}

/// AdamW on a burn model with these parameter sizes: burn's
/// `ModuleOptimizer` against `FusedOptimizer`, seconds per step each.
/// One model case: burn's step, the fused step and, on the same adopted
/// layout, the bare engine's step (grads already in its buffer), in
/// seconds; and the fused step's host phases per step.
struct ModelTimes {
    burn: f64,
    ours: f64,
    bare: f64,
    phases: StepPhases,
}

fn model(shared: &SharedDevice, sizes: &[usize], in_place: bool, a: &Args) -> ModelTimes {
    let device = shared.device.clone().autodiff();
    let make = || Many { ps: sizes.iter().map(|&n| Param::from_tensor(device.memory_persistent_allocations(n, |n| Tensor::<1>::random([n], Distribution::Uniform(-1.0, 1.0), &device)).require_grad())).collect() };
    let grads: Vec<Tensor<1>> = sizes.iter().map(|&n| Tensor::<1>::random([n], Distribution::Normal(0.0, 1.0), &shared.device)).collect();
    let register = |m: &Many| {
        let mut gp = GradientsParams::new();
        for (p, g) in m.ps.iter().zip(&grads) {
            gp.register(p.id, g.clone());
        }
        gp
    };
    let mut theirs = Some(make());
    let mut burn_optim: ModuleOptimizer = AdamWConfig::new().with_weight_decay(0.01).init();
    let (ours_model, mut fused) = FusedOptimizer::builder(wgpu_optim::AdamW { lr: LR, eps: 1e-5, weight_decay: 0.01, ..Default::default() }.into()).grads_in_place(in_place).build(shared, make()).expect("fused");
    let mut ours = Some(ours_model);
    let (mut burn_s, mut ours_s, mut bare_s) = (f64::INFINITY, f64::INFINITY, f64::INFINITY);
    let mut phases = StepPhases::default();
    for _ in 0..a.rounds.max(1) {
        burn_s = burn_s.min(timed(&shared.device, a.warmup, a.k, || {
            let m = theirs.take().expect("model");
            let gp = register(&m);
            theirs = Some(burn_optim.step(LR, m, gp));
        }));
        ours_s = ours_s.min(timed(&shared.device, a.warmup, a.k, || {
            let m = ours.take().expect("model");
            let gp = register(&m);
            ours = Some(fused.step(LR, m, gp).expect("step"));
        }));
        let round = fused.take_phases();
        if round.steps > 0 && (phases.steps == 0 || total(&round) / round.steps < total(&phases) / phases.steps) {
            phases = round;
        }
        bare_s = bare_s.min(timed(&shared.device, a.warmup, a.k, || fused.engine_mut().step().expect("engine step")));
    }
    ModelTimes { burn: burn_s, ours: ours_s, bare: bare_s, phases }
}

fn total(p: &StepPhases) -> std::time::Duration {
    p.check + p.collect + p.flush + p.record
}

/// Per step in ms: (check, collect, flush, record) of the round with the least host time.
fn phase_ms(p: &StepPhases) -> [f64; 4] {
    let n = p.steps.max(1) as f64;
    [p.check, p.collect, p.flush, p.record].map(|d| d.as_secs_f64() * 1e3 / n)
}

/// Newton–Schulz's first product, the Gram matrix X·Xᵀ of an m × k
/// matrix X, for a square 1024 matrix and a 1024 × 4096 one (a 4096 × 1024
/// weight as Muon transposes it): (m, k), the output m × m.
const GEMM_SHAPES: [(u32, u32); 2] = [(1024, 1024), (1024, 4096)];

/// burn's `x.matmul(x.transpose())` and our GEMM (the kernel Muon's
/// Newton–Schulz steps run: `matrix::gemm`, tiles or register blocks by
/// adapter, reading Xᵀ through strides as Muon does) on one f32 Gram
/// product, seconds per product (best of the rounds).
fn gemm(shared: &SharedDevice, (m, k): (u32, u32), a: &Args) -> (f64, f64) {
    use wgpu_optim::matrix::gemm::{Gemm, GemmKernel, Item};
    let dev = &shared.device;
    let x = Tensor::<2>::random([m as usize, k as usize], Distribution::Normal(0.0, 1.0), dev);
    let mut out = None;
    let mut burn = || timed(dev, a.warmup, a.k, || out = Some(x.clone().matmul(x.clone().transpose())));
    let kernel = Gemm::new(&shared.wgpu_device, GemmKernel::Auto).expect("gemm");
    let elements = (m * k + m * m) as u64;
    let scratch = shared.wgpu_device.create_buffer(&wgpu::BufferDescriptor { label: Some("gemm scratch"), size: 4 * elements, usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST, mapped_at_creation: false });
    let values: Vec<u8> = wgpu_optim::validate::random_params(7, elements as usize).iter().flat_map(|x| x.to_le_bytes()).collect();
    shared.queue.write_buffer(&scratch, 0, &values);
    let item = Item { m, n: m, k, a_off: 0, a_rs: k, a_cs: 1, b_off: 0, b_rs: 1, b_cs: k, d_off: 0, c_off: m * k, pad: 0 };
    let stage = kernel.stage(&shared.wgpu_device, &shared.queue, &scratch, &[item], 1.0, 0.0);
    let ours = || {
        timed(dev, a.warmup, a.k, || {
            let mut encoder = shared.wgpu_device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("gemm") });
            kernel.record(&mut encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("gemm"), timestamp_writes: None }), &stage);
            shared.queue.submit([encoder.finish()]);
        })
    };
    let t = best_of(a.rounds, &mut [&mut || burn(), &mut || ours()]);
    (t[0], t[1])
}

fn main() {
    let (a, rules_log2) = args();
    let shared = SharedDevice::new().expect("burn's wgpu device");
    println!("adapter: {}", shared.describe());
    println!("burn 0.22.1 with fusion; wall clock per step, flushed every step; k = {}, warmup = {}; best of {} interleaved rounds", a.k, a.warmup, a.rounds);
    let mut json = serde_json::json!({ "adapter": shared.describe(), "k": a.k, "warmup": a.warmup, "rounds": a.rounds, "rules": [], "models": [] });
    println!("{:<14} {:>10} {:>10} {:>10} {:>10} {:>10} {:>11} {:>11}", "rule", "elements", "burn ms", "vec4 ms", "wide ms", "burn GB/s", "vec4/burn", "wide/burn");
    for &log2 in &rules_log2 {
        for (name, bytes, t) in rules(&shared, log2, &a) {
            let (n, (burn_s, vec4_s, wide_s)) = (1u64 << log2, (t[0], t[1], t[2]));
            let gbps = |s: f64| (bytes * n) as f64 / s / 1e9;
            println!("{:<14} {:>10} {:>10.3} {:>10.3} {:>10.3} {:>10.2} {:>10.2}x {:>10.2}x", name, n, burn_s * 1e3, vec4_s * 1e3, wide_s * 1e3, gbps(burn_s), burn_s / vec4_s, burn_s / wide_s);
            json["rules"].as_array_mut().expect("array").push(serde_json::json!({ "rule": name, "elements": n, "bytes_per_element": bytes, "burn_ms": burn_s * 1e3, "vec4_ms": vec4_s * 1e3, "wide_ms": wide_s * 1e3, "vec4_speedup": burn_s / vec4_s, "wide_speedup": burn_s / wide_s }));
        }
    }
    json["gemm"] = serde_json::json!([]);
    for shape in GEMM_SHAPES.iter().take(a.gemm_shapes) {
        let (burn_s, ours_s) = gemm(&shared, *shape, &a);
        let flops = 2.0 * (shape.0 as f64) * (shape.1 as f64) * (shape.0 as f64);
        println!("GEMM X·Xᵀ, X {} x {} f32: burn matmul {:.3} ms ({:.2} GFLOP/s), ours {:.3} ms ({:.2} GFLOP/s): {:.2}x", shape.0, shape.1, burn_s * 1e3, flops / burn_s / 1e9, ours_s * 1e3, flops / ours_s / 1e9, burn_s / ours_s);
        json["gemm"].as_array_mut().expect("array").push(serde_json::json!({ "m": shape.0, "k": shape.1, "n": shape.0, "burn_ms": burn_s * 1e3, "ours_ms": ours_s * 1e3, "burn_gflops": flops / burn_s / 1e9, "ours_gflops": flops / ours_s / 1e9, "speedup": burn_s / ours_s }));
    }
    let total = 1usize << a.model_log2;
    let cases = [("one tensor", vec![total], true), ("one tensor, grads copied", vec![total], false), ("many tensors", model_sizes(a.tensors, total), true)];
    for (name, sizes, in_place) in cases {
        let t = model(&shared, &sizes, in_place, &a);
        let (burn_s, ours_s) = (t.burn, t.ours);
        println!("AdamW model, {name}: {} tensors, {} params: burn ModuleOptimizer {:.3} ms, FusedOptimizer {:.3} ms: {:.2}x", sizes.len(), total, burn_s * 1e3, ours_s * 1e3, burn_s / ours_s);
        let [check, collect, flush, record] = phase_ms(&t.phases);
        let host = check + collect + flush + record;
        let read_in_place = t.phases.in_place as f64 / t.phases.steps.max(1) as f64;
        println!("  bare engine on the same layout {:.3} ms (FusedOptimizer / bare {:.2}); grads read in place per step {read_in_place:.0} of {}; host per step: check {check:.3}, collect grads {collect:.3}, flush {flush:.3}, copies + step encode + submit {record:.3} ms; the rest ({:.3} ms) is the device", t.bare * 1e3, ours_s / t.bare, sizes.len(), (ours_s * 1e3 - host).max(0.0));
        json["models"].as_array_mut().expect("array").push(serde_json::json!({ "case": name, "tensors": sizes.len(), "params": total, "burn_ms": burn_s * 1e3, "ours_ms": ours_s * 1e3, "speedup": burn_s / ours_s, "bare_engine_ms": t.bare * 1e3, "ours_over_bare": ours_s / t.bare, "grads_in_place": read_in_place, "host_ms": { "check": check, "collect": collect, "flush": flush, "record": record } }));
    }
    if let Some(path) = a.json {
        std::fs::write(&path, serde_json::to_string_pretty(&json).expect("json")).expect("write json");
        println!("wrote {path}");
    }
}
