// The adapter's arithmetic peak (benchmarks only): each invocation runs
// ITERS steps of four independent vec4 multiply-add chains (32 flops per
// step), with no memory traffic but one store at the end to keep the
// result alive.
override WG: u32 = 256u;
override ITERS: u32 = 1024u;

@group(0) @binding(0) var<storage, read_write> out: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let seed = f32(gid.x) * 1e-7;
    var a = vec4<f32>(seed, seed + 0.1, seed + 0.2, seed + 0.3);
    var b = a + 0.5;
    var c = a + 0.25;
    var d = a + 0.75;
    let m = vec4<f32>(0.999);
    let k = vec4<f32>(1e-4);
    for (var i = 0u; i < ITERS; i++) {
        a = fma(a, m, k);
        b = fma(b, m, k);
        c = fma(c, m, k);
        d = fma(d, m, k);
    }
    out[gid.x] = a + b + c + d;
}
