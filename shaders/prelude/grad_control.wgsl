// ---- GradControl: global-norm clipping, unscaling, non-finite skip --------
//
// reduce_grads: one partial per workgroup (sum of squares of the unscaled
// grads of its row, non-finite flag by bit test), in a fixed tree order.
// finalize_grads: one workgroup sums the partials per group in a fixed order,
// then the norm (one over all groups, or each group's with CLIP_PER_GROUP),
// the grad multipliers, found_inf, the skip count and the scale.
// Both are deterministic: the same grads give bitwise the same norms.

var<workgroup> red: array<f32, WG>;
var<workgroup> bad: array<u32, WG>;

fn non_finite(v: vec4<f32>, n: u32) -> u32 {
    var any = 0u;
    for (var k = 0u; k < 4u; k++) {
        if (k < n && (bitcast<u32>(v[k]) & 0x7f800000u) == 0x7f800000u) {
            any = 1u;
        }
    }
    return any;
}

@compute @workgroup_size(WG)
fn reduce_grads(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    var s = 0.0;
    var flag = 0u;
    if (wid.x < table.n_blocks) {
        let row = table.blocks[wid.x];
        let span = row_span(row);
        var inv_scale = 1.0;
        if (has(SCALER)) { inv_scale = 1.0 / control.scale; }
        // 4-element chunks of the row in a fixed order, the same for every
        // access path (so the norms are bitwise those of the vec4 path)
        for (var k = 0u; k < CHUNKS * UNIT / 4u; k++) {
            let first = (k * WG + lid) * 4u;
            if (first < span) {
                let at = row_piece(row, first);
                if (at.w > 0u) {
                    let n = min(4u, at.w);
                    let g = load_grad(at.y, n) * inv_scale;
                    let m = select(vec4<f32>(0.0), g, vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(n));
                    s = s + dot(m, m);
                    flag = flag | non_finite(g, n);
                }
            }
        }
    }
    red[lid] = s;
    bad[lid] = flag;
    workgroupBarrier();
    for (var half = WG / 2u; half > 0u; half = half / 2u) {
        if (lid < half) {
            red[lid] = red[lid] + red[lid + half];
            bad[lid] = bad[lid] | bad[lid + half];
        }
        workgroupBarrier();
    }
    let b = wid.x;
    if (lid == 0u && b < table.n_blocks) {
        let group = row_group(table.blocks[b]);
        control.partials[table.partial_base + b] = vec2<f32>(red[0], bitcast<f32>(group | (bad[0] << 8u)));
    }
}

const FIN: u32 = 256u;
var<workgroup> fsum: array<f32, 2048>;   // 8 groups × FIN
var<workgroup> fbad: array<u32, FIN>;

@compute @workgroup_size(256)
fn finalize_grads(@builtin(local_invocation_index) lid: u32) {
    let total = u.head.partials;
    let per = (total + FIN - 1u) / FIN;
    var acc: array<f32, 8>;
    var flag = 0u;
    for (var i = lid * per; i < min(total, (lid + 1u) * per); i++) {
        let p = control.partials[i];
        let tag = bitcast<u32>(p.y);
        let g = min(tag & 0xffu, MAX_GROUPS - 1u);
        acc[g] = acc[g] + p.x;
        flag = flag | (tag >> 8u);
    }
    for (var g = 0u; g < MAX_GROUPS; g++) {
        fsum[g * FIN + lid] = acc[g];
    }
    fbad[lid] = flag;
    workgroupBarrier();
    for (var half = FIN / 2u; half > 0u; half = half / 2u) {
        if (lid < half) {
            for (var g = 0u; g < MAX_GROUPS; g++) {
                fsum[g * FIN + lid] = fsum[g * FIN + lid] + fsum[g * FIN + lid + half];
            }
            fbad[lid] = fbad[lid] | fbad[lid + half];
        }
        workgroupBarrier();
    }
    if (lid != 0u) { return; }
    let found = fbad[0] != 0u;
    var inv_scale = 1.0;
    if (has(SCALER)) { inv_scale = 1.0 / control.scale; }
    // clip_grad_norm_ over every parameter: the groups' sums added in group
    // order (unused groups hold 0), unless each group is clipped alone
    var every = 0.0;
    for (var g = 0u; g < MAX_GROUPS; g++) {
        every = every + fsum[g * FIN];
    }
    for (var g = 0u; g < MAX_GROUPS; g++) {
        var norm = sqrt(every);
        if (has(CLIP_PER_GROUP)) { norm = sqrt(fsum[g * FIN]); }
        var clip = 1.0;
        if (has(CLIP)) { clip = min(1.0, u.head.max_norm / (norm + u.head.norm_eps)); }
        control.groups[g] = vec4<f32>(norm, inv_scale * clip, 0.0, 0.0);
    }
    if (has(SKIP_NONFINITE)) {
        control.found_inf = select(0u, 1u, found);
        if (found) {
            control.skipped = control.skipped + 1u;
        }
    }
    if (has(SCALER)) {
        // torch.amp.GradScaler.update (_amp_update_scale_)
        if (found) {
            control.scale = control.scale * u.head.backoff_factor;
            control.growth_tracker = 0u;
        } else {
            let clean = control.growth_tracker + 1u;
            if (clean >= u.head.growth_interval) {
                let grown = control.scale * u.head.growth_factor;
                if ((bitcast<u32>(grown) & 0x7f800000u) != 0x7f800000u) {
                    control.scale = grown;
                }
                control.growth_tracker = 0u;
            } else {
                control.growth_tracker = clean;
            }
        }
    }
}
