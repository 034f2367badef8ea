//! The damped diagonal Newton step: exact in one step on a separable
//! quadratic, damping and Sophia's clipping behave as documented.

mod common;

use wgpu_optim::device::read_f32;
use wgpu_optim::validate::uniform;
use wgpu_optim::*;

const N: usize = 1003;

/// f(x) = Σ aᵢ(xᵢ − cᵢ)²/2: ∇f = a ⊙ (x − c), ∇²f = diag(a).
fn problem() -> (Vec<f64>, Vec<f64>, Vec<f32>) {
    let a: Vec<f64> = (0..N as u64).map(|i| 2.25 + 1.75 * uniform(100, 0, i) as f64).collect();
    let c: Vec<f64> = (0..N as u64).map(|i| 3.0 * uniform(101, 0, i) as f64).collect();
    let x0: Vec<f32> = (0..N as u64).map(|i| 3.0 * uniform(102, 0, i)).collect();
    (a, c, x0)
}

fn newton_steps(gpu: &device::Gpu, cfg: Newton, steps: usize) -> Vec<f64> {
    let (a, c, x0) = problem();
    let p = common::storage_buffer(gpu, &x0);
    let g = common::storage_buffer(gpu, &vec![0.0; N]);
    let mut opt = Optimizer::new(&gpu.device, &gpu.queue, cfg.into(), &[ParamSlice::whole(&p, &g)]).unwrap();
    assert_eq!(opt.state_names()[0], "hessian");
    let h: Vec<f32> = a.iter().map(|&v| v as f32).collect();
    for _ in 0..steps {
        let x = read_f32(&gpu.device, &gpu.queue, &p, 0, N as u64).unwrap();
        let grad: Vec<f32> = (0..N).map(|i| (a[i] * (x[i] as f64 - c[i])) as f32).collect();
        gpu.queue.write_buffer(&g, 0, bytemuck::cast_slice(&grad));
        opt.write_state(0, 0, &h).unwrap();
        opt.step().unwrap();
    }
    read_f32(&gpu.device, &gpu.queue, &p, 0, N as u64).unwrap().iter().map(|&v| v as f64).collect()
}

#[test]
fn one_undamped_step_reaches_the_optimum_of_a_separable_quadratic() {
    let gpu = require_gpu!();
    let (_, c, x0) = problem();
    let x = newton_steps(gpu, Newton { lr: 1.0, damping: 0.0, ..Newton::default() }, 1);
    for i in 0..N {
        // f32 rounding of the gradient, the quotient and the subtraction only
        let scale = (x0[i] as f64).abs() + c[i].abs();
        assert!((x[i] - c[i]).abs() <= 8.0 * f32::EPSILON as f64 * scale, "elem {i}: {} vs optimum {}", x[i], c[i]);
    }
    // The test has teeth: the start was far from the optimum.
    let start = (0..N).map(|i| (x0[i] as f64 - c[i]).abs()).fold(0.0, f64::max);
    assert!(start > 1.0);
}

#[test]
fn damping_shortens_the_step_by_h_over_h_plus_damping() {
    let gpu = require_gpu!();
    let (a, c, x0) = problem();
    let damping = 0.5;
    let x = newton_steps(gpu, Newton { lr: 1.0, damping, ..Newton::default() }, 1);
    for i in 0..N {
        let want = x0[i] as f64 - a[i] * (x0[i] as f64 - c[i]) / (a[i] + damping);
        assert!((x[i] - want).abs() < 1e-5 * (1.0 + want.abs()), "elem {i}: {} vs {want}", x[i]);
    }
}

#[test]
fn sophia_style_clipped_steps_converge_and_respect_the_clip() {
    let gpu = require_gpu!();
    let (_, c, x0) = problem();
    let cfg = Newton { lr: 0.05, beta1: 0.9, beta2: 0.9, clip: 1.0, damping: 1e-6, ..Newton::default() };
    let one = newton_steps(gpu, cfg, 1);
    for i in 0..N {
        assert!((one[i] - x0[i] as f64).abs() <= cfg.lr * cfg.clip * (1.0 + 1e-6), "elem {i} moved more than lr·clip");
    }
    let x = newton_steps(gpu, cfg, 300);
    let worst = (0..N).map(|i| (x[i] - c[i]).abs()).fold(0.0, f64::max);
    assert!(worst < 1e-2, "Sophia-style run ends {worst} from the optimum");
}
