// Muon's element-wise passes (torch.optim.Muon), around the batched GEMMs of
// the Newton–Schulz iteration (gemm.wgsl). Every matrix lives in the scratch
// buffer in its wide orientation (rows ≤ cols: a tall matrix transposed), as
// X (at `scratch`) and its ping-pong partner X' (at `scratch + numel`).
// Workgroup b handles row b of the row table: up to PER_LANE·WG elements of one
// matrix, in the matrix's own element order.
//
//   momentum:  M ← lerp(M, G, 1 − μ);  U = lerp(G, M, μ) if nesterov else M;
//              X ← U (transposed if tall); partial Σ U² of the row
//   norms:     per matrix, a workgroup: ‖U‖ from its rows' partial sums (fixed order)
//   normalize: X ← X / max(‖U‖, eps)
//   apply:     θ ← θ·(1 − lr·weight_decay) − lr·ratio·O (O the final X,
//              transposed back)
//
// struct Scalars is generated from the Rust declaration (src/matrix/mod.rs);
// Row, PER_LANE, lerp (PyTorch's), workgroup_sum and rows_of come from
// rows.wgsl, TOTAL_WG and tensor_total from tensor_total.wgsl.

struct Tensor {
    param: u32,          // element offsets in the bound param / grad buffers
    grad: u32,
    state: u32,          // momentum_buffer in the state buffer
    scratch: u32,        // X in the scratch buffer (X' follows)
    rows: u32,           // the param's shape
    cols: u32,
    ratio: f32,          // adjust_lr_fn(rows, cols): the lr multiplier
    first_row: u32,      // its first row of the row table
}

@group(0) @binding(0) var<uniform> s: Scalars;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> state: array<f32>;
@group(0) @binding(4) var<storage, read_write> scratch: array<f32>;
@group(0) @binding(5) var<storage, read> tensors: array<Tensor>;
@group(0) @binding(6) var<storage, read> rows: array<Row>;
// per row of the whole table: Σ U², 0 (tensor_total's pairs); then per tensor
// (from 2·n_rows on): max(‖U‖, eps)
@group(0) @binding(7) var<storage, read_write> sums: array<f32>;

// Index in the wide X of element e (row-major in the param's shape).
fn wide_index(t: Tensor, e: u32) -> u32 {
    if (t.rows > t.cols) {
        let r = e / t.cols;
        let c = e - r * t.cols;
        return c * t.rows + r;
    }
    return e;
}

@compute @workgroup_size(WG)
fn momentum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = rows[wid.x];
    let t = tensors[row.tensor];
    var sq = 0.0;
    for (var k = 0u; k < lane_elements(row.len, lid); k++) {
        let i = k * WG + lid;
        let e = row.start + i;
        let g = grad[t.grad + e];
        let m = lerp(state[t.state + e], g, 1.0 - s.momentum);
        state[t.state + e] = m;
        var u = m;
        if (s.nesterov != 0u) {
            u = lerp(g, m, s.momentum);
        }
        scratch[t.scratch + wide_index(t, e)] = u;
        sq = sq + u * u;
    }
    store_row_sums(vec2<f32>(sq, 0.0), row.index, lid);
}

// One workgroup per matrix: ‖U‖ from its rows' partial sums.
@compute @workgroup_size(TOTAL_WG)
fn norms(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = tensors[wid.x];
    let total = tensor_total(t.first_row, rows_of(t.rows * t.cols), lid).x;
    if (lid == 0u) {
        sums[2u * s.n_rows + wid.x] = max(sqrt(total), s.eps);
    }
}

@compute @workgroup_size(WG)
fn normalize(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = rows[wid.x];
    let t = tensors[row.tensor];
    let norm = sums[2u * s.n_rows + row.tensor];
    for (var k = 0u; k < lane_elements(row.len, lid); k++) {
        let i = k * WG + lid;
        let x = t.scratch + row.start + i;
        scratch[x] = scratch[x] / norm;
    }
}

@compute @workgroup_size(WG)
fn apply(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = rows[wid.x];
    let t = tensors[row.tensor];
    let out = t.scratch + s.final_half * t.rows * t.cols;
    let step = s.lr * t.ratio;
    for (var k = 0u; k < lane_elements(row.len, lid); k++) {
        let i = k * WG + lid;
        let e = row.start + i;
        let o = scratch[out + wide_index(t, e)];
        param[t.param + e] = param[t.param + e] * s.decay - step * o;
    }
}
