// A weight EMA over many tensors (torch.optim.swa_utils.AveragedModel with
// get_ema_multi_avg_fn): the first update copies θ into the average, each
// later one is `torch._foreach_lerp_(ema, θ, 1 − decay)`. Workgroup b handles
// row b of the row table (src/matrix/rows.rs); one dispatch per param buffer.
//
// struct Scalars is generated from the Rust declaration (src/ema.rs); Row,
// PER_LANE and lerp (PyTorch's) come from shaders/matrix/rows.wgsl.

struct Tensor {
    param: u32,          // element offset in the bound param buffer
    ema: u32,            // element offset in the average buffer
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> s: Scalars;
// Bindings 1 (param) and 2 (the averages) and their accessors ld_X / st_X
// are generated (rows::RowAccess::operands): scalar, vec4 or wide access.
@group(0) @binding(3) var<storage, read> tensors: array<Tensor>;
@group(0) @binding(4) var<storage, read> rows: array<Row>;

// Units of UNIT consecutive elements (4, or 8 with the wide access): unit c
// of invocation lid at (c·WG + lid)·UNIT of the row, handled as vec4 halves.
@compute @workgroup_size(WG)
fn update(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = rows[wid.x];
    let t = tensors[row.tensor];
    for (var c = 0u; c < PER_LANE / UNIT; c++) {
        let i = (c * WG + lid) * UNIT;
        if (i >= row.len) { break; }
        let n = min(UNIT, row.len - i);
        let e = row.start + i;
        var v = ld_param(t.param + e, n);
        if (s.copy == 0u) {
            let a = ld_ema(t.ema + e, n);
            for (var h = 0u; h < UNIT / 4u; h++) {
                let x = v[h];
                v[h] = vec4<f32>(lerp(a[h].x, x.x, s.weight), lerp(a[h].y, x.y, s.weight), lerp(a[h].z, x.z, s.weight), lerp(a[h].w, x.w, s.weight));
            }
        }
        st_ema(t.ema + e, v, n);
    }
}
