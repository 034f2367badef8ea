// Unfused baseline (benchmarks only, not an update rule): one elementwise
// operation per dispatch, as PyTorch's single-tensor (for-loop, non-fused)
// optimizers launch them. OP selects the operation; x is written, y and z
// are read. vec4 loads; the host pads buffers to whole vec4s.
override OP: u32 = 0u;
override WG: u32 = 256u;

struct Scalars {
    a: f32,
    _r: f32,
    n4: u32,      // vec4s to process
    groups_x: u32,
}

@group(0) @binding(0) var<uniform> s: Scalars;
@group(0) @binding(1) var<storage, read_write> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> y: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> z: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * s.groups_x + wid.x) * WG + lid;
    if (i >= s.n4) { return; }
    let a = s.a;
    switch OP {
        case 0u: { x[i] = x[i] * a; }                      // mul_(a)
        case 1u: { x[i] = x[i] + a * y[i]; }               // add_(y, alpha=a)
        case 2u: { x[i] = x[i] + a * (y[i] - x[i]); }      // lerp_(y, a)
        case 3u: { x[i] = x[i] + a * y[i] * z[i]; }        // addcmul_(y, z, value=a)
        case 4u: { x[i] = sqrt(y[i]); }                    // x = y.sqrt()
        case 5u: { x[i] = x[i] / a; }                      // div_(a)
        case 6u: { x[i] = x[i] + a; }                      // add_(a)
        case 7u: { x[i] = x[i] + a * y[i] / z[i]; }        // addcdiv_(y, z, value=a)
        case 8u: { x[i] = x[i] / y[i]; }                   // div_(y)
        case 9u: { x[i] = x[i] * y[i]; }                   // mul_(y)
        case 10u: { x[i] = y[i] + a * z[i]; }              // x = y.add(z, alpha=a)
        case 11u: { x[i] = sqrt(x[i]); }                   // sqrt_()
        case 12u: { x[i] = y[i] + a; }                     // x = y.add(a)
        default: {}
    }
}
