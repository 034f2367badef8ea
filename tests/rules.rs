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
use wgpu_optim::validate::{cases_of, run_case, Workload};
use wgpu_optim::{EngineOptions, Rule};

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
            if !r.vec4 {
                failures.push(format!("{} n={n}: the vec4 kernel did not run", c.name));
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

/// The comparison must be able to fail: a reference with a different beta2
/// is far outside the bound. (The grads vary per step: with constant grads
/// Adam's bias-corrected ratio does not depend on beta2 at all.)
fn harness_detects_a_wrong_rule() -> Result<(), Failed> {
    let Some(gpu) = common::gpu() else { return Ok(()) };
    use wgpu_optim::reference::ReferenceOptimizer;
    use wgpu_optim::{device::read_f32, Adam, Optimizer, ParamSlice};
    let n = 1001;
    let p0 = wgpu_optim::validate::random_params(3, n);
    let (p, gb) = (common::storage_buffer(gpu, &p0), common::storage_buffer(gpu, &vec![0.0; n]));
    let mut opt = Optimizer::new(&gpu.device, &gpu.queue, Adam::default().into(), &[ParamSlice::whole(&p, &gb)]).unwrap();
    let wrong = Adam { betas: (0.9, 0.99), ..Adam::default() };
    let mut reference = ReferenceOptimizer::new(wrong.into(), n).unwrap();
    let mut pr: Vec<f64> = p0.iter().map(|&x| x as f64).collect();
    for t in 0..5 {
        let g: Vec<f32> = (0..n).map(|i| wgpu_optim::validate::uniform(3, t, i as u64)).collect();
        let g64: Vec<f64> = g.iter().map(|&x| x as f64).collect();
        gpu.queue.write_buffer(&gb, 0, bytemuck::cast_slice(&g));
        opt.step().unwrap();
        reference.step(&mut pr, &g64).unwrap();
    }
    let out = read_f32(&gpu.device, &gpu.queue, &p, 0, n as u64).unwrap();
    let max_err = out.iter().zip(&pr).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
    // One f32 rounding of a param is ~6e-8; the wrong beta2 moves params far more.
    assert!(max_err > 1e-5, "a wrong beta2 went unnoticed (max err {max_err})");
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let mut trials: Vec<Trial> = Rule::ALL.iter().map(|&rule| Trial::test(format!("{}_matches_reference", rule.name()), move || check_rule(rule))).collect();
    trials.push(Trial::test("harness_detects_a_wrong_rule", harness_detects_a_wrong_rule));
    libtest_mimic::run(&args, trials).exit();
}
