// Adafactor's element passes, one copy per kind of tensor (src/matrix/
// adafactor/kinds.rs replaces KIND): `lined` (factored, C a multiple of
// UNIT: a unit lies in one line), `general` (factored, any C) and `flat`
// (unfactored). lavapipe (Mesa 22.3's gallivm) runs both sides of every
// branch under a lane mask, so a pass holding every kind's code paid for
// all three; each kind's rows are dispatched to its own entry points.
// Each invocation takes units of UNIT consecutive elements (4, or 8 with
// the wide access), unit c at (c·WG + lid)·UNIT of its row, as vec4 halves.
//
//   norms:  variance ← lerp(variance, G², w) (flat);
//           U = G / max(√V, eps1), V = scale·col_var (line_scales) or variance; partial Σθ², ΣU² per row
//   apply:  θ ← θ·(1 − lr·weight_decay) − step·U

// Unit u of a row (at (u)·UNIT): its first element e, its n elements in
// the tensor, G (negated if maximizing), θ and V (the flat kind's
// variance updated first if `update`).
fn load_KIND(t: Tensor, at: Cursor, row: Row, u: u32, update: bool) -> Loaded {
    let i = u * UNIT;
    let n = min(UNIT, row.len - i);
    let e = row.start + i;
    let g = grad_unit(t, e, n);
    return Loaded(e, n, g, ld_param(t.param + e, n), v_KIND(t, at, e, n, g, update));
}

@compute @workgroup_size(WG)
fn norms_KIND(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = rows[wid.x];
    let t = tensors[row.tensor];
    var sq = vec2<f32>(0.0);
    var at = start_KIND(t, row.start + lid * UNIT);
    for (var c = 0u; c < lane_units(row.len, lid); c++) {
        let x = load_KIND(t, at, row, c * WG + lid, true);
        at = next_KIND(t, at);
        for (var h = 0u; h < UNIT / 4u; h++) {
            let live = lanes(x.n, h);
            let tt = select(vec4<f32>(0.0), x.theta[h] * x.theta[h], live);
            let u = update(x.v[h], x.g[h]);
            let uu = select(vec4<f32>(0.0), u * u, live);
            sq = sq + vec2<f32>((tt.x + tt.y) + (tt.z + tt.w), (uu.x + uu.y) + (uu.z + uu.w));
        }
    }
    store_row_sums(sq, row.index, lid);
}

@compute @workgroup_size(WG)
fn apply_KIND(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = rows[wid.x];
    let t = tensors[row.tensor];
    let step = sums[t.scales];
    var at = start_KIND(t, row.start + lid * UNIT);
    for (var c = 0u; c < lane_units(row.len, lid); c++) {
        let x = load_KIND(t, at, row, c * WG + lid, false);
        at = next_KIND(t, at);
        var theta = x.theta;
        for (var h = 0u; h < UNIT / 4u; h++) {
            theta[h] = tail(theta[h], theta[h] * s.decay - step * update(x.v[h], x.g[h]), x.n, h);
        }
        st_param(t.param + x.e, theta, x.n);
    }
}
