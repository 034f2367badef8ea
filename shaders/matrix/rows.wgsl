// Shared by the tensor-wise shaders (src/matrix/rows.rs puts it first, after
// WG and PER_LANE): the row table, PyTorch's lerp, a fixed-order workgroup
// sum, a lane's count of a row's elements and a tensor's count of rows.

// A row of the row table: up to PER_LANE·WG consecutive elements of one
// tensor, handled by one workgroup.
struct Row {
    tensor: u32,
    start: u32,          // first element of the tensor the row covers
    len: u32,
    index: u32,          // the row's index in the whole table (its partial-sum slot)
}

// PyTorch's lerp (ATen Lerp.h): the branch on the weight matters for rounding.
fn lerp(a: f32, b: f32, w: f32) -> f32 {
    if (w < 0.5) {
        return a + w * (b - a);
    }
    return b - (b - a) * (1.0 - w);
}

// WG values, then the 16 partial sums.
var<workgroup> red: array<vec2<f32>, WG + 16u>;

// Sixteen values of `red` from `b`, summed as a balanced tree (depth 4).
fn tree16(b: u32) -> vec2<f32> {
    let q0 = (red[b] + red[b + 1u]) + (red[b + 2u] + red[b + 3u]);
    let q1 = (red[b + 4u] + red[b + 5u]) + (red[b + 6u] + red[b + 7u]);
    let q2 = (red[b + 8u] + red[b + 9u]) + (red[b + 10u] + red[b + 11u]);
    let q3 = (red[b + 12u] + red[b + 13u]) + (red[b + 14u] + red[b + 15u]);
    return (q0 + q1) + (q2 + q3);
}

// Sum over the workgroup (WG = 256) as a balanced tree of depth 8, the
// same order every time, two values at once; the total is returned to
// invocation 0 only. Two levels of 16 with two barriers, where a tree of
// single steps takes ten: a CPU adapter runs each barrier slowly. Every
// invocation calls it.
fn workgroup_sum(v: vec2<f32>, lid: u32) -> vec2<f32> {
    red[lid] = v;
    workgroupBarrier();
    if (lid < 16u) {
        red[WG + lid] = tree16(16u * lid);
    }
    workgroupBarrier();
    var total = vec2<f32>(0.0);
    if (lid == 0u) {
        total = tree16(WG);
    }
    return total;
}

// How many of a row's `len` elements lane lid takes one at a time
// (elements lid, lid + WG, …, at most PER_LANE): a loop bounded by it, not
// by PER_LANE with a test inside, costs a short row's idle lanes nothing
// (on lavapipe Adafactor over 1000 tensors went from 184 to 81 ms a step).
fn lane_elements(len: u32, lid: u32) -> u32 {
    return min(PER_LANE, (len + WG - 1u - lid) / WG);
}

// Rows of the table a tensor of `numel` elements takes.
fn rows_of(numel: u32) -> u32 {
    return (numel + PER_LANE * WG - 1u) / (PER_LANE * WG);
}
