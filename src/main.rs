//! `wgpu-optim`: the tour (default), validation tables, and more.

use clap::{Parser, Subcommand};
use wgpu_optim::validate::{all_cases, one_case_per_rule, run_case, CaseReport};
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

fn validate(size: usize, steps: u32, all: bool, seed: u64) -> Result<bool, wgpu_optim::OptimError> {
    let gpu = device::headless()?;
    println!("adapter: {}", gpu.describe());
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
    let result = match cli.command {
        None => validate(100_003, 100, false, 1),
        Some(Command::Validate { size, steps, all, seed }) => validate(size, steps, all, seed),
    };
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
