// Adafactor (torch.optim.Adafactor, single-tensor semantics). A tensor of
// 2 or more dims is B slabs of R×C (its last two dims; B the product of the
// rest), each with its own factored second moment: row_var (B×R) then
// col_var (B×C) in the state buffer. Other tensors keep `variance`, one per
// element. Workgroup b of the element passes (norms, apply: in
// adafactor_kind.wgsl, one copy per kind of tensor, with the unit functions
// of adafactor_units.wgsl) handles row b of its kind's rows of the row
// table (rows.rs); the line passes run one invocation per segment of at most
// segment_len elements of a row of a slab, or of a strip of up to UNIT of
// its columns (src/matrix/adafactor/optimizer.rs's segment table), then, for
// lines of several segments, one per line or strip.
//
//   segments: partial Σ G² of each segment of a line
//   lines:  row_var ← lerp(row_var, mean_c(G²), w); col_var ← lerp(col_var, mean_r(G²), w),
//           the means from the line's segments in order
//   line_scales: per line: row_var / max(mean(row_var over its slab), eps1) (a workgroup per tensor)
//   norms:  variance ← lerp(variance, G², w) (unfactored);
//           U = G / max(√V, eps1), V = (row_var / mean)·col_var, the line's scale (or variance); partial Σθ², ΣU² per row
//   step:   per tensor, a workgroup: α = max(eps2, RMS(θ))·rho (θ before the decay), α / max(1, RMS(U)/d)
//   apply:  θ ← θ·(1 − lr·weight_decay) − step·U
//
// struct Scalars is generated from the Rust declaration (src/matrix/adafactor/optimizer.rs),
// and the param and grad bindings with their accessors (rows::RowAccess::operands);
// Row, PER_LANE, lerp (PyTorch's), workgroup_sum and rows_of come from
// rows.wgsl, TOTAL_WG, total_sum and tensor_total from tensor_total.wgsl.

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
    scales: u32,         // sums[scales] = the step, [scales + 1 + line] = line b·R + r's scale
    slab_tree: u32,      // 1: a slab's mean is a workgroup's tree (Factoring::slab_tree)
    pad1: u32,
}

struct Segment {
    tensor: u32,
    column: u32,         // 0: of a row of a slab (row_var), 1: of a column (col_var)
    slab: u32,
    index: u32,          // the row within the slab, or a strip's first column
    first: u32,          // its first element along the line
    count: u32,          // its elements (at most segment_len)
    slot: u32,           // its partial sum: sums[slot] (a strip's: its columns' UNIT apart; a line's segments follow each other; unused for a line of one)
    segs: u32,           // on the line's last segment, the line's count of segments; else 0
}

@group(0) @binding(0) var<uniform> s: Scalars;
// Bindings 1 and 2 (param, grad) and their accessors ld_X / st_X / at_X are
// generated (rows::RowAccess::operands): scalar, vec4 or wide access.
@group(0) @binding(3) var<storage, read_write> state: array<f32>;
@group(0) @binding(4) var<storage, read> tensors: array<Tensor>;
@group(0) @binding(5) var<storage, read> rows: array<Row>;
@group(0) @binding(6) var<storage, read> segments: array<Segment>;
// per row of the whole table: Σθ², ΣU²; then each tensor's scales
// (Tensor.scales); then a partial Σ G² per line segment (Segment.slot)
@group(0) @binding(7) var<storage, read_write> sums: array<f32>;

// row_var or col_var of line sg.index + j of a segment's slab (j > 0: a
// strip's), from the line's Σ G².
fn store_line_mean(t: Tensor, sg: Segment, j: u32, total: f32) {
    if (sg.column == 0u) {
        let at = t.state + sg.slab * t.rows + sg.index + j;
        state[at] = lerp(state[at], total / f32(t.cols), s.w);
    } else {
        let at = t.state + t.slabs * t.rows + sg.slab * t.cols + sg.index + j;
        state[at] = lerp(state[at], total / f32(t.rows), s.w);
    }
}

// Σ G² over a segment of line sg.index + j: the line's mean if it is the
// line's only segment, else its partial sum (slot sg.slot + j).
fn keep_segment_sum(t: Tensor, sg: Segment, j: u32, total: f32) {
    if (sg.segs == 1u) {
        store_line_mean(t, sg, j, total);
    } else {
        sums[sg.slot + j] = total;
    }
}

// On a line's last segment: the means of its `width` lines (a strip's
// columns, else one) from their segments' partial sums in order, each
// line's slots `spacing` apart (a strip's: UNIT).
fn store_split_means(sg: Segment, width: u32, spacing: u32) {
    let t = tensors[sg.tensor];
    for (var j = 0u; j < width; j++) {
        var total = 0.0;
        for (var k = sg.slot + j - (sg.segs - 1u) * spacing; k <= sg.slot + j; k += spacing) {
            total = total + sums[k];
        }
        store_line_mean(t, sg, j, total);
    }
}

// Columns of a strip: UNIT from its first, fewer at a slab's last
// columns (a `general` tensor's), one for a row.
fn strip_width(t: Tensor, sg: Segment) -> u32 {
    return select(1u, min(UNIT, t.cols - sg.index), sg.column != 0u);
}

// A `general` tensor's segment, in element order: a row's, or a strip's of
// up to UNIT columns (Segment.index its first), each column's elements
// summed in row order; its sums kept by keep_segment_sum.
@compute @workgroup_size(64)
fn line_segments(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= arrayLength(&segments)) { return; }
    let sg = segments[gid.x];
    let t = tensors[sg.tensor];
    let base = t.grad + sg.slab * t.rows * t.cols;
    if (sg.column == 0u) {
        var at = base + sg.index * t.cols + sg.first;
        var total = 0.0;
        for (var k = 0u; k < sg.count; k++) {
            let g = at_grad(at + k);
            total = total + g * g;
        }
        keep_segment_sum(t, sg, 0u, total);
        return;
    }
    let width = strip_width(t, sg);
    var at = base + sg.first * t.cols + sg.index;
    var acc: Unit;
    for (var k = 0u; k < sg.count; k++) {
        for (var j = 0u; j < UNIT; j++) {
            if (j < width) {
                let g = at_grad(at + j);
                acc[j / 4u][j % 4u] = acc[j / 4u][j % 4u] + g * g;
            }
        }
        at = at + t.cols;
    }
    keep_strip_sums(t, sg, acc, width);
}

// A strip's segment sums, a column of the `width` at a time.
fn keep_strip_sums(t: Tensor, sg: Segment, acc: Unit, width: u32) {
    for (var j = 0u; j < width; j++) {
        keep_segment_sum(t, sg, j, acc[j / 4u][j % 4u]);
    }
}

// On the last segment of each line or strip of several: the means of G²
// from its segments' partial sums in order (launched only where there are
// such lines; both segment tables, `general` and `lined`).
@compute @workgroup_size(64)
fn line_means(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= arrayLength(&segments)) { return; }
    let sg = segments[gid.x];
    if (sg.segs > 1u) {
        store_split_means(sg, strip_width(tensors[sg.tensor], sg), select(1u, UNIT, sg.column != 0u));
    }
}

// A `lined` tensor's segment (C a multiple of UNIT): a row's, UNIT
// elements per load along it, or a strip's of UNIT columns (Segment.index
// its first), a unit per row. Lane j of the unit accumulator sums elements
// j, j + UNIT, … of a row segment in order (its total: the UNIT sums as a
// tree), or column index + j of a strip.
@compute @workgroup_size(64)
fn line_units(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= arrayLength(&segments)) { return; }
    let sg = segments[gid.x];
    let t = tensors[sg.tensor];
    let base = t.grad + sg.slab * t.rows * t.cols;
    let strip = sg.column != 0u;
    var at = select(base + sg.index * t.cols + sg.first, base + sg.first * t.cols + sg.index, strip);
    let stride = select(UNIT, t.cols, strip);
    var acc: Unit;
    for (var k = 0u; k < select(sg.count / UNIT, sg.count, strip); k++) {
        let g = ld_grad(at, UNIT);
        for (var h = 0u; h < UNIT / 4u; h++) {
            acc[h] = acc[h] + g[h] * g[h];
        }
        at = at + stride;
    }
    if (!strip) {
        keep_segment_sum(t, sg, 0u, unit_total(acc));
        return;
    }
    keep_strip_sums(t, sg, acc, UNIT);
}

// A unit's values summed as a tree of vec4 halves.
fn unit_total(u: Unit) -> f32 {
    var total = 0.0;
    for (var h = 0u; h < UNIT / 4u; h++) {
        total = total + ((u[h].x + u[h].y) + (u[h].z + u[h].w));
    }
    return total;
}

// The clamped mean of the slab line_scales is at, for every lane.
var<workgroup> slab_mean: f32;

// One workgroup per tensor: each line's scale row_var / m (sums[scales + 1
// + line], line = b·R + r), m = max(mean(row_var), eps1) of its slab b,
// the mean summed in a fixed order: with slab_tree a slab at a time, lane
// lid taking rows lid, lid + TOTAL_WG, … then total_sum's tree; else a lane
// per slab, its R rows in order.
@compute @workgroup_size(TOTAL_WG)
fn line_scales(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = tensors[wid.x];
    if (t.factored == 0u) { return; }
    if (t.slab_tree == 0u) {
        for (var b = lid; b < t.slabs; b += TOTAL_WG) {
            var total = 0.0;
            for (var r = 0u; r < t.rows; r++) {
                total = total + state[t.state + b * t.rows + r];
            }
            store_scales(t, b, 0u, 1u, max(total / f32(t.rows), s.eps1));
        }
        return;
    }
    for (var b = 0u; b < t.slabs; b++) {
        var acc = 0.0;
        for (var r = lid; r < t.rows; r += TOTAL_WG) {
            acc = acc + state[t.state + b * t.rows + r];
        }
        let total = total_sum(vec2<f32>(acc, 0.0), lid).x;
        if (lid == 0u) {
            slab_mean = max(total / f32(t.rows), s.eps1);
        }
        workgroupBarrier();
        store_scales(t, b, lid, TOTAL_WG, slab_mean);
    }
}

// The scales of slab b's rows first, first + stride, … over its mean m.
fn store_scales(t: Tensor, b: u32, first: u32, stride: u32, m: f32) {
    for (var r = first; r < t.rows; r += stride) {
        let line = b * t.rows + r;
        sums[t.scales + 1u + line] = state[t.state + line] / m;
    }
}

// One workgroup per tensor: α = max(eps2, RMS(θ))·rho and the step
// α / max(1, RMS(U)/d), from its rows' partial Σθ², ΣU².
@compute @workgroup_size(TOTAL_WG)
fn step_size(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = tensors[wid.x];
    let total = tensor_total(t.first_row, rows_of(t.numel), lid);
    if (lid == 0u) {
        let alpha = max(s.eps2, sqrt(total.x / f32(t.numel))) * s.rho;
        let rms = sqrt(total.y / f32(t.numel));
        sums[t.scales] = alpha / max(1.0, rms / s.d);
    }
}
