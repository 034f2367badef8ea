// Adadelta (torch.optim.Adadelta); lr = 1 is Zeiler's learning-rate-free form.
//   g ← ∇ (negated if maximize) + weight_decay·θ
//   v ← rho·v + (1 − rho)·g²                          (state0 = square_avg)
//   Δ ← √(u + eps)/√(v + eps)·g
//   u ← rho·u + (1 − rho)·Δ²                          (state1 = acc_delta)
//   θ ← θ − lr·Δ

fn update(c: Coeffs, x: ptr<function, Lanes>) {
    let g = effective_grad(*x, c.weight_decay);
    let v = c.rho * (*x).s0 + c.one_minus_rho * g * g;
    (*x).s0 = v;
    let acc = (*x).s1;
    let delta = sqrt(acc + c.eps) / sqrt(v + c.eps) * g;
    (*x).s1 = c.rho * acc + c.one_minus_rho * delta * delta;
    (*x).p = (*x).p - c.lr * delta;
}
