//! "Train in your browser": the examples' digits MLP (`examples/mlp`, the
//! same model, shader and embedded data as `train_mlp`) trained on WebGPU
//! with the fused step of a chosen element-wise rule, weights and biases in
//! two param groups of one dispatch, as `train_mlp` does.

use wasm_bindgen::prelude::*;
use wgpu_optim::{EngineOptions, Optimizer};

#[path = "../../../examples/mlp/model.rs"]
#[allow(dead_code)]
mod model;

use crate::page::js;
use model::{configs, Mlp, TRAIN};

/// Trains for `epochs` epochs (batch 64, hidden 64, seed 1, the rule's
/// default lr in `train_mlp` unless `lr` > 0) and calls
/// `on_epoch(epoch, train_loss, test_accuracy)` after each. Nothing is read
/// back during an epoch but its loss and accuracy sums.
///
/// **Errors:** an unknown or tensor-wise rule; anything the engine reports.
#[wasm_bindgen]
pub async fn train(optimizer: String, epochs: u32, lr: f64, on_epoch: js_sys::Function) -> Result<f64, JsError> {
    if matches!(optimizer.as_str(), "muon" | "lamb" | "adafactor" | "lbfgs") {
        return Err(js("the page trains with the fused element-wise rules"));
    }
    let g = crate::page::gpu().await?;
    let (device, queue) = (&g.device, &g.queue);
    let mut mlp = Mlp::new(device, queue, 64, 64, 1).map_err(js)?;
    let groups = configs(&optimizer, (lr > 0.0).then_some(lr)).map_err(js)?;
    let mut opt = Optimizer::with_groups(device, queue, &groups, &mlp.arena.slices(), EngineOptions::default()).map_err(js)?;
    let mut accuracy = 0.0;
    for epoch in 1..=epochs {
        mlp.start_epoch(queue, epoch);
        let mut enc = device.create_command_encoder(&Default::default());
        let batches = mlp.record_epoch(queue, &mut enc, &mut opt).map_err(js)?;
        queue.submit([enc.finish()]);
        let sums = mlp.read_stats_async(device, queue).await.map_err(js)?;
        let steps = mlp.train_steps();
        let loss = sums.sum(0..steps, 0) / TRAIN as f64;
        accuracy = sums.sum(steps..batches.len(), 1) / mlp.test_len() as f64;
        on_epoch.call3(&JsValue::NULL, &epoch.into(), &loss.into(), &accuracy.into()).map_err(|e| js(format!("{e:?}")))?;
    }
    Ok(accuracy)
}
