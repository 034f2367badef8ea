//! `wgpu-optim`: the tour (default), validation tables, and more.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use wgpu_optim::validate::{all_cases, one_case_per_rule, run_case, CaseReport};
use wgpu_optim::bench::{self, BenchOptions};
use wgpu_optim::{device, EngineOptions};

#[derive(Parser)]
#[command(name = "wgpu-optim", version, about = "Fused GPU optimizer update rules in WGSL, validated against an f64 CPU reference")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate rules against the f64 CPU reference and print a table.
    Validate {
        /// Elements per parameter vector.
        #[arg(long, default_value_t = 100_003)]
        size: usize,
        /// Steps per case.
        #[arg(long, default_value_t = 100)]
        steps: u32,
        /// Every option set, not just one case per rule.
        #[arg(long)]
        all: bool,
        /// Seed of the random params and grads.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Measure each rule against the adapter's bandwidth ceiling and the
    /// unfused baseline, and the 1000-tensor model case, in one run.
    Bench {
        /// Elements of the flat vector per rule.
        #[arg(long, default_value_t = 1 << 24)]
        size: u64,
        /// Timed submissions per measurement (the median is reported).
        #[arg(long, default_value_t = 5)]
        reps: u32,
        /// Steps recorded per submission.
        #[arg(long, default_value_t = 2)]
        steps: u32,
        /// Only these rules (comma-separated names, e.g. adam,adamw).
        #[arg(long, value_delimiter = ',')]
        rules: Vec<String>,
        /// Tensors in the whole-model case (0 skips it).
        #[arg(long, default_value_t = 1000)]
        model_tensors: usize,
        /// Total params of the whole-model case.
        #[arg(long, default_value_t = 1 << 24)]
        model_size: u64,
        /// Also write the results as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Apply T steps of one optimizer to `params` with `grads[t]` at step t,
    /// read from a safetensors file; write params and state (PyTorch names).
    Run(Box<RunArgs>),
    /// Draw the paths of all eight rules on Beale, Rosenbrock and the saddle
    /// (computed on the GPU) into a PNG.
    Plot {
        /// Where to write the picture.
        #[arg(long, default_value = "trajectories.png")]
        out: PathBuf,
    },
}

/// `wgpu-optim run`: options by their `torch.optim` names (unset ones keep
/// PyTorch's defaults; kebab-case aliases are accepted too).
#[derive(clap::Args)]
struct RunArgs {
    /// torch.optim class: sgd, adagrad, rmsprop, adadelta, adam, adamw, adamax, nadam, radam; or newton.
    #[arg(long)]
    optimizer: String,
    /// safetensors with `params` f32 [N] and `grads` f32 [T, N].
    #[arg(long)]
    input: PathBuf,
    /// Steps to apply (at most the rows of `grads`).
    #[arg(long)]
    steps: u32,
    /// Where to write `params`, the state tensors and `step`.
    #[arg(long)]
    out: PathBuf,
    /// Run the f64 CPU reference instead of the GPU (output in f64).
    #[arg(long)]
    reference: bool,
    /// Learning rate (every optimizer).
    #[arg(long)]
    lr: Option<f64>,
    /// Momentum factor (sgd, rmsprop).
    #[arg(long)]
    momentum: Option<f64>,
    /// Dampening for momentum (sgd).
    #[arg(long)]
    dampening: Option<f64>,
    /// L2 penalty; decoupled for adamw (every optimizer).
    #[arg(long = "weight_decay", visible_alias = "weight-decay")]
    weight_decay: Option<f64>,
    /// Nesterov momentum (sgd).
    #[arg(long)]
    nesterov: bool,
    /// Maximize the objective (every optimizer).
    #[arg(long)]
    maximize: bool,
    /// Learning-rate decay (adagrad).
    #[arg(long = "lr_decay", visible_alias = "lr-decay")]
    lr_decay: Option<f64>,
    /// Initial value of `sum` (adagrad).
    #[arg(long = "initial_accumulator_value", visible_alias = "initial-accumulator-value")]
    initial_accumulator_value: Option<f64>,
    /// Term added for numerical stability (all but sgd).
    #[arg(long)]
    eps: Option<f64>,
    /// Smoothing constant (rmsprop).
    #[arg(long)]
    alpha: Option<f64>,
    /// Centered RMSprop (rmsprop).
    #[arg(long)]
    centered: bool,
    /// Coefficient of the running averages (adadelta).
    #[arg(long)]
    rho: Option<f64>,
    /// Coefficients of the running averages, e.g. `--betas 0.9,0.999` (adam, adamw).
    #[arg(long, value_delimiter = ',')]
    betas: Option<Vec<f64>>,
    /// AMSGrad variant (adam, adamw).
    #[arg(long)]
    amsgrad: bool,
    /// Momentum schedule ψ (nadam).
    #[arg(long = "momentum_decay", visible_alias = "momentum-decay")]
    momentum_decay: Option<f64>,
    /// Decoupled weight decay (nadam, radam).
    #[arg(long = "decoupled_weight_decay", visible_alias = "decoupled-weight-decay")]
    decoupled_weight_decay: bool,
    /// Added to |h| (newton).
    #[arg(long)]
    damping: Option<f64>,
    /// EMA of the grads, Sophia's β₁ (newton).
    #[arg(long)]
    beta1: Option<f64>,
    /// EMA of the Hessian diagonal, Sophia's β₂ (newton).
    #[arg(long)]
    beta2: Option<f64>,
    /// Per-coordinate clip of the update (newton).
    #[arg(long)]
    clip: Option<f64>,
    /// Textbook eps placement (not a PyTorch option; see the README).
    #[arg(long = "eps_inside_sqrt", visible_alias = "eps-inside-sqrt")]
    eps_inside_sqrt: bool,
}

impl RunArgs {
    /// The options that were given, by PyTorch name.
    fn pytorch_options(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        let numbers = [
            ("lr", self.lr),
            ("momentum", self.momentum),
            ("dampening", self.dampening),
            ("weight_decay", self.weight_decay),
            ("lr_decay", self.lr_decay),
            ("initial_accumulator_value", self.initial_accumulator_value),
            ("eps", self.eps),
            ("alpha", self.alpha),
            ("rho", self.rho),
            ("momentum_decay", self.momentum_decay),
            ("damping", self.damping),
            ("beta1", self.beta1),
            ("beta2", self.beta2),
            ("clip", self.clip),
        ];
        for (k, v) in numbers {
            if let Some(v) = v {
                m.insert(k.into(), v.into());
            }
        }
        let flags = [("nesterov", self.nesterov), ("maximize", self.maximize), ("centered", self.centered), ("amsgrad", self.amsgrad), ("eps_inside_sqrt", self.eps_inside_sqrt), ("decoupled_weight_decay", self.decoupled_weight_decay)];
        for (k, set) in flags {
            if set {
                m.insert(k.into(), true.into());
            }
        }
        if let Some(b) = &self.betas {
            m.insert("betas".into(), serde_json::json!(b));
        }
        m
    }
}

fn run_command(args: &RunArgs) -> Result<bool, wgpu_optim::OptimError> {
    let config = wgpu_optim::OptimizerConfig::from_pytorch(&args.optimizer, &args.pytorch_options())?;
    println!("optimizer: {} {}", config.pytorch_name(), serde_json::Value::Object(config.to_pytorch()));
    let gpu = if args.reference { None } else { Some(device::headless()?) };
    match &gpu {
        Some(g) => println!("adapter: {}", g.describe()),
        None => println!("f64 CPU reference"),
    }
    let out = wgpu_optim::run::run_files(gpu.as_ref().map(|g| (&g.device, &g.queue)), config, &args.input, args.steps, &args.out)?;
    let names: Vec<_> = out.state.iter().map(|(n, _)| *n).collect();
    println!("{} steps over {} params; wrote params, {} and step to {}", out.steps, out.params.len(), if names.is_empty() { "no state".to_string() } else { names.join(", ") }, args.out.display());
    Ok(true)
}

fn plot(gpu: &device::Gpu, out: &Path) -> Result<bool, wgpu_optim::OptimError> {
    let computed = wgpu_optim::plot::trajectories_png(&gpu.device, &gpu.queue, out)?;
    for (panel, paths) in &computed {
        let ends: Vec<String> = paths
            .iter()
            .map(|p| {
                let (_, f) = p.end(panel.surface);
                format!("{} f={f:.2e}", p.label)
            })
            .collect();
        println!("{:<10} {} steps: {}", panel.surface.name(), panel.steps, ends.join(", "));
    }
    println!("wrote {}", std::fs::canonicalize(out).unwrap_or_else(|_| out.to_path_buf()).display());
    Ok(true)
}

/// The main job: adapter, validation table, a short benchmark, the picture.
fn tour(gpu: &device::Gpu) -> Result<bool, wgpu_optim::OptimError> {
    println!("\n== validation: every rule against the f64 CPU reference (100,003 elements, 100 steps) ==");
    let valid = validate(gpu, 100_003, 100, false, 1)?;
    println!("\n== short benchmark (2^20 elements; `wgpu-optim bench` runs the full 2^24) ==");
    let short = BenchOptions { elements: 1 << 20, reps: 3, steps: 2, rules: Vec::new(), model_tensors: 1000, model_elements: 1 << 20 };
    print!("{}", bench::format_report(&run_bench(gpu, &short)?));
    println!("\n== trajectories: the eight rules on three surfaces, entirely on the GPU ==");
    plot(gpu, Path::new("trajectories.png"))?;
    Ok(valid)
}

fn bench(gpu: &device::Gpu, options: BenchOptions, json: Option<PathBuf>) -> Result<bool, wgpu_optim::OptimError> {
    let report = run_bench(gpu, &options)?;
    print!("{}", bench::format_report(&report));
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&report).expect("report serializes");
        std::fs::write(&path, text).map_err(|e| wgpu_optim::OptimError::io(&path, e))?;
        println!("wrote {}", path.display());
    }
    Ok(true)
}

/// Runs the benchmark with a spinner showing the current measurement.
fn run_bench(gpu: &device::Gpu, options: &BenchOptions) -> Result<bench::BenchReport, wgpu_optim::OptimError> {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    let report = bench::run(&gpu.device, &gpu.queue, &gpu.describe(), options, &mut |what| bar.set_message(what.to_string()));
    bar.finish_and_clear();
    report
}

fn print_table(reports: &[CaseReport]) {
    println!("{:<36} {:>9} {:>6} {:>11} {:>9} {:>7} {:>11}  {}", "case", "size", "steps", "max |err|", "k needed", "k bound", "rel L2", "pass");
    for r in reports {
        let rel = r.quantities.iter().map(|q| q.rel_l2).fold(0.0, f64::max);
        println!(
            "{:<36} {:>9} {:>6} {:>11.3e} {:>9.2} {:>7.1} {:>11.3e}  {}",
            r.name,
            r.n,
            r.steps,
            r.max_abs(),
            r.worst_k(),
            r.k,
            rel,
            if r.passed() { "ok" } else { "FAIL" }
        );
    }
}

fn validate(gpu: &device::Gpu, size: usize, steps: u32, all: bool, seed: u64) -> Result<bool, wgpu_optim::OptimError> {
    let cases = if all { all_cases() } else { one_case_per_rule() };
    let bar = indicatif::ProgressBar::new(cases.len() as u64);
    let mut reports = Vec::new();
    for c in cases {
        bar.set_message(c.name.clone());
        reports.push(run_case(&gpu.device, &gpu.queue, &c.name, c.config, size, steps, seed, EngineOptions::default())?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    print_table(&reports);
    Ok(reports.iter().all(|r| r.passed()))
}

fn main() {
    let cli = Cli::parse();
    let result = if let Some(Command::Run(args)) = &cli.command {
        // The reference needs no adapter; the GPU path opens its own.
        run_command(args)
    } else {
        with_gpu(cli.command)
    };
    report(result);
}

fn with_gpu(command: Option<Command>) -> Result<bool, wgpu_optim::OptimError> {
    device::headless().and_then(|gpu| {
        println!("adapter: {}", gpu.describe());
        match command {
            None => tour(&gpu),
            Some(Command::Validate { size, steps, all, seed }) => validate(&gpu, size, steps, all, seed),
            Some(Command::Bench { size, reps, steps, rules, model_tensors, model_size, json }) => {
                bench(&gpu, BenchOptions { elements: size, reps, steps, rules, model_tensors, model_elements: model_size }, json)
            }
            Some(Command::Plot { out }) => plot(&gpu, &out),
            Some(Command::Run(_)) => unreachable!("handled before opening a device"),
        }
    })
}

fn report(result: Result<bool, wgpu_optim::OptimError>) {
    match result {
        Ok(true) => {}
        Ok(false) => {
            eprintln!("validation FAILED");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
}
