//! The tour's panels: which surface, from where, for how many steps, with
//! which rules and hyperparameters; and their contour lines. Shared by the
//! trajectory picture (`plot`) and the browser playground
//! (`integrations/web`), so that both draw the same runs.

use super::Surface;
use crate::rules::OptimizerConfig;
use crate::{Adadelta, Adagrad, Adam, AdamW, RmsProp, Sgd};

/// One panel of the figure.
#[derive(Clone, Debug)]
pub struct Panel {
    /// The function the rules minimize.
    pub surface: Surface,
    /// The (x, y) every path starts from.
    pub start: [f32; 2],
    /// Steps each rule takes.
    pub steps: u32,
    /// The plotted x range (min, max); paths are cut where they leave it.
    pub x: (f64, f64),
    /// The plotted y range (min, max); paths are cut where they leave it.
    pub y: (f64, f64),
    /// (label, config) per rule, with hyperparameters suited to the surface.
    pub rules: Vec<(&'static str, OptimizerConfig)>,
}

/// A computed path.
#[derive(Clone, Debug)]
pub struct Path2 {
    /// The rule's label in the legend (e.g. "Adam").
    pub label: &'static str,
    /// The (x, y) after each step, the start first: `steps + 1` points.
    pub points: Vec<[f32; 2]>,
}

impl Path2 {
    /// The last point and f there.
    pub fn end(&self, surface: Surface) -> ([f32; 2], f64) {
        let p = *self.points.last().expect("a path has its start point");
        (p, surface.value(p[0] as f64, p[1] as f64))
    }
}

/// The seed's eight classic rules (SGD, Momentum, NAG, Adagrad, RMSprop,
/// Adadelta, Adam, AdamW) with a panel's learning rates: Momentum and NAG
/// share one, Adam and AdamW another; PyTorch's other defaults.
pub fn rules(sgd_lr: f64, momentum_lr: f64, adagrad_lr: f64, rms_lr: f64, adadelta_lr: f64, adam_lr: f64) -> Vec<(&'static str, OptimizerConfig)> {
    vec![
        ("SGD", Sgd { lr: sgd_lr, ..Sgd::default() }.into()),
        ("Momentum", Sgd { lr: momentum_lr, momentum: 0.9, ..Sgd::default() }.into()),
        ("NAG", Sgd { lr: momentum_lr, momentum: 0.9, nesterov: true, ..Sgd::default() }.into()),
        ("Adagrad", Adagrad { lr: adagrad_lr, ..Adagrad::default() }.into()),
        ("RMSprop", RmsProp { lr: rms_lr, ..RmsProp::default() }.into()),
        ("Adadelta", Adadelta { lr: adadelta_lr, ..Adadelta::default() }.into()),
        ("Adam", Adam { lr: adam_lr, ..Adam::default() }.into()),
        ("AdamW", AdamW { lr: adam_lr, ..AdamW::default() }.into()),
    ]
}

/// The three classic panels: Beale from (2, 1.7), Rosenbrock from (−2, 2),
/// the saddle from (−0.5, −1e-4).
pub fn panels() -> Vec<Panel> {
    vec![
        Panel { surface: Surface::Beale, start: [2.0, 1.7], steps: 1500, x: (-0.5, 4.5), y: (-1.5, 2.5), rules: rules(1e-3, 1e-4, 0.3, 1e-2, 1.0, 5e-2) },
        Panel { surface: Surface::Rosenbrock, start: [-2.0, 2.0], steps: 4000, x: (-2.5, 2.0), y: (-1.0, 4.5), rules: rules(1e-4, 1e-4, 0.5, 3e-3, 1.0, 2e-2) },
        Panel { surface: Surface::Saddle, start: [-0.5, -1e-4], steps: 400, x: (-1.0, 1.0), y: (-1.5, 0.5), rules: rules(1e-2, 1e-2, 0.1, 1e-2, 1.0, 1e-2) },
    ]
}

/// Contour levels: log-spaced for the non-negative surfaces, evenly spaced
/// around 0 for the saddle.
pub fn levels(surface: Surface) -> Vec<f64> {
    match surface {
        Surface::Saddle => (-10..=10).filter(|&k| k != 0).map(|k| k as f64 * 0.1).collect(),
        _ => (-6..=12).map(|k| 10f64.powf(k as f64 / 2.0)).collect(),
    }
}

/// Marching-squares segments of the level sets of `f` over the panel.
pub fn contours(panel: &Panel, cells: usize) -> Vec<[(f64, f64); 2]> {
    let (x0, x1, y0, y1) = (panel.x.0, panel.x.1, panel.y.0, panel.y.1);
    let at = |i: usize, j: usize| (x0 + (x1 - x0) * i as f64 / cells as f64, y0 + (y1 - y0) * j as f64 / cells as f64);
    let grid: Vec<Vec<f64>> = (0..=cells).map(|i| (0..=cells).map(|j| { let (x, y) = at(i, j); panel.surface.value(x, y) }).collect()).collect();
    let mut segments = Vec::new();
    for level in levels(panel.surface) {
        for i in 0..cells {
            for j in 0..cells {
                let corners = [(i, j), (i + 1, j), (i + 1, j + 1), (i, j + 1)];
                let mut crossings = Vec::with_capacity(4);
                for k in 0..4 {
                    let (a, b) = (corners[k], corners[(k + 1) % 4]);
                    let (va, vb) = (grid[a.0][a.1] - level, grid[b.0][b.1] - level);
                    if (va < 0.0) != (vb < 0.0) {
                        let t = va / (va - vb);
                        let (pa, pb) = (at(a.0, a.1), at(b.0, b.1));
                        crossings.push((pa.0 + t * (pb.0 - pa.0), pa.1 + t * (pb.1 - pa.1)));
                    }
                }
                for pair in crossings.chunks_exact(2) {
                    segments.push([pair[0], pair[1]]);
                }
            }
        }
    }
    segments
}

