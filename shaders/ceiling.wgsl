// Bandwidth ceiling (benchmarks only, not an update rule): moves exactly the
// bytes a rule moves per element — reads param, grad and the state slots in
// STATE_MASK, writes param and those slots — with no arithmetic, by
// rotating the loaded values:  θ ← g, s0 ← θ, s1 ← s0, s2 ← s1.
override STATE_MASK: u32 = 0u;

struct Coeffs {
    _r: array<vec4<f32>, 3>,
}

fn state_used(slot: u32) -> bool {
    return (STATE_MASK & (1u << slot)) != 0u;
}

fn update(c: Coeffs, x: ptr<function, Lanes>) {
    let old = *x;
    (*x).p = old.g;
    (*x).s0 = old.p;
    (*x).s1 = old.s0;
    (*x).s2 = old.s1;
}
