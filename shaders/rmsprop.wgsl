// RMSprop (torch.optim.RMSprop).
//   g ← ∇ (negated if maximize) + weight_decay·θ
//   v ← alpha·v + (1 − alpha)·g²                     (state0 = square_avg)
//   centered: ḡ ← ḡ + (1 − alpha)·(g − ḡ); ṽ ← v − ḡ² (state2 = grad_avg)
//   d ← √ṽ + eps     or  d ← √(ṽ + eps) with EPS_INSIDE_SQRT
//   momentum: b ← momentum·b + g/d; θ ← θ − lr·b      (state1 = momentum_buffer)
//   else:     θ ← θ − lr·g/d
struct Coeffs {
    lr: f32,
    weight_decay: f32,
    alpha: f32,
    one_minus_alpha: f32,
    eps: f32,
    momentum: f32,
    _r0: f32,
    _r1: f32,
    _r: vec4<f32>,
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let e = locate(wid, lid);
    if (!e.valid) { return; }
    let c = u.groups[e.group];
    let g = effective_grad(e, c.weight_decay);
    let v = c.alpha * state0[e.s] + c.one_minus_alpha * g * g;
    state0[e.s] = v;
    var vt = v;
    if (has(CENTERED)) {
        let ga_old = state2[e.s];
        let ga = ga_old + c.one_minus_alpha * (g - ga_old);
        state2[e.s] = ga;
        vt = v - ga * ga;
    }
    var d: f32;
    if (has(EPS_INSIDE_SQRT)) {
        d = sqrt(vt + c.eps);
    } else {
        d = sqrt(vt) + c.eps;
    }
    if (has(MOMENTUM)) {
        let b = c.momentum * state1[e.s] + g / d;
        state1[e.s] = b;
        param[e.p] = param[e.p] - c.lr * b;
    } else {
        param[e.p] = param[e.p] - c.lr * g / d;
    }
}
