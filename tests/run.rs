//! `wgpu-optim run`: the binary with PyTorch-named options, on the GPU and
//! in the f64 reference, against each other and against the reference
//! called directly; bad inputs are errors, not panics.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use wgpu_optim::reference::ReferenceOptimizer;
use wgpu_optim::validate::{random_params, uniform};
use wgpu_optim::OptimizerConfig;

const N: usize = 1001;
const T: usize = 25;

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wgpu-optim-run-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write_input(path: &Path, grads_rows: usize) -> (Vec<f32>, Vec<f32>) {
    let params = random_params(90, N);
    let grads: Vec<f32> = (0..grads_rows as u64).flat_map(|t| (0..N as u64).map(move |i| uniform(91, t, i))).collect();
    let pb: Vec<u8> = bytemuck::cast_slice(&params).to_vec();
    let gb: Vec<u8> = bytemuck::cast_slice(&grads).to_vec();
    let views = vec![
        ("params".to_string(), TensorView::new(Dtype::F32, vec![N], &pb).unwrap()),
        ("grads".to_string(), TensorView::new(Dtype::F32, vec![grads_rows, N], &gb).unwrap()),
    ];
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
    (params, grads)
}

fn read_tensor(bytes: &[u8], name: &str) -> Vec<f64> {
    let st = SafeTensors::deserialize(bytes).unwrap();
    let t = st.tensor(name).unwrap();
    match t.dtype() {
        Dtype::F64 => t.data().chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect(),
        _ => t.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
    }
}

fn wgpu_optim(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wgpu-optim")).args(args).output().unwrap()
}

#[test]
fn gpu_and_reference_runs_agree_with_pytorch_named_options() {
    let _gpu = require_gpu!();
    let dir = temp_dir("agree");
    let input = dir.join("in.safetensors");
    let (params, grads) = write_input(&input, T + 3);
    let opts = ["run", "--optimizer", "AdamW", "--lr", "0.01", "--betas", "0.8,0.99", "--weight_decay", "0.1", "--amsgrad", "--eps", "1e-7"];
    let (gpu_out, ref_out) = (dir.join("gpu.safetensors"), dir.join("ref.safetensors"));
    for (out, extra) in [(&gpu_out, None), (&ref_out, Some("--reference"))] {
        let mut args: Vec<&str> = opts.to_vec();
        args.extend(["--input", input.to_str().unwrap(), "--steps", "25", "--out", out.to_str().unwrap()]);
        args.extend(extra);
        let o = wgpu_optim(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let (g, r) = (std::fs::read(&gpu_out).unwrap(), std::fs::read(&ref_out).unwrap());
    // The reference called directly, with the config the options describe.
    let config = OptimizerConfig::from_pytorch("adamw", serde_json::json!({"lr": 0.01, "betas": [0.8, 0.99], "weight_decay": 0.1, "amsgrad": true, "eps": 1e-7}).as_object().unwrap()).unwrap();
    let mut reference = ReferenceOptimizer::new(config, N).unwrap();
    let mut p: Vec<f64> = params.iter().map(|&x| x as f64).collect();
    for t in 0..T {
        reference.step(&mut p, &grads[t * N..(t + 1) * N].iter().map(|&x| x as f64).collect::<Vec<_>>()).unwrap();
    }
    assert_eq!(read_tensor(&r, "params"), p, "--reference is the f64 reference");
    for name in ["params", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"] {
        let (a, b) = (read_tensor(&g, name), read_tensor(&r, name));
        assert_eq!(a.len(), N);
        let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs() / (1e-6 + y.abs())).fold(0.0, f64::max);
        assert!(worst < 1e-4, "{name}: GPU vs reference {worst}");
    }
    assert_eq!(read_tensor(&g, "step"), vec![T as f64]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_runs_fail_with_messages() {
    let dir = temp_dir("bad");
    let input = dir.join("in.safetensors");
    write_input(&input, 3);
    let out = dir.join("out.safetensors");
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "--input", input.to_str().unwrap(), "--out", out.to_str().unwrap(), "--reference"];
        args.extend(extra);
        wgpu_optim(&args)
    };
    let cases: [(&[&str], &str); 9] = [
        (&["--optimizer", "adam", "--steps", "2", "--rho", "0.9"], "no option \"rho\""),
        (&["--optimizer", "lbfgs", "--steps", "2"], "lbfgs"),
        (&["--optimizer", "adam", "--steps", "9"], "but tensor \"grads\" has 3 rows"),
        (&["--optimizer", "adam", "--steps", "2", "--lr=-1"], "lr"),
        (&["--optimizer", "sgd", "--steps", "2", "--nesterov"], "nesterov"),
        // what a user can act on: the value, the count, every name run takes
        (&["--optimizer", "adam", "--steps", "2", "--lr", "nan"], "invalid hyperparameter lr = NaN: must be finite"),
        (&["--optimizer", "adam", "--steps", "2", "--betas", "0.9,0.99,0.5"], "betas takes 2 numbers, got 3"),
        (&["--optimizer", "shampoo", "--steps", "2"], "unknown optimizer \"shampoo\""),
        (&["--optimizer", "shampoo", "--steps", "2"], "adafactor"),
    ];
    for (extra, needle) in cases {
        let o = run(extra);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains(needle), "{extra:?}: {err}");
    }
    // grads whose rows are not the params' shape: an input error naming the file and the tensors
    let (pb, gb) = (vec![0u8; 4 * 5], vec![0u8; 4 * 2 * 6]);
    let views = vec![("params".to_string(), TensorView::new(Dtype::F32, vec![5], &pb).unwrap()), ("grads".to_string(), TensorView::new(Dtype::F32, vec![2, 6], &gb).unwrap())];
    std::fs::write(&input, safetensors::serialize(views, None).unwrap()).unwrap();
    let err = String::from_utf8_lossy(&run(&["--optimizer", "adam", "--steps", "1"]).stderr).to_string();
    let named = format!("{}: tensor \"grads\" has rows of shape [6], but \"params\" has shape [5]", input.display());
    assert!(err.contains(&named) && !err.contains("checkpoint"), "{err}");
    std::fs::write(&input, b"not safetensors").unwrap();
    let o = run(&["--optimizer", "adam", "--steps", "1"]);
    assert_eq!(o.status.code(), Some(2));
    let o = wgpu_optim(&["run", "--optimizer", "adam", "--steps", "1", "--input", "/nonexistent.safetensors", "--out", "/tmp/x", "--reference"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent.safetensors"));
    std::fs::remove_dir_all(&dir).ok();
}

/// Newton takes its Hessian diagonals from the input file: one step on a
/// separable quadratic lands on the optimum, on the GPU and in the reference.
#[test]
fn newton_run_reads_hessians() {
    let gpu = require_gpu!();
    let n = 101usize;
    let a: Vec<f32> = (0..n as u64).map(|i| 2.0 + uniform(92, 0, i)).collect();
    let c: Vec<f32> = (0..n as u64).map(|i| uniform(93, 0, i)).collect();
    let params: Vec<f32> = (0..n as u64).map(|i| 2.0 * uniform(94, 0, i)).collect();
    let grads: Vec<f32> = (0..n).map(|i| a[i] * (params[i] - c[i])).collect();
    let (pb, gb, hb): (Vec<u8>, Vec<u8>, Vec<u8>) = (bytemuck::cast_slice(&params).to_vec(), bytemuck::cast_slice(&grads).to_vec(), bytemuck::cast_slice(&a).to_vec());
    let views = vec![
        ("params".to_string(), TensorView::new(Dtype::F32, vec![n], &pb).unwrap()),
        ("grads".to_string(), TensorView::new(Dtype::F32, vec![1, n], &gb).unwrap()),
        ("hessians".to_string(), TensorView::new(Dtype::F32, vec![1, n], &hb).unwrap()),
    ];
    let bytes = safetensors::serialize(views, None).unwrap();
    let input = wgpu_optim::run::RunInput::parse(&bytes).unwrap();
    let cfg: OptimizerConfig = wgpu_optim::Newton { damping: 0.0, ..Default::default() }.into();
    let on_gpu = wgpu_optim::run::run_gpu(&gpu.device, &gpu.queue, cfg, &input, 1).unwrap();
    let on_cpu = wgpu_optim::run::run_reference(cfg, &input, 1).unwrap();
    for (i, &ci) in c.iter().enumerate() {
        assert!((on_cpu.params[i] - ci as f64).abs() < 1e-6, "reference elem {i}");
        assert!((on_gpu.params[i] - ci as f64).abs() < 1e-5, "gpu elem {i}");
    }
}

/// The tensor-wise rules through the binary on a 2-D input (params
/// [13, 7], grads [T, 13, 7]) with PyTorch-named options: the GPU and the
/// f64 reference agree to 1e-4 of the distance the params moved, and the
/// state comes out under PyTorch's names and shapes. Muon on a 1-D input
/// is a typed error.
#[test]
fn tensor_wise_rules_run_on_a_matrix() {
    let _gpu = require_gpu!();
    let dir = temp_dir("matrix");
    let (rows, cols, steps) = (13usize, 7usize, 6usize);
    let params: Vec<f32> = (0..(rows * cols) as u64).map(|i| uniform(95, 0, i)).collect();
    let grads: Vec<f32> = (0..(steps * rows * cols) as u64).map(|i| uniform(96, 0, i)).collect();
    let (pb, gb): (Vec<u8>, Vec<u8>) = (bytemuck::cast_slice(&params).to_vec(), bytemuck::cast_slice(&grads).to_vec());
    let views = vec![("params".to_string(), TensorView::new(Dtype::F32, vec![rows, cols], &pb).unwrap()), ("grads".to_string(), TensorView::new(Dtype::F32, vec![steps, rows, cols], &gb).unwrap())];
    let input = dir.join("in.safetensors");
    std::fs::write(&input, safetensors::serialize(views, None).unwrap()).unwrap();
    type Shapes<'a> = &'a [(&'a str, &'a [usize])];
    let cases: [(&[&str], &str, Shapes); 3] = [
        (&["--optimizer", "Muon", "--lr", "0.02", "--adjust_lr_fn", "match_rms_adamw", "--ns_steps", "4"], r#""ns_steps":4"#, &[("momentum_buffer", &[13, 7])]),
        (&["--optimizer", "lamb", "--betas", "0.8,0.99", "--weight_decay", "0.1", "--trust_ratio", "when_decayed"], r#""trust_ratio":"when_decayed""#, &[("exp_avg", &[13, 7]), ("exp_avg_sq", &[13, 7])]),
        (&["--optimizer", "adafactor", "--eps", "none,0.01", "--d", "2", "--maximize"], r#""eps":[null,0.01]"#, &[("row_var", &[13, 1]), ("col_var", &[1, 7])]),
    ];
    for (options, echoed, state) in cases {
        let outs = [dir.join("gpu.safetensors"), dir.join("ref.safetensors")];
        for (out, extra) in outs.iter().zip([None, Some("--reference")]) {
            let mut args = vec!["run", "--input", input.to_str().unwrap(), "--steps", "6", "--out", out.to_str().unwrap()];
            args.extend(options);
            args.extend(extra);
            let o = wgpu_optim(&args);
            assert!(o.status.success(), "{options:?}: {}", String::from_utf8_lossy(&o.stderr));
            assert!(String::from_utf8_lossy(&o.stdout).contains(echoed), "{options:?}: {}", String::from_utf8_lossy(&o.stdout));
        }
        let (g, r) = (std::fs::read(&outs[0]).unwrap(), std::fs::read(&outs[1]).unwrap());
        let (pg, pr) = (read_tensor(&g, "params"), read_tensor(&r, "params"));
        let moved = pr.iter().zip(&params).map(|(a, b)| (a - *b as f64).powi(2)).sum::<f64>().sqrt();
        let off = pg.iter().zip(&pr).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt();
        eprintln!("{}: moved {moved:.3e}, GPU off the reference by {off:.2e}", options[1]);
        assert!(moved > 1e-3 && off <= 1e-4 * moved, "{options:?}: moved {moved}, off by {off}");
        let st = SafeTensors::deserialize(&g).unwrap();
        assert_eq!(st.tensor("params").unwrap().shape(), [rows, cols]);
        for (name, shape) in state {
            assert_eq!(st.tensor(name).unwrap().shape(), *shape, "{name}");
            let (a, b) = (read_tensor(&g, name), read_tensor(&r, name));
            let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs() / (1e-6 + y.abs())).fold(0.0, f64::max);
            assert!(worst < 1e-3, "{name}: GPU vs reference {worst}");
        }
    }
    write_input(&input, 3);
    let o = wgpu_optim(&["run", "--optimizer", "muon", "--input", input.to_str().unwrap(), "--steps", "1", "--out", dir.join("x").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("2-D"), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::remove_dir_all(&dir).ok();
}

/// Adan (three betas) and schedule-free AdamW run by their names from the
/// command line, each writing its state by name; schedule-free also writes
/// `eval_params`.
#[test]
fn new_rules_run_by_name() {
    let _gpu = require_gpu!();
    let dir = temp_dir("new-rules");
    let input = dir.join("in.safetensors");
    write_input(&input, 4);
    let runs: [(&[&str], &[&str]); 2] = [
        (&["--optimizer", "adan", "--betas", "0.9,0.9,0.99"], &["params", "exp_avg", "exp_avg_sq", "exp_avg_diff", "previous_grad"]),
        (&["--optimizer", "adamw_schedulefree", "--warmup_steps", "2"], &["params", "z", "exp_avg_sq", "eval_params"]),
    ];
    for (options, tensors) in runs {
        let out = dir.join("out.safetensors");
        let mut args = vec!["run", "--input", input.to_str().unwrap(), "--steps", "3", "--out", out.to_str().unwrap()];
        args.extend(options);
        let o = wgpu_optim(&args);
        assert!(o.status.success(), "{options:?}: {}", String::from_utf8_lossy(&o.stderr));
        let bytes = std::fs::read(&out).unwrap();
        for name in tensors {
            assert_eq!(read_tensor(&bytes, name).len(), N, "{options:?}: {name}");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// L-BFGS on both objectives through the binary: the reference cuts
/// max |∇f| by 10⁴ and the GPU by 10² (its f32 floor is bounded in
/// tests/lbfgs.rs), both take the
/// same first loss and count their closure calls;
/// --objective is required for lbfgs and refused for the others.
#[test]
fn lbfgs_minimises_an_objective() {
    let gpu = require_gpu!();
    let _ = gpu;
    let dir = temp_dir("lbfgs");
    let n = 24;
    let quadratic = wgpu_optim::lbfgs::objective::random_quadratic(4, n);
    let wgpu_optim::lbfgs::ObjectiveKind::Quadratic { a, b } = &quadratic else { unreachable!() };
    let params = random_params(5, n);
    let bytes = |v: &[f32]| bytemuck::cast_slice::<f32, u8>(v).to_vec();
    let (pb, ab, bb) = (bytes(&params), bytes(a), bytes(b));
    let views = vec![
        ("params".to_string(), TensorView::new(Dtype::F32, vec![n], &pb).unwrap()),
        ("A".to_string(), TensorView::new(Dtype::F32, vec![n, n], &ab).unwrap()),
        ("b".to_string(), TensorView::new(Dtype::F32, vec![n], &bb).unwrap()),
    ];
    let input = dir.join("in.safetensors");
    std::fs::write(&input, safetensors::serialize(views, None).unwrap()).unwrap();
    for (objective, kind) in [("rosenbrock", wgpu_optim::lbfgs::ObjectiveKind::Rosenbrock), ("quadratic", quadratic.clone())] {
        let mut ends = Vec::new();
        for reference in [false, true] {
            let out = dir.join(format!("{objective}-{reference}.safetensors"));
            let mut args = vec!["run", "--optimizer", "lbfgs", "--objective", objective, "--input", input.to_str().unwrap(), "--steps", "25", "--out", out.to_str().unwrap(), "--line_search_fn", "strong_wolfe", "--history_size", "5"];
            if reference {
                args.push("--reference");
            }
            let o = wgpu_optim(&args);
            assert!(o.status.success(), "{objective}: {}", String::from_utf8_lossy(&o.stderr));
            let result = std::fs::read(&out).unwrap();
            let x = read_tensor(&result, "params");
            let max_grad = |x: &[f64]| kind.host_value(x).1.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let (start, worst) = (max_grad(&params.iter().map(|&v| v as f64).collect::<Vec<_>>()), max_grad(&x));
            // Both stop on tolerance_change; the GPU also where its f32 loss
            // stops resolving progress (tests/lbfgs.rs bounds how close that
            // is; here only that the run made real progress).
            let limit = if reference { 1e-4 } else { 1e-2 } * start;
            assert!(worst < limit, "{objective} (reference {reference}): max |∇f| = {worst:e} at the end, {start:e} at the start");
            let evals = read_tensor(&result, "func_evals")[0];
            assert!(evals > 25.0 && read_tensor(&result, "loss").len() == 25, "{objective}: {evals} closure calls");
            ends.push(read_tensor(&result, "loss")[0]);
        }
        let first = kind.host_value(&params.iter().map(|&v| v as f64).collect::<Vec<_>>()).0;
        assert!((ends[0] - first).abs() <= 1e-5 * first.abs().max(1.0) && ends[1] == first, "{objective}: first losses {ends:?}, f(x0) = {first}");
    }
    let out = dir.join("x.safetensors");
    let no_objective = wgpu_optim(&["run", "--optimizer", "lbfgs", "--input", input.to_str().unwrap(), "--steps", "1", "--out", out.to_str().unwrap()]);
    assert!(!no_objective.status.success() && String::from_utf8_lossy(&no_objective.stderr).contains("--objective"));
    let stray = wgpu_optim(&["run", "--optimizer", "adam", "--objective", "quadratic", "--input", input.to_str().unwrap(), "--steps", "1", "--out", out.to_str().unwrap()]);
    assert!(!stray.status.success() && String::from_utf8_lossy(&stray.stderr).contains("--objective"));
    let unknown = wgpu_optim(&["run", "--optimizer", "lbfgs", "--objective", "himmelblau", "--input", input.to_str().unwrap(), "--steps", "1", "--out", out.to_str().unwrap()]);
    assert!(!unknown.status.success() && String::from_utf8_lossy(&unknown.stderr).contains("himmelblau"));
}
