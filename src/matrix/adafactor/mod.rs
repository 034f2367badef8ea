//! Adafactor: `torch.optim.Adafactor` — options, validation, the state
//! layout and the f64 reference with its error bound; the GPU optimizer
//! [`AdafactorOptimizer`] is in `optimizer.rs`.

mod kinds;
mod optimizer;

pub use optimizer::{segment_len, AdafactorOptimizer, StateTensor};

use serde::{Deserialize, Serialize};

use super::muon::lerp;
use super::rows;
use crate::error::{OptimError, Result};
use crate::rules::pieces::{budget, check_finite_nonneg};

/// f32's machine epsilon, PyTorch's `eps[0] = None` for f32 params.
pub const F32_EPS: f64 = f32::EPSILON as f64;

/// Adafactor, `torch.optim.Adafactor`: factored second moments (a row and
/// a column statistic per matrix instead of one per element), a step
/// relative to the param's RMS, and update clipping.
///
/// ```text
/// w = t^beta2_decay;  rho = min(lr, 1/√t);  α = max(eps2, RMS(θ))·rho      (θ before the decay)
/// θ ← θ·(1 − lr·weight_decay)
/// factored (2+ dims, per slab of the last two, R × C):
///   row_var ← lerp(row_var, mean_c(G²), w);  col_var ← lerp(col_var, mean_r(G²), w)
///   V = row_var·col_varᵀ / max(mean(row_var), eps1)
/// otherwise:  variance ← lerp(variance, G², w);  V = variance
/// U = G / max(√V, eps1)        (PyTorch: clamp(V, eps1²).rsqrt()·G)
/// θ ← θ − α / max(1, RMS(U)/d) · U
/// ```
///
/// Defaults (PyTorch's code): `lr = 1e-2`, `beta2_decay = -0.8`,
/// `eps = (None, 1e-3)` (None: f32's machine epsilon, [`F32_EPS`]),
/// `d = 1.0`, `weight_decay = 0.0` (PyTorch's docs say 1e-2; its code has
/// 0), `maximize = false`. State: `row_var` (shape `[.., R, 1]`) and
/// `col_var` (`[.., 1, C]`) for tensors with a shape of 2 or more dims,
/// `variance` for the rest (no shape, 1-D, 0-D); a step count shared by all
/// tensors (PyTorch keeps one per tensor; they agree unless tensors are
/// added later).
///
/// **Errors.** As PyTorch: `lr ≥ 0`, `beta2_decay ≤ 0`, `eps` ≥ 0,
/// `d ≥ 1`, `weight_decay ≥ 0`; every value finite.
///
/// **Tolerance** ([`Adafactor::reference_step`] carries it), from WGSL's
/// accuracy: each row or column mean is a fixed-order sum of C (or R)
/// squares, in segments then over them (depth at most C; a `lined` row's
/// segment sums each lane of its units in order, then the unit's lanes as
/// a tree), and a division
/// (relative (C + 6)u: the terms are non-negative),
/// and each lerp of non-negative values adds 8u per step; the slab mean of
/// row_var adds its sum's depth ([`Factoring::slab_sum_depth`]: R, or
/// ⌈R/64⌉ + 6 for a tree) + 5u, V (the line's scale row_var / mean, then
/// its product with col_var) 6u, `inverseSqrt` 4u, the product
/// with G 1u; the two RMS values are fixed-order sums of squares (depth
/// [`rows::sum_depth`], for either row length, halved by the root, plus 9u
/// and the divisions);
/// the update adds 3u of step·‖U‖ and u‖θ‖. The bound is normwise per
/// tensor and includes the previous steps' error of θ through RMS(θ) and
/// the decay.
///
/// ```
/// let a = wgpu_optim::Adafactor { d: 0.5, ..Default::default() };
/// assert!(a.validate().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Adafactor {
    /// Learning rate, the cap of the relative step size rho (default 1e-2).
    pub lr: f64,
    /// Decay exponent of the second-moment averaging weight `t^beta2_decay` (default -0.8).
    pub beta2_decay: f64,
    /// `(eps1, eps2)`; `None` is f32's machine epsilon.
    pub eps: (Option<f64>, f64),
    /// Clipping threshold of the update's RMS (default 1.0).
    pub d: f64,
    /// Decoupled weight decay, scaled by lr (default 0.0).
    pub weight_decay: f64,
    /// Maximize the objective instead of minimizing (default false).
    pub maximize: bool,
}

impl Default for Adafactor {
    fn default() -> Self {
        Adafactor { lr: 1e-2, beta2_decay: -0.8, eps: (None, 1e-3), d: 1.0, weight_decay: 0.0, maximize: false }
    }
}

/// u = 2⁻²⁴.
const U: f64 = 1.0 / (1u64 << 24) as f64;

/// Relative error a lerp of non-negative values adds (in u): a convex
/// combination keeps its inputs' relative errors; the difference, product
/// and sum add 6u, the host weight's rounding 2u more.
const LERP: f64 = 8.0;

/// How a tensor's second moment is kept: B slabs of R × C, or unfactored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Factoring {
    /// Number of R × C slabs B: the product of the leading dims.
    pub slabs: u64,
    /// Rows R of each slab: the second-to-last dim.
    pub rows: u64,
    /// Columns C of each slab: the last dim.
    pub cols: u64,
}

impl Factoring {
    /// PyTorch's choice for a tensor of `shape` (`None`: a flat range, as
    /// 1-D): the last two dims of a shape of 2 or more dims.
    pub fn of(shape: Option<&[u64]>) -> Option<Factoring> {
        match shape {
            Some(s) if s.len() >= 2 => Some(Factoring { slabs: s[..s.len() - 2].iter().product(), rows: s[s.len() - 2], cols: s[s.len() - 1] }),
            _ => None,
        }
    }

    /// Whether a slab's mean of row_var is summed by a workgroup's tree
    /// (lanes take every TOTAL_WG-th row, then `total_sum`:
    /// B·(⌈R/TOTAL_WG⌉ + 10) steps, 10 the tree's share) rather than by a
    /// lane per slab (its R rows in order: ⌈B/TOTAL_WG⌉·R steps): whichever
    /// takes fewer steps.
    pub fn slab_tree(&self) -> bool {
        let wg = rows::TOTAL_WG as u64;
        self.slabs * (self.rows.div_ceil(wg) + 10) < self.slabs.div_ceil(wg) * self.rows
    }

    /// The depth in roundings of a slab's sum of row_var.
    pub fn slab_sum_depth(&self) -> u64 {
        if self.slab_tree() {
            self.rows.div_ceil(rows::TOTAL_WG as u64) + rows::TOTAL_WG.trailing_zeros() as u64
        } else {
            self.rows
        }
    }
}

/// The state tensors of a parameter of `shape`, in their order in the state
/// buffer, by PyTorch name and shape: `row_var` `[.., R, 1]` and `col_var`
/// `[.., 1, C]` for 2 or more dims, else `variance` (the param's shape).
pub fn state_layout(shape: &[u64]) -> Vec<(&'static str, Vec<u64>)> {
    match Factoring::of(Some(shape)) {
        Some(f) => {
            let lead = &shape[..shape.len() - 2];
            vec![("row_var", [lead, &[f.rows, 1]].concat()), ("col_var", [lead, &[1, f.cols]].concat())]
        }
        None => vec![("variance", shape.to_vec())],
    }
}

/// `values` (a state buffer's range, in layout order) cut into the layout's
/// tensors: (name, shape, values).
pub fn split_state<T: Clone>(layout: Vec<(&'static str, Vec<u64>)>, values: &[T]) -> Vec<(&'static str, Vec<u64>, Vec<T>)> {
    let mut at = 0;
    layout
        .into_iter()
        .map(|(name, shape)| {
            let len = shape.iter().product::<u64>() as usize;
            at += len;
            (name, shape, values[at - len..at].to_vec())
        })
        .collect()
}

/// One tensor's f64 reference state, with the bounds of the GPU's error.
#[derive(Clone, Debug)]
pub struct AdafactorReference {
    /// How the second moment is kept (`None`: unfactored).
    pub factoring: Option<Factoring>,
    /// row_var (B·R) then col_var (B·C), or variance (numel).
    pub state: Vec<f64>,
    /// Relative error bound of every state value (the values are ≥ 0).
    pub state_rel_err: f64,
    /// Bound of ‖θ_GPU − θ‖₂ over the tensor.
    pub param_err: f64,
}

impl AdafactorReference {
    /// Zero state for a tensor of `numel` elements and `shape`.
    pub fn new(numel: u64, shape: Option<&[u64]>) -> Self {
        let factoring = Factoring::of(shape);
        let len = factoring.map_or(numel, |f| f.slabs * (f.rows + f.cols));
        AdafactorReference { factoring, state: vec![0.0; len as usize], state_rel_err: 0.0, param_err: 0.0 }
    }
}

impl Adafactor {
    /// Checks every option; see the type's **Errors** section.
    pub fn validate(&self) -> Result<()> {
        check_finite_nonneg("lr", self.lr)?;
        if !(self.beta2_decay <= 0.0 && self.beta2_decay.is_finite()) {
            return Err(OptimError::InvalidHyperparameter { name: "beta2_decay", value: self.beta2_decay, requirement: "must be finite and <= 0" });
        }
        if let Some(eps1) = self.eps.0 {
            check_finite_nonneg("eps[0]", eps1)?;
        }
        check_finite_nonneg("eps[1]", self.eps.1)?;
        if !(self.d >= 1.0 && self.d.is_finite()) {
            return Err(OptimError::InvalidHyperparameter { name: "d", value: self.d, requirement: "must be finite and >= 1" });
        }
        check_finite_nonneg("weight_decay", self.weight_decay)
    }

    /// eps1, with PyTorch's `None` resolved for f32 params.
    pub fn eps1(&self) -> f64 {
        self.eps.0.unwrap_or(F32_EPS)
    }

    /// The host scalars of step `t`: (w, rho).
    fn schedule(&self, t: u32) -> (f64, f64) {
        let t = t as f64;
        (t.powf(self.beta2_decay), self.lr.min(1.0 / t.sqrt()))
    }

    /// Step `t` (1-based) of one tensor in f64, as PyTorch's single-tensor
    /// code; also advances the error bounds of `state` (see **Tolerance**).
    pub fn reference_step(&self, t: u32, p: &mut [f64], grad: &[f64], state: &mut AdafactorReference) {
        let (w, rho) = self.schedule(t);
        let eps1 = self.eps1();
        let n = p.len();
        let g: Vec<f64> = grad.iter().map(|&x| if self.maximize { -x } else { x }).collect();
        let rms = |v: &[f64]| (v.iter().map(|x| x * x).sum::<f64>() / n as f64).sqrt();
        let p_rms = rms(p);
        let alpha = self.eps.1.max(p_rms) * rho;
        let decay = 1.0 - self.lr * self.weight_decay;
        p.iter_mut().for_each(|x| *x *= decay);
        let (v, state_err, v_err) = match state.factoring {
            Some(f) => self.factored_variance(f, &g, w, state),
            None => {
                state.state.iter_mut().zip(&g).for_each(|(s, g)| *s = lerp(*s, g * g, w));
                let err = state.state_rel_err.max(budget::ROUNDED * U) + LERP * U;
                (state.state.clone(), err, err)
            }
        };
        state.state_rel_err = state_err;
        let upd: Vec<f64> = g.iter().zip(&v).map(|(g, v)| g / v.max(eps1 * eps1).sqrt()).collect();
        let u_rms = rms(&upd);
        let denom = (u_rms / self.d).max(1.0);
        let step = alpha / denom;
        p.iter_mut().zip(&upd).for_each(|(x, u)| *x -= step * u);
        // Errors: U relative (V's, halved by the root, inverseSqrt 4u, × G), the two RMS values, the update.
        let u_err = v_err / 2.0 + 5.0 * U;
        let depth = rows::sum_depth(n as u64) as f64 * U;
        let p_norm = p_rms * (n as f64).sqrt();
        let alpha_err = (if p_rms > self.eps.1 { depth / 2.0 + budget::DIV * U / 2.0 + budget::SQRT * U + state.param_err / p_norm.max(1e-300) } else { 0.0 }) + 2.0 * U;
        let denom_err = if denom > 1.0 { u_err + depth / 2.0 + budget::DIV * U * 1.5 + budget::SQRT * U } else { 0.0 };
        let u_norm = u_rms * (n as f64).sqrt();
        let theta = p.iter().map(|x| x * x).sum::<f64>().sqrt();
        state.param_err = state.param_err * decay + step * u_norm * (u_err + alpha_err + denom_err + budget::DIV * U + 3.0 * U) + 2.0 * U * theta;
    }

    /// The factored statistics of one step for every slab; returns V, the
    /// state's relative error bound and V's.
    fn factored_variance(&self, f: Factoring, g: &[f64], w: f64, state: &mut AdafactorReference) -> (Vec<f64>, f64, f64) {
        let (b_n, r_n, c_n) = (f.slabs as usize, f.rows as usize, f.cols as usize);
        let (row_var, col_var) = state.state.split_at_mut(b_n * r_n);
        let mut v = vec![0.0; g.len()];
        for b in 0..b_n {
            let slab = &g[b * r_n * c_n..(b + 1) * r_n * c_n];
            for r in 0..r_n {
                let mean = slab[r * c_n..(r + 1) * c_n].iter().map(|x| x * x).sum::<f64>() / c_n as f64;
                row_var[b * r_n + r] = lerp(row_var[b * r_n + r], mean, w);
            }
            for c in 0..c_n {
                let mean = (0..r_n).map(|r| slab[r * c_n + c].powi(2)).sum::<f64>() / r_n as f64;
                col_var[b * c_n + c] = lerp(col_var[b * c_n + c], mean, w);
            }
            let row_mean = (row_var[b * r_n..(b + 1) * r_n].iter().sum::<f64>() / r_n as f64).max(self.eps1());
            for r in 0..r_n {
                for c in 0..c_n {
                    v[b * r_n * c_n + r * c_n + c] = row_var[b * r_n + r] * col_var[b * c_n + c] / row_mean;
                }
            }
        }
        let mean_err = (f.rows.max(f.cols) + 6) as f64 * U;
        let state_err = state.state_rel_err.max(mean_err) + LERP * U;
        // row_var, col_var and their slab mean (its sum and division), the line's scale row_var / mean and V = scale·col_var.
        let v_err = 3.0 * state_err + (f.slab_sum_depth() + 5) as f64 * U + 6.0 * U;
        (v, state_err, v_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Step 1 by hand: a vector's U is sign(g), RMS(U) = 1, so θ moves by
    /// RMS(θ)·lr; a matrix's first statistics are its row and column means
    /// of g², and the 3-D shape factors per slab.
    #[test]
    fn reference_first_steps_by_hand() {
        let config = Adafactor::default();
        let mut p = vec![1.0, -2.0, 3.0];
        let mut state = AdafactorReference::new(3, None);
        config.reference_step(1, &mut p, &[0.1, 0.2, -0.3], &mut state);
        let alpha = (14.0f64 / 3.0).sqrt() * 0.01;
        assert!(p.iter().zip([1.0 - alpha, -2.0 - alpha, 3.0 + alpha]).all(|(a, b)| (a - b).abs() < 1e-15), "{p:?}");
        let mut state = AdafactorReference::new(12, Some(&[2, 2, 3]));
        let g = [1.0, 2.0, 2.0, 0.0, 0.0, 3.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0];
        config.reference_step(1, &mut [0.5; 12], &g, &mut state);
        assert_eq!(state.factoring, Some(Factoring { slabs: 2, rows: 2, cols: 3 }));
        assert_eq!(state.state, [3.0, 3.0, 1.0, 4.0, 0.5, 2.0, 6.5, 2.5, 2.5, 2.5]);
    }
}
