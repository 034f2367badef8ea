//! Runs the training example for two epochs with every optimizer: the whole
//! loop (forward, backward, fused step) on the GPU must lift test accuracy
//! well above chance (10 %), and the loss must fall.

mod common;

#[path = "../examples/train_mlp.rs"]
mod train_mlp;

use clap::Parser;

#[test]
fn mlp_on_digits_learns_with_every_optimizer() {
    let gpu = require_gpu!();
    for name in ["sgd", "momentum", "nag", "adagrad", "rmsprop", "adadelta", "adam", "adamw", "adamax", "nadam", "radam", "asgd", "rprop", "adan", "adamw_schedulefree", "muon", "lamb", "adafactor", "lbfgs"] {
        let opts = train_mlp::TrainOptions::parse_from(["train_mlp", "--epochs", "2", "--optimizer", name]);
        let history = train_mlp::train(&gpu.device, &gpu.queue, &opts).unwrap();
        let (first, last) = (&history[0], &history[1]);
        eprintln!("{name}: loss {:.3} -> {:.3}, test accuracy {:.3}", first.train_loss, last.train_loss, last.test_accuracy);
        assert!(last.test_accuracy > 0.7, "{name}: test accuracy {} after 2 epochs", last.test_accuracy);
        assert!(last.train_loss < first.train_loss, "{name}: loss did not fall");
    }
}

#[test]
fn mlp_training_is_deterministic() {
    let gpu = require_gpu!();
    let opts = train_mlp::TrainOptions::parse_from(["train_mlp", "--epochs", "1"]);
    let a = train_mlp::train(&gpu.device, &gpu.queue, &opts).unwrap();
    let b = train_mlp::train(&gpu.device, &gpu.queue, &opts).unwrap();
    assert_eq!(a[0].train_loss.to_bits(), b[0].train_loss.to_bits());
    assert_eq!(a[0].test_accuracy.to_bits(), b[0].test_accuracy.to_bits());
}

#[test]
fn mlp_learns_with_low_precision_state_like_f32() {
    let gpu = require_gpu!();
    let run = |state: &str| {
        let opts = train_mlp::TrainOptions::parse_from(["train_mlp", "--epochs", "3", "--optimizer", "adamw", "--state", state]);
        train_mlp::train(&gpu.device, &gpu.queue, &opts).unwrap().last().unwrap().test_accuracy
    };
    let (full, half, byte) = (run("f32"), run("bf16"), run("int8"));
    eprintln!("test accuracy after 3 epochs: f32 state {full:.3}, bf16 state {half:.3}, int8 state {byte:.3}");
    assert!(half > 0.85 && (full - half).abs() < 0.05, "f32 {full} vs bf16 {half}");
    assert!(byte > 0.85 && (full - byte).abs() < 0.05, "f32 {full} vs int8 {byte}");
}
