//! Real `mpirun` ranks on one machine (lavapipe on each): the sharded
//! optimizer against one process, ranks that disagree, a rank that panics.
//! Every launch has a deadline, so a hang fails the test instead of eating
//! the CI budget.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `mpirun -n ranks shard-check mode`: the exit code (None if killed at the
/// deadline), the output, and how long it took.
fn mpirun(ranks: usize, mode: &str, deadline: Duration) -> (Option<i32>, String, Duration) {
    mpirun_exe(ranks, Path::new(env!("CARGO_BIN_EXE_shard-check")), mode, deadline)
}

/// `mpirun -n ranks exe args` (args split at spaces), as [`mpirun`].
fn mpirun_exe(ranks: usize, exe: &Path, args: &str, deadline: Duration) -> (Option<i32>, String, Duration) {
    let start = Instant::now();
    let mut child = Command::new("mpirun")
        .args(["-n", &ranks.to_string(), "--oversubscribe", "--bind-to", "none", "--mca", "btl", "self,vader"])
        .arg(exe)
        .args(args.split(' '))
        // Open MPI refuses root without both (CI runs as root).
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mpirun (Debian: openmpi-bin) is installed");
    let code = loop {
        if let Some(status) = child.try_wait().expect("mpirun runs") {
            break status.code();
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().expect("mpirun's output");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (code, text, start.elapsed())
}

/// `shard-check mode [arg]` at `ranks` ranks exits 0 within `deadline_s`,
/// every rank reporting "mode ok".
fn passes(ranks: usize, mode: &str, arg: &str, deadline_s: u64) {
    let (code, out, _) = mpirun(ranks, format!("{mode} {arg}").trim_end(), Duration::from_secs(deadline_s));
    assert_eq!(code, Some(0), "{mode} at {ranks} ranks:\n{out}");
    assert_eq!(out.matches(&format!("{mode} ok")).count(), ranks, "{mode} at {ranks} ranks:\n{out}");
}

/// [`passes`] at each of `ranks`, given a fresh temporary directory.
fn passes_with_a_directory(mode: &str, ranks: std::ops::RangeInclusive<usize>, deadline_s: u64) {
    let dir = std::env::temp_dir().join(format!("wgpu-optim-mpi-{mode}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for n in ranks {
        passes(n, mode, &dir.display().to_string(), deadline_s);
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// At N = 1, 2, 3 and 4, every element-wise rule: params and gathered state
/// after 6 steps bitwise equal to one process fed the mean grads (whose
/// sums over ranks are exact by construction), on every rank.
#[test]
fn sharded_steps_equal_one_process_bitwise_at_one_to_four_ranks() {
    for ranks in 1..=4 {
        passes(ranks, "bitwise", "", 120);
    }
}

/// At N = 1-4, clipping (both scopes) with a GradScaler whose grads hold a
/// NaN on the last rank at one step: norms, scale and params bitwise the
/// same on every rank, the step skipped everywhere, close to one process.
#[test]
fn clipping_and_loss_scaling_agree_on_every_rank() {
    for ranks in 1..=4 {
        passes(ranks, "control", "", 120);
    }
}

/// At N = 1-4, LAMB, Adafactor and Muon sharded by whole tensors: params
/// and gathered state bitwise one process fed the mean grads; the merged
/// checkpoint resumes sharded and one-process runs bitwise.
#[test]
fn tensorwise_rules_shard_by_whole_tensors() {
    passes_with_a_directory("tensorwise", 1..=4, 180);
}

/// A sharded save that fails on the last rank (2-4 ranks): every rank
/// returns an error naming it, and the previous set still loads, bitwise.
#[test]
fn a_save_that_fails_on_one_rank_keeps_the_previous_set() {
    passes_with_a_directory("interrupted", 2..=4, 120);
}

/// A rank that builds another model: every rank returns RanksDisagree at
/// construction (no deadlock in a later collective).
#[test]
fn ranks_that_disagree_all_fail_at_construction() {
    for ranks in [2, 3] {
        let (code, out, _) = mpirun(ranks, "disagree", Duration::from_secs(60));
        assert_eq!(code, Some(0), "{ranks} ranks:\n{out}");
        assert_eq!(out.matches("ranks disagree about the model: rank 1 differs in the parameter tensors").count(), ranks, "{out}");
    }
}

/// A rank that panics, or returns an error from its main, while the others
/// wait in a collective ends the whole job within seconds, with a non-zero
/// code.
#[test]
fn a_failing_rank_ends_the_job() {
    for (mode, says) in [("panic", "rank 1 fails on purpose"), ("error", "rank 1 returns an error on purpose")] {
        let (code, out, took) = mpirun(2, mode, Duration::from_secs(60));
        assert!(code.is_some_and(|c| c != 0), "{mode}: exit {code:?} after {took:?}:\n{out}");
        assert!(took < Duration::from_secs(30), "{mode}: took {took:?}");
        assert!(out.contains(says), "{mode}: {out}");
    }
}

/// Save at N = 4, load at N = 2, 3 and 1, and continue: bitwise the
/// uninterrupted run. The merged checkpoint also resumes one process's
/// `Optimizer`; so does the set of four per-rank files, which also
/// resumes 2 and 3 ranks.
#[test]
fn checkpoints_reshard_and_merge() {
    let dir = std::env::temp_dir().join(format!("wgpu-optim-mpi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dir = dir.to_str().unwrap().to_string();
    let run = |ranks: usize, mode: &str| passes(ranks, mode, &dir, 120);
    run(4, "save");
    for ranks in [2, 3, 1] {
        run(ranks, "resume");
    }
    run(1, "merged");
    for ranks in [2, 3] {
        run(ranks, "resume-set");
    }
    run(1, "merged-set");
    std::fs::remove_dir_all(&dir).ok();
}

/// The examples cargo built beside this test (target/…/examples/).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    exe.parent().and_then(Path::parent).expect("target/…/deps").join("examples").join(name)
}

/// The final epoch's test accuracy in a `train_mlp_dp` table.
fn final_test_accuracy(out: &str) -> f64 {
    let last = out.lines().rev().find(|l| l.trim_end().ends_with('%')).unwrap_or_else(|| panic!("no table:\n{out}"));
    last.split_whitespace().last().and_then(|a| a.trim_end_matches('%').parse().ok()).unwrap_or_else(|| panic!("{last}"))
}

/// The digits MLP trained data-parallel at 2 and 3 ranks (rows of every
/// batch split over the ranks, the state sharded) reaches the one-rank
/// run's test accuracy within one point (the one-rank run is the
/// one-process `train_mlp`'s, bitwise: the sharded step at N = 1 is the
/// plain optimizer's).
#[test]
fn data_parallel_training_matches_one_process() {
    let exe = example("train_mlp_dp");
    let accuracy = |ranks| {
        let (code, out, _) = mpirun_exe(ranks, &exe, "--epochs 10 --optimizer adamw", Duration::from_secs(180));
        assert_eq!(code, Some(0), "{ranks} ranks:\n{out}");
        final_test_accuracy(&out)
    };
    let one = accuracy(1);
    assert!(one > 90.0, "one rank: {one}%");
    for ranks in [2, 3] {
        let many = accuracy(ranks);
        assert!((many - one).abs() <= 1.0, "{ranks} ranks: {many}% against one rank's {one}%");
    }
}
