// Forward and backward of a 64 → H (ReLU) → 10 MLP with softmax
// cross-entropy, for examples/train_mlp.rs. One thread per output value;
// every sum runs in a fixed order, so training is deterministic.
//
// Params and grads live in one engine-allocated arena (the same layout in
// both buffers); `u` holds the element offset of each tensor.

const IN: u32 = 64u;
const OUT: u32 = 10u;
override H: u32 = 64u;
override B: u32 = 64u;

struct Step {
    batch_start: u32,  // first index into `order` of this batch
    rows: u32,         // samples in this batch (≤ B)
    slot: u32,         // this step's row in `stats`
    mean_at: u32,      // when nonzero, stats[mean_at] also gets the mean loss (L-BFGS's closure loss)
    w1: u32,
    b1: u32,
    w2: u32,
    b2: u32,
}

@group(0) @binding(0) var<uniform> u: Step;
@group(0) @binding(1) var<storage, read> x: array<f32>;         // samples × 64
@group(0) @binding(2) var<storage, read> label: array<u32>;
@group(0) @binding(3) var<storage, read> order: array<u32>;     // sample index per position
@group(0) @binding(4) var<storage, read> param: array<f32>;
@group(0) @binding(5) var<storage, read_write> grad: array<f32>;
@group(0) @binding(6) var<storage, read_write> act: array<f32>; // h [B·H] | dlogits [B·10] | dh [B·H]
@group(0) @binding(7) var<storage, read_write> stats: array<f32>; // per slot: loss sum, correct count

fn hidden(s: u32, j: u32) -> f32 {
    let row = order[u.batch_start + s] * IN;
    var z = param[u.b1 + j];
    for (var k = 0u; k < IN; k++) {
        z += param[u.w1 + j * IN + k] * x[row + k];
    }
    return max(z, 0.0);
}

// act.h[s, j]
@compute @workgroup_size(64)
fn forward_hidden(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if (i >= u.rows * H) { return; }
    act[i] = hidden(i / H, i % H);
}

// Softmax cross-entropy per sample: dlogits = (p − onehot)/rows, loss and
// correctness into stats (summed by thread 0 in sample order).
@compute @workgroup_size(64)
fn forward_output(@builtin(global_invocation_id) id: vec3<u32>) {
    let s = id.x;
    if (s >= u.rows) { return; }
    var logits: array<f32, 10>;
    var best = 0u;
    var top = -1e30;
    for (var c = 0u; c < OUT; c++) {
        var z = param[u.b2 + c];
        for (var j = 0u; j < H; j++) {
            z += param[u.w2 + c * H + j] * act[s * H + j];
        }
        logits[c] = z;
        if (z > top) { top = z; best = c; }
    }
    var total = 0.0;
    for (var c = 0u; c < OUT; c++) {
        total += exp(logits[c] - top);
    }
    let y = label[order[u.batch_start + s]];
    let dl = B * H;
    for (var c = 0u; c < OUT; c++) {
        let p = exp(logits[c] - top) / total;
        act[dl + s * OUT + c] = (p - select(0.0, 1.0, c == y)) / f32(u.rows);
    }
    // loss and hit of sample s, parked in dh's space until reduce_stats
    let dh = dl + B * OUT;
    act[dh + 2u * s] = log(total) + top - logits[y];
    act[dh + 2u * s + 1u] = select(0.0, 1.0, best == y);
}

// Sums the per-sample loss and hits in sample order (deterministic).
@compute @workgroup_size(1)
fn reduce_stats() {
    let dh = B * H + B * OUT;
    var loss = 0.0;
    var hits = 0.0;
    for (var s = 0u; s < u.rows; s++) {
        loss += act[dh + 2u * s];
        hits += act[dh + 2u * s + 1u];
    }
    stats[2u * u.slot] = loss;
    stats[2u * u.slot + 1u] = hits;
    if (u.mean_at != 0u) {
        stats[u.mean_at] = loss / f32(u.rows);
    }
}

// grad W2[c, j] = Σ_s dlogits[s, c]·h[s, j];  grad b2[c] = Σ_s dlogits[s, c]
@compute @workgroup_size(64)
fn grad_output(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    let dl = B * H;
    if (i < OUT * H) {
        let c = i / H;
        let j = i % H;
        var g = 0.0;
        for (var s = 0u; s < u.rows; s++) {
            g += act[dl + s * OUT + c] * act[s * H + j];
        }
        grad[u.w2 + i] = g;
    } else if (i < OUT * H + OUT) {
        let c = i - OUT * H;
        var g = 0.0;
        for (var s = 0u; s < u.rows; s++) {
            g += act[dl + s * OUT + c];
        }
        grad[u.b2 + c] = g;
    }
}

// dh[s, j] = (Σ_c W2[c, j]·dlogits[s, c])·[h[s, j] > 0]
@compute @workgroup_size(64)
fn backward_hidden(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if (i >= u.rows * H) { return; }
    let s = i / H;
    let j = i % H;
    let dl = B * H;
    var d = 0.0;
    for (var c = 0u; c < OUT; c++) {
        d += param[u.w2 + c * H + j] * act[dl + s * OUT + c];
    }
    act[dl + B * OUT + i] = select(0.0, d, act[i] > 0.0);
}

// grad W1[j, k] = Σ_s dh[s, j]·x[s, k];  grad b1[j] = Σ_s dh[s, j]
@compute @workgroup_size(64)
fn grad_hidden(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    let dh = B * H + B * OUT;
    if (i < H * IN) {
        let j = i / IN;
        let k = i % IN;
        var g = 0.0;
        for (var s = 0u; s < u.rows; s++) {
            g += act[dh + s * H + j] * x[order[u.batch_start + s] * IN + k];
        }
        grad[u.w1 + i] = g;
    } else if (i < H * IN + H) {
        let j = i - H * IN;
        var g = 0.0;
        for (var s = 0u; s < u.rows; s++) {
            g += act[dh + s * H + j];
        }
        grad[u.b1 + j] = g;
    }
}
