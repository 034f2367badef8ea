//! Criterion view of the same comparisons as `wgpu-optim bench`: per rule,
//! the fused step, the bandwidth-ceiling kernel moving the same bytes, and
//! the unfused baseline (one kernel per elementwise op). Pipelines, buffers
//! and state are built outside the timed loop; each iteration records one
//! step, submits and waits. Throughput is bytes moved (read + written).
//! `WGPU_OPTIM_BENCH_N` sets the vector length (default 2^20).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use wgpu_optim::bench::Unfused;
use wgpu_optim::validate::{one_case_per_rule, random_params};
use wgpu_optim::{device, EngineOptions, Optimizer, ParamSlice};

fn fused_step(c: &mut Criterion) {
    let gpu = match device::headless() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("no adapter: {e}");
            return;
        }
    };
    let n: u64 = std::env::var("WGPU_OPTIM_BENCH_N").ok().and_then(|s| s.parse().ok()).unwrap_or(1 << 20);
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST;
    let mk = || gpu.device.create_buffer(&wgpu::BufferDescriptor { label: None, size: 4 * n.next_multiple_of(4), usage, mapped_at_creation: false });
    let (p, g) = (mk(), mk());
    gpu.queue.write_buffer(&p, 0, bytemuck::cast_slice(&random_params(1, n as usize)));
    gpu.queue.write_buffer(&g, 0, bytemuck::cast_slice(&random_params(2, n as usize)));
    let slice = [ParamSlice::range(&p, 0, &g, 0, n)];
    let wait = || gpu.device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
    let mut group = c.benchmark_group(format!("step/{}", gpu.info.name));
    group.sample_size(10);
    for case in one_case_per_rule() {
        let rule = case.config.rule().name();
        let mut fused = Optimizer::new(&gpu.device, &gpu.queue, case.config, &slice).unwrap();
        group.throughput(Throughput::Bytes(fused.bytes_per_element() * n));
        group.bench_function(format!("{rule}/fused"), |b| b.iter(|| { fused.step().unwrap(); wait(); }));
        let ceiling_opts = EngineOptions { ceiling: true, ..EngineOptions::default() };
        let mut ceiling = Optimizer::with_groups(&gpu.device, &gpu.queue, &[case.config], &slice, ceiling_opts).unwrap();
        group.bench_function(format!("{rule}/ceiling"), |b| b.iter(|| { ceiling.step().unwrap(); wait(); }));
        if !Unfused::supports(&case.config) {
            continue;
        }
        let mut unfused = Unfused::new(&gpu.device, &gpu.queue, case.config, &p, &g, n).unwrap();
        group.bench_function(format!("{rule}/unfused"), |b| {
            b.iter(|| {
                let mut enc = gpu.device.create_command_encoder(&Default::default());
                unfused.record_step(&mut enc).unwrap();
                gpu.queue.submit([enc.finish()]);
                wait();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, fused_step);
criterion_main!(benches);
