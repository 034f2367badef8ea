// Blockwise 8-bit optimizer state (StateFormat::Int8Blockwise), in the
// style of bitsandbytes: each state value is a byte code into a 256-entry
// dynamic map (quant::dynamic_map; signed for slots in head.signed_mask,
// unsigned otherwise) times the absmax of its block; second-moment slots
// are quantised as √x (head.signed_mask bits 8–10). A block is one
// workgroup row (4·WG elements of one tensor), so the absmax is a
// workgroup reduction, and each chunk of 4 values is one u32 of codes. The
// maps sit at the start of `factors` (64 vec4 each). Codes and block scales
// share the state buffer: scales from table.scale_offset on. The codes of
// values are computed in shaders/prelude/q8_code.wgsl.

struct Chunk {
    valid: bool,
    p: u32,      // element index of lane 0 in param
    g: u32,      // element index of lane 0 in grad
    s: u32,      // element index of lane 0 in the state buffers
    n: u32,      // valid lanes, 1..4
    group: u32,  // param group of this chunk
}

// Maps (workgroup, lane) to one chunk of one tensor: workgroup b updates the
// elements of table row b (uniform across the workgroup). The host launches
// at most 1023 workgroups per table chunk, so any size fits the grid.
fn locate(wid: vec3<u32>, lid: u32) -> Chunk {
    var e: Chunk;
    e.valid = false;
    let b = wid.x;
    if (b >= table.n_blocks) {
        return e;
    }
    let row = table.blocks[b];
    let len = row.w & 0xffffu;
    let first = lid * 4u;
    if (first >= len) {
        return e;
    }
    e.valid = true;
    e.p = row.x + first;
    e.g = row.y + first;
    e.s = row.z + first;
    e.n = min(4u, len - first);
    e.group = min(row.w >> 16u, MAX_GROUPS - 1u);
    return e;
}

var<private> q8_scale: array<f32, 3>;
var<workgroup> q8_red: array<f32, WG>;
// Both maps, copied from `factors` once per workgroup: signed at 0, unsigned at 256.
var<workgroup> q8_map: array<f32, 512>;

fn q8_entry(base: u32, code: u32) -> f32 {
    return q8_map[base + code];
}

fn q8_scale_index(i: u32) -> u32 {
    return table.scale_offset + i / (4u * WG);
}

fn q8_base(slot: u32) -> u32 {
    return select(256u, 0u, ((u.head.signed_mask >> slot) & 1u) != 0u);
}

// Second-moment slots are quantised as √x (see quant::Coding).
fn q8_sqrt_domain(slot: u32) -> bool {
    return ((u.head.signed_mask >> (8u + slot)) & 1u) != 0u;
}

fn q8_decode(w: u32, scale: f32, slot: u32) -> vec4<f32> {
    let b = q8_base(slot);
    let v = scale * vec4<f32>(q8_entry(b, w & 0xffu), q8_entry(b, (w >> 8u) & 0xffu), q8_entry(b, (w >> 16u) & 0xffu), q8_entry(b, w >> 24u));
    if (q8_sqrt_domain(slot)) {
        return v * v;
    }
    return v;
}

// The value that is quantised: x, or √x for second-moment slots.
fn q8_domain(v: vec4<f32>, slot: u32) -> vec4<f32> {
    if (q8_sqrt_domain(slot)) {
        return sqrt(max(v, vec4<f32>(0.0)));
    }
    return v;
}

fn q8_encode(v: vec4<f32>, scale: f32, slot: u32) -> u32 {
    let b = q8_base(slot);
    var x = vec4<f32>(0.0);
    if (scale > 0.0) { x = q8_domain(v, slot) / scale; }
    return q8_code(x.x, b) | (q8_code(x.y, b) << 8u) | (q8_code(x.z, b) << 16u) | (q8_code(x.w, b) << 24u);
}

fn lane_absmax(v: vec4<f32>, n: u32) -> f32 {
    let a = select(vec4<f32>(0.0), abs(v), vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(n));
    return max(max(a.x, a.y), max(a.z, a.w));
}

// Max over the workgroup (every invocation must call it). Two levels, three
// barriers (barriers are what costs on CPU adapters): 16 partial maxima of
// WG/16 lanes each, then every lane takes the max of the 16.
var<workgroup> q8_part: array<f32, 16>;

fn block_absmax(v: f32, lid: u32) -> f32 {
    q8_red[lid] = v;
    workgroupBarrier();
    let per = max(WG / 16u, 1u);
    if (lid < 16u) {
        var m = 0.0;
        for (var k = lid * per; k < min(WG, (lid + 1u) * per); k++) {
            m = max(m, q8_red[k]);
        }
        q8_part[lid] = m;
    }
    workgroupBarrier();
    var m = 0.0;
    for (var k = 0u; k < 16u; k++) {
        m = max(m, q8_part[k]);
    }
    workgroupBarrier();
    return m;
}

// The fused update with 8-bit state: as `main`, then a block absmax per
// state slot and the stores. No early return before the reductions.
@compute @workgroup_size(WG)
fn main_q8(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    for (var k = lid; k < 512u; k += WG) {
        q8_map[k] = factors[k >> 2u][k & 3u];
    }
    workgroupBarrier();
    let e = locate(wid, lid);
    var x: Lanes;
    if (e.valid) {
        x.p = load_param(e.p, e.n);
        x.g = load_grad(e.g, e.n);
        if (state_used(0u)) { x.s0 = load_state0(e.s, e.n); }
        if (state_used(1u)) { x.s1 = load_state1(e.s, e.n); }
        if (state_used(2u)) { x.s2 = load_state2(e.s, e.n); }
        if (has(CLIP | SCALER)) {
            x.g = x.g * control.groups[e.group].y;
        }
        var c = u.groups[e.group];
        if (has(SKIP_NONFINITE)) {
            c = at_step(c, factors[u.head.factor_base + device_step() * u.head.n_groups + e.group]);
        }
        update(c, &x);
    }
    let n = select(0u, e.n, e.valid);
    if (state_used(0u)) { q8_scale[0] = block_absmax(lane_absmax(q8_domain(x.s0, 0u), n), lid); }
    if (state_used(1u)) { q8_scale[1] = block_absmax(lane_absmax(q8_domain(x.s1, 1u), n), lid); }
    if (state_used(2u)) { q8_scale[2] = block_absmax(lane_absmax(q8_domain(x.s2, 2u), n), lid); }
    if (!e.valid || (has(SKIP_NONFINITE) && control.found_inf != 0u)) { return; }
    store_param(e.p, e.n, x.p);
    if (state_used(0u)) {
        store_state0(e.s, e.n, x.s0);
        if (lid == 0u) { store_scale_state0(e.s); }
    }
    if (state_used(1u)) {
        store_state1(e.s, e.n, x.s1);
        if (lid == 0u) { store_scale_state1(e.s); }
    }
    if (state_used(2u)) {
        store_state2(e.s, e.n, x.s2);
        if (lid == 0u) { store_scale_state2(e.s); }
    }
}
