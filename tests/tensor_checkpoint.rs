//! Checkpoints of the tensor-wise optimizers: save after 4 steps, continue
//! 4 more; load into an optimizer built with other hyperparameters and run
//! the same 4 steps: params and state are bitwise those of the
//! uninterrupted run, and the config is the checkpoint's. Files of another
//! rule, shape or format, truncated or corrupt, are typed errors that
//! change nothing.

mod common;

use wgpu_optim::device::read_f32;
use wgpu_optim::checkpoint::tensor::{self as checkpoint, TensorState};
use wgpu_optim::matrix::TensorRule;
use wgpu_optim::validate::uniform;
use wgpu_optim::*;

/// Stepping, for the test's generic run.
trait Steps: TensorState {
    fn step_once(&mut self);
}
impl Steps for MuonOptimizer {
    fn step_once(&mut self) {
        self.step().unwrap()
    }
}
impl Steps for LambOptimizer {
    fn step_once(&mut self) {
        self.step().unwrap()
    }
}
impl Steps for AdafactorOptimizer {
    fn step_once(&mut self) {
        self.step().unwrap()
    }
}

const SHAPES: [&[u64]; 3] = [&[9, 14], &[5, 13], &[1, 37]];

/// Params (one buffer pair, odd offsets) from `start`, or random.
fn slices(gpu: &device::Gpu, start: Option<&[f32]>) -> (Vec<ParamSlice>, wgpu::Buffer, usize) {
    let total: usize = SHAPES.iter().map(|s| s.iter().product::<u64>() as usize + 3).sum::<usize>() + 3;
    let p0: Vec<f32> = start.map_or_else(|| (0..total as u64).map(|i| uniform(70, 0, i)).collect(), <[f32]>::to_vec);
    let (p, g) = (common::storage_buffer(gpu, &p0), common::storage_buffer(gpu, &vec![0.0; total]));
    let mut at = 3;
    let mut out = Vec::new();
    for shape in SHAPES {
        let n: u64 = shape.iter().product();
        out.push(ParamSlice::range(&p, at, &g, at, n).with_shape(shape));
        at += n + 3;
    }
    (out, p, total)
}

fn steps<O: Steps>(gpu: &device::Gpu, opt: &mut O, slices: &[ParamSlice], from: u64, to: u64) {
    for t in from..to {
        for (i, s) in slices.iter().enumerate() {
            let g: Vec<f32> = (0..s.len()).map(|k| uniform(i as u64 + 71, t, k)).collect();
            gpu.queue.write_buffer(&s.grad, 4 * s.grad_offset, bytemuck::cast_slice(&g));
        }
        opt.step_once();
    }
}

/// Everything an optimizer's future depends on: params and state, as bits.
fn snapshot<O: TensorState>(gpu: &device::Gpu, opt: &O, p: &wgpu::Buffer, total: usize) -> (Vec<u32>, Vec<u32>) {
    let params = read_f32(&gpu.device, &gpu.queue, p, 0, total as u64).unwrap();
    let state: Vec<f32> = (0..opt.tensor_count()).flat_map(|i| opt.named_state(i).unwrap()).flat_map(|s| s.values).collect();
    (params.iter().map(|x| x.to_bits()).collect(), state.iter().map(|x| x.to_bits()).collect())
}

fn resume_is_bitwise<O: Steps>(gpu: &device::Gpu, build: &dyn Fn(&[ParamSlice], bool) -> O) {
    let (first, p, total) = slices(gpu, None);
    let mut opt = build(&first, false);
    steps(gpu, &mut opt, &first, 0, 4);
    let bytes = checkpoint::to_bytes(&opt).unwrap();
    let saved = read_f32(&gpu.device, &gpu.queue, &p, 0, total as u64).unwrap();
    steps(gpu, &mut opt, &first, 4, 8);
    let want = snapshot(gpu, &opt, &p, total);

    let (second, p2, _) = slices(gpu, Some(&saved));
    let mut resumed = build(&second, true);
    assert_ne!(resumed.rule(), opt.rule(), "the second optimizer starts from other hyperparameters");
    checkpoint::load_bytes(&mut resumed, &bytes).unwrap();
    assert_eq!(resumed.rule(), opt.rule());
    steps(gpu, &mut resumed, &second, 4, 8);
    assert_eq!(snapshot(gpu, &resumed, &p2, total), want, "{}: resumed run differs", opt.rule().pytorch_name());
    assert_eq!(resumed.steps(), opt.steps());
}

#[test]
fn muon_resumes_bitwise() {
    let gpu = require_gpu!();
    resume_is_bitwise(gpu, &|s, other| MuonOptimizer::new(&gpu.device, &gpu.queue, Muon { lr: if other { 0.5 } else { 0.02 }, ns_steps: if other { 3 } else { 5 }, ..Muon::default() }, s).unwrap());
}

#[test]
fn lamb_resumes_bitwise() {
    let gpu = require_gpu!();
    resume_is_bitwise(gpu, &|s, other| LambOptimizer::new(&gpu.device, &gpu.queue, Lamb { lr: if other { 0.5 } else { 0.01 }, weight_decay: 0.02, ..Lamb::default() }, s).unwrap());
}

#[test]
fn adafactor_resumes_bitwise() {
    let gpu = require_gpu!();
    resume_is_bitwise(gpu, &|s, other| AdafactorOptimizer::new(&gpu.device, &gpu.queue, Adafactor { d: if other { 4.0 } else { 1.0 }, ..Adafactor::default() }, s).unwrap());
}

#[test]
fn bad_checkpoints_are_typed_errors_and_change_nothing() {
    let gpu = require_gpu!();
    let (s, p, total) = slices(gpu, None);
    let mut lamb = LambOptimizer::new(&gpu.device, &gpu.queue, Lamb::default(), &s).unwrap();
    let mut ada = AdafactorOptimizer::new(&gpu.device, &gpu.queue, Adafactor::default(), &s).unwrap();
    steps(gpu, &mut lamb, &s, 0, 2);
    steps(gpu, &mut ada, &s, 0, 2);
    let lamb_bytes = checkpoint::to_bytes(&lamb).unwrap();
    let before = snapshot(gpu, &ada, &p, total);
    let (fewer, _, _) = slices(gpu, None);
    let muon = MuonOptimizer::new(&gpu.device, &gpu.queue, Muon::default(), &fewer[..2]).unwrap();
    let muon_bytes = checkpoint::to_bytes(&muon).unwrap();
    let mut muon3 = MuonOptimizer::new(&gpu.device, &gpu.queue, Muon::default(), &fewer).unwrap();
    let check = |r: Result<()>, what: &str| assert!(matches!(r, Err(OptimError::Checkpoint(_))), "{what}: {r:?}");
    check(checkpoint::load_bytes(&mut ada, &lamb_bytes), "another rule");
    check(checkpoint::load_bytes(&mut ada, &lamb_bytes[..lamb_bytes.len() / 2]), "truncated");
    check(checkpoint::load_bytes(&mut ada, b"not a checkpoint"), "garbage");
    check(checkpoint::load_bytes(&mut muon3, &muon_bytes), "fewer tensors");
    let mut flipped = lamb_bytes.clone();
    let at = flipped.windows(6).position(|w| w == b"always").unwrap();
    flipped[at..at + 6].copy_from_slice(b"sidewa");
    assert!(checkpoint::load_bytes(&mut lamb, &flipped).is_err(), "a config that does not parse");
    assert_eq!(snapshot(gpu, &ada, &p, total), before);
    assert_eq!(ada.step_count(), 2);
    assert_eq!(lamb.rule(), TensorRule::Lamb(Lamb::default()));
}
