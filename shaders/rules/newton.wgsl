// Damped diagonal Newton–Raphson with a user-supplied Hessian diagonal,
// optionally with Sophia's EMAs and clipping.
//   g ← ∇ (negated if maximize) + weight_decay·θ
//   m ← m + (1 − β₁)·(g − m) with MOMENTUM, else m = g       (state2 = exp_avg)
//   h̄ ← β₂·h̄ + (1 − β₂)·h with HESSIAN_EMA, else h̄ = h       (state0 = hessian, an input;
//                                                               state1 = hessian_ema)
//   u = m/(|h̄| + damping);  CLIP_UPDATE: u ← clamp(u, −clip, clip)
//   θ ← θ − lr·u

fn update(c: Coeffs, x: ptr<function, Lanes>) {
    let g = effective_grad(*x, c.weight_decay);
    var m = g;
    if (has(MOMENTUM)) {
        m = (*x).s2 + c.one_minus_beta1 * (g - (*x).s2);
        (*x).s2 = m;
    }
    var h = (*x).s0;
    if (has(HESSIAN_EMA)) {
        h = c.beta2 * (*x).s1 + c.one_minus_beta2 * h;
        (*x).s1 = h;
    }
    var u = m / (abs(h) + c.damping);
    if (has(CLIP_UPDATE)) {
        u = clamp(u, vec4<f32>(-c.clip), vec4<f32>(c.clip));
    }
    (*x).p = (*x).p - c.lr * u;
}
