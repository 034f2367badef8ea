//! The playground's runs: the tour's panels (the seed's eight rules on
//! Beale, Rosenbrock and the saddle) plus a quadratic bowl, each with the
//! newer element-wise rules added; and the bound a path computed in the
//! browser must keep to against the same path computed natively.
//!
//! Plain Rust, compiled for both targets: the page (wasm32) runs these
//! panels, and the end-to-end test (native) recomputes them to check the
//! numbers the page shows.

use wgpu_optim::reference::ReferenceOptimizer;
use wgpu_optim::surfaces::panels::{self, Panel};
use wgpu_optim::surfaces::Surface;
use wgpu_optim::{Adamax, Adan, Lion, NAdam, OptimizerConfig, RAdam, Result, Rprop};

/// The bound's multiple of a path's own sensitivity (as L-BFGS's validation).
pub const K: f64 = 16.0;

/// f32 roundings per step the sensitivity models (u = 2⁻²⁴ each).
pub const DEPTH: f64 = 8.0;

/// The page's panels, in order: Beale, Rosenbrock, the saddle (the tour's),
/// then the quadratic bowl x² + 10y² from (−1.6, 0.9). Every panel runs the
/// seed's eight rules, then Adamax, NAdam, RAdam, Lion, Adan and Rprop.
pub fn panels() -> Vec<Panel> {
    let mut out = panels::panels();
    out.push(Panel { surface: Surface::Quadratic, start: [-1.6, 0.9], steps: 300, x: (-2.0, 2.0), y: (-1.2, 1.2), rules: panels::rules(0.02, 0.01, 0.5, 0.02, 1.0, 0.05) });
    for p in &mut out {
        let adam_lr = p.rules.iter().find(|r| r.0 == "Adam").map_or(1e-2, |r| r.1.lr());
        let steep = matches!(p.surface, Surface::Beale | Surface::Rosenbrock);
        p.rules.extend(newer_rules(adam_lr, if steep { adam_lr / 30.0 } else { adam_lr }));
    }
    out
}

/// The newer rules at a panel's Adam learning rate (Lion at a third of it,
/// as its authors advise a smaller one), PyTorch's other defaults.
///
/// RAdam gets its own: its first four steps are unnormalised momentum
/// steps lr·m̂ (the rectification is off while ρ_t ≤ 5), which at Adam's lr
/// leave Beale's and Rosenbrock's basins and overflow to NaN. There it runs
/// at a thirtieth of Adam's lr, the best final f of lr/3 … lr/1000 on both.
fn newer_rules(lr: f64, radam_lr: f64) -> Vec<(&'static str, OptimizerConfig)> {
    vec![
        ("Adamax", Adamax { lr, ..Adamax::default() }.into()),
        ("NAdam", NAdam { lr, ..NAdam::default() }.into()),
        ("RAdam", RAdam { lr: radam_lr, ..RAdam::default() }.into()),
        ("Lion", Lion { lr: lr / 3.0, ..Lion::default() }.into()),
        ("Adan", Adan { lr, ..Adan::default() }.into()),
        ("Rprop", Rprop { lr, ..Rprop::default() }.into()),
    ]
}

/// How the f64 reference path is disturbed to measure its sensitivity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Disturbance {
    /// None: the reference itself.
    None,
    /// Every gradient component scaled by 1 ± δ, the sign alternating by
    /// step and by component (`sign` flips the whole pattern).
    Gradient {
        /// The relative size of the disturbance.
        delta: f64,
        /// +1 or −1: which components grow on even steps.
        sign: f64,
    },
    /// The params rounded to f32 after every step, as the GPU stores them.
    RoundParams,
}

/// f(x, y) at the end of `steps` steps of the f64 reference of `config` on
/// `surface` from `start`, disturbed as `how` says.
///
/// **Errors:** the config's validation.
pub fn reference_loss(surface: Surface, config: OptimizerConfig, start: [f32; 2], steps: u32, how: Disturbance) -> Result<f64> {
    let mut reference = ReferenceOptimizer::new(config, 2)?;
    let mut p = [start[0] as f64, start[1] as f64];
    for t in 0..steps {
        let mut g = surface.gradient(p[0], p[1]);
        if let Disturbance::Gradient { delta, sign } = how {
            for (k, gk) in g.iter_mut().enumerate() {
                let s = if (t as usize + k).is_multiple_of(2) { sign } else { -sign };
                *gk *= 1.0 + s * delta;
            }
        }
        reference.step(&mut p, &g)?;
        if how == Disturbance::RoundParams {
            p = p.map(|v| v as f32 as f64);
        }
    }
    Ok(surface.value(p[0], p[1]))
}

/// The bound on |f_browser − f_native| at a path's end: [`K`] × the
/// largest change of the reference's final f under the disturbances an
/// f32 computation makes (gradients off by [`DEPTH`]·u either way, params
/// rounded to f32), for each of the two paths, so 2K in all; plus
/// 2K·u·|f| for the last evaluation.
///
/// **Errors:** the config's validation.
pub fn loss_bound(surface: Surface, config: OptimizerConfig, start: [f32; 2], steps: u32) -> Result<f64> {
    let u = 1.0 / (1u64 << 24) as f64;
    let exact = reference_loss(surface, config, start, steps, Disturbance::None)?;
    let mut sensitivity: f64 = 0.0;
    for how in [Disturbance::Gradient { delta: DEPTH * u, sign: 1.0 }, Disturbance::Gradient { delta: DEPTH * u, sign: -1.0 }, Disturbance::RoundParams] {
        let moved = (reference_loss(surface, config, start, steps, how)? - exact).abs();
        sensitivity = sensitivity.max(if moved.is_nan() { f64::INFINITY } else { moved });
    }
    Ok(2.0 * K * (sensitivity + u * exact.abs()))
}

/// A surface by its name ("beale", "rosenbrock", "saddle", "quadratic").
pub fn surface(name: &str) -> Option<Surface> {
    Surface::ALL.into_iter().find(|s| s.name() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every path the page draws ends at a finite f (a NaN path draws
    /// nothing and cannot be compared with the native engine's).
    #[test]
    fn every_path_ends_finite() {
        for p in panels() {
            for (label, config) in &p.rules {
                let f = reference_loss(p.surface, *config, p.start, p.steps, Disturbance::None).unwrap();
                assert!(f.is_finite(), "{} {label}: f = {f}", p.surface.name());
            }
        }
    }
}
