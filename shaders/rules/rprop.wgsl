// Rprop (torch.optim.Rprop).
//   g ← ∇ (negated if maximize)
//   f = eta_plus if g·prev > 0, eta_minus if g·prev < 0, else 1
//   step_size ← min(max(step_size·f, step_size_min), step_size_max)   (state1)
//   g ← 0 where g·prev < 0
//   θ ← θ − step_size·sign(g);  prev ← g                               (state0)

fn update(c: Coeffs, x: ptr<function, Lanes>) {
    let g = effective_grad(*x, 0.0);
    let s = g * (*x).s0;
    let zero = vec4<f32>(0.0);
    let f = select(select(vec4<f32>(1.0), vec4<f32>(c.eta_minus), s < zero), vec4<f32>(c.eta_plus), s > zero);
    let step_size = min(max((*x).s1 * f, vec4<f32>(c.step_size_min)), vec4<f32>(c.step_size_max));
    let kept = select(g, zero, s < zero);
    (*x).s1 = step_size;
    (*x).p = (*x).p - step_size * sign(kept);
    (*x).s0 = kept;
}
