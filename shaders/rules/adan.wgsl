// Adan (pytorch_optimizer.Adan): Nesterov momentum of the gradient difference.
//   g ← ∇ (negated if maximize; clipped by the engine with max_grad_norm)
//   Δ ← g + previous_grad, previous_grad = −g of the last step  (0 on the first step)
//   m ← m + (1 − β₁)·(g − m)                        (state0 = exp_avg)
//   d ← d + (1 − β₂)·(Δ − d)                        (state2 = exp_avg_diff)
//   n ← β₃·n + (1 − β₃)·(g + β₂·Δ)²                 (state1 = exp_avg_sq)
//   decoupled: θ ← θ·decay first; otherwise θ ← θ·prox last
//   θ ← θ − (step_m·m + step_d·d)/(√n + eps_hat)
//   previous_grad ← −g                             (state3)

fn update(c: Coeffs, x: ptr<function, Lanes>) {
    let g = decayed_grad(x, 0.0, c.decay);
    let diff = select(g + (*x).s3, vec4<f32>(0.0), first_step());
    (*x).s0 = (*x).s0 + c.one_minus_beta1 * (g - (*x).s0);
    (*x).s2 = (*x).s2 + c.one_minus_beta2 * (diff - (*x).s2);
    let nesterov = g + c.beta2 * diff;
    (*x).s1 = c.beta3 * (*x).s1 + c.one_minus_beta3 * nesterov * nesterov;
    let denom = sqrt((*x).s1) + c.eps_hat;
    (*x).p = (*x).p - (c.step_m * (*x).s0 + c.step_d * (*x).s2) / denom;
    if (!has(DECOUPLED)) {
        (*x).p = (*x).p * c.prox;
    }
    (*x).s3 = -g;
}
