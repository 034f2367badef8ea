//! Benchmarks measured as ratios within one run: fused step against the
//! adapter's bandwidth ceiling and against the unfused baseline, and the
//! whole-model case (1000 tensors) against one flat tensor and against one
//! dispatch per tensor. Used by `wgpu-optim bench`, the tour and
//! `benches/step.rs`.

pub mod lbfgs;
pub mod matrix;
mod stream;
mod timer;
pub mod unfused;

use std::sync::Arc;
use std::time::Instant;

pub use stream::Ceilings;
pub use timer::{Clock, Timer};
pub use unfused::Unfused;

use crate::arena::ParamArena;
use crate::rules::OptimizerConfig;
use crate::engine::{EngineOptions, Optimizer, ParamSlice, PipelineCache, StateFormat};
use crate::error::{scoped, OptimError, Result};
use crate::validate::{one_case_per_rule, random_params, uniform};

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Elements of the flat parameter vector per rule.
    pub elements: u64,
    /// Timed submissions per measurement (median taken).
    pub reps: u32,
    /// Steps recorded per submission.
    pub steps: u32,
    /// Rules to run (names as in `Rule::name`); empty: all.
    pub rules: Vec<String>,
    /// Tensors of the whole-model case; 0 skips it.
    pub model_tensors: usize,
    /// Total elements of the whole-model case.
    pub model_elements: u64,
    /// Square matrices of the Muon (GEMM) case, and their size; 0 skips it.
    pub matrices: usize,
    /// Rows (and columns) of each Muon matrix; 0 skips the case.
    pub matrix_size: u64,
    /// Elements of the L-BFGS case (history 10); 0 skips it.
    pub lbfgs_elements: u64,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions { elements: 1 << 24, reps: 5, steps: 2, rules: Vec::new(), model_tensors: 1000, model_elements: 1 << 24, matrices: 4, matrix_size: 256, lbfgs_elements: 1 << 20 }
    }
}

/// One rule's figures.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RuleRow {
    /// The rule's name (`Rule::name`).
    pub rule: String,
    /// Elements of the flat parameter vector.
    pub elements: u64,
    /// Minimum bytes read + written per element by one step.
    pub bytes_per_element: u64,
    /// Median ms per fused step.
    pub fused_ms: f64,
    /// bytes_per_element × elements / fused time.
    pub fused_gbps: f64,
    /// The honest ceiling: the simplest kernel moving the same bytes
    /// (`shaders/bench/stream.wgsl`), best of the sweep.
    pub stream_gbps: f64,
    /// Its workgroup size, units per invocation and element type ("vec4",
    /// or "wide": `vec4<u64>` where the device has `SHADER_INT64`).
    pub stream_config: (u32, u32, String),
    /// How the engine's kernel accessed memory ("Vec4", "Wide", "Scalar").
    pub access: String,
    /// fused GB/s ÷ stream GB/s.
    pub fraction_of_stream: f64,
    /// `copy_buffer_to_buffer` of the same bytes.
    pub copy_gbps: f64,
    /// fused GB/s ÷ copy GB/s.
    pub fraction_of_copy: f64,
    /// The engine-overhead ceiling: the same bytes through the engine's
    /// table-driven main with no arithmetic (`shaders/bench/ceiling.wgsl`).
    pub engine_ceiling_gbps: f64,
    /// fused GB/s ÷ engine-ceiling GB/s.
    pub fraction_of_engine_ceiling: f64,
    /// `None` for rules without an unfused baseline.
    pub unfused_ms: Option<f64>,
    /// Kernel launches per unfused step (`None` as for `unfused_ms`).
    pub unfused_kernels: Option<usize>,
    /// unfused time ÷ fused time.
    pub fused_speedup: Option<f64>,
}

/// The whole-model case (AdamW).
#[derive(Clone, Debug, serde::Serialize)]
pub struct ModelRow {
    /// Tensors in the model.
    pub tensors: usize,
    /// Parameter elements over all tensors.
    pub elements: u64,
    /// All tensors, one table-driven dispatch per binding window.
    pub model_ms: f64,
    /// The same number of params as one flat tensor.
    pub flat_ms: f64,
    /// One optimizer (one compute pass and dispatch) per tensor.
    pub per_tensor_ms: f64,
    /// model time ÷ flat time (target ≤ 1.25).
    pub model_over_flat: f64,
    /// per-tensor time ÷ model time (target ≥ 10).
    pub per_tensor_over_model: f64,
    /// Host time to record one step of the model optimizer.
    pub encode_model_us: f64,
    /// Host time to record one step as one dispatch per tensor.
    pub encode_per_tensor_us: f64,
    /// Dispatches per step of the model optimizer.
    pub model_dispatches: usize,
    /// Workgroups per step of the model optimizer (short tensors share rows).
    pub model_workgroups: u32,
    /// Workgroups per step of the flat tensor's optimizer.
    pub flat_workgroups: u32,
    /// How the model optimizer's kernel accessed memory ("Vec4", "Wide", "Scalar").
    pub model_access: String,
    /// How the flat optimizer's kernel accessed memory.
    pub flat_access: String,
    /// LAMB and Adafactor over the same tensors and the same flat tensor.
    pub tensor_wise: Vec<matrix::TensorModelRow>,
}

/// AdamW with each state format (same elements as the rule rows).
#[derive(Clone, Debug, serde::Serialize)]
pub struct StateRow {
    /// The state format: "f32", "bf16" or "int8" (blockwise).
    pub format: String,
    /// Bytes of optimizer state per parameter.
    pub state_bytes_per_param: u64,
    /// Median ms per AdamW step with this state.
    pub fused_ms: f64,
    /// f32-state time ÷ this time.
    pub speedup_over_f32: f64,
}

/// The adapter a report was measured on, and what the engine used of it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AdapterReport {
    /// The adapter's name.
    pub name: String,
    /// The wgpu backend (e.g. "Vulkan", "Metal").
    pub backend: String,
    /// The device type (e.g. "DiscreteGpu", "Cpu").
    pub device_type: String,
    /// The driver's name.
    pub driver: String,
    /// The driver's version and other details.
    pub driver_info: String,
    /// `SHADER_INT64` enabled on the device (the wide access path).
    pub shader_int64: bool,
    /// GPU timestamps enabled (else the clock is the host's wall clock).
    pub timestamps: bool,
    /// The device's limit on one storage binding, in bytes.
    pub max_storage_buffer_binding_size: u64,
    /// The device's limit on a compute workgroup's x size, in invocations.
    pub max_compute_workgroup_size_x: u32,
    /// The crate version that measured it.
    pub wgpu_optim_version: String,
}

impl AdapterReport {
    fn of(device: &wgpu::Device) -> Self {
        let info = device.adapter_info();
        let features = device.features();
        let limits = device.limits();
        AdapterReport {
            name: info.name,
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: info.driver,
            driver_info: info.driver_info,
            shader_int64: features.contains(wgpu::Features::SHADER_INT64),
            timestamps: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
            max_compute_workgroup_size_x: limits.max_compute_workgroup_size_x,
            wgpu_optim_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

/// Everything one run measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchReport {
    /// One line describing the adapter.
    pub adapter: String,
    /// The adapter, and what the engine used of it.
    pub adapter_details: AdapterReport,
    /// How the times were taken.
    pub clock: Clock,
    /// One row per rule measured.
    pub rules: Vec<RuleRow>,
    /// AdamW with f32, bf16 and int8 state.
    pub state_formats: Vec<StateRow>,
    /// The whole-model case; `None` when it was skipped.
    pub model: Option<ModelRow>,
    /// Muon's GEMMs against the arithmetic peak.
    pub matrix: Option<matrix::MatrixRow>,
    /// LAMB, Adafactor and the weight EMA on the rules' vector.
    pub tensor_wise: Vec<matrix::TensorRow>,
    /// L-BFGS iterations per second; `None` when skipped.
    pub lbfgs: Option<lbfgs::LbfgsRow>,
}

fn storage(device: &wgpu::Device, elements: u64) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("bench"),
        size: elements.next_multiple_of(4) * 4,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    })
}

/// `count` tensor sizes, log-uniform between 1 and ~65k relative weight,
/// many not multiples of 4, summing exactly to `total`.
pub fn model_sizes(count: usize, total: u64) -> Vec<u64> {
    let weights: Vec<f64> = (0..count as u64).map(|i| (((uniform(99, 0, i) as f64) + 1.0) * 0.5 * 11.0).exp()).collect();
    let sum: f64 = weights.iter().sum();
    let mut sizes: Vec<u64> = weights.iter().map(|w| ((w / sum * total as f64) as u64).max(1)).collect();
    let used: u64 = sizes.iter().sum();
    let last = sizes.len() - 1;
    sizes[last] = (sizes[last] + total).saturating_sub(used).max(1);
    sizes
}

/// Runs the benchmark; `progress` is told what runs next.
///
/// **Errors:** anything the engine reports, and
/// [`OptimError::InvalidOptions`] for an unknown rule name.
pub fn run(device: &wgpu::Device, queue: &wgpu::Queue, adapter: &str, options: &BenchOptions, progress: &mut dyn FnMut(&str)) -> Result<BenchReport> {
    let timer = Timer::new(device, queue);
    let cache = Arc::new(PipelineCache::new(device));
    let engine = EngineOptions { cache: Some(cache.clone()), ..EngineOptions::default() };
    let cases: Vec<_> = one_case_per_rule().into_iter().filter(|c| options.rules.is_empty() || options.rules.iter().any(|r| r == c.config.rule().name())).collect();
    if cases.is_empty() {
        return Err(OptimError::InvalidOptions("no rule matches the requested names"));
    }
    let n = options.elements.max(1);
    let (p, g) = (storage(device, n), storage(device, n));
    let p0 = random_params(1, n as usize);
    queue.write_buffer(&g, 0, bytemuck::cast_slice(&random_params(2, n as usize)));
    let mut rows = Vec::new();
    for case in &cases {
        queue.write_buffer(&p, 0, bytemuck::cast_slice(&p0));
        rows.push(rule_row(device, queue, &timer, &engine, case.config, (&p, &g, n), options, progress)?);
    }
    let slice = [ParamSlice::range(&p, 0, &g, 0, n)];
    progress("state formats");
    let mut state_formats = Vec::new();
    let adamw: OptimizerConfig = crate::AdamW::default().into();
    let mut f32_ms = 0.0;
    for (name, format) in [("f32", StateFormat::F32), ("bf16", StateFormat::Bf16 { seed: 1 }), ("int8", StateFormat::Int8Blockwise)] {
        queue.write_buffer(&p, 0, bytemuck::cast_slice(&p0));
        let mut opt = Optimizer::with_groups(device, queue, &[adamw], &slice, EngineOptions { state_format: format, ..engine.clone() })?;
        let ms = timer.per_step(options.reps, options.steps, &mut |e| opt.record_step(e))? * 1e3;
        if format == StateFormat::F32 {
            f32_ms = ms;
        }
        state_formats.push(StateRow { format: name.into(), state_bytes_per_param: opt.state_bytes_per_element(), fused_ms: ms, speedup_over_f32: f32_ms / ms });
    }
    drop(slice);
    progress("tensor-wise rules");
    // The stream kernel at AdamW's 28 bytes per element (Adafactor's passes move as many), else the first rule's.
    let stream_gbps = rows.iter().find(|r| r.rule == "adamw").unwrap_or(&rows[0]).stream_gbps;
    let tensor_wise = matrix::tensor_rows(device, queue, &timer, (&p, &g, n), (options.reps, options.steps), (f32_ms, stream_gbps))?;
    let model = if options.model_tensors > 0 {
        Some(model_case(device, queue, &timer, &engine, options, progress)?)
    } else {
        None
    };
    let matrix = if options.matrices > 0 && options.matrix_size > 0 {
        progress("muon: newton-schulz gemms");
        Some(matrix::measure(device, queue, &timer, options.matrices, options.matrix_size, options.reps)?)
    } else {
        None
    };
    let lbfgs = match options.lbfgs_elements {
        0 => None,
        n => {
            progress("l-bfgs");
            Some(lbfgs::measure(device, queue, n, LBFGS_HISTORY, LBFGS_ITERATIONS, rows[0].stream_gbps)?)
        }
    };
    Ok(BenchReport { adapter: adapter.to_string(), adapter_details: AdapterReport::of(device), clock: timer.clock(), rules: rows, state_formats, model, matrix, tensor_wise, lbfgs })
}

/// The L-BFGS case's history and timed iterations.
const LBFGS_HISTORY: u32 = 10;
const LBFGS_ITERATIONS: u32 = 10;

/// One rule's row: the fused step, both honest ceilings, the engine's own
/// ceiling and the unfused baseline, over the same `n` elements.
#[allow(clippy::too_many_arguments)]
fn rule_row(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    timer: &Timer,
    engine: &EngineOptions,
    config: OptimizerConfig,
    (p, g, n): (&wgpu::Buffer, &wgpu::Buffer, u64),
    options: &BenchOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<RuleRow> {
    let rule = config.rule().name();
    let sampling = (options.reps, options.steps);
    let slice = [ParamSlice::range(p, 0, g, 0, n)];
    progress(&format!("{rule}: fused"));
    let mut fused = Optimizer::with_groups(device, queue, &[config], &slice, engine.clone())?;
    let fused_s = timer.per_step(options.reps, options.steps, &mut |e| fused.record_step(e))?;
    let bytes = fused.bytes_per_element();
    progress(&format!("{rule}: honest ceilings"));
    let honest = stream::measure(device, queue, timer, n, config.state().count() as u32, bytes, sampling)?;
    progress(&format!("{rule}: engine ceiling"));
    let mut ceiling = Optimizer::with_groups(device, queue, &[config], &slice, EngineOptions { ceiling: true, ..engine.clone() })?;
    let ceiling_s = timer.per_step(options.reps, options.steps, &mut |e| ceiling.record_step(e))?;
    drop(ceiling);
    progress(&format!("{rule}: unfused"));
    let unfused = match Unfused::supports(&config) {
        true => {
            let mut u = Unfused::new(device, queue, config, p, g, n)?;
            Some((timer.per_step(options.reps, options.steps, &mut |e| u.record_step(e))?, u.kernels_per_step()))
        }
        false => None,
    };
    let gbps = |s: f64| (bytes * n) as f64 / s / 1e9;
    Ok(RuleRow {
        rule: rule.to_string(),
        elements: n,
        bytes_per_element: bytes,
        fused_ms: fused_s * 1e3,
        fused_gbps: gbps(fused_s),
        stream_gbps: gbps(honest.stream_s),
        stream_config: (honest.stream_wg, honest.stream_epi, honest.stream_form.to_string()),
        access: format!("{:?}", fused.access()),
        fraction_of_stream: honest.stream_s / fused_s,
        copy_gbps: gbps(honest.copy_s),
        fraction_of_copy: honest.copy_s / fused_s,
        engine_ceiling_gbps: gbps(ceiling_s),
        fraction_of_engine_ceiling: ceiling_s / fused_s,
        unfused_ms: unfused.map(|u| u.0 * 1e3),
        unfused_kernels: unfused.map(|u| u.1),
        fused_speedup: unfused.map(|u| u.0 / fused_s),
    })
}

/// Mean host seconds to record one step with `record` (no submit).
fn encode_time(device: &wgpu::Device, iters: u32, record: &mut dyn FnMut(&mut wgpu::CommandEncoder) -> Result<()>) -> Result<f64> {
    let mut total = 0.0;
    for _ in 0..iters {
        let mut enc = device.create_command_encoder(&Default::default());
        let start = Instant::now();
        record(&mut enc)?;
        total += start.elapsed().as_secs_f64();
        drop(enc.finish());
    }
    Ok(total / iters as f64)
}

fn model_case(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    timer: &Timer,
    engine: &EngineOptions,
    options: &BenchOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<ModelRow> {
    let config: OptimizerConfig = crate::AdamW::default().into();
    let sizes = model_sizes(options.model_tensors, options.model_elements);
    let total: u64 = sizes.iter().sum();
    progress(&format!("model: {} tensors", sizes.len()));
    let arena = ParamArena::new(device, &sizes)?;
    for b in arena.param_buffers().iter().chain(arena.grad_buffers()) {
        let len = (b.size() / 4) as usize;
        queue.write_buffer(b, 0, bytemuck::cast_slice(&random_params(b.size(), len)));
    }
    let mut model = Optimizer::with_groups(device, queue, &[config], &arena.slices(), engine.clone())?;
    let model_s = timer.per_step(options.reps, options.steps, &mut |e| model.record_step(e))?;
    let encode_model = encode_time(device, 20, &mut |e| model.record_step(e))?;

    progress("model: flat tensor");
    let (fp, fg) = (storage(device, total), storage(device, total));
    queue.write_buffer(&fp, 0, bytemuck::cast_slice(&random_params(5, total as usize)));
    queue.write_buffer(&fg, 0, bytemuck::cast_slice(&random_params(6, total as usize)));
    let mut flat = Optimizer::with_groups(device, queue, &[config], &[ParamSlice::range(&fp, 0, &fg, 0, total)], engine.clone())?;
    let flat_s = timer.per_step(options.reps, options.steps, &mut |e| flat.record_step(e))?;
    let flat_access = format!("{:?}", flat.access());
    let flat_workgroups = flat.workgroups();
    drop(flat);

    progress("model: LAMB and Adafactor");
    let tensor_wise = matrix::model_rows(device, queue, timer, &arena.slices(), &ParamSlice::range(&fp, 0, &fg, 0, total), (options.reps, options.steps))?;

    progress("model: one dispatch per tensor");
    let mut per_tensor = scoped(device, || {
        (0..arena.len()).map(|i| Optimizer::with_groups(device, queue, &[config], arena.tensor(i), engine.clone())).collect::<Result<Vec<_>>>()
    })??;
    let mut record_all = |e: &mut wgpu::CommandEncoder| per_tensor.iter_mut().try_for_each(|o| o.record_step(e));
    let per_tensor_s = timer.per_step(options.reps, options.steps, &mut record_all)?;
    let encode_per_tensor = encode_time(device, 5, &mut record_all)?;
    Ok(ModelRow {
        tensors: sizes.len(),
        elements: total,
        model_ms: model_s * 1e3,
        flat_ms: flat_s * 1e3,
        per_tensor_ms: per_tensor_s * 1e3,
        model_over_flat: model_s / flat_s,
        per_tensor_over_model: per_tensor_s / model_s,
        encode_model_us: encode_model * 1e6,
        encode_per_tensor_us: encode_per_tensor * 1e6,
        model_dispatches: model.dispatch_count(),
        model_workgroups: model.workgroups(),
        flat_workgroups,
        model_access: format!("{:?}", model.access()),
        flat_access,
        tensor_wise,
    })
}

/// The report as a text table.
pub fn format_report(r: &BenchReport) -> String {
    let mut s = format!("clock: {:?}\n", r.clock);
    s += &format!(
        "{:<9} {:>6} {:>10} {:>6} {:>10} {:>7} {:>11} {:>8} {:>9} {:>8} {:>10} {:>8} {:>11} {:>9}\n",
        "rule", "access", "elements", "B/elem", "fused ms", "GB/s", "stream GB/s", "of strm", "copy GB/s", "of copy", "eng. ceil", "of eng.", "unfused ms", "speedup"
    );
    for row in &r.rules {
        let (unfused, speedup) = match (row.unfused_ms, row.fused_speedup) {
            (Some(ms), Some(x)) => (format!("{ms:.3}"), format!("{x:.2}x")),
            _ => ("-".into(), "-".into()),
        };
        s += &format!(
            "{:<9} {:>6} {:>10} {:>6} {:>10.3} {:>7.2} {:>11.2} {:>8.2} {:>9.2} {:>8.2} {:>10.2} {:>8.2} {:>11} {:>9}\n",
            row.rule, row.access.to_lowercase(), row.elements, row.bytes_per_element, row.fused_ms, row.fused_gbps, row.stream_gbps, row.fraction_of_stream, row.copy_gbps, row.fraction_of_copy, row.engine_ceiling_gbps, row.fraction_of_engine_ceiling, unfused, speedup
        );
    }
    s += "(access: how the engine's kernel moved memory (wide: 64-bit packed, SHADER_INT64); stream: the simplest kernel moving the same bytes, best of a sweep over workgroup sizes, units per invocation and vec4<f32>/vec4<u64>; copy: copy_buffer_to_buffer of the same bytes; eng. ceil: the same bytes through the engine's table, no arithmetic)\n";
    for st in &r.state_formats {
        s += &format!("adamw, {} state: {} B/param of state, {:.3} ms, {:.2}x the f32-state speed\n", st.format, st.state_bytes_per_param, st.fused_ms, st.speedup_over_f32);
    }
    for t in &r.tensor_wise {
        s += &format!("{} ({} access): {} elements, {} B/elem, {:.3} ms, {:.2} GB/s ({:.2} of stream), {:.2}x the AdamW step's speed\n", t.rule, t.access, t.elements, t.bytes_per_element, t.ms, t.gbps, t.fraction_of_stream, t.speed_vs_adamw);
    }
    if let Some(m) = &r.model {
        s += &format!(
            "whole model (AdamW): {} tensors, {} params, {} dispatch(es), {} access (flat: {}), {} workgroups (flat: {})\n  model {:.3} ms | flat {:.3} ms | per-tensor {:.3} ms\n  model/flat {:.3} | per-tensor/model {:.2}x\n  host encode per step: model {:.1} us | per-tensor {:.1} us\n",
            m.tensors, m.elements, m.model_dispatches, m.model_access.to_lowercase(), m.flat_access.to_lowercase(), m.model_workgroups, m.flat_workgroups, m.model_ms, m.flat_ms, m.per_tensor_ms, m.model_over_flat, m.per_tensor_over_model, m.encode_model_us, m.encode_per_tensor_us
        );
        for t in &m.tensor_wise {
            s += &format!("  {} over the same tensors (each a matrix): model {:.3} ms | flat {:.3} ms | model/flat {:.3}\n", t.rule, t.model_ms, t.flat_ms, t.model_over_flat);
        }
    }
    if let Some(m) = &r.matrix {
        s += &format!(
            "muon: {} matrices {}x{}, {} Newton-Schulz steps: {:.3} ms per step, GEMMs {:.2} GFLOP/s, multiply-add peak {:.2} GFLOP/s ({:.2} of peak)\n",
            m.matrices, m.size, m.size, m.ns_steps, m.step_ms, m.gemm_gflops, m.fma_peak_gflops, m.fraction_of_peak
        );
    }
    if let Some(l) = &r.lbfgs {
        s += &format!(
            "l-bfgs (rosenbrock, history {}, fixed step): {} elements, {:.3} ms per iteration, {:.1} iterations/s, {:.0} MB per iteration, {:.2} of the stream kernel\n",
            l.history_size, l.elements, l.ms_per_iteration, l.iterations_per_s, l.bytes_per_iteration as f64 / 1e6, l.fraction_of_stream
        );
    }
    s
}
