// Adafactor (torch.optim.Adafactor, single-tensor semantics). A tensor of
// 2 or more dims is B slabs of R×C (its last two dims; B the product of the
// rest), each with its own factored second moment: row_var (B×R) then
// col_var (B×C) in the state buffer. Other tensors keep `variance`, one per
// element. Workgroup b of the element passes handles row b of the row table
// (rows.rs); the line pass runs one invocation per row or column of a slab.
//
//   lines:  row_var ← lerp(row_var, mean_c(G²), w); col_var ← lerp(col_var, mean_r(G²), w)
//   stats:  variance ← lerp(variance, G², w) (unfactored); partial Σθ² per row
//   scale:  per tensor: α = max(eps2, RMS(θ))·rho; per slab: max(mean(row_var), eps1)
//   norms:  U = G / max(√V, eps1), V = row_var·col_var / mean (or variance); partial ΣU² per row
//   step:   per tensor: α / max(1, RMS(U)/d)
//   apply:  θ ← θ·(1 − lr·weight_decay) − step·U
//
// struct Scalars is generated from the Rust declaration (src/matrix/adafactor.rs);
// Row, PER_LANE, lerp (PyTorch's) and workgroup_sum come from rows.wgsl.

struct Tensor {
    param: u32,
    grad: u32,
    numel: u32,
    factored: u32,
    slabs: u32,          // B (1 if unfactored)
    rows: u32,           // R
    cols: u32,           // C
    state: u32,          // row_var (then col_var at state + B·R), or variance
    first_row: u32,      // its first row of the row table
    scales: u32,         // sums[scales] = α, [scales + 1] = step, then one per slab
    pad0: u32,
    pad1: u32,
}

struct Line {
    tensor: u32,
    column: u32,         // 0: a row of a slab (row_var), 1: a column (col_var)
    slab: u32,
    index: u32,          // the row or column within the slab
}

@group(0) @binding(0) var<uniform> s: Scalars;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> state: array<f32>;
@group(0) @binding(4) var<storage, read> tensors: array<Tensor>;
@group(0) @binding(5) var<storage, read> rows: array<Row>;
@group(0) @binding(6) var<storage, read> lines: array<Line>;
// per row of the whole table: Σθ², ΣU²; then each tensor's scales (Tensor.scales)
@group(0) @binding(7) var<storage, read_write> sums: array<f32>;

fn g_at(t: Tensor, e: u32) -> f32 {
    let g = grad[t.grad + e];
    return select(g, -g, s.maximize != 0u);
}

// Sum of a tensor's per-row partials (slot 0: Σθ², 1: ΣU²), in row order.
fn tensor_sum(t: Tensor, slot: u32) -> f32 {
    let n_rows = (t.numel + PER_LANE * WG - 1u) / (PER_LANE * WG);
    var total = 0.0;
    for (var r = 0u; r < n_rows; r++) {
        total = total + sums[2u * (t.first_row + r) + slot];
    }
    return total;
}

@compute @workgroup_size(64)
fn lines_pass(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= arrayLength(&lines)) { return; }
    let line = lines[gid.x];
    let t = tensors[line.tensor];
    let base = line.slab * t.rows * t.cols;
    var total = 0.0;
    if (line.column == 0u) {
        for (var c = 0u; c < t.cols; c++) {
            let g = grad[t.grad + base + line.index * t.cols + c];
            total = total + g * g;
        }
        let at = t.state + line.slab * t.rows + line.index;
        state[at] = lerp(state[at], total / f32(t.cols), s.w);
    } else {
        for (var r = 0u; r < t.rows; r++) {
            let g = grad[t.grad + base + r * t.cols + line.index];
            total = total + g * g;
        }
        let at = t.state + t.slabs * t.rows + line.slab * t.cols + line.index;
        state[at] = lerp(state[at], total / f32(t.rows), s.w);
    }
}

@compute @workgroup_size(WG)
fn stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = rows[wid.x];
    let t = tensors[row.tensor];
    var sq = 0.0;
    for (var k = 0u; k < PER_LANE; k++) {
        let i = k * WG + lid;
        if (i < row.len) {
            let e = row.start + i;
            if (t.factored == 0u) {
                let g = grad[t.grad + e];
                state[t.state + e] = lerp(state[t.state + e], g * g, s.w);
            }
            let theta = param[t.param + e];
            sq = sq + theta * theta;
        }
    }
    let total = workgroup_sum(vec2<f32>(sq, 0.0), lid).x;
    if (lid == 0u) {
        sums[2u * row.index] = total;
    }
}

// One invocation per tensor: α, and each slab's clamped mean of row_var.
@compute @workgroup_size(64)
fn scale(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= s.n_tensors) { return; }
    let t = tensors[gid.x];
    let rms = sqrt(tensor_sum(t, 0u) / f32(t.numel));
    sums[t.scales] = max(s.eps2, rms) * s.rho;
    if (t.factored != 0u) {
        for (var b = 0u; b < t.slabs; b++) {
            var total = 0.0;
            for (var r = 0u; r < t.rows; r++) {
                total = total + state[t.state + b * t.rows + r];
            }
            sums[t.scales + 2u + b] = max(total / f32(t.rows), s.eps1);
        }
    }
}

// U of element e of tensor t.
fn update_of(t: Tensor, e: u32) -> f32 {
    var v: f32;
    if (t.factored != 0u) {
        let per_slab = t.rows * t.cols;
        let b = e / per_slab;
        let rem = e - b * per_slab;
        let r = rem / t.cols;
        let c = rem - r * t.cols;
        v = state[t.state + b * t.rows + r] * state[t.state + t.slabs * t.rows + b * t.cols + c] / sums[t.scales + 2u + b];
    } else {
        v = state[t.state + e];
    }
    return inverseSqrt(max(v, s.eps1 * s.eps1)) * g_at(t, e);
}

@compute @workgroup_size(WG)
fn norms(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = rows[wid.x];
    let t = tensors[row.tensor];
    var sq = 0.0;
    for (var k = 0u; k < PER_LANE; k++) {
        let i = k * WG + lid;
        if (i < row.len) {
            let u = update_of(t, row.start + i);
            sq = sq + u * u;
        }
    }
    let total = workgroup_sum(vec2<f32>(sq, 0.0), lid).x;
    if (lid == 0u) {
        sums[2u * row.index + 1u] = total;
    }
}

// One invocation per tensor: the step α / max(1, RMS(U)/d).
@compute @workgroup_size(64)
fn step_size(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= s.n_tensors) { return; }
    let t = tensors[gid.x];
    let rms = sqrt(tensor_sum(t, 1u) / f32(t.numel));
    sums[t.scales + 1u] = sums[t.scales] / max(1.0, rms / s.d);
}

@compute @workgroup_size(WG)
fn apply(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = rows[wid.x];
    let t = tensors[row.tensor];
    let step = sums[t.scales + 1u];
    for (var k = 0u; k < PER_LANE; k++) {
        let i = k * WG + lid;
        if (i < row.len) {
            let e = row.start + i;
            param[t.param + e] = param[t.param + e] * s.decay - step * update_of(t, e);
        }
    }
}
