// Shared by the tensor-wise shaders (src/matrix/rows.rs puts it first, after
// WG and PER_LANE): the row table, PyTorch's lerp, and a fixed-order
// workgroup sum.

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

var<workgroup> red: array<vec2<f32>, WG>;

// Sum over the workgroup in a fixed tree order, two values at once (every
// invocation calls it).
fn workgroup_sum(v: vec2<f32>, lid: u32) -> vec2<f32> {
    red[lid] = v;
    workgroupBarrier();
    for (var half = WG / 2u; half > 0u; half = half / 2u) {
        if (lid < half) {
            red[lid] = red[lid] + red[lid + half];
        }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier();
    return total;
}
