//! Fused step throughput per rule (criterion). Pipelines, buffers and state
//! are built outside the timed loop; each iteration records one step, submits
//! and waits, so the time includes one submit/wait round trip.
//! Throughput is reported in bytes moved (read + written) per second.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use wgpu_optim::validate::one_case_per_rule;
use wgpu_optim::{device, Optimizer, ParamSlice};

fn bytes_per_element(state_slots: usize) -> u64 {
    // param read+write, grad read, each state slot read+write
    4 * (2 + 1 + 2 * state_slots as u64)
}

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
    let mk = || gpu.device.create_buffer(&wgpu::BufferDescriptor { label: None, size: 4 * n, usage, mapped_at_creation: false });
    let (p, g) = (mk(), mk());
    gpu.queue.write_buffer(&p, 0, bytemuck::cast_slice(&wgpu_optim::validate::random_params(1, n as usize)));
    gpu.queue.write_buffer(&g, 0, bytemuck::cast_slice(&wgpu_optim::validate::random_params(2, n as usize)));
    let mut group = c.benchmark_group(format!("fused_step/{}", gpu.info.name));
    group.sample_size(10);
    for case in one_case_per_rule() {
        let mut opt = Optimizer::new(&gpu.device, &gpu.queue, case.config, &[ParamSlice::whole(&p, &g)]).unwrap();
        let slots = opt.state_names().iter().filter(|s| !s.is_empty()).count();
        group.throughput(Throughput::Bytes(bytes_per_element(slots) * n));
        group.bench_function(case.config.rule().name(), |b| {
            b.iter(|| {
                opt.step().unwrap();
                gpu.device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, fused_step);
criterion_main!(benches);
