// RMSprop (torch.optim.RMSprop).
//   g ← ∇ (negated if maximize) + weight_decay·θ
//   v ← alpha·v + (1 − alpha)·g²                     (state0 = square_avg)
//   centered: ḡ ← ḡ + (1 − alpha)·(g − ḡ); ṽ ← v − ḡ² (state2 = grad_avg)
//   d ← √ṽ + eps     or  d ← √(ṽ + eps) with EPS_INSIDE_SQRT
//   momentum: b ← momentum·b + g/d; θ ← θ − lr·b      (state1 = momentum_buffer)
//   else:     θ ← θ − lr·g/d

fn update(c: Coeffs, x: ptr<function, Lanes>) {
    let g = effective_grad(*x, c.weight_decay);
    let v = c.alpha * (*x).s0 + c.one_minus_alpha * g * g;
    (*x).s0 = v;
    var vt = v;
    if (has(CENTERED)) {
        let ga_old = (*x).s2;
        let ga = ga_old + c.one_minus_alpha * (g - ga_old);
        (*x).s2 = ga;
        vt = v - ga * ga;
    }
    var d: vec4<f32>;
    if (has(EPS_INSIDE_SQRT)) {
        d = sqrt(vt + c.eps);
    } else {
        d = sqrt(vt) + c.eps;
    }
    if (has(MOMENTUM)) {
        let b = c.momentum * (*x).s1 + g / d;
        (*x).s1 = b;
        (*x).p = (*x).p - c.lr * b;
    } else {
        (*x).p = (*x).p - c.lr * g / d;
    }
}
