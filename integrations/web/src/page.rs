//! What the playground page (`www/playground.js`) calls: the adapter, the
//! panels, one rule's path on one surface, and MLP training. Everything is
//! computed by the engine on the visitor's GPU through WebGPU; the page
//! draws it on Canvas 2D.

use std::cell::RefCell;
use std::rc::Rc;

use serde_json::{json, Value};
use wasm_bindgen::prelude::*;
use wgpu_optim::device::{headless_async, Gpu};
use wgpu_optim::surfaces::panels::{contours, levels};
use wgpu_optim::surfaces::trajectory_async;
use wgpu_optim::{EngineOptions, OptimizerConfig};

use crate::playground::{panels, surface};

thread_local! {
    static GPU: RefCell<Option<Rc<Gpu>>> = const { RefCell::new(None) };
}

/// The device, created on first use.
pub(crate) async fn gpu() -> Result<Rc<Gpu>, JsError> {
    if let Some(g) = GPU.with(|g| g.borrow().clone()) {
        return Ok(g);
    }
    let g = Rc::new(headless_async().await.map_err(js)?);
    GPU.with(|slot| *slot.borrow_mut() = Some(g.clone()));
    Ok(g)
}

/// Any error as the JavaScript exception the page shows.
pub(crate) fn js(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// The adapter's name (often empty on the web, for privacy), backend and
/// device type.
#[wasm_bindgen]
pub async fn adapter() -> Result<String, JsError> {
    let g = gpu().await?;
    let name = if g.info.name.is_empty() { "(name hidden by the browser)" } else { g.info.name.as_str() };
    Ok(format!("{name} [{:?}, {:?}]", g.info.backend, g.info.device_type))
}

/// The panels as JSON: surface, start, steps, ranges, contour levels and
/// segments (x0, y0, x1, y1 flat), and each rule's label, PyTorch name and
/// PyTorch options.
#[wasm_bindgen]
pub fn setup() -> String {
    let out: Vec<Value> = panels()
        .iter()
        .map(|p| {
            let segments: Vec<f64> = contours(p, 120).iter().flat_map(|s| [s[0].0, s[0].1, s[1].0, s[1].1]).collect();
            let rules: Vec<Value> = p.rules.iter().map(|(label, c)| json!({"label": label, "optimizer": c.pytorch_name(), "options": c.to_pytorch()})).collect();
            json!({"surface": p.surface.name(), "start": p.start, "steps": p.steps, "x": [p.x.0, p.x.1], "y": [p.y.0, p.y.1],
                   "levels": levels(p.surface), "contours": segments, "rules": rules})
        })
        .collect();
    Value::Array(out).to_string()
}

/// `steps` steps of the rule `optimizer` (a PyTorch name) with `options`
/// (PyTorch's names, JSON) on `surface` from (x, y), on the GPU: the path's
/// points, x and y interleaved, the start first.
///
/// **Errors:** an unknown surface or optimizer, invalid options, anything
/// the engine reports.
#[wasm_bindgen]
pub async fn run(surface_name: String, optimizer: String, options: String, x: f32, y: f32, steps: u32) -> Result<Vec<f32>, JsError> {
    let s = surface(&surface_name).ok_or_else(|| js(format!("unknown surface {surface_name:?}")))?;
    let options: serde_json::Map<String, Value> = serde_json::from_str(&options).map_err(js)?;
    let config = OptimizerConfig::from_pytorch(&optimizer, &options).map_err(js)?;
    let g = gpu().await?;
    let path = trajectory_async(&g.device, &g.queue, s, config, [x, y], steps, EngineOptions::default()).await.map_err(js)?;
    Ok(path.into_iter().flatten().collect())
}

/// f(x, y) on `surface` in f64.
#[wasm_bindgen]
pub fn loss(surface_name: &str, x: f64, y: f64) -> f64 {
    surface(surface_name).map_or(f64::NAN, |s| s.value(x, y))
}
