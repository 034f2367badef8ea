//! The benchmark's comparison kernels do the real work: the unfused baseline
//! computes the same update as the f64 reference, and a small benchmark run
//! yields finite, positive figures and valid JSON.

mod common;

use wgpu_optim::bench::{self, BenchOptions, Unfused};
use wgpu_optim::device::read_f32;
use wgpu_optim::reference::ReferenceOptimizer;
use wgpu_optim::validate::{one_case_per_rule, random_params, uniform};

#[test]
fn unfused_baseline_matches_reference() {
    let gpu = require_gpu!();
    let n = 1001usize;
    for case in one_case_per_rule().into_iter().filter(|c| Unfused::supports(&c.config)) {
        let p0 = random_params(3, n);
        let mut padded = p0.clone();
        padded.resize(n.next_multiple_of(4), 0.5);
        let p = common::storage_buffer(gpu, &padded);
        let g = common::storage_buffer(gpu, &vec![0.0; padded.len()]);
        let mut unfused = Unfused::new(&gpu.device, &gpu.queue, case.config, &p, &g, n as u64).unwrap();
        let mut reference = ReferenceOptimizer::new(case.config, n).unwrap();
        let mut pr: Vec<f64> = p0.iter().map(|&x| x as f64).collect();
        for t in 0..5u64 {
            let grads: Vec<f32> = (0..padded.len() as u64).map(|i| uniform(8, t, i)).collect();
            gpu.queue.write_buffer(&g, 0, bytemuck::cast_slice(&grads));
            let mut enc = gpu.device.create_command_encoder(&Default::default());
            unfused.record_step(&mut enc).unwrap();
            gpu.queue.submit([enc.finish()]);
            let g64: Vec<f64> = grads[..n].iter().map(|&x| x as f64).collect();
            reference.step(&mut pr, &g64).unwrap();
        }
        let out = read_f32(&gpu.device, &gpu.queue, &p, 0, n as u64).unwrap();
        let worst = out.iter().zip(&pr).map(|(a, b)| (*a as f64 - b).abs() / (1e-3 + b.abs())).fold(0.0, f64::max);
        assert!(worst < 1e-4, "{}: unfused baseline differs from the reference by {worst}", case.name);
        assert!(unfused.kernels_per_step() >= 1);
    }
}

#[test]
fn small_benchmark_run_reports_finite_ratios() {
    let gpu = require_gpu!();
    let options = BenchOptions { elements: 10_001, reps: 1, steps: 1, rules: vec!["adam".into(), "sgd".into()], model_tensors: 20, model_elements: 50_000, matrices: 2, matrix_size: 33, lbfgs_elements: 5_003 };
    let report = bench::run(&gpu.device, &gpu.queue, &gpu.describe(), &options, &mut |_| {}).unwrap();
    assert_eq!(report.rules.len(), 2);
    for r in &report.rules {
        for v in [r.fused_ms, r.fused_gbps, r.stream_gbps, r.fraction_of_stream, r.copy_gbps, r.fraction_of_copy, r.engine_ceiling_gbps, r.fraction_of_engine_ceiling, r.unfused_ms.unwrap(), r.fused_speedup.unwrap()] {
            assert!(v.is_finite() && v > 0.0, "{}: {v}", r.rule);
        }
    }
    let adam = report.rules.iter().find(|r| r.rule == "adam").unwrap();
    assert_eq!((adam.bytes_per_element, adam.unfused_kernels), (28, Some(7)));
    let formats: Vec<_> = report.state_formats.iter().map(|s| (s.format.as_str(), s.state_bytes_per_param)).collect();
    assert_eq!(formats, [("f32", 8), ("bf16", 4), ("int8", 2)]);
    assert!(report.state_formats.iter().all(|s| s.fused_ms > 0.0 && s.speedup_over_f32.is_finite()));
    // Without AdamW in the run, the tensor-wise rows are set against the first rule's stream kernel.
    for t in &report.tensor_wise {
        assert!(t.fraction_of_stream > 0.0 && t.fraction_of_stream == t.gbps / report.rules[0].stream_gbps, "{}", t.rule);
    }
    let m = report.model.as_ref().unwrap();
    assert_eq!((m.tensors, m.elements), (20, 50_000));
    assert!(m.model_ms > 0.0 && m.flat_ms > 0.0 && m.per_tensor_ms > 0.0);
    let rules: Vec<_> = m.tensor_wise.iter().map(|t| t.rule.as_str()).collect();
    assert_eq!(rules, ["lamb", "adafactor (factored)"]);
    assert!(m.tensor_wise.iter().all(|t| t.model_ms > 0.0 && t.flat_ms > 0.0 && t.model_over_flat.is_finite()));
    let mx = report.matrix.as_ref().unwrap();
    assert_eq!((mx.matrices, mx.size, mx.ns_steps), (2, 33, 5));
    assert!(mx.gemm_gflops > 0.0 && mx.fma_peak_gflops > 0.0 && mx.fraction_of_peak.is_finite());
    let l = report.lbfgs.as_ref().unwrap();
    assert_eq!((l.elements, l.history_size, l.iterations), (5_003, 10, 10));
    assert_eq!(l.bytes_per_iteration, wgpu_optim::bench::lbfgs::bytes_per_iteration(5_003, 10));
    assert!(l.ms_per_iteration > 0.0 && l.iterations_per_s.is_finite() && l.fraction_of_stream > 0.0);
    let json = serde_json::to_string(&report).unwrap();
    assert!(json.contains("\"fraction_of_stream\"") && json.contains("\"fraction_of_engine_ceiling\""));
    assert!(bench::format_report(&report).contains("whole model"));
}
