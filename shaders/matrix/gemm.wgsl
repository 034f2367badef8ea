// Batched matrix multiply over one scratch buffer (Muon's Newton–Schulz
// iteration): for every item b of the batch (workgroup z),
//   C_b = alpha·A_b·B_b + beta·D_b
// with A_b (m×k) and B_b (k×n) read through strides (so a transpose is a
// stride swap) and C_b, D_b row-major m×n. Every element is accumulated in
// f32 over k in order, so both kernels give the same values
// (deterministic). Items are described in a uniform buffer, so every branch
// before a barrier is uniform.
//
//   tiles:  a workgroup of 16×16 invocations computes a 16×16 tile of C_b,
//           walking k in 16-wide tiles staged in workgroup memory (for GPUs)
//   blocks: each of 8×8 invocations computes an 8×8 block of C_b from
//           registers: 16 loads feed 64 multiply-adds, no workgroup memory
//           and no barrier (for CPU adapters, which run a barrier as serial
//           context switches: 0.74 GFLOP/s with tiles on lavapipe, 5.5 with
//           blocks)

const TILE: u32 = 16u;
const BLOCK: u32 = 8u;
const WG_SIDE: u32 = 8u;

struct Item {
    m: u32, n: u32, k: u32, a_off: u32,
    a_rs: u32, a_cs: u32, b_off: u32, b_rs: u32,
    b_cs: u32, d_off: u32, c_off: u32, pad: u32,
}

struct Batch {
    alpha: f32,
    beta: f32,
    count: u32,
    pad: u32,
    items: array<Item, MAX_ITEMS>,
}

@group(0) @binding(0) var<uniform> batch: Batch;
@group(0) @binding(1) var<storage, read_write> mem: array<f32>;

var<workgroup> tile_a: array<array<f32, TILE>, TILE>;   // [row][k]
var<workgroup> tile_b: array<array<f32, TILE>, TILE>;   // [k][col]

@compute @workgroup_size(TILE, TILE)
fn tiles(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    if (wid.z >= batch.count) { return; }
    let g = batch.items[wid.z];
    let row0 = wid.y * TILE;
    let col0 = wid.x * TILE;
    if (row0 >= g.m || col0 >= g.n) { return; }
    let r = row0 + lid.y;
    let c = col0 + lid.x;
    var acc = 0.0;
    for (var k0 = 0u; k0 < g.k; k0 += TILE) {
        let ka = k0 + lid.x;
        var a = 0.0;
        if (r < g.m && ka < g.k) { a = mem[g.a_off + r * g.a_rs + ka * g.a_cs]; }
        tile_a[lid.y][lid.x] = a;
        let kb = k0 + lid.y;
        var b = 0.0;
        if (kb < g.k && c < g.n) { b = mem[g.b_off + kb * g.b_rs + c * g.b_cs]; }
        tile_b[lid.y][lid.x] = b;
        workgroupBarrier();
        for (var kk = 0u; kk < TILE; kk++) {
            acc = acc + tile_a[lid.y][kk] * tile_b[kk][lid.x];
        }
        workgroupBarrier();
    }
    if (r < g.m && c < g.n) {
        var v = batch.alpha * acc;
        if (batch.beta != 0.0) {
            v = v + batch.beta * mem[g.d_off + r * g.n + c];
        }
        mem[g.c_off + r * g.n + c] = v;
    }
}

@compute @workgroup_size(WG_SIDE, WG_SIDE)
fn blocks(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    if (wid.z >= batch.count) { return; }
    let g = batch.items[wid.z];
    let r0 = (wid.y * WG_SIDE + lid.y) * BLOCK;
    let c0 = (wid.x * WG_SIDE + lid.x) * BLOCK;
    if (r0 >= g.m || c0 >= g.n) { return; }
    // Rows and columns past the edge read the last one and are not written.
    let last_r = vec4<u32>(g.m - 1u);
    let last_c = vec4<u32>(g.n - 1u);
    let a_lo = min(vec4<u32>(r0, r0 + 1u, r0 + 2u, r0 + 3u), last_r) * g.a_rs + g.a_off;
    let a_hi = min(vec4<u32>(r0 + 4u, r0 + 5u, r0 + 6u, r0 + 7u), last_r) * g.a_rs + g.a_off;
    let b_lo = min(vec4<u32>(c0, c0 + 1u, c0 + 2u, c0 + 3u), last_c) * g.b_cs + g.b_off;
    let b_hi = min(vec4<u32>(c0 + 4u, c0 + 5u, c0 + 6u, c0 + 7u), last_c) * g.b_cs + g.b_off;
    var l0 = vec4<f32>(0.0); var h0 = vec4<f32>(0.0);
    var l1 = vec4<f32>(0.0); var h1 = vec4<f32>(0.0);
    var l2 = vec4<f32>(0.0); var h2 = vec4<f32>(0.0);
    var l3 = vec4<f32>(0.0); var h3 = vec4<f32>(0.0);
    var l4 = vec4<f32>(0.0); var h4 = vec4<f32>(0.0);
    var l5 = vec4<f32>(0.0); var h5 = vec4<f32>(0.0);
    var l6 = vec4<f32>(0.0); var h6 = vec4<f32>(0.0);
    var l7 = vec4<f32>(0.0); var h7 = vec4<f32>(0.0);
    for (var k = 0u; k < g.k; k++) {
        let ka = k * g.a_cs;
        let kb = k * g.b_rs;
        let lo = vec4<f32>(mem[b_lo.x + kb], mem[b_lo.y + kb], mem[b_lo.z + kb], mem[b_lo.w + kb]);
        let hi = vec4<f32>(mem[b_hi.x + kb], mem[b_hi.y + kb], mem[b_hi.z + kb], mem[b_hi.w + kb]);
        let alo = vec4<f32>(mem[a_lo.x + ka], mem[a_lo.y + ka], mem[a_lo.z + ka], mem[a_lo.w + ka]);
        let ahi = vec4<f32>(mem[a_hi.x + ka], mem[a_hi.y + ka], mem[a_hi.z + ka], mem[a_hi.w + ka]);
        l0 = l0 + alo.x * lo; h0 = h0 + alo.x * hi;
        l1 = l1 + alo.y * lo; h1 = h1 + alo.y * hi;
        l2 = l2 + alo.z * lo; h2 = h2 + alo.z * hi;
        l3 = l3 + alo.w * lo; h3 = h3 + alo.w * hi;
        l4 = l4 + ahi.x * lo; h4 = h4 + ahi.x * hi;
        l5 = l5 + ahi.y * lo; h5 = h5 + ahi.y * hi;
        l6 = l6 + ahi.z * lo; h6 = h6 + ahi.z * hi;
        l7 = l7 + ahi.w * lo; h7 = h7 + ahi.w * hi;
    }
    let acc = array<vec4<f32>, 16>(l0, h0, l1, h1, l2, h2, l3, h3, l4, h4, l5, h5, l6, h6, l7, h7);
    for (var i = 0u; i < BLOCK; i++) {
        let r = r0 + i;
        if (r >= g.m) { break; }
        for (var j = 0u; j < BLOCK; j++) {
            let c = c0 + j;
            if (c >= g.n) { break; }
            var v = batch.alpha * acc[2u * i + j / 4u][j % 4u];
            if (batch.beta != 0.0) {
                v = v + batch.beta * mem[g.d_off + r * g.n + c];
            }
            mem[g.c_off + r * g.n + c] = v;
        }
    }
}
