// Bandwidth ceiling (benchmarks only, not an update rule): moves exactly the
// bytes a rule moves per element — reads param, grad and the state slots in
// STATE_MASK (`state_used`), writes param and those slots — with no arithmetic. The loaded
// values are rotated through the written slots, s0 ← θ, s1 ← s0, s2 ← s1, s3 ← s2,
// θ ← g; the last state value is kept alive by a select on a condition the
// compiler cannot fold, so no load is eliminated as dead.

fn update(c: Coeffs, x: ptr<function, Lanes>) {
    let old = *x;
    let never = u.head.step == 0xffffffffu;
    var carry = old.p;
    if (state_used(0u)) { (*x).s0 = carry; carry = old.s0; }
    if (state_used(1u)) { (*x).s1 = carry; carry = old.s1; }
    if (state_used(2u)) { (*x).s2 = carry; carry = old.s2; }
    if (state_used(3u)) { (*x).s3 = carry; carry = old.s3; }
    (*x).p = select(old.g, carry, never);
}
