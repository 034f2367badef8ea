//! Correctness at 2^25 + 5 elements: past lavapipe's 128 MiB storage-binding
//! limit, so the vector is stepped in several binding windows.

mod common;

use wgpu_optim::validate::{run_case, Case, Workload};
use wgpu_optim::{Adam, EngineOptions};

#[test]
fn adam_at_two_to_the_25_plus_5_elements() {
    let gpu = require_gpu!();
    let n = (1usize << 25) + 5;
    let config = Adam { lr: 1e-3, weight_decay: 0.01, ..Adam::default() };
    let r = run_case(&gpu.device, &gpu.queue, &Case::new("adam 2^25+5", config), Workload { n, steps: 3, seed: 77 }, EngineOptions::default()).unwrap();
    for q in &r.quantities {
        eprintln!("{:<12} max|err|={:.3e} k_needed={:.3} k={} relL2={:.3e}", q.name, q.max_abs, q.k_needed, r.k, q.rel_l2);
    }
    assert!(r.passed(), "out of bound: worst k {:.3} > {}", r.worst_k(), r.k);
    let limit = gpu.device.limits().max_storage_buffer_binding_size;
    eprintln!("binding limit {limit} bytes; vector {} bytes; {} dispatches", 4 * n as u64, r.dispatches);
    if limit < 4 * n as u64 {
        assert!(r.dispatches >= 2, "the vector exceeds the binding limit but was not chunked");
    }
}
