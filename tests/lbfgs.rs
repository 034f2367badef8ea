//! L-BFGS on the GPU against its f64 reference (PyTorch's algorithm): a
//! random SPD quadratic and chained Rosenbrock, with and without the
//! strong-Wolfe search, params split over several tensors at awkward
//! sizes. The first steps' iterates must agree within a bound derived from
//! the trajectory's own sensitivity to f32-sized errors, and both must
//! reach the same minimum. The line search is checked on its own.

mod common;

use wgpu_optim::device::read_f32;
use wgpu_optim::lbfgs::line_search::{strong_wolfe, Probe, C1, C2};
use wgpu_optim::lbfgs::objective::random_quadratic;
use wgpu_optim::lbfgs::reference::ReferenceLbfgs;
use wgpu_optim::lbfgs::{Lbfgs, LbfgsOptimizer, LineSearch, Objective, ObjectiveKind};
use wgpu_optim::random::random_params;
use wgpu_optim::validate::lbfgs::{gpu_path, max_diff, reference_path, LbfgsCase};
use wgpu_optim::OptimError;

const EPS32: f64 = f32::EPSILON as f64;

/// The first steps of every `validate --all` case against the reference,
/// under the bound `validate::lbfgs` derives from each trajectory's
/// sensitivity.
#[test]
fn the_first_steps_follow_the_reference() {
    let gpu = require_gpu!();
    for case in wgpu_optim::validate::lbfgs::cases(true) {
        let r = wgpu_optim::validate::lbfgs::run_case(&gpu.device, &gpu.queue, &case, 1).unwrap();
        eprintln!("{}: iterates at {:.3}, losses at {:.3} of the bound", r.name, r.iterate, r.loss);
        assert!(r.passed(), "{}: iterates at {}, losses at {} of the bound", r.name, r.iterate, r.loss);
    }
}

/// The minimiser of the quadratic, by Gaussian elimination in f64.
fn solve(kind: &ObjectiveKind, n: usize) -> Vec<f64> {
    let ObjectiveKind::Quadratic { a, b } = kind else { unreachable!() };
    let mut m: Vec<Vec<f64>> = (0..n).map(|i| (0..n).map(|j| a[i * n + j] as f64).chain([b[i] as f64]).collect()).collect();
    for c in 0..n {
        for r in c + 1..n {
            let f = m[r][c] / m[c][c];
            let pivot = m[c].clone();
            m[r].iter_mut().zip(&pivot).skip(c).for_each(|(v, p)| *v -= f * p);
        }
    }
    let mut x = vec![0.0; n];
    for r in (0..n).rev() {
        x[r] = (m[r][n] - (r + 1..n).map(|k| m[r][k] * x[k]).sum::<f64>()) / m[r][r];
    }
    x
}

/// Σᵢ |loss termᵢ| at x: the scale of the loss's rounding in f32.
fn loss_scale(kind: &ObjectiveKind, x: &[f64]) -> f64 {
    let n = x.len();
    match kind {
        ObjectiveKind::Quadratic { a, b } => (0..n).map(|i| 0.5 * x[i].abs() * (0..n).map(|j| (a[i * n + j] as f64 * x[j]).abs()).sum::<f64>() + (b[i] as f64 * x[i]).abs()).sum(),
        ObjectiveKind::Rosenbrock => kind.host_value(x).0,
    }
}

/// Both reach the minimum x*: the reference to 1e-4 in x; the GPU as close
/// in f − f* as ten times the reference (whose `tolerance_change` stops it
/// too), or to where its f32 loss stops resolving progress: 4·depth·ε₃₂·
/// Σ|loss terms| (the loss's rounding, which the line search and
/// `tolerance_change` compare against); and 1e-3 in x where f* = 0.
#[test]
fn both_reach_the_same_minimum() {
    let gpu = require_gpu!();
    let quadratic = random_quadratic(5, 40);
    for (kind, minimum) in [(&quadratic, solve(&quadratic, 40)), (&ObjectiveKind::Rosenbrock, vec![1.0; 40])] {
        let f_star = kind.host_value(&minimum).0;
        let floor = 4.0 * wgpu_optim::validate::lbfgs::depth(kind, 40) * EPS32 * loss_scale(kind, &minimum);
        for (name, options) in [("fixed", Lbfgs { lr: 0.25, ..Lbfgs::default() }), ("strong_wolfe", Lbfgs { line_search_fn: LineSearch::StrongWolfe, ..Lbfgs::default() })] {
            let x0 = random_params(11, 40);
            let steps = if options.line_search_fn == LineSearch::None { 60 } else { 10 };
            let case = LbfgsCase { name: name.into(), objective: kind.clone(), lens: vec![17, 23], options };
            let gpu_x = gpu_path(&gpu.device, &gpu.queue, &case, &x0, steps).unwrap().pop().unwrap().1;
            let ref_x = reference_path(kind, &x0, options, steps, 0.0).unwrap().pop().unwrap().1;
            let (gpu_gap, ref_err) = (kind.host_value(&gpu_x).0 - f_star, max_diff(&ref_x, &minimum));
            let floor = floor.max(10.0 * (kind.host_value(&ref_x).0 - f_star));
            eprintln!("{} {name}: GPU f − f* = {gpu_gap:e} (floor {floor:e}), max |x − x*| {:e}; reference max |x − x*| {ref_err:e}", kind.name(), max_diff(&gpu_x, &minimum));
            assert!(ref_err < 1e-4, "{} {name}: the reference ends {ref_err:e} from x*", kind.name());
            assert!(gpu_gap <= floor, "{} {name}: the GPU ends at f − f* = {gpu_gap:e} > {floor:e}", kind.name());
            if f_star == 0.0 {
                assert!(max_diff(&gpu_x, &minimum) < 1e-3, "{} {name}: the GPU ends {:e} from x*", kind.name(), max_diff(&gpu_x, &minimum));
            }
        }
    }
}

/// φ(t) of a 1-D function along d = 1 from 0, as the line search sees it.
fn probe(f: impl Fn(f64) -> (f64, f64), t: f64) -> Probe<()> {
    let (v, g) = f(t);
    Probe { f: v, g: (), gtd: g }
}

#[test]
fn an_exact_first_step_takes_one_evaluation() {
    // φ(t) = ½(t − 1)²: t = 1 is the minimum, so it meets both conditions.
    let phi = |t: f64| (0.5 * (t - 1.0) * (t - 1.0), t - 1.0);
    let found = strong_wolfe(&mut |t| Ok(probe(phi, t)), 1.0, 1.0, probe(phi, 0.0)).unwrap();
    assert_eq!((found.t, found.evals), (1.0, 1));
}

/// Two searches on φ(t) = ½(t − 1)², followed by hand through PyTorch's
/// `_strong_wolfe`: from t = 3 Armijo fails, the bracket [0, 3] is zoomed,
/// and the cubic through (0, ½, −1) and (3, 2, 2) lands on 1, which passes
/// both conditions (2 evaluations); from t = 0.05 the curvature condition
/// fails with φ' < 0, so the search extrapolates to the cubic's 1 clamped to
/// 10·0.05 = 0.5, which passes (2 evaluations).
#[test]
fn searches_followed_by_hand_through_pytorchs_code() {
    let phi = |t: f64| (0.5 * (t - 1.0) * (t - 1.0), t - 1.0);
    let zoomed = strong_wolfe(&mut |t| Ok(probe(phi, t)), 3.0, 1.0, probe(phi, 0.0)).unwrap();
    assert!((zoomed.t - 1.0).abs() < 1e-12 && zoomed.evals == 2, "from 3: t {} after {} evaluations", zoomed.t, zoomed.evals);
    let extrapolated = strong_wolfe(&mut |t| Ok(probe(phi, t)), 0.05, 1.0, probe(phi, 0.0)).unwrap();
    assert_eq!((extrapolated.t, extrapolated.evals), (0.5, 2));
}

#[test]
fn the_search_ends_on_a_strong_wolfe_point() {
    // Smooth 1-D functions with a descent start, from steps too short and too long.
    type Phi = fn(f64) -> (f64, f64);
    let functions: [(&str, Phi); 3] = [
        ("quadratic", |t| (0.5 * (t - 3.0) * (t - 3.0), t - 3.0)),
        ("quartic", |t| ((t - 0.2).powi(4) + 0.1 * t * t - 0.5 * t, 4.0 * (t - 0.2).powi(3) + 0.2 * t - 0.5)),
        ("rosenbrock line", |t| {
            let (x, y) = (-1.2 + t * 2.2, 1.0 + t * 0.1);
            let f = (1.0 - x) * (1.0 - x) + 100.0 * (y - x * x) * (y - x * x);
            (f, 2.2 * (-2.0 * (1.0 - x) - 400.0 * x * (y - x * x)) + 0.1 * 200.0 * (y - x * x))
        }),
    ];
    for (name, phi) in functions {
        let start = probe(phi, 0.0);
        for t0 in [1e-3, 0.1, 1.0, 20.0] {
            let found = strong_wolfe(&mut |t| Ok(probe(phi, t)), t0, 1.0, start.clone()).unwrap();
            let (f, g) = phi(found.t);
            assert!(f <= start.f + C1 * found.t * start.gtd, "{name} from {t0}: no sufficient decrease at {}", found.t);
            assert!(g.abs() <= -C2 * start.gtd, "{name} from {t0}: |φ'({})| = {g} > c2·|φ'(0)|", found.t);
            assert_eq!((found.at.f, found.at.gtd), (f, g), "{name} from {t0}: the evaluation returned is not at t");
        }
    }
}

#[test]
fn bad_input_is_refused_before_anything_changes() {
    let gpu = require_gpu!();
    let objective = Objective::new(&gpu.device, ObjectiveKind::Rosenbrock, &[0.5, 0.5, 0.5]).unwrap();
    let bad = [Lbfgs { lr: 0.0, ..Lbfgs::default() }, Lbfgs { history_size: 0, ..Lbfgs::default() }, Lbfgs { tolerance_grad: -1.0, ..Lbfgs::default() }, Lbfgs { max_iter: 0, ..Lbfgs::default() }];
    for options in bad {
        assert!(matches!(LbfgsOptimizer::new(&gpu.device, &gpu.queue, objective.slices(&[3]), options), Err(OptimError::InvalidHyperparameter { .. })), "{options:?}");
    }
    let huge = LbfgsOptimizer::new(&gpu.device, &gpu.queue, objective.slices(&[3]), Lbfgs { history_size: u32::MAX, ..Lbfgs::default() });
    assert!(matches!(huge, Err(OptimError::ExceedsLimits(_))), "{:?}", huge.err());
    let overlapping = [objective.slices(&[3]), objective.slices(&[3])].concat();
    assert!(matches!(LbfgsOptimizer::new(&gpu.device, &gpu.queue, overlapping, Lbfgs::default()), Err(OptimError::Overlap { .. })));
    let loss_only = gpu.device.create_buffer(&wgpu::BufferDescriptor { label: None, size: 16, usage: wgpu::BufferUsages::STORAGE, mapped_at_creation: false });
    let mut opt = LbfgsOptimizer::new(&gpu.device, &gpu.queue, objective.slices(&[3]), Lbfgs::default()).unwrap();
    let no_copy = opt.step(&mut |encoder| {
        objective.record(encoder);
        Ok(wgpu_optim::lbfgs::LossAt { buffer: loss_only.clone(), offset: 0 })
    });
    assert!(matches!(no_copy, Err(OptimError::MissingUsage { which: "loss", .. })), "{no_copy:?}");
    let past_the_end = opt.step(&mut |encoder| Ok(wgpu_optim::lbfgs::LossAt { offset: 4, ..objective.record(encoder) }));
    assert!(matches!(past_the_end, Err(OptimError::OutOfBounds { which: "loss", .. })), "{past_the_end:?}");
    assert_eq!(read_f32(&gpu.device, &gpu.queue, objective.params(), 0, 3).unwrap(), vec![0.5; 3]);
    assert_eq!(opt.host_state().n_iter, 0);
}

/// A checkpoint after 3 steps resumes bitwise: a fresh optimizer (built
/// with other options, which the file's replace) loaded from it and put at
/// the saved params takes the same next 2 steps as the original. A corrupt
/// file or another history_size is refused and changes nothing.
#[test]
fn checkpoints_resume_bitwise() {
    use wgpu_optim::checkpoint::lbfgs::{load_bytes, to_bytes};
    let gpu = require_gpu!();
    let options = Lbfgs { max_iter: 4, history_size: 3, line_search_fn: LineSearch::StrongWolfe, ..Lbfgs::default() };
    let x0 = random_params(21, 50);
    let objective = Objective::new(&gpu.device, ObjectiveKind::Rosenbrock, &x0).unwrap();
    let mut opt = LbfgsOptimizer::new(&gpu.device, &gpu.queue, objective.slices(&[20, 30]), options).unwrap();
    let read = |o: &Objective| read_f32(&gpu.device, &gpu.queue, o.params(), 0, 50).unwrap();
    let steps = |opt: &mut LbfgsOptimizer, o: &Objective, k| (0..k).map(|_| opt.step(&mut |e| Ok(o.record(e))).unwrap()).collect::<Vec<_>>();
    steps(&mut opt, &objective, 3);
    let (bytes, saved_x) = (to_bytes(&opt).unwrap(), read(&objective));
    assert_eq!(opt.history_len(), 3, "the history is full");
    assert!(opt.host_state().n_iter > 5, "too few iterations for the ring to have wrapped");
    let losses = steps(&mut opt, &objective, 2);

    let resumed = Objective::new(&gpu.device, ObjectiveKind::Rosenbrock, &saved_x).unwrap();
    let mut fresh = LbfgsOptimizer::new(&gpu.device, &gpu.queue, resumed.slices(&[50]), Lbfgs { lr: 0.5, line_search_fn: LineSearch::None, ..options }).unwrap();
    load_bytes(&mut fresh, &bytes).unwrap();
    assert_eq!(fresh.options(), Lbfgs { max_eval: Some(5), ..options });
    assert_eq!(steps(&mut fresh, &resumed, 2), losses);
    assert_eq!(read(&resumed), read(&objective), "the resumed params differ");
    assert_eq!(fresh.host_state(), opt.host_state());
    assert_eq!(fresh.read_state().unwrap(), opt.read_state().unwrap());

    let before = fresh.read_state().unwrap();
    let mut truncated = bytes.clone();
    truncated.truncate(bytes.len() - 9);
    assert!(matches!(load_bytes(&mut fresh, &truncated), Err(OptimError::Checkpoint(_))));
    let mut other = LbfgsOptimizer::new(&gpu.device, &gpu.queue, resumed.slices(&[50]), Lbfgs { history_size: 4, ..options }).unwrap();
    assert!(matches!(load_bytes(&mut other, &bytes), Err(OptimError::Checkpoint(_))));
    let short = Objective::new(&gpu.device, ObjectiveKind::Rosenbrock, &x0[..49]).unwrap();
    let mut shorter = LbfgsOptimizer::new(&gpu.device, &gpu.queue, short.slices(&[49]), options).unwrap();
    assert!(matches!(load_bytes(&mut shorter, &bytes), Err(OptimError::Checkpoint(_))));
    assert_eq!(fresh.read_state().unwrap(), before);
}

/// A closure that fails inside a line search, after an evaluation at a
/// trial point, leaves the params where PyTorch's would be: at the
/// iteration's start (it restores x after every evaluation), not at the
/// last trial point. (A failing closure's own recorded work is never
/// submitted.) The reference shows the first search takes more than one
/// evaluation, so the third call is its second.
#[test]
fn a_failed_evaluation_in_the_search_leaves_the_params_at_the_iterations_start() {
    let gpu = require_gpu!();
    let objective = Objective::new(&gpu.device, ObjectiveKind::Rosenbrock, &[0.0, 0.0, 0.0]).unwrap();
    let options = Lbfgs { line_search_fn: LineSearch::StrongWolfe, ..Lbfgs::default() };
    let mut reference = ReferenceLbfgs::new(Lbfgs { max_iter: 1, ..options }).unwrap();
    reference.step(&mut [0.0, 0.0, 0.0], &mut |x| ObjectiveKind::Rosenbrock.host_value(x));
    assert!(reference.host.func_evals >= 3, "the first search took {} evaluations", reference.host.func_evals - 1);
    let mut opt = LbfgsOptimizer::new(&gpu.device, &gpu.queue, objective.slices(&[3]), options).unwrap();
    let start = read_f32(&gpu.device, &gpu.queue, objective.params(), 0, 3).unwrap();
    let mut calls = 0;
    let failed = opt.step(&mut |encoder| {
        calls += 1;
        match calls {
            3 => Err(OptimError::InvalidOptions("the closure failed")),
            _ => Ok(objective.record(encoder)),
        }
    });
    assert!(matches!(failed, Err(OptimError::InvalidOptions(_))), "{failed:?}");
    assert_eq!(read_f32(&gpu.device, &gpu.queue, objective.params(), 0, 3).unwrap(), start);
}
