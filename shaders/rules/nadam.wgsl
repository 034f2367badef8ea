// NAdam (torch.optim.NAdam): Adam with Nesterov momentum (Dozat).
//   g ← ∇ (negated if maximize) + weight_decay·θ,  or with DECOUPLED: θ ← θ·(1 − lr·weight_decay)
//   m ← m + (1 − β₁)·(g − m)                           (state0 = exp_avg)
//   v ← β₂·v + (1 − β₂)·g²                             (state1 = exp_avg_sq)
//   d = √(v/(1 − β₂ᵗ)) + eps
//   θ ← θ − c_g·g/d − c_m·m/d
// c_g = lr·(1 − μₜ)/(1 − Πₜ), c_m = lr·μₜ₊₁/(1 − Πₜμₜ₊₁), 1/(1 − β₂ᵗ): host, f64.

fn update(c: Coeffs, x: ptr<function, Lanes>) {
    let g = decayed_grad(x, c.weight_decay, c.decay);
    adam_moments(x, g, c.one_minus_beta1, c.beta2, c.one_minus_beta2);
    let d = sqrt((*x).s1 * c.inv_bc2) + c.eps;
    let p = (*x).p - c.c_g * g / d;
    (*x).p = p - c.c_m * (*x).s0 / d;
}
