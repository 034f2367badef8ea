// A tensor's totals over its rows, for the shaders that keep per-row
// partial sums in `sums` (src/matrix/rows.rs's `totals_source` adds it
// after rows.wgsl, with TOTAL_WG). The per-tensor passes run a workgroup
// of TOTAL_WG per tensor: on a GPU a tensor of 2^24 elements has 4096
// rows, which one invocation would load one after another.

// TOTAL_WG values, then the 8 partial sums.
var<workgroup> part: array<vec2<f32>, 72>;

// Eight values of `part` from `b`, summed as a balanced tree (depth 3).
fn tree8(b: u32) -> vec2<f32> {
    return ((part[b] + part[b + 1u]) + (part[b + 2u] + part[b + 3u])) + ((part[b + 4u] + part[b + 5u]) + (part[b + 6u] + part[b + 7u]));
}

// Sum over a workgroup of TOTAL_WG as a balanced tree of depth 6, the same
// order every time; the total is returned to invocation 0 only. Every
// invocation calls it.
fn total_sum(v: vec2<f32>, lid: u32) -> vec2<f32> {
    part[lid] = v;
    workgroupBarrier();
    if (lid < 8u) {
        part[TOTAL_WG + lid] = tree8(8u * lid);
    }
    workgroupBarrier();
    var total = vec2<f32>(0.0);
    if (lid == 0u) {
        total = tree8(TOTAL_WG);
    }
    return total;
}

// The total of a tensor's per-row partial sums, a pair per row of the
// table in `sums` from 2·first_row on, in a fixed order whatever the
// hardware: lane lid sums rows lid, lid + TOTAL_WG, … in order, then
// total_sum's tree; the total in invocation 0 only.
fn tensor_total(first_row: u32, n_rows: u32, lid: u32) -> vec2<f32> {
    var acc = vec2<f32>(0.0);
    for (var r = lid; r < n_rows; r += TOTAL_WG) {
        let k = 2u * (first_row + r);
        acc = acc + vec2<f32>(sums[k], sums[k + 1u]);
    }
    return total_sum(acc, lid);
}

// A row's pair of partial sums, `v` from every lane, summed by
// workgroup_sum and stored at sums[2·index] by invocation 0. Every
// invocation calls it.
fn store_row_sums(v: vec2<f32>, index: u32, lid: u32) {
    let total = workgroup_sum(v, lid);
    if (lid == 0u) {
        sums[2u * index] = total.x;
        sums[2u * index + 1u] = total.y;
    }
}
