//! Builds the playground page and serves it on 127.0.0.1:
//!
//! ```text
//! cargo run --release -p wgpu-optim-web --bin serve          # http://127.0.0.1:8080/
//! ```
//!
//! The build: the crate for `wasm32-unknown-unknown` (its own target
//! directory, `target/web`), `wasm-bindgen --target web` into
//! `target/web/site/pkg`, and `www/` beside it. Nothing is downloaded at
//! run time; `wasm-bindgen` must be the version in Cargo.lock
//! (`cargo install wasm-bindgen-cli --version <it>`, as `.ci/run` does).

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    use clap::Parser;
    let args = native::Args::parse();
    if let Err(e) = native::main(args) {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::io::Write;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    /// Build the browser playground and serve it.
    #[derive(clap::Parser, Debug)]
    pub struct Args {
        /// Port on 127.0.0.1 (0: any free one; the first line printed names it).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Serve what was built before instead of building first.
        #[arg(long)]
        no_build: bool,
        /// Build, then exit without serving.
        #[arg(long)]
        build_only: bool,
    }

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    /// Where the built page lies: `target/web/site`.
    pub fn site() -> PathBuf {
        root().join("target/web/site")
    }

    pub fn main(args: Args) -> Result<(), String> {
        if !args.no_build {
            build()?;
        }
        if args.build_only {
            return Ok(());
        }
        let server = tiny_http::Server::http(("127.0.0.1", args.port)).map_err(|e| format!("127.0.0.1:{}: {e}", args.port))?;
        let port = server.server_addr().to_ip().map_or(args.port, |a| a.port());
        println!("serving the playground on http://127.0.0.1:{port}/");
        std::io::stdout().flush().map_err(|e| e.to_string())?;
        let site = site();
        for request in server.incoming_requests() {
            respond(request, &site);
        }
        Ok(())
    }

    fn run(cmd: &mut Command) -> Result<(), String> {
        let status = cmd.status().map_err(|e| format!("{cmd:?}: {e}"))?;
        if status.success() { Ok(()) } else { Err(format!("{cmd:?} failed: {status}")) }
    }

    fn build() -> Result<(), String> {
        let (root, site) = (root(), site());
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let target_dir = root.join("target/web");
        run(Command::new(cargo)
            .current_dir(&root)
            .args(["build", "--release", "--lib", "-p", "wgpu-optim-web", "--target", "wasm32-unknown-unknown", "--target-dir"])
            .arg(&target_dir))?;
        let wasm = target_dir.join("wasm32-unknown-unknown/release/wgpu_optim_web.wasm");
        run(Command::new("wasm-bindgen").args(["--target", "web", "--no-typescript", "--out-dir"]).arg(site.join("pkg")).arg(wasm))?;
        let www = Path::new(env!("CARGO_MANIFEST_DIR")).join("www");
        for entry in std::fs::read_dir(&www).map_err(|e| format!("{}: {e}", www.display()))? {
            let entry = entry.map_err(|e| e.to_string())?;
            std::fs::copy(entry.path(), site.join(entry.file_name())).map_err(|e| format!("{}: {e}", entry.path().display()))?;
        }
        Ok(())
    }

    fn content_type(path: &Path) -> &'static str {
        match path.extension().and_then(|e| e.to_str()) {
            Some("html") => "text/html; charset=utf-8",
            Some("js") => "text/javascript",
            Some("wasm") => "application/wasm",
            Some("css") => "text/css",
            Some("png") => "image/png",
            _ => "application/octet-stream",
        }
    }

    fn respond(request: tiny_http::Request, site: &Path) {
        let url = request.url().split('?').next().unwrap_or("/").trim_start_matches('/').to_string();
        let rel = if url.is_empty() { "index.html".to_string() } else { url };
        let path = site.join(&rel);
        let found = !rel.split('/').any(|part| part == "..") && path.is_file();
        let response = match std::fs::read(&path) {
            Ok(bytes) if found => {
                let header = tiny_http::Header::from_bytes("Content-Type", content_type(&path)).expect("a valid header");
                tiny_http::Response::from_data(bytes).with_header(header)
            }
            _ => tiny_http::Response::from_data(b"not found".to_vec()).with_status_code(404),
        };
        let _ = request.respond(response);
    }
}
