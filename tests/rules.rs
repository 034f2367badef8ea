//! Every registered rule × option set, 100 steps on random data at sizes
//! that are not multiples of 4 or of the workgroup size (and 10 steps at
//! 1,000,003 elements, where the GPU time goes), compared element by element
//! with the f64 reference (params and every state buffer) under the per-rule
//! bound `|gpu − ref| ≤ k·2⁻²⁴·Σ_t(|x_t| + |Δx_t|) + tiny` of
//! `RuleConfig::tolerance_k`.
//!
//! The tests are generated from the registry (`Rule::ALL`): a new rule is
//! tested by being registered, under its own name `<rule>_matches_reference`.

mod common;

use libtest_mimic::{Arguments, Failed, Trial};
use wgpu_optim::validate::{cases_of, run_case, run_case_against, Case, Workload};
use wgpu_optim::{Access, Adam, AdamW, EngineOptions, OptimizerConfig, Rule};

/// (elements, steps): long runs at sizes that exercise every tail and
/// partial workgroup, a short one at a size past 2^20.
const RUNS: [(usize, u32); 6] = [(1, 100), (3, 100), (255, 100), (257, 100), (100_003, 100), (1_000_003, 10)];

fn check_rule(rule: Rule) -> Result<(), Failed> {
    let Some(gpu) = common::gpu() else { return Ok(()) };
    let cases = cases_of(rule);
    if cases.is_empty() {
        return Err(format!("{} has no validation cases", rule.name()).into());
    }
    let mut failures = Vec::new();
    for c in &cases {
        for (i, &(n, steps)) in RUNS.iter().enumerate() {
            let r = run_case(&gpu.device, &gpu.queue, c, Workload { n, steps, seed: 7 + i as u64 }, EngineOptions::default())?;
            for q in &r.quantities {
                eprintln!("{:<34} n={:<8} {:<15} max|err|={:.3e} k_needed={:.3} k={} relL2={:.3e}", c.name, n, q.name, q.max_abs, q.k_needed, r.k, q.rel_l2);
            }
            if r.access == Access::Scalar {
                failures.push(format!("{} n={n}: the vector kernel did not run", c.name));
            }
            if !r.passed() {
                failures.push(format!("{} n={n}: worst k {:.3} > {}", c.name, r.worst_k(), r.k));
            }
            // Over a vector of any size the relative L2 error is at the f32
            // level (for 1 or 3 elements a norm near zero makes it meaningless).
            if n >= 255 && !r.quantities.iter().all(|q| q.rel_l2 < 1e-5) {
                failures.push(format!("{} n={n}: relative L2 error too large", c.name));
            }
        }
    }
    if failures.is_empty() { Ok(()) } else { Err(format!("{failures:#?}").into()) }
}

/// The real harness (`run_case_against`, `CaseReport::passed`) rejects a
/// reference that differs from the GPU's rule in one detail: a wrong β₂, a
/// bias correction one step off, eps inside instead of outside the root,
/// and a missing weight decay (coupled and decoupled). The grads vary per
/// step: with constant grads Adam's bias-corrected ratio would not depend
/// on β₂ at all.
fn harness_rejects_wrong_rules() -> Result<(), Failed> {
    let Some(gpu) = common::gpu() else { return Ok(()) };
    let work = Workload { n: 1003, steps: 20, seed: 3 };
    let adam = Adam::default();
    let cases: [(&str, OptimizerConfig, OptimizerConfig, u32); 5] = [
        ("wrong beta2", adam.into(), Adam { betas: (0.9, 0.99), ..adam }.into(), 0),
        ("bias correction one step off", adam.into(), adam.into(), 1),
        ("eps inside the root", Adam { eps: 1e-3, ..adam }.into(), Adam { eps: 1e-3, eps_inside_sqrt: true, ..adam }.into(), 0),
        ("missing L2 weight decay", Adam { weight_decay: 0.1, ..adam }.into(), adam.into(), 0),
        ("missing decoupled weight decay", AdamW { weight_decay: 0.1, ..AdamW::default() }.into(), AdamW { weight_decay: 0.0, ..AdamW::default() }.into(), 0),
    ];
    let mut missed = Vec::new();
    for (name, gpu_rule, wrong, shift) in cases {
        let report = run_case_against(&gpu.device, &gpu.queue, &Case::new(name, gpu_rule), work, EngineOptions::default(), &|t, p, g, s| wrong.reference_step(t + shift, p, g, s))?;
        eprintln!("{name}: worst k {:.1} against a bound of {}", report.worst_k(), report.k);
        if report.passed() {
            missed.push(name);
        }
    }
    if missed.is_empty() { Ok(()) } else { Err(format!("the harness accepted: {missed:?}").into()) }
}

fn main() {
    let args = Arguments::from_args();
    let mut trials: Vec<Trial> = Rule::ALL.iter().map(|&rule| Trial::test(format!("{}_matches_reference", rule.name()), move || check_rule(rule))).collect();
    trials.push(Trial::test("harness_rejects_wrong_rules", harness_rejects_wrong_rules));
    libtest_mimic::run(&args, trials).exit();
}
