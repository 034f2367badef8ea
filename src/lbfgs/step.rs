//! `LbfgsOptimizer::step`: PyTorch's `LBFGS.step(closure)` with the
//! vectors on the GPU. The control flow is the reference's
//! (`reference.rs`), line for line; what it decides on (the loss, yᵀs,
//! gᵀd, max |g|, Σ |g|, max |d|) is read back as scalars, and the
//! history, the two-loop recursion and the moves stay on the GPU.

use super::gpu::{al_slot, ro_slot, Closure, GpuGrad, LbfgsOptimizer};
use super::kernels::{slot, Batch, Coef};
use super::line_search::{strong_wolfe, Probe};
use super::LineSearch;
use crate::error::Result;

/// max |v| from the GPU's max and Σ |v|: NaN when the sum is (a NaN
/// element), as `torch.max` gives, where WGSL's `max` would drop it.
fn nan_max(max: f32, sum: f32) -> f64 {
    if sum.is_nan() { f64::NAN } else { max as f64 }
}

impl LbfgsOptimizer {
    /// One `step(closure)`: up to `max_iter` iterations, calling `closure`
    /// for each evaluation. Returns the loss of the first evaluation (at
    /// the params given), as PyTorch's `step` does.
    ///
    /// **Errors:** whatever the closure returns; [`crate::OptimError::MissingUsage`]
    /// or [`crate::OptimError::OutOfBounds`] for the loss's location (checked
    /// at the first evaluation, before anything changes); wgpu validation
    /// errors in the recorded work, [`crate::OptimError::DeviceLost`]. After
    /// an error in a later evaluation the state is that of the iterations
    /// before it, and the params are where PyTorch's would be: at the
    /// iteration's start after a line-search evaluation, moved by t·d after
    /// a fixed step's.
    pub fn step(&mut self, closure: &mut Closure) -> Result<f64> {
        let o = self.options;
        let first = self.evaluate(closure, None, false)?;
        let orig_loss = first.f;
        let (mut loss, mut flat_grad) = (first.f, first.g);
        let mut current_evals = 1;
        self.host.func_evals += 1;
        if flat_grad.abs_max <= o.tolerance_grad {
            return Ok(orig_loss);
        }
        let mut n_iter = 0;
        while n_iter < o.max_iter {
            n_iter += 1;
            self.host.n_iter += 1;
            let (gtd, d_max) = self.direction(&flat_grad)?;
            self.host.prev_loss = loss;
            let mut t = if self.host.n_iter == 1 { f64::min(1.0, 1.0 / flat_grad.abs_sum) * o.lr } else { o.lr };
            self.host.t = t;
            if gtd > -o.tolerance_change {
                break;
            }
            let mut ls_func_evals = 0;
            let opt_cond;
            if o.line_search_fn == LineSearch::StrongWolfe {
                let start = Probe { f: loss, g: flat_grad.clone(), gtd };
                let found = match strong_wolfe(&mut |t| self.evaluate(closure, Some(t), true), t, d_max, start) {
                    Ok(found) => found,
                    Err(e) => {
                        // PyTorch puts x back after every evaluation.
                        self.restore_x0()?;
                        return Err(e);
                    }
                };
                (t, loss, flat_grad, ls_func_evals) = (found.t, found.at.f, found.at.g, found.evals);
                self.move_to(t)?;
                opt_cond = flat_grad.abs_max <= o.tolerance_grad;
            } else if n_iter != o.max_iter {
                let at = self.evaluate(closure, Some(t), false)?;
                (loss, flat_grad, ls_func_evals) = (at.f, at.g, 1);
                opt_cond = flat_grad.abs_max <= o.tolerance_grad;
            } else {
                self.move_to(t)?;
                opt_cond = false;
            }
            self.host.t = t;
            current_evals += ls_func_evals;
            self.host.func_evals += ls_func_evals as u64;
            if n_iter == o.max_iter || current_evals >= o.max_eval() || opt_cond {
                break;
            }
            if d_max * t.abs() <= o.tolerance_change || (loss - self.host.prev_loss).abs() < o.tolerance_change {
                break;
            }
        }
        Ok(orig_loss)
    }

    /// One closure call: at the params as they are (`at` None), or at
    /// x + t·d; then the gradient gathered into a free buffer, its max and
    /// sum of |g|, and gᵀd if `gtd`.
    fn evaluate(&mut self, closure: &mut Closure, at: Option<f64>, gtd: bool) -> Result<Probe<GpuGrad>> {
        let g = self.free_grad()?;
        let mut phase = self.phase();
        if let Some(t) = at {
            self.record_move(&mut phase, t)?;
        }
        let loss = closure(&mut phase.encoder)?;
        Self::check_loss(&loss)?;
        phase.encoder.copy_buffer_to_buffer(&loss.buffer, loss.offset, &self.kernels.scalars, slot::LOSS as u64 * 4, 4);
        self.gather(&mut phase.encoder, &g, false);
        let mut batch = Batch::new(&self.kernels);
        batch.abs(&self.view(&g), (slot::G_MAX, slot::G_SUM));
        if gtd {
            batch.dot(&self.view(&g), &self.view(&self.d), (slot::GTD, slot::SINK), slot::ONE);
        }
        self.record(&mut phase, batch)?;
        let s = self.finish(phase)?;
        let at = |i: u32| s[i as usize] as f64;
        let abs_max = nan_max(s[slot::G_MAX as usize], s[slot::G_SUM as usize]);
        Ok(Probe { f: at(slot::LOSS), g: GpuGrad { buffer: g, abs_max, abs_sum: at(slot::G_SUM) }, gtd: if gtd { at(slot::GTD) } else { f64::NAN } })
    }

    /// The direction d for gradient g (−g at the first iteration, else the
    /// history update and the two-loop recursion); keeps g as
    /// prev_flat_grad and the params as x. Returns gᵀd and max |d|.
    fn direction(&mut self, g: &GpuGrad) -> Result<(f64, f64)> {
        if self.host.n_iter > 1 {
            self.update_history(g)?;
        }
        let mut phase = self.phase();
        let (gv, d) = (self.view(&g.buffer), self.view(&self.d));
        let mut batch = Batch::new(&self.kernels);
        batch.set_scaled(&d, &gv, Coef::host(-1.0));
        if self.host.n_iter == 1 {
            self.ring.len = 0;
            self.host.h_diag = 1.0;
            self.write_scalar(slot::H_DIAG, 1.0);
        } else {
            self.two_loop(&mut batch);
        }
        batch.dot(&gv, &d, (slot::GTD, slot::SINK), slot::ONE);
        batch.abs(&d, (slot::D_MAX, slot::D_SUM));
        self.record(&mut phase, batch)?;
        phase.encoder.copy_buffer_to_buffer(&g.buffer, 0, &self.g_prev, 0, self.vector_bytes());
        self.gather(&mut phase.encoder, &self.x0, true);
        let s = self.finish(phase)?;
        Ok((s[slot::GTD as usize] as f64, nan_max(s[slot::D_MAX as usize], s[slot::D_SUM as usize])))
    }

    /// y = g − prev_flat_grad and s = t·d into the spare slot; the pair
    /// joins the history when yᵀs > 1e-10, with ρ = 1/yᵀs and
    /// H_diag = yᵀs / yᵀy from the host in f64.
    fn update_history(&mut self, g: &GpuGrad) -> Result<()> {
        let spare = self.ring.spare();
        let (y, s) = (self.ring_view(&self.y_ring, spare), self.ring_view(&self.s_ring, spare));
        let mut phase = self.phase();
        let mut batch = Batch::new(&self.kernels);
        batch.diff(&y, &self.view(&g.buffer), &self.view(&self.g_prev));
        batch.set_scaled(&s, &self.view(&self.d), Coef::host(self.host.t));
        batch.dot(&y, &s, (slot::YS, slot::YY), slot::ONE);
        self.record(&mut phase, batch)?;
        let out = self.finish(phase)?;
        let (ys, yy) = (out[slot::YS as usize] as f64, out[slot::YY as usize] as f64);
        if ys > 1e-10 {
            self.ring.push();
            self.host.h_diag = ys / yy;
            self.write_scalar(ro_slot(spare), (1.0 / ys) as f32);
            self.write_scalar(slot::H_DIAG, self.host.h_diag as f32);
        }
        Ok(())
    }

    /// q = −g is already in d: αᵢ = ρᵢ sᵢᵀq and q −= αᵢ yᵢ newest first,
    /// d = H_diag·q, then βᵢ = ρᵢ yᵢᵀd and d += (αᵢ − βᵢ) sᵢ oldest first.
    /// Each update is fused with the next pair's dot product (one pass over
    /// d, not two).
    fn two_loop(&self, batch: &mut Batch) {
        let (d, len, cap) = (self.view(&self.d), self.ring.len, self.ring.cap);
        let s = |i: u32| self.ring_view(&self.s_ring, self.ring.slot(i));
        let y = |i: u32| self.ring_view(&self.y_ring, self.ring.slot(i));
        let al = |i: u32| al_slot(cap, self.ring.slot(i));
        let ro = |i: u32| ro_slot(self.ring.slot(i));
        if len == 0 {
            return batch.scale(&d, Coef::gpu(1.0, slot::H_DIAG, slot::ZERO));
        }
        batch.dot(&s(len - 1), &d, (al(len - 1), slot::SINK), ro(len - 1));
        for i in (1..len).rev() {
            batch.add_scaled_dot(&d, &y(i), Coef::gpu(-1.0, al(i), slot::ZERO), &s(i - 1), (al(i - 1), slot::SINK), ro(i - 1));
        }
        batch.add_scaled(&d, &y(0), Coef::gpu(-1.0, al(0), slot::ZERO));
        batch.scale(&d, Coef::gpu(1.0, slot::H_DIAG, slot::ZERO));
        batch.dot(&y(0), &d, (slot::BETA, slot::SINK), ro(0));
        for i in 0..len - 1 {
            batch.add_scaled_dot(&d, &s(i), Coef::gpu(1.0, al(i), slot::BETA), &y(i + 1), (slot::BETA, slot::SINK), ro(i + 1));
        }
        batch.add_scaled(&d, &s(len - 1), Coef::gpu(1.0, al(len - 1), slot::BETA));
    }
}
