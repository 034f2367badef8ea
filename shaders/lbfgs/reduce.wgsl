// Shared by the L-BFGS shaders (src/lbfgs/kernels.rs puts it first): a
// workgroup of WG invocations reduces two values at once in a fixed order,
// the first by sum or by max, the second by sum. A reduction is two passes
// over the including shader's `partials: array<vec2<f32>>`: each workgroup
// writes its share's pair (`write_partial`), then one workgroup reduces
// them (`partials_total`).

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

// This workgroup's pair into partials[wg].
fn write_partial(acc: vec2<f32>, wg: u32, lid: u32, max_x: bool) {
    let total = workgroup_reduce(acc, lid, max_x);
    if (lid == 0u) {
        partials[wg] = total;
    }
}

// The first `groups` partials reduced (to invocation 0 only).
fn partials_total(groups: u32, lid: u32, max_x: bool) -> vec2<f32> {
    var v = vec2<f32>(0.0);
    if (lid < groups) {
        v = partials[lid];
    }
    return workgroup_reduce(v, lid, max_x);
}
