// Plain SGD (torch.optim.SGD with momentum = 0).
//   g ← ∇ (negated if maximize) + weight_decay·θ
//   θ ← θ − lr·g

fn update(c: Coeffs, x: ptr<function, Lanes>) {
    let g = effective_grad(*x, c.weight_decay);
    (*x).p = (*x).p - c.lr * g;
}
