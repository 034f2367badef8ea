// LAMB (You et al. 2019, as burn-optim's `lamb.rs` and NVIDIA Apex's
// FusedLAMB): Adam's moments and bias-corrected ratio with decoupled weight
// decay in the update, scaled per tensor by the trust ratio ‖θ‖/‖u‖.
// Workgroup b handles row b of the row table (rows.rs).
//
//   moments: m ← β₁m + (1 − β₁)g;  v ← β₂v + (1 − β₂)g²        (exp_avg, exp_avg_sq)
//            u = (m/bc₁)/(√(v/bc₂) + eps) + weight_decay·θ; partial Σθ², Σu² of the row
//   trust:   per tensor: r = ‖θ‖/‖u‖ (1 if either is 0, or if not adapting):
//            a tensor of one row (always in a shared row, alone or not:
//            src/matrix/shared_rows.rs) has it from moments; the trust
//            pass takes the longer ones, one workgroup each
//   apply:   θ ← θ − lr·r·u   (u recomputed from the stored m, v: the same f32 values)

// struct Scalars is generated from the Rust declaration (src/matrix/lamb.rs);
// Row, PER_LANE, workgroup_sum and rows_of come from rows.wgsl, TOTAL_WG and
// tensor_total from tensor_total.wgsl.

struct Tensor {
    param: u32,
    grad: u32,
    state: u32,
    numel: u32,
    first_row: u32,
    index: u32,          // in the trust pass's list (from s.first_trusted on): the tensor's index
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<uniform> s: Scalars;
// Bindings 1–4 (param, grad, exp_avg, exp_avg_sq) and their accessors ld_X /
// st_X are generated (rows::RowAccess::operands): scalar, vec4 or wide access.
@group(0) @binding(5) var<storage, read> tensors: array<Tensor>;
@group(0) @binding(6) var<storage, read> rows: array<Row>;
// per row: Σθ², Σu²; then per tensor (from 2·n_rows on): the trust ratio
@group(0) @binding(7) var<storage, read_write> sums: array<f32>;

// A lane's part of its row: its tensor, the tensor's first element of the
// row and its elements there, and the lane's place among the tensor's
// lanes (a whole row: lid of WG; a shared row: its segment's).
struct Part {
    tensor: u32,
    start: u32,
    len: u32,
    lane: u32,
    lanes: u32,
    first: u32,          // the segment's first lane
}

// Per lane: the sum of its run of a shared row's segment (at the run's first lane).
var<workgroup> runs: array<vec2<f32>, WG>;

fn is_shared(row: Row) -> bool {
    return (row.tensor & SHARED_ROW) != 0u;
}

fn part_of(row: Row, lid: u32) -> Part {
    if (!is_shared(row)) {
        return Part(row.tensor, row.start, row.len, lid, WG, 0u);
    }
    let me = rows[(row.tensor & ~SHARED_ROW) + lid];
    if (me.tensor == NO_TENSOR) {
        return Part(0u, 0u, 0u, 0u, 1u, lid);
    }
    return Part(me.tensor, 0u, tensors[me.tensor].numel, lid - me.start, me.len, me.start);
}

// r = ‖θ‖/‖u‖ from the two norms (1 if either is 0, or if not adapting).
fn ratio_of(norms: vec2<f32>) -> f32 {
    if (s.adapt != 0u && norms.x > 0.0 && norms.y > 0.0) {
        return norms.x / norms.y;
    }
    return 1.0;
}

fn update_of(m: vec4<f32>, v: vec4<f32>, theta: vec4<f32>) -> vec4<f32> {
    return (m * s.inv_bc1) / (sqrt(v * s.inv_bc2) + s.eps) + s.weight_decay * theta;
}

// Each invocation handles units of UNIT consecutive elements (4, or 8 with
// the wide access), unit c at (c·WG + lid)·UNIT of its row (rows hold
// PER_LANE·WG elements), as vec4 halves; n of a unit's elements are in the
// tensor.
@compute @workgroup_size(WG)
fn moments(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = rows[wid.x];
    let my = part_of(row, lid);
    let t = tensors[my.tensor];
    var sq = vec2<f32>(0.0);
    for (var c = 0u; c < PER_LANE / UNIT; c++) {
        let i = (c * my.lanes + my.lane) * UNIT;
        if (i >= my.len) { break; }
        let n = min(UNIT, my.len - i);
        let e = my.start + i;
        let g = ld_grad(t.grad + e, n);
        var m = ld_exp_avg(t.state + e, n);
        var v = ld_exp_avg_sq(t.state + e, n);
        let theta = ld_param(t.param + e, n);
        for (var h = 0u; h < UNIT / 4u; h++) {
            m[h] = s.beta1 * m[h] + s.one_minus_beta1 * g[h];
            v[h] = s.beta2 * v[h] + s.one_minus_beta2 * g[h] * g[h];
            let u = update_of(m[h], v[h], theta[h]);
            let live = lanes(n, h);
            let tt = select(vec4<f32>(0.0), theta[h] * theta[h], live);
            let uu = select(vec4<f32>(0.0), u * u, live);
            sq = sq + vec2<f32>((tt.x + tt.y) + (tt.z + tt.w), (uu.x + uu.y) + (uu.z + uu.w));
        }
        st_exp_avg(t.state + e, m, n);
        st_exp_avg_sq(t.state + e, v, n);
    }
    if (is_shared(row)) {
        // each tensor's norms: its lanes in runs of SEGMENT_RUN, each summed
        // in order by the run's first lane, then the runs in order by the
        // tensor's first lane
        red[lid] = sq;
        workgroupBarrier();
        let k = lid - my.first;
        var run = vec2<f32>(0.0);
        if (my.len > 0u && k % SEGMENT_RUN == 0u) {
            for (var l = 0u; l < min(SEGMENT_RUN, my.lanes - k); l++) {
                run = run + red[lid + l];
            }
        }
        runs[lid] = run;
        workgroupBarrier();
        if (my.len > 0u && k == 0u) {
            var total = vec2<f32>(0.0);
            for (var l = 0u; l < my.lanes; l += SEGMENT_RUN) {
                total = total + runs[lid + l];
            }
            sums[2u * s.n_rows + my.tensor] = ratio_of(sqrt(total));
        }
        return;
    }
    store_row_sums(sq, row.index, lid);
}

// One workgroup per tensor of the list (tensors of more than one row):
// ‖θ‖ and ‖u‖ from its rows' partial sums.
@compute @workgroup_size(TOTAL_WG)
fn trust(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = tensors[s.first_trusted + wid.x];
    let norms = sqrt(tensor_total(t.first_row, rows_of(t.numel), lid));
    if (lid == 0u) {
        sums[2u * s.n_rows + t.index] = ratio_of(norms);
    }
}

@compute @workgroup_size(WG)
fn apply(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let my = part_of(rows[wid.x], lid);
    let t = tensors[my.tensor];
    let step = s.lr * sums[2u * s.n_rows + my.tensor];
    for (var c = 0u; c < PER_LANE / UNIT; c++) {
        let i = (c * my.lanes + my.lane) * UNIT;
        if (i >= my.len) { break; }
        let n = min(UNIT, my.len - i);
        let e = my.start + i;
        var theta = ld_param(t.param + e, n);
        let m = ld_exp_avg(t.state + e, n);
        let v = ld_exp_avg_sq(t.state + e, n);
        for (var h = 0u; h < UNIT / 4u; h++) {
            theta[h] = tail(theta[h], theta[h] - step * update_of(m[h], v[h], theta[h]), n, h);
        }
        st_param(t.param + e, theta, n);
    }
}
