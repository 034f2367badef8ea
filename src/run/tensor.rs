//! `wgpu-optim run` for the tensor-wise rules: T steps of one parameter
//! tensor (`params [R, C]` or `[N]`, `grads [T, R, C]` or `[T, N]`), on the
//! GPU or in the f64 reference.

use super::{RunInput, RunOutput, StateOut};
use crate::engine::ParamSlice;
use crate::error::{OptimError, Result};
use crate::matrix::adafactor::{self, AdafactorReference};
use crate::matrix::lamb::LambReference;
use crate::matrix::{AdafactorOptimizer, LambOptimizer, MuonOptimizer, TensorRule};

/// The input's shape as the slice's (u64), and (rows, cols) if 2-D.
fn shape_of(input: &RunInput) -> (Vec<u64>, Option<(usize, usize)>) {
    let shape: Vec<u64> = input.shape.iter().map(|&d| d as u64).collect();
    let matrix = (input.shape.len() == 2).then(|| (input.shape[0], input.shape[1]));
    (shape, matrix)
}

/// Runs `steps` steps of `rule` on the GPU over the input's tensor (with
/// its shape), feeding row t of the grads at step t.
///
/// **Errors:** anything the optimizer reports (e.g.
/// [`OptimError::ShapeRequired`] for Muon on a 1-D input);
/// [`OptimError::Input`] if the grads have fewer than `steps` rows.
pub fn run_gpu(device: &wgpu::Device, queue: &wgpu::Queue, rule: TensorRule, input: &RunInput, steps: u32) -> Result<RunOutput> {
    input.check_steps(steps)?;
    let n = input.params.len() as u64;
    let (p, g) = super::run_buffers(device, queue, input)?;
    let (shape, _) = shape_of(input);
    let slice = [ParamSlice::range(&p, 0, &g, 0, n).with_shape(&shape)];
    let run = |step: &mut dyn FnMut() -> Result<()>| -> Result<()> {
        for t in 0..steps as usize {
            queue.write_buffer(&g, 0, bytemuck::cast_slice(input.row(t)));
            step()?;
        }
        Ok(())
    };
    let widen = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<_>>();
    let same = |name, v| StateOut { name, shape: input.shape.clone(), values: widen(v) };
    let state = match rule {
        TensorRule::Muon(c) => {
            let mut opt = MuonOptimizer::new(device, queue, c, &slice)?;
            run(&mut || opt.step())?;
            vec![same("momentum_buffer", opt.read_state(0)?)]
        }
        TensorRule::Lamb(c) => {
            let mut opt = LambOptimizer::new(device, queue, c, &slice)?;
            run(&mut || opt.step())?;
            let (m, v) = opt.read_state(0)?;
            vec![same("exp_avg", m), same("exp_avg_sq", v)]
        }
        TensorRule::Adafactor(c) => {
            let mut opt = AdafactorOptimizer::new(device, queue, c, &slice)?;
            run(&mut || opt.step())?;
            let named = opt.read_state(0)?;
            named.into_iter().map(|s| StateOut { name: s.name, shape: s.shape.iter().map(|&d| d as usize).collect(), values: widen(s.values) }).collect()
        }
    };
    let params = widen(crate::device::read_f32(device, queue, &p, 0, n)?);
    Ok(RunOutput { params, shape: input.shape.clone(), state, steps })
}

/// The same run in the f64 reference.
///
/// **Errors:** as [`run_gpu`] (before any step).
pub fn run_reference(rule: TensorRule, input: &RunInput, steps: u32) -> Result<RunOutput> {
    input.check_steps(steps)?;
    rule.validate()?;
    let (shape, matrix) = shape_of(input);
    let mut p: Vec<f64> = input.params.iter().map(|&x| x as f64).collect();
    let grad = |t: usize| input.row(t).iter().map(|&x| x as f64).collect::<Vec<_>>();
    let same = |name, values| StateOut { name, shape: input.shape.clone(), values };
    let state = match rule {
        TensorRule::Muon(c) => {
            let dims = matrix.ok_or(OptimError::ShapeRequired { index: 0, rule: "muon", need: "a 2-D shape", shape: Some(shape.clone()) })?;
            let mut buf = vec![0.0; p.len()];
            for t in 0..steps as usize {
                c.reference_step(dims, &mut p, &grad(t), &mut buf);
            }
            vec![same("momentum_buffer", buf)]
        }
        TensorRule::Lamb(c) => {
            let mut st = LambReference::new(p.len());
            for t in 0..steps as usize {
                c.reference_step(t as u32 + 1, &mut p, &grad(t), &mut st);
            }
            vec![same("exp_avg", st.exp_avg), same("exp_avg_sq", st.exp_avg_sq)]
        }
        TensorRule::Adafactor(c) => {
            let mut st = AdafactorReference::new(p.len() as u64, Some(&shape));
            for t in 0..steps as usize {
                c.reference_step(t as u32 + 1, &mut p, &grad(t), &mut st);
            }
            let parts = adafactor::split_state(adafactor::state_layout(&shape), &st.state);
            parts.into_iter().map(|(name, shape, values)| StateOut { name, shape: shape.iter().map(|&d| d as usize).collect(), values }).collect()
        }
    };
    Ok(RunOutput { params: p, shape: input.shape.clone(), state, steps })
}
