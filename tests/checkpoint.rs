//! safetensors checkpoints: PyTorch state_dict names, bitwise resume for
//! every option set (and with groups and a GradScaler), typed errors that
//! leave the engine untouched, and a fuzzed loader.

mod common;

use proptest::prelude::*;
use safetensors::SafeTensors;
use wgpu_optim::device::read_f32;
use wgpu_optim::validate::{all_cases, random_params, uniform};
use wgpu_optim::*;

const LENS: [u64; 3] = [1001, 7, 300];

struct Run {
    opt: Optimizer,
    p: wgpu::Buffer,
    g: wgpu::Buffer,
}

fn build(gpu: &device::Gpu, configs: &[OptimizerConfig], options: EngineOptions, params: &[f32]) -> Run {
    let p = common::storage_buffer(gpu, params);
    let g = common::storage_buffer(gpu, &vec![0.0; params.len()]);
    let mut at = 0;
    let slices: Vec<_> = LENS
        .iter()
        .enumerate()
        .map(|(i, &len)| {
            let s = ParamSlice::range(&p, at, &g, at, len).in_group((i % configs.len()) as u32);
            at += len;
            s
        })
        .collect();
    Run { opt: Optimizer::with_groups(&gpu.device, &gpu.queue, configs, &slices, options).unwrap(), p, g }
}

fn total() -> usize {
    LENS.iter().sum::<u64>() as usize
}

fn steps(gpu: &device::Gpu, run: &mut Run, from: u64, to: u64, poison: Option<u64>) {
    for t in from..to {
        let mut grads: Vec<f32> = (0..total() as u64).map(|i| uniform(80, t, i)).collect();
        if poison == Some(t) {
            grads[5] = f32::INFINITY;
        }
        gpu.queue.write_buffer(&run.g, 0, bytemuck::cast_slice(&grads));
        run.opt.step().unwrap();
    }
}

fn snapshot(gpu: &device::Gpu, run: &Run) -> Vec<u32> {
    let mut bits: Vec<u32> = read_f32(&gpu.device, &gpu.queue, &run.p, 0, total() as u64).unwrap().iter().map(|x| x.to_bits()).collect();
    for (slot, name) in run.opt.state_names().iter().enumerate() {
        if !name.is_empty() {
            for i in 0..LENS.len() {
                bits.extend(run.opt.read_state(slot, i).unwrap().iter().map(|x| x.to_bits()));
            }
        }
    }
    bits.push(run.opt.step_count());
    // the hyperparameters and the GradScaler's state are part of the state
    let configs = serde_json::to_string(&run.opt.configs().iter().map(|c| c.to_pytorch()).collect::<Vec<_>>()).unwrap();
    bits.extend(configs.bytes().map(u32::from));
    let sc = run.opt.read_grad_control().unwrap();
    bits.extend([sc.scale.to_bits(), sc.growth_tracker, sc.skipped, sc.found_inf]);
    bits
}

/// The same kind of config with other hyperparameters (same option flags):
/// what a resumed optimizer is built from before loading.
fn other_hyperparameters(c: &OptimizerConfig) -> OptimizerConfig {
    let mut o = *c;
    o.set_lr(c.lr() * 3.0 + 1e-3);
    o.set_weight_decay(c.weight_decay() + 0.05);
    o
}

/// 20 steps straight against 10 steps, save, load into a fresh optimizer
/// (params copied), 10 more steps: bitwise equal params and state.
fn check_resume(gpu: &device::Gpu, name: &str, configs: &[OptimizerConfig], options: EngineOptions, poison: Option<u64>) {
    let p0 = random_params(81, total());
    let mut straight = build(gpu, configs, options.clone(), &p0);
    steps(gpu, &mut straight, 0, 20, poison);
    let mut first = build(gpu, configs, options.clone(), &p0);
    steps(gpu, &mut first, 0, 10, poison);
    let bytes = first.opt.checkpoint_bytes().unwrap();
    let mid = read_f32(&gpu.device, &gpu.queue, &first.p, 0, total() as u64).unwrap();
    // A fresh optimizer built from other hyperparameters of the same kind:
    // the checkpoint restores the hyperparameters too.
    let others: Vec<_> = configs.iter().map(other_hyperparameters).collect();
    let mut resumed = build(gpu, &others, options, &mid);
    resumed.opt.load_checkpoint_bytes(&bytes).unwrap();
    steps(gpu, &mut resumed, 10, 20, poison);
    assert!(snapshot(gpu, &straight) == snapshot(gpu, &resumed), "{name}: resumed run differs");
}

#[test]
fn resume_is_bitwise_identical_for_every_option_set() {
    let gpu = require_gpu!();
    for c in all_cases() {
        check_resume(gpu, &c.name, &[c.config], EngineOptions::default(), None);
    }
}

#[test]
fn resume_with_groups_and_grad_scaler_is_bitwise_identical() {
    let gpu = require_gpu!();
    let a: OptimizerConfig = Adam { lr: 1e-2, weight_decay: 0.1, betas: (0.8, 0.99), ..Adam::default() }.into();
    let b: OptimizerConfig = Adam { lr: 3e-3, ..Adam::default() }.into();
    let options = EngineOptions { grad_control: GradControl { max_norm: Some(3.0), scaler: Some(GradScaler { growth_interval: 4, ..GradScaler::default() }), ..GradControl::default() }, ..EngineOptions::default() };
    // a skipped step before and after the checkpoint
    check_resume(gpu, "adam groups + scaler", &[a, b], options.clone(), Some(7));
    check_resume(gpu, "adam groups + scaler", &[a, b], options, Some(13));
}

#[test]
fn tensors_and_metadata_use_pytorch_names() {
    let gpu = require_gpu!();
    let cfg: OptimizerConfig = AdamW { amsgrad: true, ..AdamW::default() }.into();
    let mut run = build(gpu, &[cfg], EngineOptions::default(), &random_params(82, total()));
    steps(gpu, &mut run, 0, 3, None);
    let bytes = run.opt.checkpoint_bytes().unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<_> = st.names().into_iter().map(String::from).collect();
    names.sort();
    for i in 0..LENS.len() {
        for n in ["exp_avg", "exp_avg_sq", "max_exp_avg_sq", "step"] {
            assert!(names.contains(&format!("state.{i}.{n}")), "missing state.{i}.{n} in {names:?}");
        }
    }
    assert_eq!(st.tensor("state.2.exp_avg").unwrap().shape(), &[300]);
    assert_eq!(st.tensor("state.0.step").unwrap().data(), &3f32.to_le_bytes());
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().as_ref().unwrap();
    let groups: serde_json::Value = serde_json::from_str(&meta["param_groups"]).unwrap();
    assert_eq!(groups[0]["lr"], 1e-3);
    assert_eq!(groups[0]["betas"], serde_json::json!([0.9, 0.999]));
    assert_eq!(groups[0]["amsgrad"], true);
    assert_eq!(groups[0]["params"], serde_json::json!([0, 1, 2]));
    assert_eq!(meta["rule"], "adamw");
}

fn expect_rejected(gpu: &device::Gpu, target: &mut Run, bytes: &[u8], what: &str) {
    let before = snapshot(gpu, target);
    let r = target.opt.load_checkpoint_bytes(bytes);
    assert!(matches!(r, Err(OptimError::Checkpoint(_))), "{what}: {r:?}");
    assert!(snapshot(gpu, target) == before, "{what}: a rejected checkpoint changed the engine");
}

#[test]
fn mismatched_or_corrupt_checkpoints_are_typed_errors_and_change_nothing() {
    let gpu = require_gpu!();
    let adam: OptimizerConfig = Adam::default().into();
    let mut source = build(gpu, &[adam], EngineOptions::default(), &random_params(83, total()));
    steps(gpu, &mut source, 0, 4, None);
    let good = source.opt.checkpoint_bytes().unwrap();

    let mut target = build(gpu, &[adam], EngineOptions::default(), &random_params(84, total()));
    steps(gpu, &mut target, 0, 2, None);
    expect_rejected(gpu, &mut target, &good[..good.len() - 9], "truncated");
    expect_rejected(gpu, &mut target, &good[..40], "header only");
    expect_rejected(gpu, &mut target, b"definitely not safetensors", "garbage");
    expect_rejected(gpu, &mut target, &[], "empty");

    let mut adamw = build(gpu, &[AdamW::default().into()], EngineOptions::default(), &random_params(84, total()));
    expect_rejected(gpu, &mut adamw, &good, "another optimizer");
    let mut amsgrad = build(gpu, &[Adam { amsgrad: true, ..Adam::default() }.into()], EngineOptions::default(), &random_params(84, total()));
    expect_rejected(gpu, &mut amsgrad, &good, "other option flags");
    let mut two_groups = build(gpu, &[adam, adam], EngineOptions::default(), &random_params(84, total()));
    expect_rejected(gpu, &mut two_groups, &good, "other param groups");

    // another shape: the same rule over one tensor of another length
    let p = common::storage_buffer(gpu, &random_params(85, 100));
    let g = common::storage_buffer(gpu, &[0.0; 100]);
    let mut other = Run { opt: Optimizer::new(&gpu.device, &gpu.queue, adam, &[ParamSlice::whole(&p, &g)]).unwrap(), p, g };
    let before = other.opt.read_state(0, 0).unwrap();
    assert!(matches!(other.opt.load_checkpoint_bytes(&good), Err(OptimError::Checkpoint(_))));
    assert_eq!(other.opt.read_state(0, 0).unwrap(), before);

    // the file path API reports missing files as I/O errors
    let missing = std::path::Path::new("/nonexistent/wgpu-optim.safetensors");
    assert!(matches!(target.opt.load_checkpoint(missing), Err(OptimError::Io { .. })));
    // and the good checkpoint does load: the optimizer state (not the
    // params, which a checkpoint of the optimizer does not hold) is the source's
    target.opt.load_checkpoint_bytes(&good).unwrap();
    let params = total();
    assert!(snapshot(gpu, &target)[params..] == snapshot(gpu, &source)[params..], "loaded state differs from the saved one");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// Random truncations and byte edits never panic; a rejected file
    /// leaves the optimizer exactly as it was.
    #[test]
    fn fuzzed_checkpoints_never_panic(cut in 0usize..4000, edits in proptest::collection::vec((0usize..4000, any::<u8>()), 0..6)) {
        let Some(gpu) = common::gpu() else { return Ok(()) };
        use std::sync::OnceLock;
        static GOOD: OnceLock<Vec<u8>> = OnceLock::new();
        let good = GOOD.get_or_init(|| {
            let mut src = build(gpu, &[Adam::default().into()], EngineOptions::default(), &random_params(86, total()));
            steps(gpu, &mut src, 0, 3, None);
            src.opt.checkpoint_bytes().unwrap()
        });
        let mut bytes = good.clone();
        bytes.truncate(bytes.len().saturating_sub(cut % (bytes.len() + 1)).max(if cut % 3 == 0 { bytes.len() } else { 0 }));
        let n = bytes.len().max(1);
        for (at, v) in edits {
            if let Some(b) = bytes.get_mut(at % n) {
                *b = v;
            }
        }
        let mut target = build(gpu, &[Adam::default().into()], EngineOptions::default(), &random_params(87, total()));
        let before = snapshot(gpu, &target);
        if target.opt.load_checkpoint_bytes(&bytes).is_err() {
            prop_assert!(snapshot(gpu, &target) == before, "a rejected checkpoint changed the engine");
        }
    }
}

const SAVE_CHILD: &str = "WGPU_OPTIM_SAVE_CHILD";

/// The child of `saves_survive_a_kill_at_any_point`: saves checkpoint A,
/// then B, then A … to `ckpt.safetensors` until it is killed. Does nothing
/// unless started by that test.
#[test]
#[ignore = "run as a child process by saves_survive_a_kill_at_any_point"]
fn save_child() {
    use std::io::Write;
    let Ok(dir) = std::env::var(SAVE_CHILD) else { return };
    let dir = std::path::PathBuf::from(dir);
    let (a, b) = (std::fs::read(dir.join("a.bin")).unwrap(), std::fs::read(dir.join("b.bin")).unwrap());
    let target = dir.join("ckpt.safetensors");
    println!("saving");
    std::io::stdout().flush().unwrap();
    loop {
        for bytes in [&a, &b] {
            wgpu_optim::checkpoint::write_atomic(&target, bytes).unwrap();
        }
    }
}

/// A process killed (SIGKILL) at a random point of saving a large
/// checkpoint, 24 times: the file is always a whole old or a whole new
/// checkpoint, and it loads.
#[test]
fn saves_survive_a_kill_at_any_point() {
    use std::io::BufRead;
    let gpu = require_gpu!();
    let n = 1usize << 22;
    let p = common::storage_buffer(gpu, &random_params(88, n));
    let g = common::storage_buffer(gpu, &random_params(89, n));
    let mut opt = Optimizer::new(&gpu.device, &gpu.queue, Adam::default().into(), &[ParamSlice::whole(&p, &g)]).unwrap();
    opt.step().unwrap();
    let a = opt.checkpoint_bytes().unwrap();
    opt.step().unwrap();
    let b = opt.checkpoint_bytes().unwrap();
    assert!(a.len() > 32 << 20 && a != b);
    let dir = std::env::temp_dir().join(format!("wgpu-optim-kill-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.bin"), &a).unwrap();
    std::fs::write(dir.join("b.bin"), &b).unwrap();
    let target = dir.join("ckpt.safetensors");
    wgpu_optim::checkpoint::write_atomic(&target, &a).unwrap();
    let mut seen = [0usize; 2];
    for trial in 0..24u64 {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "save_child", "--nocapture", "--test-threads=1"])
            .env(SAVE_CHILD, &dir)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        while !line.contains("saving") {
            line.clear();
            assert!(out.read_line(&mut line).unwrap() > 0, "the child exited before saving");
        }
        // somewhere in the write, the flush, the rename or between saves
        let delay = (uniform(90, trial, 0) as f64 + 1.0) * 120.0;
        std::thread::sleep(std::time::Duration::from_micros((delay * 1000.0) as u64));
        child.kill().unwrap();
        child.wait().unwrap();
        let bytes = std::fs::read(&target).unwrap();
        let which = [&a, &b].iter().position(|x| **x == bytes);
        assert!(which.is_some(), "trial {trial}: after a kill at {delay:.0} ms the checkpoint is neither the old nor the new one ({} bytes)", bytes.len());
        seen[which.unwrap()] += 1;
        opt.load_checkpoint_bytes(&bytes).unwrap();
    }
    eprintln!("24 kills: the file held checkpoint A {} times, B {} times", seen[0], seen[1]);
    std::fs::remove_dir_all(&dir).ok();
}
