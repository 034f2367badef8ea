//! L-BFGS's state by PyTorch's names, read back from the GPU and written
//! to it: what checkpoints (`crate::checkpoint::lbfgs`) and `run` keep.

use super::gpu::{ro_slot, LbfgsOptimizer, Ring};
use super::kernels::slot;
use super::HostState;
use crate::device::read_ranges_f32;
use crate::error::{OptimError, Result};

/// `torch.optim.LBFGS`'s state: `d`, `old_dirs`, `old_stps`, `ro`,
/// `prev_flat_grad` as f32 vectors (the history oldest first), and the
/// host's `t`, `H_diag`, `prev_loss`, `n_iter` and `func_evals`.
#[derive(Clone, Debug, PartialEq)]
pub struct LbfgsState {
    /// The last direction (zeros before the first iteration).
    pub d: Vec<f32>,
    /// The y's, oldest first.
    pub old_dirs: Vec<Vec<f32>>,
    /// The s's, oldest first.
    pub old_stps: Vec<Vec<f32>>,
    /// 1/yᵀs of each pair, as the GPU uses it.
    pub ro: Vec<f32>,
    /// The gradient of the last iteration (zeros before the first).
    pub prev_flat_grad: Vec<f32>,
    /// The counters and host scalars.
    pub host: HostState,
}

impl LbfgsOptimizer {
    /// The state, read back (one wait).
    ///
    /// **Errors:** [`OptimError::DeviceLost`], [`OptimError::Readback`].
    pub fn read_state(&self) -> Result<LbfgsState> {
        let (n, bytes) = (self.n, self.vector_bytes());
        let mut ranges = vec![(&self.d, 0, n), (&self.g_prev, 0, n), (&self.kernels.scalars, 0, self.kernels.scalars.size() / 4)];
        for i in 0..self.ring.len {
            let at = self.ring.slot(i) as u64 * bytes / 4;
            ranges.push((&self.y_ring, at, n));
            ranges.push((&self.s_ring, at, n));
        }
        let all = read_ranges_f32(&self.device, &self.queue, &ranges)?;
        let (vectors, rest) = all.split_at(2 * n as usize);
        let (scalars, pairs) = rest.split_at(self.kernels.scalars.size() as usize / 4);
        let mut pairs = pairs.chunks_exact(n as usize).map(<[f32]>::to_vec);
        let (mut old_dirs, mut old_stps) = (Vec::new(), Vec::new());
        while let (Some(y), Some(s)) = (pairs.next(), pairs.next()) {
            old_dirs.push(y);
            old_stps.push(s);
        }
        let ro = (0..self.ring.len).map(|i| scalars[ro_slot(self.ring.slot(i)) as usize]).collect();
        let (d, g) = vectors.split_at(n as usize);
        Ok(LbfgsState { d: d.to_vec(), old_dirs, old_stps, ro, prev_flat_grad: g.to_vec(), host: self.host })
    }

    /// Writes `state` (as [`LbfgsOptimizer::read_state`] gives it), so that
    /// the next step is bitwise the one the saved optimizer would take.
    ///
    /// **Errors:** [`OptimError::Checkpoint`] for vectors of another length,
    /// more pairs than `history_size`, or lists of different lengths;
    /// nothing changes then.
    pub fn write_state(&mut self, state: &LbfgsState) -> Result<()> {
        let n = self.n as usize;
        let k = state.old_dirs.len();
        let bad = |what: String| Err(OptimError::Checkpoint(what));
        if state.d.len() != n || state.prev_flat_grad.len() != n || state.old_dirs.iter().chain(&state.old_stps).any(|v| v.len() != n) {
            return bad(format!("L-BFGS state of another length than the {n} elements of the params"));
        }
        if state.old_stps.len() != k || state.ro.len() != k {
            return bad(format!("{k} old_dirs, {} old_stps and {} ro", state.old_stps.len(), state.ro.len()));
        }
        if k > self.options.history_size as usize {
            return bad(format!("{k} pairs of history, more than history_size {}", self.options.history_size));
        }
        let write = |buffer: &wgpu::Buffer, at: u64, values: &[f32]| self.queue.write_buffer(buffer, at, bytemuck::cast_slice(values));
        write(&self.d, 0, &state.d);
        write(&self.g_prev, 0, &state.prev_flat_grad);
        self.ring = Ring { head: 0, len: k as u32, cap: self.ring.cap };
        for i in 0..k {
            let at = i as u64 * self.vector_bytes();
            write(&self.y_ring, at, &state.old_dirs[i]);
            write(&self.s_ring, at, &state.old_stps[i]);
            self.write_scalar(ro_slot(i as u32), state.ro[i]);
        }
        self.write_scalar(slot::H_DIAG, state.host.h_diag as f32);
        self.host = state.host;
        Ok(())
    }
}
