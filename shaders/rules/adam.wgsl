// Adam (torch.optim.Adam): weight decay is an L2 term added to the gradient.
//   g ← ∇ (negated if maximize) + weight_decay·θ
//   m ← m + (1 − β₁)·(g − m)                           (state0 = exp_avg)
//   v ← β₂·v + (1 − β₂)·g²                             (state1 = exp_avg_sq)
//   amsgrad: v̂ ← max(v̂, v), use v̂ for v below         (state2 = max_exp_avg_sq)
//   θ ← θ − step_size·m/(√v/bc2_sqrt + eps)   or  θ ← θ − step_size·m/√(v/bc2 + eps)
// step_size = lr/(1 − β₁ᵗ), bc2_sqrt = √(1 − β₂ᵗ) are computed on the host in f64.

fn update(c: Coeffs, x: ptr<function, Lanes>) {
    let g = decayed_grad(x, c.weight_decay, c.decay);
    adam_moments(x, g, c.one_minus_beta1, c.beta2, c.one_minus_beta2);
    var v = (*x).s1;
    if (has(AMSGRAD)) {
        v = max((*x).s2, v);
        (*x).s2 = v;
    }
    var denom: vec4<f32>;
    if (has(EPS_INSIDE_SQRT)) {
        denom = sqrt(v * c.inv_bc2 + c.eps);
    } else {
        denom = sqrt(v) / c.bc2_sqrt + c.eps;
    }
    (*x).p = (*x).p - c.step_size * (*x).s0 / denom;
}
