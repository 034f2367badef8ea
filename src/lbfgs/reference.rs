//! The f64 reference of `torch.optim.LBFGS.step`, line by line: host
//! vectors, the history as lists (oldest first), every scalar in f64. The
//! GPU optimizer is validated against it.

use std::collections::VecDeque;
use std::rc::Rc;

use super::line_search::{strong_wolfe, Probe};
use super::{HostState, Lbfgs, LineSearch};
use crate::error::Result;

/// An objective on the host: the loss and gradient at x.
pub type HostObjective<'a> = dyn FnMut(&[f64]) -> (f64, Vec<f64>) + 'a;

/// L-BFGS in f64, with PyTorch's state.
#[derive(Clone, Debug)]
pub struct ReferenceLbfgs {
    /// The options.
    pub options: Lbfgs,
    /// The counters and host scalars.
    pub host: HostState,
    /// `d`, the last direction (empty before the first iteration).
    pub d: Vec<f64>,
    /// `old_dirs` (the y's), oldest first.
    pub old_dirs: VecDeque<Vec<f64>>,
    /// `old_stps` (the s's), oldest first.
    pub old_stps: VecDeque<Vec<f64>>,
    /// `ro`, 1/yᵀs of each pair.
    pub ro: VecDeque<f64>,
    /// `prev_flat_grad` (empty before the first iteration).
    pub prev_flat_grad: Vec<f64>,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// max |a|, NaN if any element is (as `torch.max`).
fn abs_max(a: &[f64]) -> f64 {
    a.iter().fold(0.0, |m: f64, v| if v.is_nan() || m.is_nan() { f64::NAN } else { m.max(v.abs()) })
}

/// x + t·d.
fn moved(x: &[f64], t: f64, d: &[f64]) -> Vec<f64> {
    x.iter().zip(d).map(|(x, d)| x + t * d).collect()
}

impl ReferenceLbfgs {
    /// A fresh optimizer.
    ///
    /// **Errors:** as [`Lbfgs::validate`].
    pub fn new(options: Lbfgs) -> Result<Self> {
        options.validate()?;
        Ok(ReferenceLbfgs { options, host: HostState { h_diag: 1.0, ..HostState::default() }, d: Vec::new(), old_dirs: VecDeque::new(), old_stps: VecDeque::new(), ro: VecDeque::new(), prev_flat_grad: Vec::new() })
    }

    /// One `step(closure)`: moves `x` and returns the loss at the `x` given.
    pub fn step(&mut self, x: &mut [f64], objective: &mut HostObjective) -> f64 {
        let o = self.options;
        let (orig_loss, g) = objective(x);
        let (mut loss, mut flat_grad) = (orig_loss, Rc::new(g));
        let mut current_evals = 1;
        self.host.func_evals += 1;
        if abs_max(&flat_grad) <= o.tolerance_grad {
            return orig_loss;
        }
        let mut n_iter = 0;
        while n_iter < o.max_iter {
            n_iter += 1;
            self.host.n_iter += 1;
            self.direction(&flat_grad);
            self.prev_flat_grad = flat_grad.to_vec();
            self.host.prev_loss = loss;
            let mut t = if self.host.n_iter == 1 { f64::min(1.0, 1.0 / flat_grad.iter().map(|g| g.abs()).sum::<f64>()) * o.lr } else { o.lr };
            // PyTorch keeps this t even when the loop stops before moving.
            self.host.t = t;
            let gtd = dot(&flat_grad, &self.d);
            if gtd > -o.tolerance_change {
                break;
            }
            let mut ls_func_evals = 0;
            let opt_cond;
            if o.line_search_fn == LineSearch::StrongWolfe {
                let (x0, d) = (x.to_vec(), self.d.clone());
                let mut eval = |t: f64| {
                    let (f, g) = objective(&moved(&x0, t, &d));
                    let gtd = dot(&g, &d);
                    Ok(Probe { f, g: Rc::new(g), gtd })
                };
                let found = strong_wolfe(&mut eval, t, abs_max(&d), Probe { f: loss, g: flat_grad.clone(), gtd }).expect("the reference's evaluations cannot fail");
                (t, loss, flat_grad, ls_func_evals) = (found.t, found.at.f, found.at.g, found.evals);
                x.copy_from_slice(&moved(&x0, t, &d));
                opt_cond = abs_max(&flat_grad) <= o.tolerance_grad;
            } else {
                x.copy_from_slice(&moved(x, t, &self.d));
                opt_cond = if n_iter != o.max_iter {
                    let (f, g) = objective(x);
                    (loss, flat_grad) = (f, Rc::new(g));
                    ls_func_evals = 1;
                    abs_max(&flat_grad) <= o.tolerance_grad
                } else {
                    false
                };
            }
            self.host.t = t;
            current_evals += ls_func_evals;
            self.host.func_evals += ls_func_evals as u64;
            if n_iter == o.max_iter || current_evals >= o.max_eval() || opt_cond {
                break;
            }
            if abs_max(&self.d) * t.abs() <= o.tolerance_change || (loss - self.host.prev_loss).abs() < o.tolerance_change {
                break;
            }
        }
        orig_loss
    }

    /// The direction d from the gradient g: −g at the first iteration, else
    /// the history update and the two-loop recursion.
    fn direction(&mut self, g: &[f64]) {
        if self.host.n_iter == 1 {
            self.d = g.iter().map(|v| -v).collect();
            (self.old_dirs, self.old_stps, self.ro) = Default::default();
            self.host.h_diag = 1.0;
            return;
        }
        let y: Vec<f64> = g.iter().zip(&self.prev_flat_grad).map(|(a, b)| a - b).collect();
        let s: Vec<f64> = self.d.iter().map(|d| d * self.host.t).collect();
        let ys = dot(&y, &s);
        if ys > 1e-10 {
            if self.old_dirs.len() == self.options.history_size as usize {
                self.old_dirs.pop_front();
                self.old_stps.pop_front();
                self.ro.pop_front();
            }
            self.host.h_diag = ys / dot(&y, &y);
            self.old_dirs.push_back(y);
            self.old_stps.push_back(s);
            self.ro.push_back(1.0 / ys);
        }
        let mut q: Vec<f64> = g.iter().map(|v| -v).collect();
        let mut al = vec![0.0; self.old_dirs.len()];
        for i in (0..self.old_dirs.len()).rev() {
            al[i] = dot(&self.old_stps[i], &q) * self.ro[i];
            q.iter_mut().zip(&self.old_dirs[i]).for_each(|(q, y)| *q -= al[i] * y);
        }
        let mut r: Vec<f64> = q.iter().map(|q| q * self.host.h_diag).collect();
        for (i, al_i) in al.iter().enumerate() {
            let be_i = dot(&self.old_dirs[i], &r) * self.ro[i];
            r.iter_mut().zip(&self.old_stps[i]).for_each(|(r, s)| *r += (al_i - be_i) * s);
        }
        self.d = r;
    }
}
