//! The honest ceiling of a rule's step: what the adapter does with the same
//! bytes and nothing else, measured in the same run. (a) The simplest
//! compute kernel that moves them (`shaders/bench/stream.wgsl`: contiguous
//! vec4 loads and stores, no table, no flags), at the best of a sweep over
//! workgroup sizes, units per invocation (consecutive, or a workgroup
//! apart as the engine's are) and, where the device has
//! `SHADER_INT64`, the element type (`vec4<f32>`, or `vec4<u64>` as the
//! engine's wide access path moves it); (b) `copy_buffer_to_buffer` of the
//! same number of bytes (the driver's copy, which on a CPU adapter is a
//! memcpy rather than a compute shader).

use super::Timer;
use crate::error::{scoped, Result};

const STREAM_WGSL: &str = include_str!("../../shaders/bench/stream.wgsl");
const WORKGROUP_SIZES: [u32; 3] = [64, 128, 256];
const VEC4S_PER_INVOCATION: [u32; 3] = [1, 2, 4];

/// An element type of the stream kernel: its name in the report, the WGSL
/// type of one unit, and the f32 elements per unit.
struct Form {
    name: &'static str,
    /// The name with units WG apart.
    interleaved: &'static str,
    unit_type: &'static str,
    elements: u64,
}

const FORMS: [Form; 2] = [
    Form { name: "vec4", interleaved: "vec4 interleaved", unit_type: "vec4<f32>", elements: 4 },
    Form { name: "wide", interleaved: "wide interleaved", unit_type: "vec4<u64>", elements: 8 },
];

/// The best stream kernel and the driver's copy, for one byte count.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Ceilings {
    /// Seconds per step of the best stream kernel.
    pub stream_s: f64,
    /// Workgroup size of the best stream kernel.
    pub stream_wg: u32,
    /// Its units (one of its element type each) per invocation.
    pub stream_epi: u32,
    /// Its element type ("vec4" or "wide"), with " interleaved" where an
    /// invocation's units lie a workgroup apart.
    pub stream_form: &'static str,
    /// Seconds of `copy_buffer_to_buffer` moving the same bytes (half read, half written).
    pub copy_s: f64,
}

fn buffer(device: &wgpu::Device, bytes: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor { label: Some("ceiling"), size: bytes.max(16), usage, mapped_at_creation: false })
}

/// The stream kernel over `n` elements with `slots` state slots: seconds per
/// step for every (workgroup size, units per invocation, form), best first.
fn stream(device: &wgpu::Device, queue: &wgpu::Queue, timer: &Timer, n: u64, slots: u32, reps: u32, steps: u32) -> Result<Vec<(f64, u32, u32, &'static str)>> {
    let storage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST;
    let bytes = 32 * n.div_ceil(8);
    let bufs: Vec<wgpu::Buffer> = scoped(device, || (0..2 + crate::rules::MAX_SLOTS).map(|i| buffer(device, if i < 2 + slots as usize { bytes } else { 32 }, storage)).collect())?;
    let wide = device.features().contains(wgpu::Features::SHADER_INT64);
    let mut out = Vec::new();
    for form in FORMS.iter().filter(|f| wide || f.elements == 4) {
        out.extend(stream_form(device, queue, timer, (n.div_ceil(form.elements), form), (&bufs, slots), reps, steps)?);
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(out)
}

/// The sweep over workgroup sizes and units per invocation for one form,
/// over `units` units of each buffer.
fn stream_form(device: &wgpu::Device, queue: &wgpu::Queue, timer: &Timer, (units, form): (u64, &Form), (bufs, slots): (&[wgpu::Buffer], u32), reps: u32, steps: u32) -> Result<Vec<(f64, u32, u32, &'static str)>> {
    let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some("stream"),
        entries: &std::iter::once(wgpu::BindGroupLayoutEntry { binding: 0, visibility: wgpu::ShaderStages::COMPUTE, ty: wgpu::BindingType::Buffer { ty: wgpu::BufferBindingType::Uniform, has_dynamic_offset: false, min_binding_size: None }, count: None })
            .chain((1..3 + crate::rules::MAX_SLOTS as u32).map(|b| crate::engine::pipeline::storage_entry(b, b == 2)))
            .collect::<Vec<_>>(),
    });
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor { label: Some("stream"), bind_group_layouts: &[Some(&layout)], immediate_size: 0 });
    let source = STREAM_WGSL.replace("vec4<f32>", form.unit_type);
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some("stream"), source: wgpu::ShaderSource::Wgsl(source.into()) });
    let max_x = device.limits().max_compute_workgroups_per_dimension as u64;
    let mut out = Vec::new();
    for (wg, epi, interleaved) in WORKGROUP_SIZES.into_iter().flat_map(|wg| VEC4S_PER_INVOCATION.into_iter().flat_map(move |epi| [(wg, epi, 0u32), (wg, epi, 1)])) {
        {
            let groups = units.div_ceil(wg as u64 * epi as u64);
            let (gx, gy) = (groups.min(max_x), groups.div_ceil(max_x));
            let size = buffer(device, 16, wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST);
            queue.write_buffer(&size, 0, bytemuck::cast_slice(&[units as u32, gx as u32, 0, 0]));
            let (pipeline, bind_group) = scoped(device, || {
                let constants = [("WG", wg as f64), ("EPI", epi as f64), ("SLOTS", slots as f64), ("INTERLEAVED", interleaved as f64)];
                let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some("stream"),
                    layout: Some(&pipeline_layout),
                    module: &module,
                    entry_point: Some("main"),
                    compilation_options: wgpu::PipelineCompilationOptions { constants: &constants, zero_initialize_workgroup_memory: false },
                    cache: None,
                });
                let entries: Vec<_> = std::iter::once(&size).chain(bufs).enumerate().map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32, resource: b.as_entire_binding() }).collect();
                let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some("stream"), layout: &layout, entries: &entries });
                (pipeline, bind_group)
            })?;
            let s = timer.per_step(reps, steps, &mut |enc| {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("stream"), timestamp_writes: None });
                pass.set_pipeline(&pipeline);
                pass.set_bind_group(0, &bind_group, &[]);
                pass.dispatch_workgroups(gx as u32, gy as u32, 1);
                Ok(())
            })?;
            out.push((s, wg, epi, if interleaved == 1 { form.interleaved } else { form.name }));
        }
    }
    Ok(out)
}

/// Seconds per `copy_buffer_to_buffer` that reads and writes `bytes / 2` each.
fn copy(device: &wgpu::Device, timer: &Timer, bytes: u64, reps: u32, steps: u32) -> Result<f64> {
    let half = (bytes / 2).next_multiple_of(4);
    let usage = wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
    let (a, b) = scoped(device, || (buffer(device, half, usage), buffer(device, half, usage)))?;
    timer.per_step(reps, steps, &mut |enc| {
        enc.copy_buffer_to_buffer(&a, 0, &b, 0, half);
        Ok(())
    })
}

/// Both ceilings for a rule moving `bytes_per_element` over `n` elements
/// with `slots` state slots (f32 state).
///
/// **Errors:** [`OptimError::Wgpu`](crate::OptimError::Wgpu) if a buffer does not fit.
pub fn measure(device: &wgpu::Device, queue: &wgpu::Queue, timer: &Timer, n: u64, slots: u32, bytes_per_element: u64, (reps, steps): (u32, u32)) -> Result<Ceilings> {
    let (stream_s, stream_wg, stream_epi, stream_form) = stream(device, queue, timer, n, slots, reps, steps)?[0];
    let copy_s = copy(device, timer, bytes_per_element * n, reps, steps)?;
    Ok(Ceilings { stream_s, stream_wg, stream_epi, stream_form, copy_s })
}
