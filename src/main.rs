//! `wgpu-optim`: the tour (default), validation tables, and more.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use wgpu_optim::validate::{all_cases, one_case_per_rule, run_case, CaseReport, Workload};
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
        /// Square matrices of the Muon GEMM case (0 skips it).
        #[arg(long, default_value_t = 4)]
        matrices: usize,
        /// Their size.
        #[arg(long, default_value_t = 256)]
        matrix_size: u64,
        /// Elements of the L-BFGS case (history 10; 0 skips it).
        #[arg(long, default_value_t = 1 << 20)]
        lbfgs_size: u64,
        /// Also write the results as JSON to this file: the adapter (name,
        /// backend, driver, features, limits), every row of the table and
        /// the ceilings, for a complete picture of any GPU.
        #[arg(long, alias = "gpu-report")]
        json: Option<PathBuf>,
    },
    /// Apply T steps of one optimizer to `params` with `grads[t]` at step t,
    /// read from a safetensors file; write params and state (PyTorch names).
    #[command(disable_help_flag = true, after_help = wgpu_optim::args::options_help())]
    Run {
        /// --optimizer NAME --input IN.safetensors --steps T --out OUT.safetensors [--reference]
        /// and the optimizer's options by their torch.optim names (listed below).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        words: Vec<String>,
    },
    /// Work with checkpoint files (no adapter needed).
    Checkpoint {
        #[command(subcommand)]
        action: CheckpointAction,
    },
    /// Draw the paths of the classic rules (SGD, Momentum, NAG, Adagrad,
    /// RMSprop, Adadelta, Adam, AdamW) on Beale, Rosenbrock and the saddle
    /// (computed on the GPU) into a PNG.
    Plot {
        /// Where to write the picture.
        #[arg(long, default_value = "trajectories.png")]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum CheckpointAction {
    /// Merge a sharded checkpoint set (its `NAME.index.json`, one file per
    /// rank) into the ordinary one-process checkpoint, which
    /// `Optimizer::load_checkpoint` reads.
    Merge {
        /// The set's index.
        #[arg(long)]
        index: PathBuf,
        /// Where to write the merged checkpoint.
        #[arg(long)]
        out: PathBuf,
    },
}

fn checkpoint_command(action: &CheckpointAction) -> Result<bool, wgpu_optim::OptimError> {
    match action {
        CheckpointAction::Merge { index, out } => {
            let merged = wgpu_optim::shard::files::merge(index)?;
            wgpu_optim::checkpoint::write_atomic(out, &merged)?;
            println!("merged {} into {} ({} bytes)", index.display(), out.display(), merged.len());
            Ok(true)
        }
    }
}

/// `wgpu-optim run`'s own arguments; every other word is an optimizer option.
struct RunArgs {
    optimizer: String,
    input: PathBuf,
    steps: u32,
    out: PathBuf,
    reference: bool,
    objective: Option<String>,
    options: Vec<String>,
}

const RUN_USAGE: &str = "usage: wgpu-optim run --optimizer NAME --input IN.safetensors --steps T --out OUT.safetensors [--reference] [--OPTION VALUE ...]\n       wgpu-optim run --optimizer lbfgs --objective rosenbrock|quadratic --input IN --steps T --out OUT [--reference] [--OPTION VALUE ...]";

impl RunArgs {
    /// Splits the words into the run's arguments and the optimizer options.
    fn parse(words: &[String]) -> Result<Self, String> {
        let (mut optimizer, mut input, mut steps, mut out, mut reference, mut objective, mut options) = (None, None, None, None, false, None, Vec::new());
        let mut it = words.iter();
        while let Some(w) = it.next() {
            let (key, inline) = w.split_once('=').map_or((w.as_str(), None), |(k, v)| (k, Some(v.to_string())));
            let mut value = |name: &str| inline.clone().or_else(|| it.next().cloned()).ok_or(format!("{name} needs a value"));
            match key {
                "--optimizer" => optimizer = Some(value("--optimizer")?),
                "--input" => input = Some(PathBuf::from(value("--input")?)),
                "--steps" => steps = Some(value("--steps")?.parse::<u32>().map_err(|_| "--steps needs a step count".to_string())?),
                "--out" => out = Some(PathBuf::from(value("--out")?)),
                "--reference" => reference = true,
                "--objective" => objective = Some(value("--objective")?),
                _ => options.push(w.clone()),
            }
        }
        let need = |what: &str| format!("missing {what}\n{RUN_USAGE}");
        Ok(RunArgs { optimizer: optimizer.ok_or_else(|| need("--optimizer"))?, input: input.ok_or_else(|| need("--input"))?, steps: steps.ok_or_else(|| need("--steps"))?, out: out.ok_or_else(|| need("--out"))?, reference, objective, options })
    }
}

/// `run --help`: the usage and every registered optimizer's options.
fn run_help() -> String {
    format!("Apply T steps of one optimizer to `params` with `grads[t]` at step t (safetensors IN: params f32 [N] or [R, C], grads f32 [T, N] or [T, R, C], optional hessians f32 [T, N]); write params, state by PyTorch name and step to OUT (f32; f64 with --reference, the CPU reference). L-BFGS instead minimises an objective computed on the GPU: IN holds params f32 [N] (and A [N, N], b [N] for the quadratic ½xᵀAx − bᵀx); OUT holds params, loss [T] (what each step returned), func_evals and n_iter.\n\n{RUN_USAGE}\n\n{}", wgpu_optim::args::options_help())
}

fn run_command(words: &[String]) -> Result<bool, wgpu_optim::OptimError> {
    if words.iter().any(|w| w == "--help" || w == "-h") {
        println!("{}", run_help());
        return Ok(true);
    }
    let args = RunArgs::parse(words).map_err(|e| wgpu_optim::OptimError::InvalidOptionValue { option: "run".into(), value: e })?;
    let options = wgpu_optim::args::pytorch_options(&args.optimizer, &args.options)?;
    let rule = wgpu_optim::run::RunRule::from_pytorch(&args.optimizer, &options)?;
    let (name, described) = rule.describe();
    println!("optimizer: {name} {}", serde_json::Value::Object(described));
    let gpu = if args.reference { None } else { Some(device::headless()?) };
    match &gpu {
        Some(g) => println!("adapter: {}", g.describe()),
        None => println!("f64 CPU reference"),
    }
    let gpu = gpu.as_ref().map(|g| (&g.device, &g.queue));
    if let (wgpu_optim::run::RunRule::Lbfgs(options), Some(objective)) = (rule, &args.objective) {
        let out = wgpu_optim::run::lbfgs::run_files(gpu, options, objective, &args.input, args.steps, &args.out)?;
        println!("{} steps of L-BFGS on {objective} over {} params: {} iterations, {} closure calls, loss {:e}; wrote params, loss, func_evals and n_iter to {}", args.steps, out.params.len(), out.n_iter, out.func_evals, out.loss.last().copied().unwrap_or(f64::NAN), args.out.display());
        return Ok(true);
    }
    if args.objective.is_some() {
        return Err(wgpu_optim::OptimError::InvalidOptions("--objective is for --optimizer lbfgs; other optimizers read grads from the input"));
    }
    let out = wgpu_optim::run::run_files(gpu, rule, &args.input, args.steps, &args.out)?;
    let names: Vec<_> = out.state.iter().map(|s| s.name).collect();
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
    let short = BenchOptions { elements: 1 << 20, reps: 3, steps: 2, rules: Vec::new(), model_tensors: 1000, model_elements: 1 << 20, matrices: 2, matrix_size: 128, lbfgs_elements: 1 << 18 };
    print!("{}", bench::format_report(&run_bench(gpu, &short)?));
    println!("\n== trajectories: SGD, Momentum, NAG, Adagrad, RMSprop, Adadelta, Adam and AdamW on three surfaces, and L-BFGS on Rosenbrock, entirely on the GPU ==");
    plot(gpu, Path::new("trajectories.png"))?;
    let start = [-2.0, 2.0];
    let path = wgpu_optim::plot::lbfgs_rosenbrock(&gpu.device, &gpu.queue, start, wgpu_optim::plot::LBFGS_REACH)?;
    let end = path.points.last().copied().unwrap_or(start);
    let verdict = if path.reached { "within" } else { "NOT within" };
    println!("L-BFGS (strong Wolfe) on 2-D Rosenbrock from (-2, 2): {verdict} {:e} of (1, 1) after {} iterations and {} evaluations, at ({}, {})", wgpu_optim::plot::LBFGS_REACH, path.points.len() - 1, path.evaluations, end[0], end[1]);
    Ok(valid && path.reached)
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
    println!("{:<36} {:>9} {:>6} {:>11} {:>9} {:>7} {:>11}  pass", "case", "size", "steps", "max |err|", "k needed", "k bound", "rel L2");
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
        reports.push(run_case(&gpu.device, &gpu.queue, &c, Workload { n: size, steps, seed }, EngineOptions::default())?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    print_table(&reports);
    let tensor_wise = validate_tensor_wise(gpu, steps, all, seed)?;
    let lbfgs = validate_lbfgs(gpu, all, seed)?;
    Ok(reports.iter().all(|r| r.passed()) && tensor_wise && lbfgs)
}

/// L-BFGS's table: its first steps' iterates and losses as fractions of the
/// bounds derived from each trajectory's sensitivity.
fn validate_lbfgs(gpu: &device::Gpu, all: bool, seed: u64) -> Result<bool, wgpu_optim::OptimError> {
    use wgpu_optim::validate::lbfgs::{cases, run_case, K, STEPS};
    println!("
l-bfgs ({STEPS} steps; error / ({K} x the trajectory's sensitivity to f32 gradient errors), pass at <= 1):");
    println!("{:<46} {:>6} {:>14} {:>12}  pass", "case", "n", "iterate/bound", "loss/bound");
    let mut passed = true;
    for case in cases(all) {
        let r = run_case(&gpu.device, &gpu.queue, &case, seed)?;
        println!("{:<46} {:>6} {:>14.4} {:>12.4}  {}", r.name, r.n, r.iterate, r.loss, if r.passed() { "ok" } else { "FAIL" });
        passed &= r.passed();
    }
    Ok(passed)
}

/// The tensor-wise rules' table: params (normwise, worst tensor) and state
/// (worst element) as fractions of the bounds their references derive.
fn validate_tensor_wise(gpu: &device::Gpu, steps: u32, all: bool, seed: u64) -> Result<bool, wgpu_optim::OptimError> {
    println!("\ntensor-wise rules (several tensors of one step; error / derived bound, pass at <= 1):");
    println!("{:<36} {:<30} {:>6} {:>13} {:>13}  pass", "case", "shapes", "steps", "params/bound", "state/bound");
    let mut passed = true;
    for (name, rule) in wgpu_optim::validate::tensor::cases(all) {
        let r = wgpu_optim::validate::tensor::run_case(&gpu.device, &gpu.queue, &name, rule, steps, seed)?;
        println!("{:<36} {:<30} {:>6} {:>13.4} {:>13.4}  {}", r.name, r.shapes, r.steps, r.params, r.state, if r.passed() { "ok" } else { "FAIL" });
        passed &= r.passed();
    }
    Ok(passed)
}

fn main() {
    let cli = Cli::parse();
    let result = match &cli.command {
        // The reference needs no adapter; the GPU path opens its own.
        Some(Command::Run { words }) => run_command(words),
        Some(Command::Checkpoint { action }) => checkpoint_command(action),
        _ => with_gpu(cli.command),
    };
    report(result);
}

fn with_gpu(command: Option<Command>) -> Result<bool, wgpu_optim::OptimError> {
    device::headless().and_then(|gpu| {
        println!("adapter: {}", gpu.describe());
        match command {
            None => tour(&gpu),
            Some(Command::Validate { size, steps, all, seed }) => validate(&gpu, size, steps, all, seed),
            Some(Command::Bench { size, reps, steps, rules, model_tensors, model_size, matrices, matrix_size, lbfgs_size, json }) => {
                bench(&gpu, BenchOptions { elements: size, reps, steps, rules, model_tensors, model_elements: model_size, matrices, matrix_size, lbfgs_elements: lbfgs_size }, json)
            }
            Some(Command::Plot { out }) => plot(&gpu, &out),
            Some(Command::Run { .. } | Command::Checkpoint { .. }) => unreachable!("handled before opening a device"),
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
