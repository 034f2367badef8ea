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
    /// Draw the paths of all eight rules on Beale, Rosenbrock and the saddle
    /// (computed on the GPU) into a PNG.
    Plot {
        /// Where to write the picture.
        #[arg(long, default_value = "trajectories.png")]
        out: PathBuf,
    },
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
    let result = device::headless().and_then(|gpu| {
        println!("adapter: {}", gpu.describe());
        match cli.command {
            None => tour(&gpu),
            Some(Command::Validate { size, steps, all, seed }) => validate(&gpu, size, steps, all, seed),
            Some(Command::Bench { size, reps, steps, rules, model_tensors, model_size, json }) => {
                bench(&gpu, BenchOptions { elements: size, reps, steps, rules, model_tensors, model_elements: model_size }, json)
            }
            Some(Command::Plot { out }) => plot(&gpu, &out),
        }
    });
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
