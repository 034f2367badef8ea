//! The kinds of tensor Adafactor's element passes tell apart, each with
//! entry points of its own (`shaders/matrix/adafactor_kind.wgsl`, one copy
//! per kind): lavapipe runs both sides of every branch under a lane mask,
//! so one pass holding every kind's code paid for all three on every
//! element (1024 × 1024 on one lavapipe thread: 27 ms a step, against
//! 18 ms with one kind's code).

use super::Factoring;
use crate::matrix::rows::{self, RowDesc};

const ADAFACTOR_WGSL: &str = include_str!("../../../shaders/matrix/adafactor.wgsl");
const UNITS_WGSL: &str = include_str!("../../../shaders/matrix/adafactor_units.wgsl");
const KIND_WGSL: &str = include_str!("../../../shaders/matrix/adafactor_kind.wgsl");

/// Bindings 1 and 2, with generated accessors.
const OPERANDS: [rows::Operand; 2] = [rows::Operand { name: "param", binding: 1, writable: true }, rows::Operand { name: "grad", binding: 2, writable: false }];

/// The entry points every optimizer has, in `Kernels::pipelines` order;
/// each kind present adds its `norms_` and `apply_` after them.
pub(super) const COMMON_ENTRIES: [&str; 5] = ["line_segments", "line_means", "line_units", "line_scales", "step_size"];
/// The line passes of the `general` tensors' segment table, then the
/// `lined` ones': (segment sums, means of split lines), indices in
/// [`COMMON_ENTRIES`].
pub(super) const LINE_PASSES: [(usize, usize); 2] = [(0, 1), (2, 1)];
/// The per-tensor passes' indices in [`COMMON_ENTRIES`].
pub(super) const LINE_SCALES: usize = 3;
pub(super) const STEP_SIZE: usize = 4;

/// How a tensor's V is found for a unit of its elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// Factored with C a multiple of the unit: a unit lies in one line
    /// (a cursor per lane, no division per unit).
    Lined,
    /// Factored, any C: a unit may cross lines and slabs.
    General,
    /// Unfactored: its own variance per element.
    Flat,
}

impl Kind {
    pub(super) const ALL: [Kind; 3] = [Kind::Lined, Kind::General, Kind::Flat];

    /// The kind of a tensor factored as `factoring` under units of `unit` elements.
    pub(super) fn of(factoring: Option<Factoring>, unit: u32) -> Kind {
        match factoring {
            Some(f) if f.cols.is_multiple_of(unit as u64) => Kind::Lined,
            Some(_) => Kind::General,
            None => Kind::Flat,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Lined => "lined",
            Kind::General => "general",
            Kind::Flat => "flat",
        }
    }

    /// The names of its cursor's start and step in adafactor_units.wgsl
    /// (the kinds without a cursor share two that keep none).
    fn cursor(self) -> (&'static str, &'static str) {
        match self {
            Kind::Lined => ("start_lined", "next_lined"),
            Kind::General | Kind::Flat => ("no_cursor", "same_cursor"),
        }
    }

    /// This kind's entry points: the norms pass, then the update.
    pub(super) fn entries(self) -> [String; 2] {
        [format!("norms_{}", self.name()), format!("apply_{}", self.name())]
    }
}

/// Bytes the state buffer's size is a multiple of: whole wide units, so
/// that it binds as `array<vec4<u64>>` too.
pub(super) const STATE_ALIGN: u64 = 32;

/// Where a tensor's state goes at or after element `at` of the state
/// buffer: factored, so that its col_var (after its B·R row_var) starts on
/// a multiple of `unit` and a `lined` tensor's units of col_var load whole
/// (`col_unit`); unfactored, at `at`.
pub(super) fn col_aligned(at: u64, factoring: Option<Factoring>, unit: u32) -> u64 {
    factoring.map_or(at, |f| (at + f.slabs * f.rows).next_multiple_of(unit as u64) - f.slabs * f.rows)
}

/// Whether the state is bound a second time as wide units (binding 8), for
/// `col_unit`: only with the wide access, which the web never has (WebGPU
/// rejects a writable binding that aliases another).
pub(super) fn state_units(access: rows::RowAccess) -> bool {
    access.form == rows::RowForm::Wide
}

/// `col_unit(a)`: the UNIT col_var at state element `a` (a multiple of
/// UNIT): one load of the state's units where [`state_units`], else a
/// load per element.
fn col_unit(access: rows::RowAccess) -> &'static str {
    if state_units(access) {
        return "@group(0) @binding(8) var<storage, read_write> state_units: array<vec4<u64>>;\n\
                fn col_unit(a: u32) -> Unit { let w = state_units[a >> 3u]; return Unit(wide_lo(w), wide_hi(w)); }\n";
    }
    "fn col_unit(a: u32) -> Unit {\n    var v: Unit;\n    for (var h = 0u; h < UNIT / 4u; h++) {\n        let b = a + 4u * h;\n        v[h] = vec4<f32>(state[b], state[b + 1u], state[b + 2u], state[b + 3u]);\n    }\n    return v;\n}\n"
}

/// The shader: the generated operands and `scalars`, adafactor.wgsl, the
/// unit functions and the element passes of each kind in `kinds`.
pub(super) fn source(access: rows::RowAccess, scalars: &str, kinds: &[Kind]) -> String {
    let passes: String = kinds
        .iter()
        .map(|k| {
            let (start, next) = k.cursor();
            KIND_WGSL.replace("start_KIND", start).replace("next_KIND", next).replace("KIND", k.name())
        })
        .collect();
    rows::totals_source(access, scalars, &format!("{}{ADAFACTOR_WGSL}\n{}{UNITS_WGSL}\n{passes}", access.operands(&OPERANDS), col_unit(access)))
}

/// `rows` (one window's) split by the kind of their tensors
/// (`kind_of(tensor)`), in `kinds` order, without the empty ones.
pub(super) fn split(rows: &[RowDesc], kind_of: impl Fn(u32) -> Kind, kinds: &[Kind]) -> Vec<(usize, Vec<RowDesc>)> {
    kinds
        .iter()
        .enumerate()
        .map(|(i, k)| (i, rows.iter().filter(|r| kind_of(r.tensor) == *k).copied().collect::<Vec<_>>()))
        .filter(|(_, mine)| !mine.is_empty())
        .collect()
}
