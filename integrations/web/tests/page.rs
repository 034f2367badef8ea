//! End to end: the `serve` binary builds and serves the playground; headless
//! Chromium (through chromedriver's WebDriver API) loads it and waits for
//! `document.body.dataset.state`. Then:
//! - every rule's final f on every surface, read from the DOM, equals the
//!   native engine's for the same settings within the bound derived from
//!   the path's own f64 sensitivity (`playground::loss_bound`);
//! - the in-page MLP beats 70 % test accuracy after its short run;
//! - every panel's canvas shows drawn paths (coloured pixels counted);
//! - a screenshot goes to `target/web/playground.png` (the README's copy is
//!   `docs/playground.png`);
//! - without WebGPU (no `--enable-unsafe-webgpu`) the page reports `error`
//!   and says how to enable it.
//!
//! Needs chromium, chromedriver, wasm-bindgen and the wasm32 target (`.ci/run` installs them);
//! without them the test says so and passes, unless `CI` is set.
#![cfg(not(target_arch = "wasm32"))]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use wgpu_optim::surfaces::trajectory_with;
use wgpu_optim::EngineOptions;
use wgpu_optim_web::playground::{loss_bound, panels};

/// Kills the child when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn on_path(tool: &str) -> bool {
    Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Whether rustc has the wasm32-unknown-unknown standard library.
fn wasm32_installed() -> bool {
    let sysroot = Command::new("rustc").args(["--print", "sysroot"]).output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    sysroot.is_ok_and(|root| std::path::Path::new(&root).join("lib/rustlib/wasm32-unknown-unknown").is_dir())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

/// One WebDriver call; its `value`.
fn webdriver(port: u16, method: &str, path: &str, body: Option<Value>) -> Value {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("chromedriver answers");
    write!(s, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let reply = read_reply(&mut BufReader::new(s));
    let v: Value = serde_json::from_slice(&reply).unwrap_or_else(|e| panic!("{method} {path}: {e}: {:.300}", String::from_utf8_lossy(&reply)));
    v["value"].clone()
}

/// The body of one HTTP/1.1 reply, by its Content-Length or its chunks
/// (chromedriver keeps the connection open, so not to the end of the stream).
fn read_reply(r: &mut impl BufRead) -> Vec<u8> {
    let (mut length, mut chunked) = (None, false);
    loop {
        let mut line = String::new();
        r.read_line(&mut line).expect("a reply header");
        let line = line.trim_end().to_ascii_lowercase();
        if line.is_empty() {
            break;
        }
        if let Some(n) = line.strip_prefix("content-length:") {
            length = n.trim().parse::<usize>().ok();
        }
        chunked |= line.starts_with("transfer-encoding:") && line.contains("chunked");
    }
    let mut body = Vec::new();
    if !chunked {
        body.resize(length.expect("a Content-Length"), 0);
        r.read_exact(&mut body).expect("the reply's body");
        return body;
    }
    loop {
        let mut size = String::new();
        r.read_line(&mut size).expect("a chunk size");
        let n = usize::from_str_radix(size.trim(), 16).expect("a hexadecimal chunk size");
        let mut chunk = vec![0; n + 2];
        r.read_exact(&mut chunk).expect("a chunk");
        if n == 0 {
            return body;
        }
        body.extend_from_slice(&chunk[..n]);
    }
}

fn script(port: u16, session: &str, source: &str) -> Value {
    webdriver(port, "POST", &format!("/session/{session}/execute/sync"), Some(json!({"script": source, "args": []})))
}

/// Starts `serve --port 0` (which builds the page first) and returns its URL.
fn serve() -> (Killed, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_serve")).args(["--port", "0"]).stdout(Stdio::piped()).spawn().expect("serve starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.split_whitespace().last().unwrap_or_else(|| panic!("serve failed to build or bind: {line:?}")).to_string();
    (Killed(child), url)
}

/// A headless Chromium session (through chromedriver) with `url` loaded,
/// once the page has set `document.body.dataset.state` to `done` or
/// `error`: (chromedriver, its port, the session, the state).
fn open_page(url: &str, webgpu: bool) -> (Killed, u16, String, String) {
    let port = free_port();
    let driver = Killed(Command::new("chromedriver").arg(format!("--port={port}")).stdout(Stdio::null()).spawn().expect("chromedriver starts"));
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(30), "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut args = vec!["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1900"];
    args.extend(webgpu.then_some("--enable-unsafe-webgpu"));
    let session = webdriver(port, "POST", "/session", Some(json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {"args": args}}}})));
    let id = session["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {session}")).to_string();
    webdriver(port, "POST", &format!("/session/{id}/url"), Some(json!({"url": url})));
    loop {
        let state = script(port, &id, "return document.body.dataset.state");
        if let Some(s @ ("done" | "error")) = state.as_str() {
            return (driver, port, id, s.to_string());
        }
        assert!(start.elapsed() < Duration::from_secs(900), "the page did not finish in 15 minutes (state {state})");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// What the page shows once done: final f per (surface, rule), the MLP's
/// accuracy, coloured pixels per path canvas; and a screenshot (PNG).
fn load_page(url: &str) -> (Value, Vec<u8>) {
    let (_driver, port, id, state) = open_page(url, true);
    assert_eq!(state, "done", "the page failed: {}", script(port, &id, "return document.getElementById('error').textContent"));
    let shown = script(port, &id, include_str!("page_readout.js"));
    let png = base64::engine::general_purpose::STANDARD.decode(webdriver(port, "GET", &format!("/session/{id}/screenshot"), None).as_str().unwrap()).unwrap();
    webdriver(port, "DELETE", &format!("/session/{id}"), None);
    (shown, png)
}

/// Without WebGPU the page is not blank: it reports `error` and says how to
/// enable WebGPU.
fn check_without_webgpu(url: &str) {
    let (_driver, port, id, state) = open_page(url, false);
    let shown = script(port, &id, "const e = document.getElementById('error'); return [e.hidden, e.textContent]");
    webdriver(port, "DELETE", &format!("/session/{id}"), None);
    eprintln!("without WebGPU: state {state}, {}", shown[1]);
    assert_eq!(state, "error", "without WebGPU the page must say it cannot run");
    let text = shown[1].as_str().unwrap_or("");
    assert!(shown[0] == json!(false) && text.contains("WebGPU") && text.contains("--enable-unsafe-webgpu"), "the message: {shown}");
}

#[test]
fn the_page_shows_the_native_engines_numbers() {
    let mut missing: Vec<&str> = ["chromedriver", "wasm-bindgen", "chromium"].into_iter().filter(|t| !on_path(t)).collect();
    if !wasm32_installed() {
        missing.push("the wasm32-unknown-unknown target");
    }
    if !missing.is_empty() {
        assert!(std::env::var_os("CI").is_none(), "CI is set but {missing:?} are missing: run .ci/run");
        eprintln!("skipped: {missing:?} not installed (.ci/run installs them)");
        return;
    }
    let (_server, url) = serve();
    check_without_webgpu(&url);
    let (shown, png) = load_page(&url);
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/web/playground.png");
    std::fs::write(&out, &png).unwrap();
    eprintln!("screenshot: {} ({} bytes)", out.display(), png.len());

    let gpu = wgpu_optim::device::headless().expect("a native adapter");
    let (mut worst, mut equal, mut compared) = (0.0f64, 0, 0);
    let mut failures = Vec::new();
    for panel in panels() {
        let pixels = shown["pixels"][panel.surface.name()].as_f64().unwrap_or(0.0);
        eprintln!("{}: {pixels} coloured pixels on its canvas", panel.surface.name());
        assert!(pixels > 1000.0, "{}: only {pixels} path pixels on its canvas", panel.surface.name());
        for (label, config) in &panel.rules {
            let path = trajectory_with(&gpu.device, &gpu.queue, panel.surface, *config, panel.start, panel.steps, EngineOptions::default()).unwrap();
            let native = panel.surface.value(path[path.len() - 1][0] as f64, path[path.len() - 1][1] as f64);
            let page: f64 = shown["losses"][panel.surface.name()][label].as_str().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN);
            let bound = loss_bound(panel.surface, *config, panel.start, panel.steps).unwrap();
            let ratio = if page == native { 0.0 } else { (page - native).abs() / bound };
            eprintln!("{:<10} {:<9} page {page:>13.6e} native {native:>13.6e} bound {bound:9.2e}  {ratio:.2e}", panel.surface.name(), label);
            (equal, compared) = (equal + usize::from(page == native), compared + 1);
            worst = worst.max(if ratio.is_nan() { f64::INFINITY } else { ratio });
            if ratio.is_nan() || ratio > 1.0 {
                failures.push(format!("{} {label}: page {page}, native {native}, bound {bound}", panel.surface.name()));
            }
        }
    }
    eprintln!("largest |page − native| / bound: {worst:.2e}; {equal} of {compared} final f bitwise equal");
    assert!(failures.is_empty(), "the page's numbers differ from the native engine's:\n{}", failures.join("\n"));
    let accuracy = shown["mlp"].as_str().and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    eprintln!("in-page MLP: {:.1} % test accuracy", 100.0 * accuracy);
    assert!(accuracy > 0.7, "the in-page MLP reached only {accuracy}");
}
