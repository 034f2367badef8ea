// The unit functions of Adafactor's element passes (adafactor_kind.wgsl),
// after adafactor.wgsl: per kind of tensor a cursor's start and step and
// V of a unit (start_KIND, next_KIND, v_KIND; the kinds without a cursor
// share no_cursor and same_cursor).

// Where a lane's unit of a `lined` tensor is, kept up to date as the lane
// steps through its row by WG·UNIT elements, so that no unit costs a
// division: line = its row over all slabs (b·R + r), col (c), slab (b) and
// r. A step is qw lines and rw columns, and qw lines are q2 slabs and r2
// rows.
struct Cursor {
    line: u32,
    col: u32,
    slab: u32,
    r: u32,
    qw: u32,
    rw: u32,
    q2: u32,
    r2: u32,
}

fn start_lined(t: Tensor, e: u32) -> Cursor {
    let line = e / t.cols;
    let slab = line / t.rows;
    let qw = (WG * UNIT) / t.cols;
    let q2 = qw / t.rows;
    return Cursor(line, e - line * t.cols, slab, line - slab * t.rows, qw, WG * UNIT - qw * t.cols, q2, qw - q2 * t.rows);
}

// The cursor WG·UNIT elements on (col + rw < 2C, r + r2 + 1 < 2R: one carry each).
fn next_lined(t: Tensor, at: Cursor) -> Cursor {
    var n = at;
    n.col = n.col + n.rw;
    let carry = select(0u, 1u, n.col >= t.cols);
    n.col = n.col - carry * t.cols;
    n.line = n.line + n.qw + carry;
    n.r = n.r + n.r2 + carry;
    let wrap = select(0u, 1u, n.r >= t.rows);
    n.r = n.r - wrap * t.rows;
    n.slab = n.slab + n.q2 + wrap;
    return n;
}

// V of the unit at the cursor: its line's scale (line_scales) times UNIT
// consecutive col_var.
fn v_lined(t: Tensor, at: Cursor, e: u32, n: u32, g: Unit, update: bool) -> Unit {
    let scale = sums[t.scales + 1u + at.line];
    let cols = t.state + t.slabs * t.rows + at.slab * t.cols + at.col;
    var v = col_unit(cols);
    for (var h = 0u; h < UNIT / 4u; h++) {
        v[h] = scale * v[h];
    }
    return v;
}

// The other kinds keep no cursor (kinds.rs names these for their
// start_KIND and next_KIND).
fn no_cursor(t: Tensor, e: u32) -> Cursor {
    return Cursor();
}

fn same_cursor(t: Tensor, at: Cursor) -> Cursor {
    return at;
}

fn v_general(t: Tensor, at: Cursor, e: u32, n: u32, g: Unit, update: bool) -> Unit {
    return factored_unit(t, e, n);
}

fn v_flat(t: Tensor, at: Cursor, e: u32, n: u32, g: Unit, update: bool) -> Unit {
    return variance_unit(t, e, n, g, update);
}

// V of the unit of n elements at element e of a factored tensor (lanes
// from n on are 0): each element's line (b·R + r), column and slab follow
// from the unit's first by steps of one (a line's scale loaded when it
// changes), two divisions per unit.
fn factored_unit(t: Tensor, e: u32, n: u32) -> Unit {
    var line = e / t.cols;
    var col = e - line * t.cols;
    var slab = line / t.rows;
    var slab_end = (slab + 1u) * t.rows;
    var scale = sums[t.scales + 1u + line];
    let cols_at = t.state + t.slabs * t.rows;
    var v = Unit();
    for (var k = 0u; k < UNIT; k++) {
        if (k < n) {
            v[k >> 2u][k & 3u] = scale * state[cols_at + slab * t.cols + col];
        }
        col = col + 1u;
        if (col == t.cols && k + 1u < n) {   // (no loads past the tensor)
            col = 0u;
            line = line + 1u;
            if (line == slab_end) {
                slab = slab + 1u;
                slab_end = slab_end + t.rows;
            }
            scale = sums[t.scales + 1u + line];
        }
    }
    return v;
}

// The variance of the unit of n elements at element e of an unfactored
// tensor, lerped towards g² first if `update`.
fn variance_unit(t: Tensor, e: u32, n: u32, g: Unit, update: bool) -> Unit {
    var v = Unit();
    for (var k = 0u; k < UNIT; k++) {
        if (k < n) {
            let at = t.state + e + k;
            var x = state[at];
            if (update) {
                let gk = g[k >> 2u][k & 3u];
                x = lerp(x, gk * gk, s.w);
                state[at] = x;
            }
            v[k >> 2u][k & 3u] = x;
        }
    }
    return v;
}

// A unit as the element passes load it (adafactor_kind.wgsl's load_KIND).
struct Loaded {
    e: u32,
    n: u32,
    g: Unit,
    theta: Unit,
    v: Unit,
}

// U = G / max(√V, eps1) (PyTorch: clamp(V, eps1²).rsqrt()·G).
fn update(v: vec4<f32>, g: vec4<f32>) -> vec4<f32> {
    return inverseSqrt(max(v, vec4<f32>(s.eps1 * s.eps1))) * g;
}

// The grads of a unit, negated if maximizing.
fn grad_unit(t: Tensor, e: u32, n: u32) -> Unit {
    var g = ld_grad(t.grad + e, n);
    if (s.maximize != 0u) {
        for (var h = 0u; h < UNIT / 4u; h++) {
            g[h] = -g[h];
        }
    }
    return g;
}

// Units of a row a lane takes (units lid, lid + WG, …: at most PER_LANE / UNIT).
fn lane_units(len: u32, lid: u32) -> u32 {
    if (lid * UNIT >= len) { return 0u; }
    return min(PER_LANE / UNIT, (len - lid * UNIT + WG * UNIT - 1u) / (WG * UNIT));
}

