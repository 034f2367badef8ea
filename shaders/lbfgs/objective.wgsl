// The objectives of `wgpu-optim run --optimizer lbfgs` (after
// reduce.wgsl): the gradient into `g` and the loss into `loss[0]`, summed
// in a fixed order (per-workgroup partials, then one workgroup).
//   quadratic (kind 0): f = ½ xᵀAx − bᵀx, g = Ax − b (A row-major n×n)
//   rosenbrock (kind 1): f = Σᵢ 100(xᵢ₊₁ − xᵢ²)² + (1 − xᵢ)², chained

struct Dims {
    n: u32,
    kind: u32,
    groups: u32,   // workgroups of `terms`
    pad: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> g: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> bvec: array<f32>;
@group(0) @binding(4) var<storage, read_write> partials: array<vec2<f32>>;
@group(0) @binding(5) var<storage, read_write> loss: array<f32>;
@group(0) @binding(6) var<uniform> dims: Dims;

// Writes g[i] and returns element i's share of the loss.
fn quadratic(i: u32) -> f32 {
    var ax = 0.0;
    for (var j = 0u; j < dims.n; j++) {
        ax += a[i * dims.n + j] * x[j];
    }
    g[i] = ax - bvec[i];
    return 0.5 * x[i] * ax - bvec[i] * x[i];
}

fn rosenbrock(i: u32) -> f32 {
    let xi = x[i];
    var grad = 0.0;
    var term = 0.0;
    if (i + 1u < dims.n) {
        let r = x[i + 1u] - xi * xi;
        term = 100.0 * r * r + (1.0 - xi) * (1.0 - xi);
        grad = -400.0 * xi * r - 2.0 * (1.0 - xi);
    }
    if (i > 0u) {
        grad += 200.0 * (xi - x[i - 1u] * x[i - 1u]);
    }
    g[i] = grad;
    return term;
}

@compute @workgroup_size(WG)
fn terms(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    var acc = 0.0;
    for (var i = wg.x * WG + lid; i < dims.n; i += dims.groups * WG) {
        if (dims.kind == 0u) {
            acc += quadratic(i);
        } else {
            acc += rosenbrock(i);
        }
    }
    write_partial(vec2<f32>(acc, 0.0), wg.x, lid, false);
}

@compute @workgroup_size(WG)
fn total(@builtin(local_invocation_index) lid: u32) {
    let sum = partials_total(dims.groups, lid, false);
    if (lid == 0u) {
        loss[0] = sum.x;
    }
}
