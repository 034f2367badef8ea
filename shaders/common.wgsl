// Shared prelude, prepended to every update rule by the host.
//
// Bind-group convention (group 0), identical for every rule:
//   0  uniform            StepScalars (dynamic offset into a ring of per-step slots)
//   1  storage rw         param   (the user's buffer, bound as it is)
//   2  storage read       grad    (the user's buffer, bound as it is)
//   3  storage rw         state0  (engine-owned)
//   4  storage rw         state1  (engine-owned)
//   5  storage rw         state2  (engine-owned)
//   6  storage read       ParamTable: one Segment per tensor (or tensor piece)
//
// Each rule file defines `struct Coeffs` (12 f32 scalars per param group,
// computed on the host in f64) and an entry point `main`.

override WG: u32 = 256u;

const MAXIMIZE: u32 = 1u;
const FIRST_STEP: u32 = 2u;
const AMSGRAD: u32 = 4u;
const CENTERED: u32 = 8u;
const EPS_INSIDE_SQRT: u32 = 16u;
const MOMENTUM: u32 = 32u;
const MAX_GROUPS: u32 = 8u;

struct StepHead {
    flags: u32,
    step: u32,
    _pad0: u32,
    _pad1: u32,
}

struct StepScalars {
    head: StepHead,
    groups: array<Coeffs, 8>,
}

struct Segment {
    param_offset: u32,
    grad_offset: u32,
    state_offset: u32,
    len: u32,
    first_block: u32,
    group: u32,
    _pad0: u32,
    _pad1: u32,
}

struct ParamTable {
    n_segments: u32,
    blocks: u32,
    groups_x: u32,
    _pad: u32,
    segments: array<Segment>,
}

@group(0) @binding(0) var<uniform> u: StepScalars;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> state0: array<f32>;
@group(0) @binding(4) var<storage, read_write> state1: array<f32>;
@group(0) @binding(5) var<storage, read_write> state2: array<f32>;
@group(0) @binding(6) var<storage, read> table: ParamTable;

struct Element {
    valid: bool,
    p: u32,      // index into param
    g: u32,      // index into grad
    s: u32,      // index into the state buffers
    group: u32,  // param group of this element
}

// Maps (workgroup, lane) to one element of one tensor. Workgroups form a 2-D
// grid so that more than 65,535 can be dispatched; each workgroup handles WG
// consecutive elements of one segment, found by binary search over
// `first_block` (uniform across the workgroup, so it stays in cache).
fn locate(wid: vec3<u32>, lid: u32) -> Element {
    var e: Element;
    e.valid = false;
    let block = wid.y * table.groups_x + wid.x;
    if (block >= table.blocks) {
        return e;
    }
    var lo = 0u;
    var hi = table.n_segments - 1u;
    while (lo < hi) {
        let mid = (lo + hi + 1u) / 2u;
        if (table.segments[mid].first_block <= block) {
            lo = mid;
        } else {
            hi = mid - 1u;
        }
    }
    let seg = table.segments[lo];
    let local = (block - seg.first_block) * WG + lid;
    if (local >= seg.len) {
        return e;
    }
    e.valid = true;
    e.p = seg.param_offset + local;
    e.g = seg.grad_offset + local;
    e.s = seg.state_offset + local;
    e.group = min(seg.group, MAX_GROUPS - 1u);
    return e;
}

fn has(flag: u32) -> bool {
    return (u.head.flags & flag) != 0u;
}

// The gradient as the rule sees it: negated when maximizing, plus the
// L2 weight-decay term (zero for AdamW, which decays decoupled).
fn effective_grad(e: Element, weight_decay: f32) -> f32 {
    var g = grad[e.g];
    if (has(MAXIMIZE)) {
        g = -g;
    }
    if (weight_decay != 0.0) {
        g = g + weight_decay * param[e.p];
    }
    return g;
}
