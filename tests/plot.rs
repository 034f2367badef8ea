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
        assert_eq!(paths.len(), 8);
        let f0 = panel.surface.value(panel.start[0] as f64, panel.start[1] as f64);
        for p in paths {
            assert_eq!(p.points[0], panel.start);
            assert_eq!(p.points.len(), panel.steps as usize + 1);
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
