//! `shard-check control`: clipping and a GradScaler across ranks. The
//! norms, the scaler's state and the params must be bitwise the same on
//! every rank; a NaN in one rank's grads must skip the step everywhere; and
//! the run must follow one process's `Optimizer` fed the mean grads (within
//! the clip factor's rounding: the sharded norm is summed in f64 on the
//! host, one process's in f32 on the GPU).

use wgpu_optim::device::{read_f32, Gpu};
use wgpu_optim::random::random_params;
use wgpu_optim::shard::{Collectives, ShardedOptimizer};
use wgpu_optim::{AdamW, ClipScope, EngineOptions, GradControl, GradScaler, OptimError, Optimizer, OptimizerConfig, ParamSlice};
use wgpu_optim_mpi::MpiCollectives;

use super::{buffer, grad, mean_grad, size, starts, LENS};

const STEPS: u64 = 6;
/// The step at which the last rank's grads hold a NaN.
const NAN_STEP: u64 = 2;

/// What one run recorded after each step: the norms, the loss scale and
/// the skip count, and the params at the end.
#[derive(PartialEq)]
struct Trace {
    per_step: Vec<(Vec<f32>, f32, u32)>,
    params: Vec<f32>,
}

fn settings(scope: ClipScope) -> EngineOptions {
    let scaler = GradScaler { init_scale: 1024.0, growth_interval: 2, ..GradScaler::default() };
    EngineOptions { grad_control: GradControl { max_norm: Some(0.5), clip_scope: scope, scaler: Some(scaler), skip_nonfinite: false, norm_eps: None }, ..EngineOptions::default() }
}

fn configs() -> [OptimizerConfig; 2] {
    [AdamW { lr: 1e-2, ..AdamW::default() }.into(), AdamW { lr: 5e-3, weight_decay: 0.0, ..AdamW::default() }.into()]
}

/// The grads of one rank (or their mean), times the loss scale, with a
/// NaN at `NAN_STEP` where `nan` says.
fn write_grads(gpu: &Gpu, g: &wgpu::Buffer, t: u64, scale: f32, nan: bool, value: &dyn Fn(u64, u64) -> f32) {
    let mut values: Vec<f32> = (0..size() as u64).map(|i| value(t, i) * scale).collect();
    if nan && t == NAN_STEP {
        values[starts()[2] as usize + 100] = f32::NAN;
    }
    gpu.queue.write_buffer(g, 0, bytemuck::cast_slice(&values));
}

fn slices<'a>(p: &'a wgpu::Buffer, g: &'a wgpu::Buffer) -> Vec<ParamSlice> {
    starts().iter().zip(LENS).enumerate().map(|(i, (&s, len))| ParamSlice::range(p, s, g, s, len).in_group((i % 2) as u32)).collect()
}

fn sharded(gpu: &Gpu, comm: &MpiCollectives, scope: ClipScope) -> Result<Trace, OptimError> {
    let (p, g) = (buffer(gpu, &random_params(5, size())), buffer(gpu, &vec![0.0; size()]));
    let mut opt = ShardedOptimizer::new(comm, &gpu.device, &gpu.queue, &configs(), &slices(&p, &g), settings(scope))?;
    let last = comm.rank() + 1 == comm.ranks();
    let mut per_step = Vec::new();
    for t in 0..STEPS {
        write_grads(gpu, &g, t, opt.scaler_state().scale, last, &|t, i| grad(comm.rank(), t, i));
        opt.step()?;
        per_step.push((opt.grad_norms()?, opt.scaler_state().scale, opt.scaler_state().skipped));
    }
    Ok(Trace { per_step, params: read_f32(&gpu.device, &gpu.queue, &p, 0, size() as u64)? })
}

fn single(gpu: &Gpu, ranks: usize, scope: ClipScope) -> Result<Trace, OptimError> {
    let (p, g) = (buffer(gpu, &random_params(5, size())), buffer(gpu, &vec![0.0; size()]));
    let mut opt = Optimizer::with_groups(&gpu.device, &gpu.queue, &configs(), &slices(&p, &g), settings(scope))?;
    let mut per_step = Vec::new();
    for t in 0..STEPS {
        write_grads(gpu, &g, t, opt.read_grad_control()?.scale, true, &|t, i| mean_grad(ranks, t, i));
        opt.step()?;
        let state = opt.read_grad_control()?;
        per_step.push((opt.read_grad_norms()?, state.scale, state.skipped));
    }
    Ok(Trace { per_step, params: read_f32(&gpu.device, &gpu.queue, &p, 0, size() as u64)? })
}

/// Every rank's trace, bitwise, must equal rank 0's.
fn same_on_every_rank(comm: &MpiCollectives, trace: &Trace) -> Result<bool, OptimError> {
    let mut bytes: Vec<u8> = trace.params.iter().flat_map(|x| x.to_le_bytes()).collect();
    for (norms, scale, skipped) in &trace.per_step {
        bytes.extend(norms.iter().chain([scale]).flat_map(|x| x.to_le_bytes()));
        bytes.extend(skipped.to_le_bytes());
    }
    let all = comm.all_gather_bytes(&bytes)?;
    Ok(all.chunks_exact(bytes.len()).all(|theirs| theirs == &all[..bytes.len()]))
}

/// Close to one process: the same skips and scales, norms within 1e-5
/// relative (NaN where its grads hold the NaN), params within 1e-5 absolute after six steps of lr 1e-2.
fn close_to_one_process(a: &Trace, b: &Trace) -> bool {
    let near = |x: f32, y: f32, tol: f32| (x.is_nan() && y.is_nan()) || (x - y).abs() <= tol * y.abs().max(1.0);
    a.per_step.iter().zip(&b.per_step).all(|((na, sa, ka), (nb, sb, kb))| sa == sb && ka == kb && na.len() == nb.len() && na.iter().zip(nb).all(|(x, y)| near(*x, *y, 1e-5)))
        && a.params.iter().zip(&b.params).all(|(x, y)| near(*x, *y, 1e-5))
}

/// Both clip scopes: identical on every rank, the NaN step skipped
/// everywhere, and close to one process.
pub fn check(gpu: &Gpu, comm: &MpiCollectives) -> Result<bool, OptimError> {
    let mut ok = true;
    for scope in [ClipScope::Global, ClipScope::PerGroup] {
        let (mine, one) = (sharded(gpu, comm, scope)?, single(gpu, comm.ranks(), scope)?);
        let skipped = mine.per_step[NAN_STEP as usize].2 == 1 && mine.per_step.last().is_some_and(|s| s.2 == 1);
        let checks = [("the same on every rank", same_on_every_rank(comm, &mine)?), ("the NaN step skipped", skipped), ("close to one process", close_to_one_process(&mine, &one))];
        if !checks[2].1 {
            let worst = mine.params.iter().zip(&one.params).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            eprintln!("sharded {:?}\none {:?}\nlargest param difference {worst:e}", mine.per_step, one.per_step);
        }
        for (what, passed) in checks.iter().filter(|(_, passed)| !passed) {
            eprintln!("rank {}/{}: {scope:?}: not {what} ({passed})", comm.rank(), comm.ranks());
            ok = false;
        }
    }
    Ok(ok)
}
