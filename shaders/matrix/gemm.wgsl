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
//   blocks: each of 8×8 invocations computes a B×B block of C_b from
//           registers: 2B loads feed B² multiply-adds, no workgroup memory
//           and no barrier (for CPU adapters, which run a barrier as serial
//           context switches: 0.74 GFLOP/s with tiles on lavapipe, 5.5 with
//           8×8 blocks), and loads a storage buffer lane by lane (Mesa
//           22.3's gallivm), so more multiply-adds per load pay

const TILE: u32 = 16u;

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

// `blocks` is generated for its block size by `matrix::gemm::blocks_kernel`
// (every accumulator a variable of its own: lavapipe keeps an indexed
// array in memory and reads it lane by lane).
