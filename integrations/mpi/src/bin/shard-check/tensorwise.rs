//! `shard-check tensorwise`: LAMB, Adafactor and Muon sharded by whole
//! tensors. For each rule, with tensors end to end and on multiples of 8
//! elements (the vector paths): T steps give params and gathered state
//! bitwise equal to one process's optimizer fed the mean grads; the merged
//! checkpoint after 3 steps, and the set of per-rank files, each resume a
//! sharded optimizer and one process's optimizer, and 3 more steps are
//! bitwise 6 uninterrupted ones.

use wgpu_optim::checkpoint::tensor;
use wgpu_optim::device::{read_f32, Gpu};
use wgpu_optim::matrix::TensorRule;
use wgpu_optim::random::random_params;
use wgpu_optim::matrix::adafactor::StateTensor;
use wgpu_optim::shard::local::Local;
use std::path::Path;

use wgpu_optim::shard::{files, Collectives, ShardRule, ShardedOptimizer};
use wgpu_optim::{Adafactor, EngineOptions, Lamb, Muon, OptimError, ParamSlice};
use wgpu_optim_mpi::MpiCollectives;

use super::{buffer, grad, mean_grad};

/// Matrices for Muon; LAMB and Adafactor also get a vector and a 3-D tensor.
const MATRICES: [[u64; 2]; 4] = [[24, 40], [33, 17], [16, 16], [8, 50]];

fn shapes(rule: &TensorRule) -> Vec<Vec<u64>> {
    let mut shapes: Vec<Vec<u64>> = MATRICES.iter().map(|m| m.to_vec()).collect();
    if !matches!(rule, TensorRule::Muon(_)) {
        shapes.insert(1, vec![37]);
        shapes.push(vec![2, 5, 7]);
    }
    shapes
}

/// One run: params and grads in one buffer pair, tensors end to end.
struct Model {
    p: wgpu::Buffer,
    g: wgpu::Buffer,
    slices: Vec<ParamSlice>,
    n: u64,
}

/// A rule, and whether its tensors start on multiples of 8 elements (the
/// optimizers' vector paths) or end to end.
type Case = (TensorRule, bool);

fn model(gpu: &Gpu, (rule, aligned): Case) -> Model {
    let shapes = shapes(&rule);
    let lens: Vec<u64> = shapes.iter().map(|s| s.iter().product()).collect();
    let starts: Vec<u64> = lens.iter().scan(0, |at, &l| Some(std::mem::replace(at, if aligned { (*at + l).next_multiple_of(8) } else { *at + l }))).collect();
    let n = starts[lens.len() - 1] + lens[lens.len() - 1];
    let (p, g) = (buffer(gpu, &random_params(9, n as usize)), buffer(gpu, &vec![0.0; n as usize]));
    let slices = shapes.iter().zip(starts.iter().zip(&lens)).map(|(s, (&at, &len))| ParamSlice::range(&p, at, &g, at, len).with_shape(s)).collect();
    Model { p, g, slices, n }
}

impl Model {
    fn write_grads(&self, gpu: &Gpu, t: u64, value: &dyn Fn(u64, u64) -> f32) {
        let values: Vec<f32> = (0..self.n).map(|i| value(t, i)).collect();
        gpu.queue.write_buffer(&self.g, 0, bytemuck::cast_slice(&values));
    }

    /// The params, then every tensor's state in layout order, as bits.
    fn words(&self, gpu: &Gpu, state: Vec<Vec<StateTensor>>) -> Result<Vec<u32>, OptimError> {
        let mut out: Vec<u32> = read_f32(&gpu.device, &gpu.queue, &self.p, 0, self.n)?.iter().map(|x| x.to_bits()).collect();
        state.iter().flatten().for_each(|s| out.extend(s.values.iter().map(|x| x.to_bits())));
        Ok(out)
    }
}

/// A checkpoint to start from: merged bytes, or a set of per-rank files
/// by its index.
#[derive(Clone, Copy)]
enum Saved<'a> {
    Merged(&'a [u8]),
    Set(&'a Path),
}

/// Steps `steps` sharded over the world, from `start` (params and a
/// checkpoint) if given; the words, and the merged checkpoint at the end
/// (and the set of per-rank files `set`, if given).
fn sharded(gpu: &Gpu, comm: &MpiCollectives, (rule, aligned): Case, start: Option<(&[f32], Saved)>, steps: std::ops::Range<u64>, set: Option<&Path>) -> Result<(Vec<u32>, Vec<u8>), OptimError> {
    let m = model(gpu, (rule, aligned));
    let mut opt = ShardedOptimizer::tensorwise(comm, &gpu.device, &gpu.queue, rule, &m.slices, EngineOptions::default())?;
    if let Some((params, saved)) = start {
        gpu.queue.write_buffer(&m.p, 0, bytemuck::cast_slice(params));
        match saved {
            Saved::Merged(bytes) => opt.load_tensor_checkpoint_bytes(bytes)?,
            Saved::Set(index) => opt.load_sharded(index)?,
        }
    }
    for t in steps {
        m.write_grads(gpu, t, &|t, i| grad(comm.rank(), t, i));
        opt.step()?;
    }
    set.map(|name| opt.save_sharded(name)).transpose()?;
    Ok((m.words(gpu, opt.gather_tensor_state()?)?, opt.tensor_checkpoint_bytes()?))
}

/// The same in one process, fed the mean grads of `ranks` ranks.
fn single(gpu: &Gpu, ranks: usize, (rule, aligned): Case, start: Option<(&[f32], Saved)>, steps: std::ops::Range<u64>) -> Result<Vec<u32>, OptimError> {
    let m = model(gpu, (rule, aligned));
    let mut opt = Local::new(&gpu.device, &gpu.queue, &ShardRule::Tensor(rule), &m.slices, EngineOptions::default())?;
    if let Some((params, saved)) = start {
        gpu.queue.write_buffer(&m.p, 0, bytemuck::cast_slice(params));
        let bytes = match saved {
            Saved::Merged(bytes) => bytes.to_vec(),
            Saved::Set(index) => files::merge(index)?,
        };
        tensor::load_bytes(opt.tensor_state_mut().expect("a tensor-wise optimizer"), &bytes)?;
    }
    for t in steps {
        m.write_grads(gpu, t, &|t, i| mean_grad(ranks, t, i));
        opt.step()?;
    }
    let state = opt.tensor_state().expect("a tensor-wise optimizer");
    m.words(gpu, (0..state.tensor_count()).map(|k| state.named_state(k)).collect::<Result<_, _>>()?)
}

fn report(comm: &MpiCollectives, what: &str, a: &[u32], b: &[u32]) -> bool {
    let differ = a.iter().zip(b).filter(|(x, y)| x != y).count() + a.len().abs_diff(b.len());
    if differ > 0 {
        eprintln!("rank {}/{}: {what}: {differ} of {} words differ", comm.rank(), comm.ranks(), b.len());
    }
    differ == 0
}

pub fn check(gpu: &Gpu, comm: &MpiCollectives, dir: &Path) -> Result<bool, OptimError> {
    let rules = [TensorRule::Lamb(Lamb { weight_decay: 0.01, ..Lamb::default() }), TensorRule::Adafactor(Adafactor::default()), TensorRule::Muon(Muon::default())];
    let mut ok = true;
    for rule in rules {
        let name = rule.pytorch_name();
        let aligned = (rule, true);
        let end_to_end = (rule, false);
        let (packed, _) = sharded(gpu, comm, end_to_end, None, 0..6, None)?;
        ok &= report(comm, &format!("{name}: tensors end to end: sharded against one process"), &packed, &single(gpu, comm.ranks(), end_to_end, None, 0..6)?);
        let (whole, _) = sharded(gpu, comm, aligned, None, 0..6, None)?;
        ok &= report(comm, &format!("{name}: sharded against one process"), &whole, &single(gpu, comm.ranks(), aligned, None, 0..6)?);
        let set = dir.join(name);
        let (first, saved) = sharded(gpu, comm, aligned, None, 0..3, Some(&set))?;
        let params: Vec<f32> = first[..model(gpu, aligned).n as usize].iter().map(|&b| f32::from_bits(b)).collect();
        let index = files::index_path(&set);
        for (what, from) in [("merged checkpoint", Saved::Merged(&saved)), ("set of per-rank files", Saved::Set(&index))] {
            let (resumed, _) = sharded(gpu, comm, aligned, Some((&params, from)), 3..6, None)?;
            ok &= report(comm, &format!("{name}: {what} resumed sharded"), &resumed, &whole);
            let one = single(gpu, comm.ranks(), aligned, Some((&params, from)), 3..6)?;
            ok &= report(comm, &format!("{name}: {what} resumed by one process"), &one, &whole);
        }
    }
    Ok(ok)
}
