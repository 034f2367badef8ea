// The fused update with f32 or bf16 state (the entry point `main`); the
// unit step `step_unit` comes from shaders/prelude/unit4.wgsl or wide.wgsl.
// 8-bit state has its own entry point (shaders/prelude/q8.wgsl).

// Workgroup b updates table row b (or the pieces of a packed row): CHUNKS units of UNIT elements (4, or 8
// with the wide access path) per invocation, unit k of lane l at element
// (k·WG + l)·UNIT of the row (so the lanes of a workgroup touch consecutive
// memory at each k). Everything that depends only on the row (its group's
// scalars, the grad multiplier, the skip) is read before any lane-dependent
// branch, so the compiler keeps it uniform: one scalar load for the
// workgroup, not one per lane.
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let b = wid.x;
    if (b >= table.n_blocks) { return; }
    state_init();   // per-invocation set-up of the state format (bf16: the rounding hash's base)
    if (has(SKIP_NONFINITE) && control.found_inf != 0u) { return; }   // the whole step is skipped
    let row = table.blocks[b];
    let group = row_group(row);
    let c = step_coeffs(group);
    let grad_scale = grad_multiplier(group);
    let span = row_span(row);
    for (var k = 0u; k < CHUNKS; k++) {
        let first = (k * WG + lid) * UNIT;
        if (first < span) {
            let at = row_piece(row, first);
            if (at.w > 0u) {
                step_unit(c, grad_scale, at.x, at.y, at.z, min(UNIT, at.w));
            }
        }
    }
}
