//! Muon on the GPU against its f64 reference: every option set, matrices of
//! many shapes in one optimizer (tall, wide, square, vectors as 1×n, sizes
//! that are not multiples of 4 or of the GEMM's 16-wide tile, two buffer
//! pairs), 50 steps; the orthogonalization checked directly against an SVD;
//! bad input; convergence.

mod common;

use wgpu_optim::device::read_f32;
use wgpu_optim::matrix::muon::singular_values;
use wgpu_optim::matrix::{AdjustLr, MuonOptimizer};
use wgpu_optim::validate::uniform;
use wgpu_optim::*;

/// (190, 110) spans more than one row of the row table for either row
/// length (4096 or 16,384 elements), a fifth of it past the first.
const SHAPES: [(usize, usize); 8] = [(7, 5), (5, 13), (33, 17), (16, 16), (1, 37), (40, 3), (70, 45), (190, 110)];
const STEPS: u32 = 50;
const U: f64 = 1.0 / (1u64 << 24) as f64;

fn cases() -> Vec<(&'static str, Muon)> {
    vec![
        ("muon", Muon { lr: 2e-2, ..Muon::default() }),
        ("muon plain momentum, match_rms_adamw", Muon { lr: 1e-2, momentum: 0.9, nesterov: false, weight_decay: 0.0, adjust_lr_fn: AdjustLr::MatchRmsAdamw, ..Muon::default() }),
        ("muon 4 steps, own coefficients, spectral_unclamped", Muon { lr: 3e-2, ns_steps: 4, ns_coefficients: (2.0, -1.5, 0.5), adjust_lr_fn: AdjustLr::SpectralUnclamped, weight_decay: 0.05, ..Muon::default() }),
        // No iteration: O is the normalised update, so the norm's sum over the
        // row table is checked to the bound of one division (Newton–Schulz
        // damps a wrong scale below the bound of five steps).
        ("muon 0 steps (O = U / ‖U‖)", Muon { lr: 1e-2, ns_steps: 0, ..Muon::default() }),
    ]
}

/// Grads of step t for a tensor: uniform(−1, 1) times a per-row scale, so
/// the matrices have spread-out spectra.
fn grads(seed: u64, t: u64, rows: usize, cols: usize) -> Vec<f32> {
    (0..rows * cols).map(|i| uniform(seed, t, i as u64) * (0.2 + (i / cols % 4) as f32)).collect()
}

/// The reference run of one tensor, with the tolerances' scales.
struct RefTensor {
    shape: (usize, usize),
    p: Vec<f64>,
    m: Vec<f64>,
    /// Σ_t lr·ratio·tol·‖O_t‖_F + 4u·‖θ_t‖_F: the params' Frobenius bound.
    p_bound: f64,
    /// Σ_t of each step's momentum_tolerance, per element.
    m_bound: Vec<f64>,
}

#[test]
fn muon_matches_reference() {
    let gpu = require_gpu!();
    for (name, config) in cases() {
        let mut bufs = Vec::new();
        let mut slices = Vec::new();
        let mut refs = Vec::new();
        // Two buffer pairs: the first four tensors in one, the rest in another,
        // at offsets that are not multiples of 4.
        for (pair, shapes) in [&SHAPES[..4], &SHAPES[4..]].into_iter().enumerate() {
            let total: usize = shapes.iter().map(|(r, c)| r * c + 3).sum();
            let p0: Vec<f32> = (0..total).map(|i| uniform(pair as u64 + 1, 99, i as u64) * 0.5).collect();
            let (p, g) = (common::storage_buffer(gpu, &p0), common::storage_buffer(gpu, &vec![0.0; total]));
            let mut at = 3;
            for &(rows, cols) in shapes {
                slices.push(ParamSlice::range(&p, at as u64, &g, at as u64, (rows * cols) as u64).with_shape(&[rows as u64, cols as u64]));
                let start: Vec<f64> = p0[at..at + rows * cols].iter().map(|&x| x as f64).collect();
                refs.push(RefTensor { shape: (rows, cols), m: vec![0.0; rows * cols], p: start, p_bound: 0.0, m_bound: vec![0.0; rows * cols] });
                at += rows * cols + 3;
            }
            bufs.push((p, g));
        }
        let mut opt = MuonOptimizer::new(&gpu.device, &gpu.queue, config, &slices).unwrap();
        for t in 0..STEPS as u64 {
            for (i, (s, r)) in slices.iter().zip(refs.iter_mut()).enumerate() {
                let (rows, cols) = r.shape;
                let g = grads(i as u64 + 10, t, rows, cols);
                gpu.queue.write_buffer(&s.grad, 4 * s.grad_offset, bytemuck::cast_slice(&g));
                let g64: Vec<f64> = g.iter().map(|&x| x as f64).collect();
                let prev = r.m.clone();
                let o = config.reference_step(r.shape, &mut r.p, &g64, &mut r.m);
                let step = config.lr * config.adjust_lr_fn.ratio(rows as u64, cols as u64);
                let frobenius = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
                r.p_bound += step * config.o_tolerance(rows, cols) * frobenius(&o) + 4.0 * U * frobenius(&r.p);
                (0..prev.len()).for_each(|k| r.m_bound[k] += config.momentum_tolerance(prev[k], g64[k], r.m[k]));
            }
            opt.step().unwrap();
        }
        for (i, (s, r)) in slices.iter().zip(&refs).enumerate() {
            let (rows, cols) = r.shape;
            let got = read_f32(&gpu.device, &gpu.queue, &s.param, s.param_offset, s.len()).unwrap();
            let m = opt.read_state(i).unwrap();
            let p_err = got.iter().zip(&r.p).map(|(a, b)| (*a as f64 - b).powi(2)).sum::<f64>().sqrt();
            let worst_p = p_err / r.p_bound;
            let worst_m = (0..m.len()).map(|k| (m[k] as f64 - r.m[k]).abs() / r.m_bound[k].max(1e-30)).fold(0.0, f64::max);
            eprintln!("{name:<52} {rows:>3}x{cols:<3} params: {worst_p:.4} of the bound ({p_err:.2e}), momentum_buffer: {worst_m:.3}");
            assert!(worst_p <= 1.0, "{name} {rows}x{cols}: params off by {worst_p:.2} of the bound");
            assert!(worst_m <= 1.0, "{name} {rows}x{cols}: momentum_buffer off by {worst_m:.2} of the bound");
        }
    }
}

/// One step from θ = 0 with lr = 1, no momentum and no decay leaves θ = −O
/// (a wide matrix has ratio 1): its singular values are the f64
/// iteration's, and all lie in the band the quintic maps them to.
#[test]
fn newton_schulz_output_has_the_reference_singular_values() {
    let gpu = require_gpu!();
    let config = Muon { lr: 1.0, momentum: 0.0, weight_decay: 0.0, ..Muon::default() };
    for (rows, cols) in [(24usize, 40usize), (37, 19)] {
        let g = grads(5, 0, rows, cols);
        let p = common::storage_buffer(gpu, &vec![0.0; rows * cols]);
        let gb = common::storage_buffer(gpu, &g);
        let mut opt = MuonOptimizer::new(&gpu.device, &gpu.queue, Muon { adjust_lr_fn: AdjustLr::SpectralUnclamped, ..config }, &[ParamSlice::whole(&p, &gb).with_shape(&[rows as u64, cols as u64])]).unwrap();
        opt.step().unwrap();
        let ratio = AdjustLr::SpectralUnclamped.ratio(rows as u64, cols as u64);
        let o: Vec<f64> = read_f32(&gpu.device, &gpu.queue, &p, 0, (rows * cols) as u64).unwrap().iter().map(|&x| -x as f64 / ratio).collect();
        let want = singular_values(&config.newton_schulz(&g.iter().map(|&x| x as f64).collect::<Vec<_>>(), rows, cols), rows, cols);
        let got = singular_values(&o, rows, cols);
        let input = singular_values(&g.iter().map(|&x| x as f64).collect::<Vec<_>>(), rows, cols);
        eprintln!("{rows}x{cols}: input σ {:.3}..{:.3}, after NS {:.4}..{:.4} (reference {:.4}..{:.4})", input[0], input[input.len() - 1], got[0], got[got.len() - 1], want[0], want[want.len() - 1]);
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() < 1e-4, "{rows}x{cols}: singular value {a} vs the reference's {b}");
            assert!((0.6..1.25).contains(a), "{rows}x{cols}: singular value {a} outside the quintic's band");
        }
    }
}

#[test]
fn bad_input_is_a_typed_error() {
    let gpu = require_gpu!();
    let p = common::storage_buffer(gpu, &[0.5; 12]);
    let g = common::storage_buffer(gpu, &[0.5; 12]);
    let err = |config: Muon, slice: ParamSlice| MuonOptimizer::new(&gpu.device, &gpu.queue, config, &[slice]).err();
    let whole = ParamSlice::whole(&p, &g);
    assert!(matches!(err(Muon::default(), whole.clone()), Some(OptimError::ShapeRequired { index: 0, .. })));
    assert!(matches!(err(Muon::default(), whole.clone().with_shape(&[2, 2, 3])), Some(OptimError::ShapeRequired { .. })));
    assert!(matches!(err(Muon::default(), whole.clone().with_shape(&[12])), Some(OptimError::ShapeRequired { .. })));
    assert!(matches!(err(Muon::default(), whole.clone().with_shape(&[5, 3])), Some(OptimError::ShapeMismatch { .. })));
    assert!(matches!(err(Muon { ns_steps: 100, ..Muon::default() }, whole.clone().with_shape(&[3, 4])), Some(OptimError::InvalidHyperparameter { name: "ns_steps", .. })));
    assert!(matches!(err(Muon { lr: -1.0, ..Muon::default() }, whole.clone().with_shape(&[3, 4])), Some(OptimError::InvalidHyperparameter { name: "lr", .. })));
    assert!(matches!(err(Muon { ns_coefficients: (f64::NAN, 0.0, 0.0), ..Muon::default() }, whole.clone().with_shape(&[3, 4])), Some(OptimError::InvalidHyperparameter { .. })));
    // nothing changed
    assert_eq!(read_f32(&gpu.device, &gpu.queue, &p, 0, 12).unwrap(), vec![0.5; 12]);
}

/// Least squares: W (16×24) towards W* from the gradient of ½‖W − W*‖²,
/// computed on the host each step. Muon's orthogonalized, unit-spectrum
/// steps shrink the distance to W* by a large factor.
#[test]
fn muon_converges_on_a_matrix_least_squares() {
    let gpu = require_gpu!();
    let (rows, cols) = (16usize, 24usize);
    let target: Vec<f32> = (0..rows * cols).map(|i| uniform(8, 0, i as u64)).collect();
    let p = common::storage_buffer(gpu, &vec![0.0; rows * cols]);
    let g = common::storage_buffer(gpu, &vec![0.0; rows * cols]);
    let config = Muon { lr: 0.02, weight_decay: 0.0, ..Muon::default() };
    let mut opt = MuonOptimizer::new(&gpu.device, &gpu.queue, config, &[ParamSlice::whole(&p, &g).with_shape(&[rows as u64, cols as u64])]).unwrap();
    let distance = |w: &[f32]| w.iter().zip(&target).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>().sqrt();
    let start = distance(&vec![0.0; rows * cols]);
    for step in 0..300 {
        if step == 200 {
            opt.set_lr(0.005).unwrap();
        }
        let w = read_f32(&gpu.device, &gpu.queue, &p, 0, (rows * cols) as u64).unwrap();
        let grad: Vec<f32> = w.iter().zip(&target).map(|(a, b)| a - b).collect();
        gpu.queue.write_buffer(&g, 0, bytemuck::cast_slice(&grad));
        opt.step().unwrap();
    }
    let end = distance(&read_f32(&gpu.device, &gpu.queue, &p, 0, (rows * cols) as u64).unwrap());
    eprintln!("distance to W*: {start:.3} -> {end:.4}");
    assert!(end < 0.05 * start, "Muon did not converge: {start} -> {end}");
}

/// With grads so small that ‖U‖_F < eps, the normalization divides by eps
/// (PyTorch's clamp, not ‖U‖ + eps): O stays well below orthogonal and
/// matches the reference's.
#[test]
fn tiny_grads_are_normalized_by_eps() {
    let gpu = require_gpu!();
    let (rows, cols) = (12usize, 20usize);
    let config = Muon { lr: 1.0, momentum: 0.0, weight_decay: 0.0, ..Muon::default() };
    let g: Vec<f32> = grads(6, 0, rows, cols).iter().map(|x| x * 2e-9).collect();
    let p = common::storage_buffer(gpu, &vec![0.0; rows * cols]);
    let gb = common::storage_buffer(gpu, &g);
    let mut opt = MuonOptimizer::new(&gpu.device, &gpu.queue, config, &[ParamSlice::whole(&p, &gb).with_shape(&[rows as u64, cols as u64])]).unwrap();
    opt.step().unwrap();
    let got = read_f32(&gpu.device, &gpu.queue, &p, 0, (rows * cols) as u64).unwrap();
    let want = config.newton_schulz(&g.iter().map(|&x| x as f64).collect::<Vec<_>>(), rows, cols);
    let norm: f64 = g.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    assert!(norm < config.eps, "the grads are not tiny enough: {norm}");
    let worst = got.iter().zip(&want).map(|(a, b)| (-*a as f64 - b).abs()).fold(0.0, f64::max);
    let largest = want.iter().map(|x| x.abs()).fold(0.0, f64::max);
    assert!(worst < 1e-4 * largest, "O differs by {worst} (largest entry {largest})");
}

/// Both GEMM kernels (workgroup-memory tiles for GPUs, register blocks for
/// CPU adapters) give the same bits, and each element is within the
/// worst-case bound γ_K·Σ|a||b| of the f64 product: two items in one batch
/// (one with a transposed A, edges that are not multiples of 8 or 16).
#[test]
fn gemm_kernels_agree_bitwise_and_match_f64() {
    use wgpu_optim::matrix::gemm::{Gemm, GemmKernel, Item};
    let gpu = require_gpu!();
    let (alpha, beta) = (0.75f32, 0.5f32);
    // item 0: A 37×29 row-major at 3, B 29×45 row-major, D/C 37×45; item 1: A = Xᵀ of a 66×70 X (70×66), B 66×3.
    let items = [
        Item { m: 37, n: 45, k: 29, a_off: 3, a_rs: 29, a_cs: 1, b_off: 2000, b_rs: 45, b_cs: 1, d_off: 4000, c_off: 6000, pad: 0 },
        Item { m: 70, n: 3, k: 66, a_off: 9000, a_rs: 1, a_cs: 70, b_off: 14000, b_rs: 3, b_cs: 1, d_off: 15000, c_off: 16000, pad: 0 },
    ];
    let init: Vec<f32> = (0..17000).map(|i| uniform(21, 0, i)).collect();
    let run = |kernel| {
        let scratch = common::storage_buffer(gpu, &init);
        let gemm = Gemm::new(&gpu.device, kernel).unwrap();
        let stage = gemm.stage(&gpu.device, &gpu.queue, &scratch, &items, alpha, beta);
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        gemm.record(&mut encoder.begin_compute_pass(&Default::default()), &stage);
        gpu.queue.submit([encoder.finish()]);
        read_f32(&gpu.device, &gpu.queue, &scratch, 0, 17000).unwrap()
    };
    let (tiles, blocks) = (run(GemmKernel::Tiles), run(GemmKernel::Blocks));
    for it in &items {
        for i in 0..it.m {
            for j in 0..it.n {
                let c = (it.c_off + i * it.n + j) as usize;
                assert_eq!(tiles[c].to_bits(), blocks[c].to_bits(), "element ({i}, {j}) differs between the kernels");
                let (mut exact, mut scale) = (0.0f64, 0.0f64);
                for k in 0..it.k {
                    let ab = init[(it.a_off + i * it.a_rs + k * it.a_cs) as usize] as f64 * init[(it.b_off + k * it.b_rs + j * it.b_cs) as usize] as f64;
                    exact += ab;
                    scale += ab.abs();
                }
                let d = init[(it.d_off + i * it.n + j) as usize] as f64;
                let want = alpha as f64 * exact + beta as f64 * d;
                let bound = (it.k as f64 + 3.0) * U * (alpha as f64 * scale + (beta as f64 * d).abs());
                assert!((blocks[c] as f64 - want).abs() <= bound, "({i}, {j}): {} vs {want}", blocks[c]);
            }
        }
    }
    // nothing outside the C blocks changed
    let outside = |k: usize| !items.iter().any(|it| (it.c_off as usize..(it.c_off + it.m * it.n) as usize).contains(&k));
    assert!((0..17000).filter(|&k| outside(k)).all(|k| blocks[k] == init[k] && tiles[k] == init[k]));
}
