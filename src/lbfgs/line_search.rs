//! PyTorch's strong-Wolfe line search (`_strong_wolfe`, `_cubic_interpolate`
//! in `torch/optim/lbfgs.py`, ported there from minFunc's lswolfe.lua),
//! generic over where a gradient lives: the f64 reference passes host
//! vectors, the GPU optimizer handles to GPU buffers. Only scalars are
//! decided here, in f64.

use crate::error::Result;

/// Sufficient decrease (Armijo) constant.
pub const C1: f64 = 1e-4;
/// Curvature constant.
pub const C2: f64 = 0.9;
/// The bracket's smallest width, times max |d| (PyTorch's default, not the
/// optimizer's `tolerance_change`).
pub const TOLERANCE_CHANGE: f64 = 1e-9;
/// Evaluations per search.
pub const MAX_LS: u32 = 25;

/// One evaluation of the objective at x + t·d: its loss, its gradient and
/// the directional derivative gᵀd.
#[derive(Clone, Debug)]
pub struct Probe<G> {
    /// The loss.
    pub f: f64,
    /// The gradient, wherever it lives.
    pub g: G,
    /// gᵀd.
    pub gtd: f64,
}

/// What a search found: the step t, its evaluation, and the closure calls
/// it made.
#[derive(Clone, Debug)]
pub struct Found<G> {
    /// The step length.
    pub t: f64,
    /// The evaluation at t.
    pub at: Probe<G>,
    /// Closure calls made.
    pub evals: u32,
}

/// The minimiser of the cubic through (x1, f1, g1) and (x2, f2, g2),
/// clamped to `bounds` (default: between x1 and x2); the midpoint of the
/// bounds when the cubic has no minimiser.
pub fn cubic_interpolate(x1: f64, f1: f64, g1: f64, x2: f64, f2: f64, g2: f64, bounds: Option<(f64, f64)>) -> f64 {
    let (lo, hi) = bounds.unwrap_or(if x1 <= x2 { (x1, x2) } else { (x2, x1) });
    let d1 = g1 + g2 - 3.0 * (f1 - f2) / (x1 - x2);
    let d2_square = d1 * d1 - g1 * g2;
    if d2_square >= 0.0 {
        let d2 = d2_square.sqrt();
        let min_pos = if x1 <= x2 { x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2.0 * d2)) } else { x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2.0 * d2)) };
        // Python's min(max(..)): a NaN min_pos stays NaN, as in PyTorch.
        py_min(py_max(min_pos, lo), hi)
    } else {
        (lo + hi) / 2.0
    }
}

/// Python's `max(a, b)`: `a` unless `b > a`.
fn py_max(a: f64, b: f64) -> f64 {
    if b > a { b } else { a }
}

/// Python's `min(a, b)`: `a` unless `b < a`.
fn py_min(a: f64, b: f64) -> f64 {
    if b < a { b } else { a }
}

/// The two ends of a bracket, with their evaluations.
struct Bracket<G> {
    t: [f64; 2],
    at: [Probe<G>; 2],
}

impl<G: Clone> Bracket<G> {
    /// (low, high): the end with the lower loss first, the first on ties.
    fn ends(&self) -> (usize, usize) {
        if self.at[0].f <= self.at[1].f { (0, 1) } else { (1, 0) }
    }
}

/// The strong-Wolfe search along d from t, given the loss f, gradient g and
/// gᵀd at x; `eval(t)` evaluates at x + t·d, and `d_norm` is max |d|.
///
/// **Errors:** whatever `eval` returns.
pub fn strong_wolfe<G: Clone>(eval: &mut impl FnMut(f64) -> Result<Probe<G>>, mut t: f64, d_norm: f64, start: Probe<G>) -> Result<Found<G>> {
    let (f, gtd) = (start.f, start.gtd);
    let mut new = eval(t)?;
    let mut evals = 1;
    let (mut t_prev, mut prev) = (0.0, start.clone());
    let mut ls_iter = 0;
    let mut bracket = None;
    let mut done = false;
    while ls_iter < MAX_LS {
        if new.f > f + C1 * t * gtd || (ls_iter > 1 && new.f >= prev.f) {
            bracket = Some(Bracket { t: [t_prev, t], at: [prev, new.clone()] });
            break;
        }
        if new.gtd.abs() <= -C2 * gtd {
            // A bracket of one point: both ends are t.
            bracket = Some(Bracket { t: [t, t], at: [new.clone(), new.clone()] });
            done = true;
            break;
        }
        if new.gtd >= 0.0 {
            bracket = Some(Bracket { t: [t_prev, t], at: [prev, new.clone()] });
            break;
        }
        let (min_step, max_step) = (t + 0.01 * (t - t_prev), t * 10.0);
        let next = cubic_interpolate(t_prev, prev.f, prev.gtd, t, new.f, new.gtd, Some((min_step, max_step)));
        (t_prev, prev) = (t, new);
        t = next;
        new = eval(t)?;
        evals += 1;
        ls_iter += 1;
    }
    let mut bracket = match bracket {
        Some(b) if ls_iter < MAX_LS => b,
        // Out of evaluations while extrapolating: PyTorch's [0, t] (no
        // zoom follows, so the ends' gᵀd are never read).
        _ => Bracket { t: [0.0, t], at: [start.clone(), new] },
    };
    let low = zoom(eval, &mut bracket, d_norm, (f, gtd), done, &mut ls_iter, &mut evals)?;
    Ok(Found { t: bracket.t[low], at: bracket.at[low].clone(), evals })
}

/// The zoom phase: shrinks the bracket until a point satisfies the strong
/// Wolfe conditions, the bracket is under [`TOLERANCE_CHANGE`] / max |d|
/// wide, or the evaluations run out. Returns the low end as PyTorch tracks
/// it (which a NaN loss can make differ from the end with the lower loss).
fn zoom<G: Clone>(
    eval: &mut impl FnMut(f64) -> Result<Probe<G>>,
    b: &mut Bracket<G>,
    d_norm: f64,
    (f, gtd): (f64, f64),
    mut done: bool,
    ls_iter: &mut u32,
    evals: &mut u32,
) -> Result<usize> {
    let mut insuf_progress = false;
    let (mut low, mut high) = b.ends();
    while !done && *ls_iter < MAX_LS {
        if (b.t[1] - b.t[0]).abs() * d_norm < TOLERANCE_CHANGE {
            break;
        }
        let mut t = cubic_interpolate(b.t[0], b.at[0].f, b.at[0].gtd, b.t[1], b.at[1].f, b.at[1].gtd, None);
        (t, insuf_progress) = keep_off_the_ends(t, b.t, insuf_progress);
        let new = eval(t)?;
        *evals += 1;
        *ls_iter += 1;
        if new.f > f + C1 * t * gtd || new.f >= b.at[low].f {
            (b.t[high], b.at[high]) = (t, new);
            (low, high) = b.ends();
        } else {
            if new.gtd.abs() <= -C2 * gtd {
                done = true;
            } else if new.gtd * (b.t[high] - b.t[low]) >= 0.0 {
                // The old low end becomes the high end.
                (b.t[high], b.at[high]) = (b.t[low], b.at[low].clone());
            }
            (b.t[low], b.at[low]) = (t, new);
        }
    }
    Ok(low)
}

/// PyTorch's progress test: a trial within a tenth of the bracket of an end
/// moves to a tenth inside it when the last trial was also that close or t
/// is at or past an end. Returns the trial and the new `insuf_progress`.
#[allow(clippy::neg_cmp_op_on_partial_ord)] // a NaN distance keeps t, as in PyTorch
fn keep_off_the_ends(t: f64, ends: [f64; 2], insuf_progress: bool) -> (f64, bool) {
    let (lo, hi) = (py_min(ends[0], ends[1]), py_max(ends[0], ends[1]));
    let eps = 0.1 * (hi - lo);
    if !(py_min(hi - t, t - lo) < eps) {
        return (t, false);
    }
    if insuf_progress || t >= hi || t <= lo {
        let moved = if (t - hi).abs() < (t - lo).abs() { hi - eps } else { lo + eps };
        (moved, false)
    } else {
        (t, true)
    }
}
