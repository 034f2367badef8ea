//! Muon's Newton–Schulz GEMMs against the adapter's arithmetic peak: a
//! Muon step over a few square matrices (its GEMMs dominate), in GFLOP/s,
//! and a pure multiply-add loop (`shaders/bench/fma.wgsl`) as the peak.

use super::Timer;
use crate::engine::ParamSlice;
use crate::error::{scoped, Result};
use crate::matrix::{Muon, MuonOptimizer};

const FMA_WGSL: &str = include_str!("../../shaders/bench/fma.wgsl");

/// The GEMM throughput of Muon steps.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MatrixRow {
    /// Matrices of `size × size`.
    pub matrices: usize,
    /// Rows (and columns) of each matrix.
    pub size: u64,
    /// Newton–Schulz iterations per Muon step.
    pub ns_steps: u32,
    /// One whole Muon step (momentum, norms, GEMMs, update).
    pub step_ms: f64,
    /// GEMM flops of the step ÷ its time.
    pub gemm_gflops: f64,
    /// The multiply-add loop's GFLOP/s.
    pub fma_peak_gflops: f64,
    /// gemm ÷ peak.
    pub fraction_of_peak: f64,
}

/// Seconds per dispatch of the multiply-add loop, and its flops.
fn fma_peak(device: &wgpu::Device, timer: &Timer, reps: u32) -> Result<f64> {
    let (invocations, iters) = (1u32 << 16, 1024u32);
    let (pipeline, bind_group) = scoped(device, || {
        let out = device.create_buffer(&wgpu::BufferDescriptor { label: Some("fma"), size: 16 * invocations as u64, usage: wgpu::BufferUsages::STORAGE, mapped_at_creation: false });
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some("fma"), source: wgpu::ShaderSource::Wgsl(FMA_WGSL.into()) });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("fma"),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: wgpu::PipelineCompilationOptions { constants: &[("ITERS", iters as f64)], zero_initialize_workgroup_memory: false },
            cache: None,
        });
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some("fma"), layout: &pipeline.get_bind_group_layout(0), entries: &[wgpu::BindGroupEntry { binding: 0, resource: out.as_entire_binding() }] });
        (pipeline, bind_group)
    })?;
    let s = timer.per_step(reps, 1, &mut |enc| {
        let mut pass = enc.begin_compute_pass(&Default::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(invocations / 256, 1, 1);
        Ok(())
    })?;
    Ok(32.0 * iters as f64 * invocations as f64 / s / 1e9)
}

/// Muon over `matrices` square matrices of `size`, timed, and the peak.
///
/// **Errors:** anything the engine reports.
pub fn measure(device: &wgpu::Device, queue: &wgpu::Queue, timer: &Timer, matrices: usize, size: u64, reps: u32) -> Result<MatrixRow> {
    let n = size * size;
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST;
    let (p, g) = scoped(device, || {
        let make = || device.create_buffer(&wgpu::BufferDescriptor { label: Some("muon bench"), size: 4 * n * matrices as u64, usage, mapped_at_creation: false });
        (make(), make())
    })?;
    queue.write_buffer(&g, 0, bytemuck::cast_slice(&crate::validate::random_params(3, (n as usize) * matrices)));
    let slices: Vec<ParamSlice> = (0..matrices as u64).map(|i| ParamSlice::range(&p, i * n, &g, i * n, n).with_shape(&[size, size])).collect();
    let config = Muon::default();
    let mut opt = MuonOptimizer::new(device, queue, config, &slices)?;
    let s = timer.per_step(reps, 1, &mut |enc| opt.record_step(enc))?;
    let gemm_gflops = opt.gemm_flops() as f64 / s / 1e9;
    let fma_peak_gflops = fma_peak(device, timer, reps)?;
    Ok(MatrixRow { matrices, size, ns_steps: config.ns_steps, step_ms: s * 1e3, gemm_gflops, fma_peak_gflops, fraction_of_peak: gemm_gflops / fma_peak_gflops })
}

/// A tensor-wise rule (or the weight EMA) over one large tensor.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TensorRow {
    /// "lamb", "adafactor (factored)", "adafactor (flat)" or "weight ema".
    pub rule: String,
    /// How its element passes moved memory (wide, vec4 or scalar; Muon
    /// and Adafactor read scalars whatever the form).
    pub access: String,
    /// Elements of the tensor.
    pub elements: u64,
    /// Bytes per element its passes move at the least (each pass's reads and writes).
    pub bytes_per_element: u64,
    /// Median ms per step (per update for the weight EMA).
    pub ms: f64,
    /// bytes_per_element × elements / step time, in GB/s.
    pub gbps: f64,
    /// AdamW's f32 step in the same run ÷ this step.
    pub speed_vs_adamw: f64,
    /// gbps ÷ the stream kernel's GB/s in the same run: the step's time
    /// against the time the simplest kernel takes to move the bytes its
    /// passes must move (1 is the honest ceiling).
    pub fraction_of_stream: f64,
}

/// LAMB, Adafactor (factored over rows of 1024 when `n` allows) and the
/// weight EMA on the `n` elements of `p`/`g`, each timed as the rules are;
/// `adamw_ms` and `stream_gbps` come from the same run's AdamW step and
/// stream kernel.
///
/// **Errors:** anything the optimizers report.
pub fn tensor_rows(device: &wgpu::Device, queue: &wgpu::Queue, timer: &Timer, (p, g, n): (&wgpu::Buffer, &wgpu::Buffer, u64), (reps, steps): (u32, u32), (adamw_ms, stream_gbps): (f64, f64)) -> Result<Vec<TensorRow>> {
    let flat = [ParamSlice::range(p, 0, g, 0, n)];
    let shaped = if n % 1024 == 0 { [flat[0].clone().with_shape(&[n / 1024, 1024])] } else { flat.clone() };
    let row = |rule: &str, form: crate::RowForm, bytes: u64, s: f64| {
        let gbps = (bytes * n) as f64 / s / 1e9;
        TensorRow { rule: rule.into(), access: format!("{form:?}").to_lowercase(), elements: n, bytes_per_element: bytes, ms: s * 1e3, gbps, speed_vs_adamw: adamw_ms / (s * 1e3), fraction_of_stream: gbps / stream_gbps }
    };
    let mut lamb = crate::LambOptimizer::new(device, queue, crate::Lamb { weight_decay: 0.01, ..Default::default() }, &flat)?;
    // moments: θ, g, m, v read, m, v written; apply: θ, m, v read, θ written.
    let lamb_s = timer.per_step(reps, steps, &mut |e| lamb.record_step(e))?;
    let mut ada = crate::AdafactorOptimizer::new(device, queue, crate::Adafactor::default(), &shaped)?;
    // factored: lines g twice (rows, columns), norms θ and g, apply θ and g read, θ written;
    // flat: norms θ, g and the variance read and written, apply θ, g and the variance read, θ written.
    let ada_s = timer.per_step(reps, steps, &mut |e| ada.record_step(e))?;
    let mut ema = crate::WeightEma::new(device, queue, 0.999, &flat)?;
    // θ and the average read, the average written.
    let ema_s = timer.per_step(reps, steps, &mut |e| ema.record_update(e))?;
    let ada_name = if n % 1024 == 0 { "adafactor (factored)" } else { "adafactor (flat)" };
    Ok(vec![row("lamb", lamb.access().form, 40, lamb_s), row(ada_name, ada.access().form, if n % 1024 == 0 { 28 } else { 32 }, ada_s), row("weight ema", ema.access().form, 12, ema_s)])
}

/// A tensor-wise rule over the whole-model case's tensors, against one
/// tensor of the same size: what its per-tensor passes (a workgroup per
/// tensor) and the tables of many tensors cost.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TensorModelRow {
    /// "lamb" or "adafactor (factored)".
    pub rule: String,
    /// Median ms per step over the whole-model case's tensors.
    pub model_ms: f64,
    /// Median ms per step over one tensor of the same total elements.
    pub flat_ms: f64,
    /// model time ÷ flat time.
    pub model_over_flat: f64,
}

/// The shape Adafactor factors a tensor of `n` elements by: [n / c, c], c
/// the largest divisor of n up to √n (a prime is [1, n]).
fn matrix_shape(n: u64) -> [u64; 2] {
    let c = (1..=n.isqrt()).rev().find(|c| n.is_multiple_of(*c)).unwrap_or(1);
    [c, n / c]
}

/// LAMB and Adafactor (each tensor shaped as a matrix) over `model`'s
/// slices and over the flat tensor `flat` of the same total.
///
/// **Errors:** anything the optimizers report.
pub fn model_rows(device: &wgpu::Device, queue: &wgpu::Queue, timer: &Timer, model: &[ParamSlice], flat: &ParamSlice, (reps, steps): (u32, u32)) -> Result<Vec<TensorModelRow>> {
    let shaped: Vec<ParamSlice> = model.iter().map(|s| s.clone().with_shape(&matrix_shape(s.len()))).collect();
    let flat_shaped = flat.clone().with_shape(&matrix_shape(flat.len()));
    let row = |rule: &str, model_s: f64, flat_s: f64| TensorModelRow { rule: rule.into(), model_ms: model_s * 1e3, flat_ms: flat_s * 1e3, model_over_flat: model_s / flat_s };
    let time_lamb = |slices: &[ParamSlice]| -> Result<f64> {
        let mut opt = crate::LambOptimizer::new(device, queue, crate::Lamb { weight_decay: 0.01, ..Default::default() }, slices)?;
        timer.per_step(reps, steps, &mut |e| opt.record_step(e))
    };
    let lamb = row("lamb", time_lamb(model)?, time_lamb(std::slice::from_ref(flat))?);
    let time_adafactor = |slices: &[ParamSlice]| -> Result<f64> {
        let mut opt = crate::AdafactorOptimizer::new(device, queue, crate::Adafactor::default(), slices)?;
        timer.per_step(reps, steps, &mut |e| opt.record_step(e))
    };
    let adafactor = row("adafactor (factored)", time_adafactor(&shaped)?, time_adafactor(std::slice::from_ref(&flat_shaped))?);
    Ok(vec![lamb, adafactor])
}
