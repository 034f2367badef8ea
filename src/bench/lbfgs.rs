//! L-BFGS iterations per second on chained Rosenbrock (its loss and
//! gradient on the GPU), with a full history, against the time the
//! iteration's vector traffic takes at the stream kernel's bandwidth.

use crate::error::Result;
use crate::lbfgs::{Lbfgs, LbfgsOptimizer, Objective, ObjectiveKind};

/// Iterations of L-BFGS per second.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LbfgsRow {
    /// Elements of the flat vector.
    pub elements: u64,
    /// Pairs in the (full) history.
    pub history_size: u32,
    /// Iterations timed.
    pub iterations: u64,
    /// Wall time per iteration (fixed step: one closure call, three reads
    /// of scalars).
    pub ms_per_iteration: f64,
    /// 1000 / ms_per_iteration.
    pub iterations_per_s: f64,
    /// Bytes the iteration's vector passes and copies must move, and the
    /// objective's, with the history full (see [`bytes_per_iteration`]).
    pub bytes_per_iteration: u64,
    /// Those bytes at the stream kernel's GB/s.
    pub stream_ms: f64,
    /// stream_ms ÷ ms_per_iteration.
    pub fraction_of_stream: f64,
}

/// Bytes one fixed-step iteration moves over n f32 elements with m ≥ 1
/// pairs, times 4: the history update (y = g − g_prev, s = t·d, yᵀs: 7n);
/// the two loops (each pair's update fused with the next pair's dot, 4n,
/// and in each loop a lone first dot and last update, 2n + 3n: 8mn + 2n),
/// H_diag·q (2n); −g, gᵀd, max |d| (5n); keeping g and x (4n); the move and
/// its scatter (5n); the closure's Rosenbrock gradient (2n), its gather (2n)
/// and max/sum (1n): 4n·(8m + 30).
pub fn bytes_per_iteration(n: u64, m: u64) -> u64 {
    4 * n * (8 * m + 30)
}

/// Times `iterations` iterations after filling the history.
///
/// **Errors:** anything the optimizer reports.
pub fn measure(device: &wgpu::Device, queue: &wgpu::Queue, elements: u64, history_size: u32, iterations: u32, stream_gbps: f64) -> Result<LbfgsRow> {
    // Near the minimum, so that a fixed step stays finite: x = 1 + 0.1·u.
    let x0: Vec<f32> = crate::random::random_params(3, elements as usize).iter().map(|u| 1.0 + 0.1 * u).collect();
    let objective = Objective::new(device, ObjectiveKind::Rosenbrock, &x0)?;
    let options = Lbfgs { lr: 0.1, max_iter: iterations, tolerance_grad: 0.0, tolerance_change: 0.0, history_size, ..Lbfgs::default() };
    let mut opt = LbfgsOptimizer::new(device, queue, objective.slices(&[elements]), Lbfgs { max_iter: history_size + 1, ..options })?;
    let mut closure = |encoder: &mut wgpu::CommandEncoder| Ok(objective.record(encoder));
    opt.step(&mut closure)?;
    opt.set_options(options)?;
    let before = opt.host_state().n_iter;
    let start = std::time::Instant::now();
    opt.step(&mut closure)?;
    let seconds = start.elapsed().as_secs_f64();
    let done = (opt.host_state().n_iter - before).max(1);
    let ms = seconds * 1e3 / done as f64;
    let bytes = bytes_per_iteration(elements, opt.history_len() as u64);
    let stream_ms = bytes as f64 / (stream_gbps * 1e9) * 1e3;
    Ok(LbfgsRow { elements, history_size, iterations: done, ms_per_iteration: ms, iterations_per_s: 1e3 / ms, bytes_per_iteration: bytes, stream_ms, fraction_of_stream: stream_ms / ms })
}
