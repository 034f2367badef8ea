// One unit is one chunk of 4 elements (the vec4 and scalar access paths).
const UNIT: u32 = 4u;

fn step_unit(c: Coeffs, grad_scale: f32, p: u32, g: u32, s: u32, n: u32) {
    var x: Lanes;
    x.p = load_param(p, n);
    x.g = load_grad(g, n);
    if (state_used(0u)) { x.s0 = load_state0(s, n); }
    if (state_used(1u)) { x.s1 = load_state1(s, n); }
    if (state_used(2u)) { x.s2 = load_state2(s, n); }
    if (state_used(3u)) { x.s3 = load_state3(s, n); }
    let y = chunk_update(c, grad_scale, x, n);
    store_param(p, n, y.p);
    if (state_used(0u)) { store_state0(s, n, y.s0); }
    if (state_used(1u)) { store_state1(s, n, y.s1); }
    if (state_used(2u)) { store_state2(s, n, y.s2); }
    if (state_used(3u)) { store_state3(s, n, y.s3); }
}
