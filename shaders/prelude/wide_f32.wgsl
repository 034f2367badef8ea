// The wide access path with f32 state (see wide.wgsl).
const UNIT: u32 = 8u;

// One unit is 8 elements: one wide load per operand, the update on each
// 4-lane half, one wide store per operand.
fn step_unit(c: Coeffs, grad_scale: f32, p: u32, g: u32, s: u32, n: u32) {
    let P = load8_param(p);
    let G = load8_grad(g);
    var S0 = array<vec4<f32>, 2>();
    var S1 = array<vec4<f32>, 2>();
    var S2 = array<vec4<f32>, 2>();
    var S3 = array<vec4<f32>, 2>();
    if (state_used(0u)) { S0 = load8_state0(s); }
    if (state_used(1u)) { S1 = load8_state1(s); }
    if (state_used(2u)) { S2 = load8_state2(s); }
    if (state_used(3u)) { S3 = load8_state3(s); }
    var lo: Lanes;
    lo.p = P[0];
    lo.g = G[0];
    lo.s0 = S0[0];
    lo.s1 = S1[0];
    lo.s2 = S2[0];
    lo.s3 = S3[0];
    var hi: Lanes;
    hi.p = P[1];
    hi.g = G[1];
    hi.s0 = S0[1];
    hi.s1 = S1[1];
    hi.s2 = S2[1];
    hi.s3 = S3[1];
    let a = chunk_update(c, grad_scale, lo, min(n, 4u));
    let b = chunk_update(c, grad_scale, hi, select(0u, n - 4u, n > 4u));
    store8_param(p, a.p, b.p);
    if (state_used(0u)) { store8_state0(s, a.s0, b.s0); }
    if (state_used(1u)) { store8_state1(s, a.s1, b.s1); }
    if (state_used(2u)) { store8_state2(s, a.s2, b.s2); }
    if (state_used(3u)) { store8_state3(s, a.s3, b.s3); }
}
