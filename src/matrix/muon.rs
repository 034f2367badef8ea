//! Muon: `torch.optim.Muon` — its options, validation, learning-rate
//! adjustment and f64 reference. The GPU optimizer is [`super::MuonOptimizer`].

use serde::{Deserialize, Serialize};

use crate::error::{OptimError, Result};
use crate::rules::pieces::check_finite_nonneg;

/// `adjust_lr_fn`: the lr multiplier for a `rows × cols` matrix (PyTorch's
/// `_adjust_lr`, A = rows, B = cols).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdjustLr {
    /// `None` or `"original"`: √max(1, A/B).
    #[default]
    Original,
    /// `"match_rms_adamw"`: 0.2·√max(A, B).
    MatchRmsAdamw,
    /// `"spectral_unclamped"`: √(A/B).
    SpectralUnclamped,
}

impl AdjustLr {
    /// The multiplier for a `rows × cols` matrix, in f64.
    pub fn ratio(self, rows: u64, cols: u64) -> f64 {
        let (a, b) = (rows as f64, cols as f64);
        match self {
            AdjustLr::Original => (a / b).max(1.0).sqrt(),
            AdjustLr::MatchRmsAdamw => 0.2 * a.max(b).sqrt(),
            AdjustLr::SpectralUnclamped => (a / b).sqrt(),
        }
    }
}

/// Muon, `torch.optim.Muon`: momentum orthogonalized by a Newton–Schulz
/// iteration, for 2-D parameters.
///
/// ```text
/// M ← lerp(M, G, 1 − μ)                                  momentum_buffer
/// U = lerp(G, M, μ) if nesterov else M
/// X = U (transposed if rows > cols);  X ← X / max(‖X‖_F, eps)
/// ns_steps times:  A = X·Xᵀ;  X ← a·X + (b·A + c·A·A)·X   (a, b, c) = ns_coefficients
/// O = X (transposed back)
/// θ ← θ·(1 − lr·weight_decay) − lr·ratio(rows, cols)·O   ratio: adjust_lr_fn
/// ```
///
/// Defaults (PyTorch's): `lr = 1e-3`, `weight_decay = 0.1`, `momentum = 0.95`,
/// `nesterov = true`, `ns_coefficients = (3.4445, -4.775, 2.0315)`,
/// `eps = 1e-7`, `ns_steps = 5`, `adjust_lr_fn = original`. The momentum is
/// PyTorch's code (an EMA: `lerp`), not its docs (`μB + g`); the weight
/// decay is decoupled and uses the unadjusted lr. State: `momentum_buffer`.
/// There is no step counter.
///
/// **Differs from PyTorch:** PyTorch runs the Newton–Schulz iteration in
/// bf16; here it runs in f32 (the reference in f64), so results are closer
/// to the exact iteration than PyTorch's own. PyTorch checks `ns_steps`
/// only at step time; here every option is checked when the optimizer is
/// built.
///
/// **Errors.** `lr`, `weight_decay`, `momentum`, `eps` finite and ≥ 0;
/// `ns_steps` < 100 (PyTorch's "for computational efficiency"); the
/// coefficients finite. Every parameter needs a 2-D shape
/// ([`OptimError::ShapeRequired`]).
///
/// **Tolerance** ([`Muon::o_tolerance`]), normwise on O, first order in
/// u = 2⁻²⁴, from what WGSL guarantees (`+`, `×` correctly rounded;
/// division 2.5 ULP, `sqrt` 4.5 ULP): a K-term f32 sum is within λ·√K·u
/// of its terms' size with overwhelming probability (Higham and Mary's
/// probabilistic analysis, λ = 8; the worst case K·u is never approached by
/// rounding that is not adversarial), so each of the three products of a
/// step is within 3·λ·√K·u of ‖X‖ (K ≤ the long side; the scalings and
/// additions 8u more); the quintic p(σ) = aσ + bσ³ + cσ⁵ has |p′| ≤ 4 on
/// [0, 1.2], where the normalized singular values stay, so an error entering
/// at step j grows at most 4^(s−j) by the end; the normalization adds
/// λ·√numel·u (or, where smaller, the depth of its fixed-order sum over
/// the row table, [`super::rows::sum_depth`], a worst case) + 14u before
/// the first step. The momentum is element-wise
/// ([`Muon::momentum_tolerance`]): Σ_t (4u·|M_t| + δw·|G_t − M_{t−1}|),
/// δw the rounding of the lerp weight 1 − μ, which the GPU takes as
/// 1 − f32(μ) (up to u·μ/(2(1 − μ)) relative: 4u at μ = 0.95). The params then move by lr·ratio·O per step, each step's
/// O error adding lr·ratio·tol·‖O‖_F to ‖θ_GPU − θ_ref‖_F.
///
/// ```
/// let m = wgpu_optim::Muon { ns_steps: 100, ..Default::default() };
/// assert!(m.validate().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Muon {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Decoupled weight decay, scaled by the unadjusted lr (default 0.1).
    pub weight_decay: f64,
    /// Momentum factor μ of the momentum EMA (default 0.95).
    pub momentum: f64,
    /// Orthogonalize the Nesterov mix lerp(G, M, μ) instead of M (default true).
    pub nesterov: bool,
    /// Coefficients (a, b, c) of the quintic Newton–Schulz step (default (3.4445, -4.775, 2.0315)).
    pub ns_coefficients: (f64, f64, f64),
    /// Floor of ‖X‖_F in the normalization before Newton–Schulz (default 1e-7).
    pub eps: f64,
    /// Number of Newton–Schulz steps (default 5).
    pub ns_steps: u32,
    /// Learning-rate multiplier by the matrix's shape (default [`AdjustLr::Original`]).
    pub adjust_lr_fn: AdjustLr,
}

impl Default for Muon {
    fn default() -> Self {
        Muon { lr: 1e-3, weight_decay: 0.1, momentum: 0.95, nesterov: true, ns_coefficients: (3.4445, -4.775, 2.0315), eps: 1e-7, ns_steps: 5, adjust_lr_fn: AdjustLr::Original }
    }
}

/// u = 2⁻²⁴, the unit roundoff of f32.
const U: f64 = 1.0 / (1u64 << 24) as f64;

/// λ of the probabilistic rounding-error bound λ·√K·u of a K-term sum
/// (Higham and Mary, 2019: it holds with probability at least
/// 1 − 2K·exp(−λ²/2), so 1 − 10⁻¹¹ for λ = 8 and K ≤ 10⁴).
const LAMBDA: f64 = 8.0;

/// PyTorch's lerp (ATen `Lerp.h`): the branch on the weight matters for
/// rounding; in f64 it is the same value either way.
pub fn lerp(a: f64, b: f64, w: f64) -> f64 {
    if w < 0.5 { a + w * (b - a) } else { b - (b - a) * (1.0 - w) }
}

impl Muon {
    /// Checks every option; see the type's **Errors** section.
    pub fn validate(&self) -> Result<()> {
        check_finite_nonneg("lr", self.lr)?;
        check_finite_nonneg("weight_decay", self.weight_decay)?;
        check_finite_nonneg("momentum", self.momentum)?;
        check_finite_nonneg("eps", self.eps)?;
        if self.ns_steps >= 100 {
            return Err(OptimError::InvalidHyperparameter { name: "ns_steps", value: self.ns_steps as f64, requirement: "must be less than 100 for computational efficiency" });
        }
        let (a, b, c) = self.ns_coefficients;
        for (name, v) in [("ns_coefficients.0", a), ("ns_coefficients.1", b), ("ns_coefficients.2", c)] {
            if !v.is_finite() {
                return Err(OptimError::InvalidHyperparameter { name, value: v, requirement: "must be finite" });
            }
        }
        Ok(())
    }

    /// The orthogonalized update O of the momentum-mixed grad `u`
    /// (`rows × cols`, row-major), in f64: normalization and `ns_steps`
    /// quintic steps on the wide orientation.
    pub fn newton_schulz(&self, u: &[f64], rows: usize, cols: usize) -> Vec<f64> {
        let tall = rows > cols;
        let (m, n) = if tall { (cols, rows) } else { (rows, cols) };
        let mut x = if tall { transpose(u, rows, cols) } else { u.to_vec() };
        let norm = x.iter().map(|v| v * v).sum::<f64>().sqrt().max(self.eps);
        x.iter_mut().for_each(|v| *v /= norm);
        let (a, b, c) = self.ns_coefficients;
        for _ in 0..self.ns_steps {
            let gram = matmul(&x, &transpose(&x, m, n), m, n, m);
            let gram2 = matmul(&gram, &gram, m, m, m);
            let poly: Vec<f64> = gram.iter().zip(&gram2).map(|(g, g2)| b * g + c * g2).collect();
            let px = matmul(&poly, &x, m, m, n);
            x = x.iter().zip(&px).map(|(x, p)| a * x + p).collect();
        }
        if tall { transpose(&x, m, n) } else { x }
    }

    /// The tolerance of the GPU's O relative to ‖O‖_F for a `rows × cols`
    /// matrix (see the **Tolerance** section): 3 products per step, each
    /// within λ·√K·u of its operands' norms (K ≤ the long side), amplified
    /// by at most 4 per later step, plus the normalization's sum of
    /// squares (λ·√numel·u, or its depth's worst case where smaller) and
    /// root.
    pub fn o_tolerance(&self, rows: usize, cols: usize) -> f64 {
        let k = rows.max(cols) as f64;
        let per_step = 3.0 * LAMBDA * k.sqrt() * U + 8.0 * U;
        let steps: f64 = (0..=self.ns_steps).map(|j| 4f64.powi(j as i32)).sum();
        let numel = (rows * cols) as u64;
        let norm_sum = (LAMBDA * (numel as f64).sqrt()).min(super::rows::sum_depth(numel) as f64);
        (norm_sum * U + 14.0 * U) * 4f64.powi(self.ns_steps as i32) + per_step * steps
    }

    /// One step's error bound of one momentum_buffer element that went from
    /// `prev` to `now` with grad `g` (see the **Tolerance** section): 4u·|M_t|
    /// for the lerp's roundings, and its weight's rounding times the distance
    /// it moves towards G.
    pub fn momentum_tolerance(&self, prev: f64, g: f64, now: f64) -> f64 {
        let gpu_weight = (1.0f32 - self.momentum as f32) as f64;
        4.0 * U * now.abs() + (gpu_weight - (1.0 - self.momentum)).abs() * (g - prev).abs()
    }

    /// One f64 reference step of a `rows × cols` param `p` with grad `g`
    /// and momentum buffer `buf`, from PyTorch's equations; returns O.
    pub fn reference_step(&self, (rows, cols): (usize, usize), p: &mut [f64], g: &[f64], buf: &mut [f64]) -> Vec<f64> {
        let mu = self.momentum;
        let mut u = vec![0.0; p.len()];
        for i in 0..p.len() {
            buf[i] = lerp(buf[i], g[i], 1.0 - mu);
            u[i] = if self.nesterov { lerp(g[i], buf[i], mu) } else { buf[i] };
        }
        let o = self.newton_schulz(&u, rows, cols);
        let step = self.lr * self.adjust_lr_fn.ratio(rows as u64, cols as u64);
        for i in 0..p.len() {
            p[i] = p[i] * (1.0 - self.lr * self.weight_decay) - step * o[i];
        }
        o
    }
}

/// The `rows × cols` row-major matrix transposed.
pub fn transpose(x: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let mut out = vec![0.0; x.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = x[r * cols + c];
        }
    }
    out
}

/// `a (m×k) · b (k×n)`, row-major, in f64.
pub fn matmul(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for l in 0..k {
            let ail = a[i * k + l];
            for j in 0..n {
                out[i * n + j] += ail * b[l * n + j];
            }
        }
    }
    out
}

/// Singular values of a `rows × cols` matrix (one-sided Jacobi, f64),
/// descending: to check an orthogonalization directly.
pub fn singular_values(x: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    // Work on the columns of the wide-to-tall orientation: n vectors of length m, n ≤ m.
    let (m, n, mut a) = if rows >= cols { (rows, cols, transpose(x, rows, cols)) } else { (cols, rows, x.to_vec()) };
    // `a` holds n column vectors of length m, each contiguous.
    for _sweep in 0..60 {
        let mut off = 0.0f64;
        for i in 0..n {
            for j in i + 1..n {
                let (mut alpha, mut beta, mut gamma) = (0.0, 0.0, 0.0);
                for r in 0..m {
                    let (u, v) = (a[i * m + r], a[j * m + r]);
                    alpha += u * u;
                    beta += v * v;
                    gamma += u * v;
                }
                if gamma.abs() <= 1e-15 * (alpha * beta).sqrt() {
                    continue;
                }
                off = off.max(gamma.abs() / (alpha * beta).sqrt());
                let zeta = (beta - alpha) / (2.0 * gamma);
                let t = zeta.signum() / (zeta.abs() + (1.0 + zeta * zeta).sqrt());
                let (c, s) = (1.0 / (1.0 + t * t).sqrt(), t / (1.0 + t * t).sqrt());
                for r in 0..m {
                    let (u, v) = (a[i * m + r], a[j * m + r]);
                    a[i * m + r] = c * u - s * v;
                    a[j * m + r] = s * u + c * v;
                }
            }
        }
        if off < 1e-14 {
            break;
        }
    }
    let mut out: Vec<f64> = (0..n).map(|i| a[i * m..(i + 1) * m].iter().map(|v| v * v).sum::<f64>().sqrt()).collect();
    out.sort_by(|a, b| b.total_cmp(a));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn singular_values_of_a_known_matrix() {
        // diag(3, 2) rotated: singular values 3 and 2.
        let (c, s) = (0.6f64, 0.8f64);
        let x = [3.0 * c, -2.0 * s, 3.0 * s, 2.0 * c, 0.0, 0.0];
        let sv = singular_values(&x, 3, 2);
        assert!((sv[0] - 3.0).abs() < 1e-12 && (sv[1] - 2.0).abs() < 1e-12, "{sv:?}");
        let sv = singular_values(&transpose(&x, 3, 2), 2, 3);
        assert!((sv[0] - 3.0).abs() < 1e-12 && (sv[1] - 2.0).abs() < 1e-12, "{sv:?}");
    }

    /// The quintic pushes every singular value of a normalized matrix into
    /// a band around 1 (about [0.7, 1.2] after 5 steps for all but the
    /// tiniest): the reference does what Muon's iteration is for.
    #[test]
    fn reference_newton_schulz_flattens_the_spectrum() {
        let (rows, cols) = (24, 40);
        let g: Vec<f64> = (0..rows * cols).map(|i| crate::random::uniform(3, 0, i as u64) as f64 * (1.0 + (i / cols % 5) as f64)).collect();
        let sv = singular_values(&Muon::default().newton_schulz(&g, rows, cols), rows, cols);
        assert!(sv.iter().all(|&s| (0.6..1.25).contains(&s)), "{sv:?}");
        let before = singular_values(&g, rows, cols);
        assert!(before[0] / before[rows - 1] > 3.0, "the input's spectrum is not flat to begin with: {before:?}");
    }

    #[test]
    fn adjust_lr_ratios_are_pytorchs() {
        assert_eq!(AdjustLr::Original.ratio(4, 1), 2.0);
        assert_eq!(AdjustLr::Original.ratio(1, 4), 1.0);
        assert_eq!(AdjustLr::MatchRmsAdamw.ratio(25, 4), 1.0);
        assert_eq!(AdjustLr::SpectralUnclamped.ratio(1, 4), 0.5);
    }
}
