//! Trajectory pictures: the paths of the eight classic rules (SGD, Momentum,
//! NAG, Adagrad, RMSprop, Adadelta, Adam, AdamW), and L-BFGS on Rosenbrock,
//! over log-spaced contours of Beale's function, Rosenbrock's function and the saddle
//! x² − y², computed on the GPU by the engine itself (gradients in
//! `shaders/surfaces.wgsl`, steps by the fused rules) and drawn with
//! plotters, using an embedded font (DejaVu Sans, `assets/`) so no system
//! fonts are needed.

use std::path::Path;

use plotters::prelude::*;

use crate::error::{OptimError, Result};
pub use crate::surfaces::panels::{contours, levels, panels, Panel, Path2};
use crate::surfaces::{trajectory, Surface};

const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// Runs every rule of `panel` on the GPU, and L-BFGS on Rosenbrock (the
/// seed's Newton line made practical).
///
/// **Errors:** anything the engine reports.
pub fn compute(device: &wgpu::Device, queue: &wgpu::Queue, panel: &Panel) -> Result<Vec<Path2>> {
    let mut paths = panel
        .rules
        .iter()
        .map(|&(label, config)| Ok(Path2 { label, points: trajectory(device, queue, panel.surface, config, panel.start, panel.steps)? }))
        .collect::<Result<Vec<_>>>()?;
    if panel.surface == Surface::Rosenbrock {
        paths.push(Path2 { label: "L-BFGS", points: lbfgs_rosenbrock(device, queue, panel.start, LBFGS_REACH)?.points });
    }
    Ok(paths)
}

/// How close to Rosenbrock's minimum the tour's L-BFGS path goes.
pub const LBFGS_REACH: f64 = 1e-6;

/// L-BFGS's path on 2-D Rosenbrock (chained Rosenbrock of 2 elements).
#[derive(Clone, Debug)]
pub struct LbfgsPath {
    /// The start, then the point after each iteration.
    pub points: Vec<[f32; 2]>,
    /// Closure calls (loss and gradient evaluations) made.
    pub evaluations: u64,
    /// Whether the path came within the asked distance of (1, 1).
    pub reached: bool,
}

/// L-BFGS (strong Wolfe, PyTorch's other defaults) on 2-D Rosenbrock from
/// `start`, one iteration per step, until max |x − (1, 1)| < `reach` or
/// 200 iterations; gradients and losses on the GPU.
///
/// **Errors:** anything the optimizer reports.
pub fn lbfgs_rosenbrock(device: &wgpu::Device, queue: &wgpu::Queue, start: [f32; 2], reach: f64) -> Result<LbfgsPath> {
    use crate::lbfgs::{Lbfgs, LbfgsOptimizer, LineSearch, Objective, ObjectiveKind};
    let objective = Objective::new(device, ObjectiveKind::Rosenbrock, &start)?;
    let options = Lbfgs { max_iter: 1, line_search_fn: LineSearch::StrongWolfe, ..Lbfgs::default() };
    let mut opt = LbfgsOptimizer::new(device, queue, objective.slices(&[2]), options)?;
    let mut points = vec![start];
    let near = |p: &[f32; 2]| p.iter().all(|v| (*v as f64 - 1.0).abs() < reach);
    while !near(points.last().expect("the start")) && points.len() <= 200 {
        opt.step(&mut |encoder| Ok(objective.record(encoder)))?;
        let p = crate::device::read_f32(device, queue, objective.params(), 0, 2)?;
        points.push([p[0], p[1]]);
    }
    let reached = near(points.last().expect("the start"));
    Ok(LbfgsPath { points, evaluations: opt.host_state().func_evals, reached })
}

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The font is compiled in; registration of valid TTF bytes cannot fail.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

const COLORS: [RGBColor; 9] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
    RGBColor(0, 0, 0),
];

/// Draws the panels and their paths into a PNG at `path`.
///
/// **Errors:** [`OptimError::Io`] if drawing or writing fails.
pub fn draw(path: &Path, panels: &[(Panel, Vec<Path2>)]) -> Result<()> {
    register_font();
    let err = |e: &dyn std::fmt::Display| OptimError::io(path, e);
    let root = BitMapBackend::new(path, (620 * panels.len() as u32, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    for (area, (panel, paths)) in root.split_evenly((1, panels.len())).iter().zip(panels) {
        let title = format!("{} from ({}, {})", panel.surface.name(), panel.start[0], panel.start[1]);
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 24))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(40)
            .build_cartesian_2d(panel.x.0..panel.x.1, panel.y.0..panel.y.1)
            .map_err(|e| err(&e))?;
        chart.configure_mesh().disable_mesh().label_style(("sans-serif", 14)).draw().map_err(|e| err(&e))?;
        let grey = RGBColor(190, 190, 190);
        chart
            .draw_series(contours(panel, 160).into_iter().map(|s| PathElement::new(vec![s[0], s[1]], grey.stroke_width(1))))
            .map_err(|e| err(&e))?;
        if let Some(m) = panel.surface.minimum() {
            chart.draw_series([Cross::new((m[0], m[1]), 8, BLACK.stroke_width(2))]).map_err(|e| err(&e))?;
        }
        for (k, p) in paths.iter().enumerate() {
            let color = COLORS[k % COLORS.len()];
            // Keep the path up to where it leaves the panel.
            let inside = |q: &[f32; 2]| {
                let (x, y) = (q[0] as f64, q[1] as f64);
                x.is_finite() && y.is_finite() && x >= panel.x.0 && x <= panel.x.1 && y >= panel.y.0 && y <= panel.y.1
            };
            let points: Vec<(f64, f64)> = p.points.iter().take_while(|q| inside(q)).map(|q| (q[0] as f64, q[1] as f64)).collect();
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(p.label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// Computes every panel on the GPU and writes the figure to `path`; returns
/// the panels and paths (for printing where each rule ended).
///
/// **Errors:** anything the engine reports, or [`OptimError::Io`].
pub fn trajectories_png(device: &wgpu::Device, queue: &wgpu::Queue, path: &Path) -> Result<Vec<(Panel, Vec<Path2>)>> {
    let computed = panels().into_iter().map(|p| compute(device, queue, &p).map(|paths| (p, paths))).collect::<Result<Vec<_>>>()?;
    draw(path, &computed)?;
    Ok(computed)
}
