// Adamax (torch.optim.Adamax): Adam with the infinity norm.
//   g ← ∇ (negated if maximize) + weight_decay·θ
//   m ← m + (1 − β₁)·(g − m)                           (state0 = exp_avg)
//   u ← max(β₂·u, |g| + eps)                           (state1 = exp_inf)
//   θ ← θ − clr·m/u,   clr = lr/(1 − β₁ᵗ) on the host in f64

fn update(c: Coeffs, x: ptr<function, Lanes>) {
    let g = effective_grad(*x, c.weight_decay);
    let m = (*x).s0 + c.one_minus_beta1 * (g - (*x).s0);
    let u = max(c.beta2 * (*x).s1, abs(g) + c.eps);
    (*x).s0 = m;
    (*x).s1 = u;
    (*x).p = (*x).p - c.clr * m / u;
}
