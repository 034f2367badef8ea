// Adagrad (torch.optim.Adagrad).
//   g ← ∇ (negated if maximize) + weight_decay·θ
//   sum ← sum + g²                                   (state0 = sum)
//   θ ← θ − clr·g/(√sum + eps)     or  θ ← θ − clr·g/√(sum + eps) with EPS_INSIDE_SQRT
// clr = lr/(1 + (t−1)·lr_decay) is computed on the host.

fn update(c: Coeffs, x: ptr<function, Lanes>) {
    let g = effective_grad(*x, c.weight_decay);
    let s = (*x).s0 + g * g;
    (*x).s0 = s;
    var denom: vec4<f32>;
    if (has(EPS_INSIDE_SQRT)) {
        denom = sqrt(s + c.eps);
    } else {
        denom = sqrt(s) + c.eps;
    }
    (*x).p = (*x).p - c.clr * g / denom;
}
