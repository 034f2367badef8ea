// Shared by the L-BFGS shaders (src/lbfgs/kernels.rs puts it first): a
// workgroup of WG invocations reduces two values at once in a fixed order,
// the first by sum or by max, the second by sum.

const WG: u32 = 256u;

var<workgroup> red: array<vec2<f32>, WG>;

fn combine(u: vec2<f32>, v: vec2<f32>, max_x: bool) -> vec2<f32> {
    return vec2<f32>(select(u.x + v.x, max(u.x, v.x), max_x), u.y + v.y);
}

// A balanced tree over the workgroup (depth 8, the same order every time);
// the total is returned to invocation 0 only. Every invocation calls it.
fn workgroup_reduce(v: vec2<f32>, lid: u32, max_x: bool) -> vec2<f32> {
    red[lid] = v;
    workgroupBarrier();
    for (var half = WG / 2u; half > 0u; half = half / 2u) {
        if (lid < half) {
            red[lid] = combine(red[lid], red[lid + half], max_x);
        }
        workgroupBarrier();
    }
    return red[0];
}
