//! L-BFGS against its f64 reference (the tour, `wgpu-optim validate` and
//! `tests/lbfgs.rs`): the first steps' iterates and losses on a random SPD
//! quadratic and chained Rosenbrock, params split over several slices,
//! under a bound derived from each trajectory's own sensitivity.
//!
//! The bound at step j is [`K`] times how far the reference's iterate moves
//! when every gradient it sees is perturbed by depth·ε₃₂ (u uniform in
//! [−1, 1), new at every call; depth = the roundings of one GPU gradient
//! component: n + 8 for the quadratic's row of Ax, 8 for Rosenbrock), or
//! depth·ε₃₂·max |x| when that is larger. Iterates further on are not
//! compared: a line search's branch can flip on a last-bit difference, and
//! then the paths part (both still reach the minimum, tested apart).

use crate::error::Result;
use crate::lbfgs::objective::random_quadratic;
use crate::lbfgs::reference::ReferenceLbfgs;
use crate::lbfgs::{Lbfgs, LbfgsOptimizer, LineSearch, Objective, ObjectiveKind};
use crate::random::{random_params, uniform};

/// The bound's factor over the measured sensitivity.
pub const K: f64 = 16.0;
/// Steps compared.
pub const STEPS: u32 = 3;
const EPS32: f64 = f32::EPSILON as f64;

/// One case: an objective, the slices the params are split into, options.
#[derive(Clone, Debug)]
pub struct LbfgsCase {
    /// Its name in the table.
    pub name: String,
    /// The objective.
    pub objective: ObjectiveKind,
    /// Lengths of the param slices (their sum is n).
    pub lens: Vec<u64>,
    /// The options.
    pub options: Lbfgs,
}

/// The option sets: a fixed step and strong Wolfe (and, with `all`, a
/// history of 2) on a quadratic of 67 unknowns (slices 30, 1, 36) and
/// Rosenbrock of 301 (slices 256, 45). Short histories make the ring wrap.
pub fn cases(all: bool) -> Vec<LbfgsCase> {
    let mut sets = vec![
        ("fixed step", Lbfgs { lr: 0.5, max_iter: 5, history_size: 4, ..Lbfgs::default() }),
        ("strong_wolfe", Lbfgs { max_iter: 5, history_size: 4, line_search_fn: LineSearch::StrongWolfe, ..Lbfgs::default() }),
    ];
    if all {
        sets.push(("strong_wolfe, history 2", Lbfgs { max_iter: 4, history_size: 2, line_search_fn: LineSearch::StrongWolfe, ..Lbfgs::default() }));
    }
    let objectives = [("quadratic 67", random_quadratic(3, 67), vec![30, 1, 36]), ("rosenbrock 301", ObjectiveKind::Rosenbrock, vec![256, 45])];
    sets.iter()
        .flat_map(|(set, options)| objectives.iter().map(move |(name, objective, lens)| LbfgsCase { name: format!("lbfgs {name}, {set}"), objective: objective.clone(), lens: lens.clone(), options: *options }))
        .collect()
}

/// A case's outcome: the worst error over its bound, of the iterates and
/// of the losses each step returned.
#[derive(Clone, Debug)]
pub struct LbfgsCaseReport {
    /// The case's name.
    pub name: String,
    /// Elements.
    pub n: usize,
    /// Steps compared.
    pub steps: u32,
    /// max over steps of |x_GPU − x_ref|∞ / bound.
    pub iterate: f64,
    /// max over steps of |loss_GPU − loss_ref| / bound.
    pub loss: f64,
}

impl LbfgsCaseReport {
    /// Whether both are within their bounds.
    pub fn passed(&self) -> bool {
        self.iterate <= 1.0 && self.loss <= 1.0
    }
}

/// Roundings of one gradient component on the GPU.
pub fn depth(kind: &ObjectiveKind, n: usize) -> f64 {
    match kind {
        ObjectiveKind::Quadratic { .. } => n as f64 + 8.0,
        ObjectiveKind::Rosenbrock => 8.0,
    }
}

/// Each step's returned loss and the params after it.
pub type Path = Vec<(f64, Vec<f64>)>;

/// The reference's path over `steps` steps; with `noise`, each gradient
/// component scaled by (1 + noise·u).
///
/// **Errors:** as [`Lbfgs::validate`].
pub fn reference_path(kind: &ObjectiveKind, x0: &[f32], options: Lbfgs, steps: u32, noise: f64) -> Result<Path> {
    let mut opt = ReferenceLbfgs::new(options)?;
    let mut x: Vec<f64> = x0.iter().map(|&v| v as f64).collect();
    let mut calls = 0u64;
    let mut objective = |x: &[f64]| {
        calls += 1;
        let (f, g) = kind.host_value(x);
        (f, g.iter().enumerate().map(|(i, g)| g * (1.0 + noise * uniform(7, calls, i as u64) as f64)).collect())
    };
    Ok((0..steps).map(|_| (opt.step(&mut x, &mut objective), x.clone())).collect())
}

/// The GPU's path over `steps` steps of `case`'s objective, options and
/// slices from `x0`.
///
/// **Errors:** anything the optimizer reports.
pub fn gpu_path(device: &wgpu::Device, queue: &wgpu::Queue, case: &LbfgsCase, x0: &[f32], steps: u32) -> Result<Path> {
    let objective = Objective::new(device, case.objective.clone(), x0)?;
    let mut opt = LbfgsOptimizer::new(device, queue, objective.slices(&case.lens), case.options)?;
    (0..steps)
        .map(|_| {
            let loss = opt.step(&mut |encoder| Ok(objective.record(encoder)))?;
            let x = crate::device::read_f32(device, queue, objective.params(), 0, x0.len() as u64)?;
            Ok((loss, x.into_iter().map(f64::from).collect()))
        })
        .collect()
}

/// max |a − b|.
pub fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max)
}

/// Runs `case` from random params (`seed`) on the GPU and in the reference.
///
/// **Errors:** anything the optimizer reports.
pub fn run_case(device: &wgpu::Device, queue: &wgpu::Queue, case: &LbfgsCase, seed: u64) -> Result<LbfgsCaseReport> {
    let n = case.lens.iter().sum::<u64>() as usize;
    let x0 = random_params(seed + n as u64, n);
    let gpu = gpu_path(device, queue, case, &x0, STEPS)?;
    let exact = reference_path(&case.objective, &x0, case.options, STEPS, 0.0)?;
    let gamma = depth(&case.objective, n) * EPS32;
    let noisy = reference_path(&case.objective, &x0, case.options, STEPS, gamma)?;
    let (mut iterate, mut loss) = (0.0f64, 0.0f64);
    for ((g, e), p) in gpu.iter().zip(&exact).zip(&noisy) {
        let scale = e.1.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        let bound = max_diff(&p.1, &e.1).max(gamma * scale);
        iterate = iterate.max(max_diff(&g.1, &e.1) / (K * bound));
        let loss_bound = (p.0 - e.0).abs().max(gamma * e.0.abs().max(1.0));
        loss = loss.max((g.0 - e.0).abs() / (K * loss_bound));
    }
    Ok(LbfgsCaseReport { name: case.name.clone(), n, steps: STEPS, iterate, loss })
}
