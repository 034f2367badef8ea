//! The trajectory figure: computed on the GPU, drawn with the embedded font.

mod common;

use wgpu_optim::plot::trajectories_png;
use wgpu_optim::surfaces::Surface;

#[test]
fn trajectories_png_is_written_and_paths_make_progress() {
    let gpu = require_gpu!();
    let dir = std::env::temp_dir().join(format!("wgpu-optim-plot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("trajectories.png");
    let computed = trajectories_png(&gpu.device, &gpu.queue, &out).unwrap();
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert!(bytes.len() > 20_000, "the picture is suspiciously small: {} bytes", bytes.len());
    assert_eq!(computed.len(), 3);
    for (panel, paths) in &computed {
        let lbfgs = usize::from(panel.surface == Surface::Rosenbrock);
        assert_eq!(paths.len(), 8 + lbfgs);
        let f0 = panel.surface.value(panel.start[0] as f64, panel.start[1] as f64);
        for p in paths {
            assert_eq!(p.points[0], panel.start);
            if p.label != "L-BFGS" {
                assert_eq!(p.points.len(), panel.steps as usize + 1);
            }
        }
        let improved = paths.iter().filter(|p| p.end(panel.surface).1 < 0.1 * f0).count();
        match panel.surface {
            // Every rule escapes the saddle (f falls below its start value).
            Surface::Saddle => assert!(paths.iter().all(|p| p.end(panel.surface).1 < f0 - 0.01)),
            // Most rules cut f by 90 % (plain SGD may crawl on Rosenbrock).
            _ => assert!(improved >= 7, "{}: only {improved} rules cut f by 90 %", panel.surface.name()),
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// The tour's L-BFGS line: 2-D Rosenbrock from (−2, 2) to within 1e-6 of
/// (1, 1), in about as many iterations and evaluations as the f64 reference
/// needs.
#[test]
fn lbfgs_reaches_rosenbrocks_minimum_like_the_reference() {
    use wgpu_optim::lbfgs::reference::ReferenceLbfgs;
    use wgpu_optim::lbfgs::{Lbfgs, LineSearch, ObjectiveKind};
    let gpu = require_gpu!();
    let path = wgpu_optim::plot::lbfgs_rosenbrock(&gpu.device, &gpu.queue, [-2.0, 2.0], 1e-6).unwrap();
    let options = Lbfgs { max_iter: 1, line_search_fn: LineSearch::StrongWolfe, ..Lbfgs::default() };
    let mut reference = ReferenceLbfgs::new(options).unwrap();
    let mut x = vec![-2.0, 2.0];
    let mut iterations = 0;
    while x.iter().any(|v: &f64| (v - 1.0).abs() >= 1e-6) && iterations < 200 {
        reference.step(&mut x, &mut |x| ObjectiveKind::Rosenbrock.host_value(x));
        iterations += 1;
    }
    eprintln!("GPU: {} iterations, {} evaluations; reference: {iterations} iterations, {} evaluations", path.points.len() - 1, path.evaluations, reference.host.func_evals);
    assert!(path.reached, "the GPU's L-BFGS ended at {:?}", path.points.last());
    assert!(iterations < 200, "the reference did not reach (1, 1)");
    // Within a tenth (at least 2) of the reference's counts: f32 can move the
    // last iterations near the minimum, not the path's shape.
    let near = |gpu: f64, reference: f64| (gpu - reference).abs() <= (0.1 * reference).max(2.0);
    let (gpu_iters, gpu_evals) = ((path.points.len() - 1) as f64, path.evaluations as f64);
    assert!(near(gpu_iters, iterations as f64), "GPU {gpu_iters} against reference {iterations} iterations");
    assert!(near(gpu_evals, reference.host.func_evals as f64), "GPU {gpu_evals} against reference {} evaluations", reference.host.func_evals);
}

#[test]
fn a_path_longer_than_a_buffer_may_be_is_a_typed_error() {
    let gpu = require_gpu!();
    // The fewest steps whose path (8 bytes a point, the start included) is over the limit.
    let Ok(steps) = u32::try_from(gpu.device.limits().max_buffer_size / 8) else {
        eprintln!("skipped: this device's buffers hold a path of any u32 length");
        return;
    };
    let r = wgpu_optim::surfaces::trajectory(&gpu.device, &gpu.queue, Surface::Rosenbrock, wgpu_optim::Sgd::default().into(), [0.0, 0.0], steps);
    assert!(matches!(r, Err(wgpu_optim::OptimError::ExceedsLimits(_))), "{r:?}");
}
