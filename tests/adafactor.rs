//! Adafactor on the GPU against its f64 reference (PyTorch's single-tensor
//! code): factored matrices (tall, wide, one row), 3-D tensors of
//! independent slabs, vectors and flat ranges (unfactored), a tensor
//! starting at θ = 0 (α from eps2), two buffer pairs, 50 steps, three option
//! sets, each laid out for the scalar, vec4 and wide access (the same bits);
//! every kind of element pass (`lined`, `general`, `flat`); a first step
//! computed by hand; state names and shapes; bad input;
//! convergence; bitwise reproducibility.

mod common;

use wgpu_optim::device::read_f32;
use wgpu_optim::matrix::adafactor::AdafactorReference;
use wgpu_optim::validate::uniform;
use wgpu_optim::*;

/// Shapes (`[0, n]`: a flat range of n elements). A lane of the element
/// passes steps WG·UNIT elements at a time: [40, 30] moves it several
/// rows, [3, 7, 50] past slab ends, [2, 3, 300] less than a row, [100, 2,
/// 3] 42 slabs; [130, 129] and [70, 256] span more than one row of the row
/// table for either row length (4096 or 16,384 elements). Columns that are
/// a multiple of 8 ([9, 16], [5, 40, 24], [70, 256]) take the `lined`
/// passes (a cursor per lane; [5, 40, 24] moves it across columns, rows and
/// slabs), the other factored shapes the `general` ones.
const SHAPES: [&[u64]; 14] = [&[7, 5], &[3, 4, 6], &[1030], &[3, 7, 50], &[9, 16], &[40, 30], &[1, 37], &[5, 13], &[0, 1025], &[2, 3, 300], &[100, 2, 3], &[130, 129], &[5, 40, 24], &[70, 256]];
const STEPS: u32 = 50;

fn cases() -> Vec<(&'static str, Adafactor)> {
    vec![
        ("adafactor", Adafactor::default()),
        ("adafactor wd 0.1, eps1 1e-3, d 2", Adafactor { lr: 2e-2, weight_decay: 0.1, eps: (Some(1e-3), 1e-3), d: 2.0, ..Adafactor::default() }),
        ("adafactor maximize, beta2_decay -0.5, eps2 0.5", Adafactor { beta2_decay: -0.5, eps: (None, 0.5), maximize: true, ..Adafactor::default() }),
    ]
}

struct Tensor {
    slice: ParamSlice,
    p: Vec<f64>,
    state: AdafactorReference,
}

/// `[0, n]` stands for a flat range of n elements without a shape.
fn slice_of(p: &wgpu::Buffer, g: &wgpu::Buffer, at: u64, shape: &[u64]) -> (ParamSlice, u64) {
    if shape[0] == 0 {
        return (ParamSlice::range(p, at, g, at, shape[1]), shape[1]);
    }
    let n = shape.iter().product();
    (ParamSlice::range(p, at, g, at, n).with_shape(shape), n)
}

fn numel(shape: &[u64]) -> u64 {
    if shape[0] == 0 { shape[1] } else { shape.iter().product() }
}

/// The tensors of `SHAPES` in two buffer pairs, each at the first multiple
/// of `align` at least 3 elements past the last (align 1: offsets that are
/// not multiples of 4, the scalar access; 4: vec4; 8: wide where the
/// adapter has it); θ is the same per tensor whatever the layout, and
/// tensor 1 starts at θ = 0.
fn tensors(gpu: &device::Gpu, align: u64) -> Vec<Tensor> {
    let mut out = Vec::new();
    for (pair, shapes) in [&SHAPES[..5], &SHAPES[5..]].into_iter().enumerate() {
        let total = 16 + shapes.iter().map(|s| (numel(s) + 3).next_multiple_of(align)).sum::<u64>() as usize;
        let p = common::storage_buffer(gpu, &vec![0.0; total]);
        let g = common::storage_buffer(gpu, &vec![0.0; total]);
        let mut at = 3u64.next_multiple_of(align);
        for (k, shape) in shapes.iter().enumerate() {
            let (slice, n) = slice_of(&p, &g, at, shape);
            let mut p0: Vec<f32> = (0..n).map(|i| uniform(pair as u64 + 1, 99 + k as u64, i) * 0.5).collect();
            if pair == 0 && k == 1 {
                p0.fill(0.0);
            }
            gpu.queue.write_buffer(&p, 4 * at, bytemuck::cast_slice(&p0));
            let state = AdafactorReference::new(n, slice.shape.as_deref());
            out.push(Tensor { slice, p: p0.iter().map(|&x| x as f64).collect(), state });
            at = (at + n + 3).next_multiple_of(align);
        }
    }
    out
}

/// Grads of step t: uniform(−1, 1) scaled per element class, so rows and
/// columns have different statistics.
fn grads(i: usize, t: u32, n: usize) -> Vec<f32> {
    (0..n).map(|k| uniform(i as u64 + 10, t as u64, k as u64) * (0.2 + (k % 5) as f32 * (k % 3) as f32)).collect()
}

/// 50 steps of every shape at each alignment against the reference; the
/// three accesses give the same bits.
#[test]
fn adafactor_matches_reference() {
    let gpu = require_gpu!();
    for (name, config) in cases() {
        let mut first: Option<Vec<Vec<u32>>> = None;
        for align in [1, 4, 8] {
            let (form, params) = run_against_reference(gpu, name, config, align);
            eprintln!("{name}: align {align}, {form:?} access");
            let bits: Vec<Vec<u32>> = params.iter().map(|p| p.iter().map(|x| x.to_bits()).collect()).collect();
            match &first {
                None => first = Some(bits),
                Some(want) => assert!(*want == bits, "{name}: the {form:?} access differs from the scalar one"),
            }
        }
    }
}

/// Steps every shape laid out at `align` against the reference; the
/// access the optimizer took and the final params.
fn run_against_reference(gpu: &device::Gpu, name: &str, config: Adafactor, align: u64) -> (RowForm, Vec<Vec<f32>>) {
    let mut ts = tensors(gpu, align);
    let slices: Vec<ParamSlice> = ts.iter().map(|t| t.slice.clone()).collect();
    let mut opt = AdafactorOptimizer::new(&gpu.device, &gpu.queue, config, &slices).unwrap();
    let want = match align {
        1 => RowForm::Scalar,
        4 => RowForm::Vec4,
        _ => RowAccess::of(&gpu.device, &slices).form,
    };
    assert_eq!(opt.access().form, want);
    for t in 1..=STEPS {
        for (i, x) in ts.iter_mut().enumerate() {
            let g = grads(i, t, x.p.len());
            gpu.queue.write_buffer(&x.slice.grad, 4 * x.slice.grad_offset, bytemuck::cast_slice(&g));
            config.reference_step(t, &mut x.p, &g.iter().map(|&v| v as f64).collect::<Vec<_>>(), &mut x.state);
        }
        opt.step().unwrap();
    }
    let mut params = Vec::new();
    for (i, x) in ts.iter().enumerate() {
        let got = read_f32(&gpu.device, &gpu.queue, &x.slice.param, x.slice.param_offset, x.slice.len()).unwrap();
        let state: Vec<f32> = opt.read_state(i).unwrap().into_iter().flat_map(|s| s.values).collect();
        let p_err = got.iter().zip(&x.p).map(|(a, b)| (*a as f64 - b).powi(2)).sum::<f64>().sqrt();
        let worst_s = state.iter().zip(&x.state.state).map(|(a, b)| (*a as f64 - b).abs() / (x.state.state_rel_err * b).max(1e-37)).fold(0.0, f64::max);
        let worst_p = p_err / x.state.param_err;
        assert!(worst_p <= 1.0 && worst_s <= 1.0, "{name}, align {align}, tensor {i} {:?}: off by {worst_p:.2} / {worst_s:.2} of the bounds", SHAPES[i]);
        params.push(got);
    }
    (opt.access().form, params)
}

/// Step 1 by hand for a vector: variance = g², so U = sign(g) (|g| > eps1),
/// RMS(U) = 1 (no clipping at d = 1) and θ moves by α = RMS(θ)·lr against
/// the sign of g.
#[test]
fn first_step_of_a_vector_is_rms_times_lr_times_sign() {
    let gpu = require_gpu!();
    let theta = [1.0f32, -2.0, 3.0];
    let p = common::storage_buffer(gpu, &theta);
    let g = common::storage_buffer(gpu, &[0.1, 0.2, -0.3]);
    let mut opt = AdafactorOptimizer::new(&gpu.device, &gpu.queue, Adafactor::default(), &[ParamSlice::whole(&p, &g)]).unwrap();
    opt.step().unwrap();
    let alpha = (14.0f64 / 3.0).sqrt() * 0.01;
    let want = [1.0 - alpha, -2.0 - alpha, 3.0 + alpha];
    let got = read_f32(&gpu.device, &gpu.queue, &p, 0, 3).unwrap();
    for (a, b) in got.iter().zip(want) {
        assert!((*a as f64 - b).abs() < 1e-6, "{got:?} vs {want:?}");
    }
}

#[test]
fn state_has_pytorchs_names_and_shapes() {
    let gpu = require_gpu!();
    let p = common::storage_buffer(gpu, &[0.5; 72]);
    let g = common::storage_buffer(gpu, &[0.25; 72]);
    let slices = [ParamSlice::range(&p, 0, &g, 0, 24).with_shape(&[2, 3, 4]), ParamSlice::range(&p, 24, &g, 24, 48)];
    let mut opt = AdafactorOptimizer::new(&gpu.device, &gpu.queue, Adafactor::default(), &slices).unwrap();
    opt.step().unwrap();
    let named = |i| opt.read_state(i).unwrap().into_iter().map(|s| (s.name, s.shape, s.values.len())).collect::<Vec<_>>();
    assert_eq!(named(0), [("row_var", vec![2, 3, 1], 6), ("col_var", vec![2, 1, 4], 8)]);
    assert_eq!(named(1), [("variance", vec![48], 48)]);
    // mean over a row of g² = 0.0625, the first step's weight is 1
    assert!(opt.read_state(0).unwrap()[0].values.iter().all(|&v| v == 0.0625));
}

#[test]
fn bad_input_is_a_typed_error() {
    let gpu = require_gpu!();
    let p = common::storage_buffer(gpu, &[0.5; 12]);
    let g = common::storage_buffer(gpu, &[0.5; 12]);
    let whole = ParamSlice::whole(&p, &g);
    let err = |config: Adafactor, slice: ParamSlice| AdafactorOptimizer::new(&gpu.device, &gpu.queue, config, &[slice]).err();
    for (config, name) in [
        (Adafactor { lr: -1.0, ..Default::default() }, "lr"),
        (Adafactor { beta2_decay: 0.5, ..Default::default() }, "beta2_decay"),
        (Adafactor { eps: (Some(-1.0), 1e-3), ..Default::default() }, "eps[0]"),
        (Adafactor { eps: (None, f64::NAN), ..Default::default() }, "eps[1]"),
        (Adafactor { d: 0.5, ..Default::default() }, "d"),
        (Adafactor { weight_decay: -0.1, ..Default::default() }, "weight_decay"),
    ] {
        assert!(matches!(err(config, whole.clone()), Some(OptimError::InvalidHyperparameter { name: n, .. }) if n == name), "{name}");
    }
    assert!(matches!(err(Adafactor::default(), whole.clone().with_shape(&[5, 3])), Some(OptimError::ShapeMismatch { .. })));
    assert!(matches!(AdafactorOptimizer::new(&gpu.device, &gpu.queue, Adafactor::default(), &[]), Err(OptimError::EmptyParams)));
    let opt = AdafactorOptimizer::new(&gpu.device, &gpu.queue, Adafactor::default(), &[whole]).unwrap();
    assert!(opt.read_state(1).is_err());
    assert_eq!(read_f32(&gpu.device, &gpu.queue, &p, 0, 12).unwrap(), vec![0.5; 12]);
}

/// Least squares on a 16 × 24 matrix: W towards W* from the gradient of
/// ½‖W − W*‖² (host-computed each step); two runs give the same bits.
#[test]
fn adafactor_converges_and_is_reproducible() {
    let gpu = require_gpu!();
    let (rows, cols) = (16usize, 24usize);
    let target: Vec<f32> = (0..rows * cols).map(|i| uniform(8, 0, i as u64)).collect();
    let run = || {
        let p = common::storage_buffer(gpu, &vec![0.0; rows * cols]);
        let g = common::storage_buffer(gpu, &vec![0.0; rows * cols]);
        let mut opt = AdafactorOptimizer::new(&gpu.device, &gpu.queue, Adafactor { lr: 0.05, ..Default::default() }, &[ParamSlice::whole(&p, &g).with_shape(&[rows as u64, cols as u64])]).unwrap();
        for _ in 0..300 {
            let w = read_f32(&gpu.device, &gpu.queue, &p, 0, (rows * cols) as u64).unwrap();
            let grad: Vec<f32> = w.iter().zip(&target).map(|(a, b)| a - b).collect();
            gpu.queue.write_buffer(&g, 0, bytemuck::cast_slice(&grad));
            opt.step().unwrap();
        }
        read_f32(&gpu.device, &gpu.queue, &p, 0, (rows * cols) as u64).unwrap()
    };
    let (a, b) = (run(), run());
    let distance = |w: &[f32]| w.iter().zip(&target).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>().sqrt();
    let start = distance(&vec![0.0; rows * cols]);
    eprintln!("distance to W*: {start:.3} -> {:.4}", distance(&a));
    assert!(distance(&a) < 0.1 * start, "Adafactor did not converge: {start} -> {}", distance(&a));
    assert_eq!(a.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), b.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
}

/// `wgpu-optim validate --all`'s tensor-wise cases (every option set of
/// Muon, LAMB and Adafactor) pass.
#[test]
fn validate_command_cases_pass() {
    let gpu = require_gpu!();
    for (name, rule) in wgpu_optim::validate::tensor::cases(true) {
        let r = wgpu_optim::validate::tensor::run_case(&gpu.device, &gpu.queue, &name, rule, 20, 3).unwrap();
        assert!(r.passed(), "{name}: params {:.3}, state {:.3} of the bounds", r.params, r.state);
    }
}
