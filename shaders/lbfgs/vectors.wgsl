// L-BFGS's vector operations over the flat parameter vector (after
// reduce.wgsl). Each dispatch is one `Op` (a dynamic uniform offset); the
// operands are binding ranges: a ring slot of the history, the direction,
// a gradient. Coefficients are read from `scalars` on the GPU, so the
// two-loop recursion runs without the host. Reductions are two passes: a
// fixed number of workgroups each write a partial pair, then one workgroup
// reduces them in a fixed order into `scalars`.

struct Op {
    n: u32,        // vec4s
    stride: u32,   // workgroups · WG of this dispatch (a grid-stride loop)
    kind: u32,     // finish: 1 reduces the first value by max
    groups: u32,   // finish: the partials to reduce
    c0: u32,       // coefficient = host + sign · (scalars[c0] − scalars[c1])
    c1: u32,
    out0: u32,     // finish: scalars[out0] = first · scalars[mul0]
    out1: u32,     // finish: scalars[out1] = second
    mul0: u32,
    host: f32,
    sign: f32,
    pad: u32,
}

// The vectors as vec4s (n rounded up to whole vec4s; the tails past n are
// zero in every vector and stay so, so they add nothing to a sum).
@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> scalars: array<f32>;
@group(0) @binding(4) var<storage, read_write> partials: array<vec2<f32>>;
@group(1) @binding(0) var<uniform> op: Op;

fn coefficient() -> f32 {
    return op.host + op.sign * (scalars[op.c0] - scalars[op.c1]);
}

// (Σ a·b, Σ a·a) over this workgroup's share.
@compute @workgroup_size(WG)
fn partial_dot(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    var acc = vec2<f32>(0.0);
    for (var i = wg.x * WG + lid; i < op.n; i += op.stride) {
        let x = a[i];
        acc += vec2<f32>(dot(x, b[i]), dot(x, x));
    }
    write_partial(acc, wg.x, lid, false);
}

// (max |a|, Σ |a|) over this workgroup's share.
@compute @workgroup_size(WG)
fn partial_abs(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    var acc = vec2<f32>(0.0);
    for (var i = wg.x * WG + lid; i < op.n; i += op.stride) {
        let x = abs(a[i]);
        acc = vec2<f32>(max(acc.x, max(max(x.x, x.y), max(x.z, x.w))), acc.y + ((x.x + x.y) + (x.z + x.w)));
    }
    write_partial(acc, wg.x, lid, true);
}

@compute @workgroup_size(WG)
fn finish(@builtin(local_invocation_index) lid: u32) {
    let total = partials_total(op.groups, lid, op.kind == 1u);
    if (lid == 0u) {
        scalars[op.out0] = total.x * scalars[op.mul0];
        scalars[op.out1] = total.y;
    }
}

// out = c·a (d = −g, s = t·d).
@compute @workgroup_size(WG)
fn set_scaled(@builtin(global_invocation_id) id: vec3<u32>) {
    let c = coefficient();
    for (var i = id.x; i < op.n; i += op.stride) {
        out[i] = c * a[i];
    }
}

// out += c·a (the two loops' updates).
@compute @workgroup_size(WG)
fn add_scaled(@builtin(global_invocation_id) id: vec3<u32>) {
    let c = coefficient();
    for (var i = id.x; i < op.n; i += op.stride) {
        out[i] = out[i] + c * a[i];
    }
}

// out += c·a, and (Σ b·out, Σ b·b) of the updated out over this
// workgroup's share (partial_dot's lanes and order): one loop's update
// fused with the next pair's dot product.
@compute @workgroup_size(WG)
fn add_scaled_dot(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let c = coefficient();
    var acc = vec2<f32>(0.0);
    for (var i = wg.x * WG + lid; i < op.n; i += op.stride) {
        let q = out[i] + c * a[i];
        out[i] = q;
        let x = b[i];
        acc += vec2<f32>(dot(x, q), dot(x, x));
    }
    write_partial(acc, wg.x, lid, false);
}

// out = c·out (d = H_diag·q).
@compute @workgroup_size(WG)
fn scale(@builtin(global_invocation_id) id: vec3<u32>) {
    let c = coefficient();
    for (var i = id.x; i < op.n; i += op.stride) {
        out[i] = c * out[i];
    }
}

// out = a − b (y = g − g_prev).
@compute @workgroup_size(WG)
fn diff(@builtin(global_invocation_id) id: vec3<u32>) {
    for (var i = id.x; i < op.n; i += op.stride) {
        out[i] = a[i] - b[i];
    }
}

// out = a + c·b (x0 + t·d).
@compute @workgroup_size(WG)
fn moved(@builtin(global_invocation_id) id: vec3<u32>) {
    let c = coefficient();
    for (var i = id.x; i < op.n; i += op.stride) {
        out[i] = a[i] + c * b[i];
    }
}
