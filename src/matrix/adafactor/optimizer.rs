//! Adafactor on the GPU: the line statistics, line scales, norms, step size
//! and update passes of `shaders/matrix/adafactor.wgsl` (the element passes per
//! kind of tensor: `kinds.rs`) over the row table,
//! one compute pass per step.

use super::kinds::{self, Kind};
use super::{split_state, state_layout, Adafactor, Factoring};
use crate::engine::uniforms::{gpu_struct, StepUniform};
use crate::engine::ParamSlice;
use crate::error::{scoped, OptimError, Result};
use crate::matrix::rows::{self, Kernels, RowDesc};

gpu_struct! {
    /// The per-step scalars (`Scalars` in adafactor.wgsl), from f64.
    pub struct Scalars {
        /// t^beta2_decay.
        pub w: f32,
        /// Relative step size min(lr, 1/√t).
        pub rho: f32,
        /// 1 − lr·weight_decay.
        pub decay: f32,
        /// Floor of the second moment's root and of the row_var slab mean (`eps[0]` resolved).
        pub eps1: f32,
        /// Floor of RMS(θ) in the step size (`eps[1]`).
        pub eps2: f32,
        /// Clipping threshold of RMS(U).
        pub d: f32,
        /// 1: negate the grad (maximize).
        pub maximize: u32,
    }
}

/// One state tensor of one parameter, as PyTorch's `state_dict` holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct StateTensor {
    /// PyTorch's state name: `row_var`, `col_var` or `variance`.
    pub name: &'static str,
    /// PyTorch's shape of the tensor (`[.., R, 1]`, `[.., 1, C]`, or the param's).
    pub shape: Vec<u64>,
    /// The values, row-major, as many as the shape's product.
    pub values: Vec<f32>,
}

/// One tensor (`Tensor` in adafactor.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct TensorDesc {
    param: u32,
    grad: u32,
    numel: u32,
    factored: u32,
    slabs: u32,
    rows: u32,
    cols: u32,
    state: u32,
    first_row: u32,
    scales: u32,
    slab_tree: u32,
    pad: u32,
}

/// Elements per segment of a row or column in the line passes: one
/// invocation sums a segment's G², another (for lines of several) the
/// line's segments in order. 256 on GPUs: a column of a 16384 × 1024 matrix
/// is 64 segments, not 16,384 loads in one thread. 16,384 where `access`
/// has the CPU shape ([`rows::PER_LANE_CPU`]), where segments buy nothing
/// and cost their table's loads: 256 there took the bench's 4096 × 1024
/// step on lavapipe from 74 to 83.5 ms; only longer lines are split.
pub fn segment_len(access: rows::RowAccess) -> u64 {
    if access.per_lane == rows::PER_LANE_CPU { 16384 } else { 256 }
}

/// A segment of a row or column of one slab (`Segment` in adafactor.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Segment {
    tensor: u32,
    /// 0: of a row (row_var), 1: of a column (col_var).
    column: u32,
    slab: u32,
    /// The row within the slab, or a strip's first column.
    index: u32,
    /// Its first element along the line, and its elements.
    first: u32,
    count: u32,
    /// Its partial sum's slot in `sums` (a strip's columns' UNIT apart; a
    /// line's segments follow each other).
    slot: u32,
    /// On a line's last segment, the line's count of segments; else 0.
    segs: u32,
}

/// Bindings 1.. (read-only?): param, grad, state, tensors, rows, segments,
/// sums, and where [`kinds::state_units`] the state again as units.
const READ_ONLY: [bool; 8] = [false, true, false, true, true, true, false, false];

/// One table of line segments of a window, bound with all its rows.
struct Lines {
    bind_group: wgpu::BindGroup,
    segments: u32,
    /// Whether a line has several segments (the means pass runs).
    split: bool,
}

/// The passes of one (param buffer, grad buffer) pair.
struct Window {
    /// The `general` tensors' line segments, then the `lined` ones'.
    lines: [Lines; 2],
    /// Per kind of tensor present here: its index in the optimizer's
    /// kinds, a bind group of its rows alone and their count.
    kinds: Vec<(usize, wgpu::BindGroup, u32)>,
}

/// Where one tensor's state lives.
#[derive(Clone, Copy, Debug)]
struct Placement {
    factoring: Option<Factoring>,
    /// Which element and line passes take it.
    kind: Kind,
    state: u64,
    numel: u64,
}

impl Placement {
    fn state_len(&self) -> u64 {
        self.factoring.map_or(self.numel, |f| f.slabs * (f.rows + f.cols))
    }
}

/// Adafactor on the GPU for any set of tensors (one param group): tensors
/// with a shape of 2 or more dims ([`ParamSlice::with_shape`]) are
/// factored over their last two dims, the rest are not. Each step is one
/// compute pass recorded into the caller's encoder: the row and column
/// statistics (an invocation per segment of a line, [`segment_len`], then
/// one per line of several segments), each line's row_var over its
/// slab's mean, RMS(θ) and RMS(U)
/// in one pass over the elements (fixed-order sums: bitwise reproducible),
/// the update.
///
/// ```no_run
/// use wgpu_optim::{device, Adafactor, AdafactorOptimizer, ParamSlice};
/// let gpu = device::headless().unwrap();
/// let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
/// let mk = |size| gpu.device.create_buffer(&wgpu::BufferDescriptor { label: None, size, usage, mapped_at_creation: false });
/// let (w, g) = (mk(4 * 64 * 32), mk(4 * 64 * 32));
/// let mut opt = AdafactorOptimizer::new(&gpu.device, &gpu.queue, Adafactor::default(), &[ParamSlice::whole(&w, &g).with_shape(&[64, 32])]).unwrap();
/// opt.step().unwrap();
/// ```
pub struct AdafactorOptimizer {
    device: wgpu::Device,
    queue: wgpu::Queue,
    config: Adafactor,
    params: Vec<ParamSlice>,
    places: Vec<Placement>,
    kernels: Kernels,
    windows: Vec<Window>,
    /// The kinds of tensor present, in the order of their pipelines.
    kinds: Vec<Kind>,
    uniform: StepUniform<Scalars>,
    state: wgpu::Buffer,
    step: u32,
    access: rows::RowAccess,
}

impl AdafactorOptimizer {
    /// An optimizer for `params`, all in group 0.
    ///
    /// **Errors:** [`OptimError::InvalidHyperparameter`] (see
    /// [`Adafactor`]), the slice checks of [`crate::Optimizer::new`]
    /// (including [`OptimError::ShapeMismatch`]),
    /// [`OptimError::ExceedsLimits`], [`OptimError::Wgpu`] /
    /// [`OptimError::OutOfMemory`] for anything the device rejects.
    pub fn new(device: &wgpu::Device, queue: &wgpu::Queue, config: Adafactor, params: &[ParamSlice]) -> Result<Self> {
        config.validate()?;
        rows::check_tensors(device, params)?;
        let access = rows::RowAccess::of(device, params);
        let mut at = 0;
        let places: Vec<Placement> = params
            .iter()
            .map(|p| {
                let factoring = Factoring::of(p.shape.as_deref());
                let state = kinds::col_aligned(at, factoring, access.unit);
                let place = Placement { factoring, kind: Kind::of(factoring, access.unit), state, numel: p.len() };
                at = state + place.state_len();
                place
            })
            .collect();
        let state_bytes = (4 * at).max(4).next_multiple_of(kinds::STATE_ALIGN);
        if state_bytes > device.limits().max_storage_buffer_binding_size {
            return Err(OptimError::ExceedsLimits(format!("Adafactor's state of {state_bytes} bytes is past the binding limit")));
        }
        let kinds: Vec<Kind> = Kind::ALL.into_iter().filter(|k| places.iter().any(|p| p.kind == *k)).collect();
        let source = kinds::source(access, &Scalars::wgsl(), &kinds);
        let kind_entries: Vec<String> = kinds.iter().flat_map(|k| k.entries()).collect();
        let entries: Vec<&str> = kinds::COMMON_ENTRIES.into_iter().chain(kind_entries.iter().map(String::as_str)).collect();
        let kernels = Kernels::new(device, "adafactor", &source, &READ_ONLY[..7 + kinds::state_units(access) as usize], &entries)?;
        let state = scoped(device, || device.create_buffer(&wgpu::BufferDescriptor { label: Some("adafactor state"), size: state_bytes, usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC, mapped_at_creation: false }))?;
        let uniform = scoped(device, || StepUniform::new(device))?;
        let mut opt = AdafactorOptimizer { device: device.clone(), queue: queue.clone(), config, params: params.to_vec(), places, kernels, windows: Vec::new(), kinds, uniform, state, step: 0, access };
        opt.windows = opt.build_windows()?;
        Ok(opt)
    }

    /// The tensor, row and line tables, and a bind group per (param buffer,
    /// grad buffer) pair.
    fn build_windows(&self) -> Result<Vec<Window>> {
        let numels: Vec<u64> = self.places.iter().map(|p| p.numel).collect();
        let (rows, first) = rows::rows(&numels, self.access.row_len());
        let mut scales = 2 * rows.len() as u32;
        let descs: Vec<TensorDesc> = self
            .params
            .iter()
            .zip(&self.places)
            .zip(&first)
            .map(|((p, place), &first_row)| {
                let f = place.factoring.unwrap_or(Factoring { slabs: 1, rows: 1, cols: 1 });
                let desc = TensorDesc { param: p.param_offset as u32, grad: p.grad_offset as u32, numel: place.numel as u32, factored: place.factoring.is_some() as u32, slabs: f.slabs as u32, rows: f.rows as u32, cols: f.cols as u32, state: place.state as u32, first_row, scales, slab_tree: place.factoring.is_some_and(|f| f.slab_tree()) as u32, pad: 0 };
                scales += 1 + place.factoring.map_or(0, |f| f.slabs * f.rows) as u32;
                desc
            })
            .collect();
        let device = &self.device;
        let pairs = rows::windows(device, &self.params, &rows)?;
        let mut slot = scales;
        let segments: Vec<[Vec<Segment>; 2]> = pairs.iter().map(|(_, _, mine)| self.segments(mine, &mut slot)).collect();
        let most = device.limits().max_compute_workgroups_per_dimension as usize;
        if let Some(many) = segments.iter().flatten().find(|s| s.len().div_ceil(64) > most) {
            return Err(OptimError::ExceedsLimits(format!("{} line segments in one buffer pair: one dispatch of 64 per workgroup takes at most {}", many.len(), 64 * most)));
        }
        scoped(device, || {
            let tensors = rows::table(device, &self.queue, "adafactor tensors", &descs);
            let sums = device.create_buffer(&wgpu::BufferDescriptor { label: Some("adafactor sums"), size: 4 * slot.max(4) as u64, usage: wgpu::BufferUsages::STORAGE, mapped_at_creation: false });
            pairs
                .into_iter()
                .zip(segments)
                .map(|((param, grad, mine), segments)| {
                    let all_rows = rows::table(device, &self.queue, "adafactor rows", &mine);
                    let bind = |rows: &wgpu::Buffer, segments: &wgpu::Buffer| {
                        let mut resources = vec![self.uniform.binding(), param.as_entire_binding(), grad.as_entire_binding(), self.state.as_entire_binding(), tensors.as_entire_binding(), rows.as_entire_binding(), segments.as_entire_binding(), sums.as_entire_binding()];
                        if kinds::state_units(self.access) {
                            resources.push(self.state.as_entire_binding());
                        }
                        self.kernels.bind(device, "adafactor", resources)
                    };
                    let tables = segments.each_ref().map(|s| rows::table(device, &self.queue, "adafactor segments", s));
                    let lines = [0, 1].map(|i| Lines { bind_group: bind(&all_rows, &tables[i]), segments: segments[i].len() as u32, split: segments[i].iter().any(|s| s.segs > 1) });
                    let kinds = kinds::split(&mine, |t| self.places[t as usize].kind, &self.kinds).into_iter().map(|(k, rows)| (k, bind(&rows::table(device, &self.queue, "adafactor rows", &rows), &tables[0]), rows.len() as u32)).collect();
                    Window { lines, kinds }
                })
                .collect()
        })
    }

    /// The segments of the rows and columns of every slab of the factored
    /// tensors that `rows` (one window's row table) covers, their partial
    /// sums in slots from `slot` on (advanced past them; a strip's columns
    /// UNIT apart): the `general` tensors' (rows one element per load,
    /// columns in strips of up to UNIT), then the `lined` ones' (rows by
    /// units, columns in strips of UNIT: a unit per row).
    fn segments(&self, rows: &[RowDesc], slot: &mut u32) -> [Vec<Segment>; 2] {
        let mut tensors: Vec<u32> = rows.iter().map(|r| r.tensor).collect();
        tensors.dedup();
        let seg_len = segment_len(self.access);
        let mut out = [Vec::new(), Vec::new()];
        for tensor in tensors {
            let place = &self.places[tensor as usize];
            let Some(f) = place.factoring else { continue };
            // columns go UNIT at a time (a strip; a general tensor's last may be narrower)
            let (strip, list) = (self.access.unit, &mut out[(place.kind == Kind::Lined) as usize]);
            for slab in 0..f.slabs as u32 {
                for (column, lines, len, width) in [(0, f.rows, f.cols, 1), (1, f.cols, f.rows, strip)] {
                    for index in (0..lines as u32).step_by(width as usize) {
                        let segs = len.div_ceil(seg_len) as u32;
                        for (k, from) in (0..len).step_by(seg_len as usize).enumerate() {
                            let segs = if k as u32 + 1 == segs { segs } else { 0 };
                            list.push(Segment { tensor, column, slab, index, first: from as u32, count: (len - from).min(seg_len) as u32, slot: *slot, segs });
                            *slot += width;
                        }
                    }
                }
            }
        }
        out
    }

    /// The scalars of step `t`, computed in f64.
    fn scalars(&self, t: u32) -> Scalars {
        let c = &self.config;
        let (w, rho) = c.schedule(t);
        Scalars { w: w as f32, rho: rho as f32, decay: (1.0 - c.lr * c.weight_decay) as f32, eps1: c.eps1() as f32, eps2: c.eps.1 as f32, d: c.d as f32, maximize: c.maximize as u32 }
    }

    /// Records the next step into `encoder` (nothing is submitted or waited
    /// for); any number may be recorded before a submit.
    pub fn record_step(&mut self, encoder: &mut wgpu::CommandEncoder) -> Result<()> {
        let t = self.step.checked_add(1).ok_or(OptimError::StepOverflow)?;
        self.uniform.record(&self.device, encoder, &self.scalars(t))?;
        self.step = t;
        let n_tensors = self.params.len() as u32;
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("adafactor step"), timestamp_writes: None });
        for w in &self.windows {
            for (lines, (sums, means)) in w.lines.iter().zip(kinds::LINE_PASSES) {
                self.dispatch(&mut pass, sums, &lines.bind_group, lines.segments.div_ceil(64));
                if lines.split {
                    self.dispatch(&mut pass, means, &lines.bind_group, lines.segments.div_ceil(64));
                }
            }
        }
        // the per-tensor passes read the shared tables and sums: any window's bind group
        let tables = &self.windows[0].lines[0].bind_group;
        self.dispatch(&mut pass, kinds::LINE_SCALES, tables, n_tensors);
        self.record_elements(&mut pass, 0);
        self.dispatch(&mut pass, kinds::STEP_SIZE, tables, n_tensors);
        self.record_elements(&mut pass, 1);
        Ok(())
    }

    /// `workgroups` of pipeline `index` over `bind_group`.
    fn dispatch(&self, pass: &mut wgpu::ComputePass<'_>, index: usize, bind_group: &wgpu::BindGroup, workgroups: u32) {
        if workgroups > 0 {
            pass.set_pipeline(&self.kernels.pipelines[index]);
            pass.set_bind_group(0, bind_group, &[]);
            pass.dispatch_workgroups(workgroups, 1, 1);
        }
    }

    /// Each window's rows of each kind through that kind's pass `which`
    /// (0: norms, 1: apply).
    fn record_elements(&self, pass: &mut wgpu::ComputePass<'_>, which: usize) {
        for w in &self.windows {
            for (kind, bind_group, rows) in &w.kinds {
                self.dispatch(pass, kinds::COMMON_ENTRIES.len() + 2 * kind + which, bind_group, *rows);
            }
        }
    }

    /// Records and submits one step.
    ///
    /// **Errors:** [`OptimError::StepOverflow`], [`OptimError::Wgpu`] if
    /// the device rejects the work.
    pub fn step(&mut self) -> Result<()> {
        let (device, queue) = (self.device.clone(), self.queue.clone());
        rows::submit(&device, &queue, "adafactor step", |encoder| self.record_step(encoder))
    }

    /// How the element passes move param and grad (scalar, vec4 or wide).
    pub fn access(&self) -> rows::RowAccess {
        self.access
    }

    /// The config.
    pub fn config(&self) -> &Adafactor {
        &self.config
    }

    /// Sets the learning rate (a schedule's value); the next steps use it.
    ///
    /// **Errors:** [`OptimError::InvalidHyperparameter`] for a bad lr.
    pub fn set_lr(&mut self, lr: f64) -> Result<()> {
        let config = Adafactor { lr, ..self.config };
        config.validate()?;
        self.config = config;
        Ok(())
    }

    /// Replaces the config and the step count (a checkpoint's).
    ///
    /// **Errors:** [`OptimError::InvalidHyperparameter`]; nothing changes.
    pub fn set_config(&mut self, config: Adafactor, steps: u32) -> Result<()> {
        config.validate()?;
        self.config = config;
        self.step = steps;
        Ok(())
    }

    /// The parameter tensors, in the order given.
    pub fn params(&self) -> &[ParamSlice] {
        &self.params
    }

    /// Writes the state of tensor `index` from tensors named and shaped as
    /// [`AdafactorOptimizer::read_state`] gives them.
    ///
    /// **Errors:** [`OptimError::InvalidOptions`] for a bad index or a
    /// missing name,
    /// [`OptimError::LengthMismatch`] for other lengths; nothing changes.
    pub fn write_state(&mut self, index: usize, state: &[StateTensor]) -> Result<()> {
        let place = *self.places.get(index).ok_or(OptimError::InvalidOptions("parameter index out of range"))?;
        let mut values = Vec::new();
        for (name, _) in self.state_layout(index) {
            let s = state.iter().find(|s| s.name == name).ok_or(OptimError::InvalidOptions("Adafactor's state needs row_var and col_var (factored) or variance"))?;
            values.extend_from_slice(&s.values);
        }
        if values.len() as u64 != place.state_len() {
            return Err(OptimError::LengthMismatch { index, param_len: place.state_len(), grad_len: values.len() as u64 });
        }
        self.queue.write_buffer(&self.state, 4 * place.state, bytemuck::cast_slice(&values));
        Ok(())
    }

    /// Steps taken (recorded) so far.
    pub fn step_count(&self) -> u32 {
        self.step
    }

    /// The state of tensor `index` under PyTorch's names and shapes:
    /// `row_var` `[.., R, 1]` and `col_var` `[.., 1, C]`, or `variance`
    /// (the param's shape). Reads back (waits for the GPU).
    ///
    /// **Errors:** [`OptimError::InvalidOptions`] for a bad index;
    /// [`OptimError::Readback`] / [`OptimError::DeviceLost`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_state(&self, index: usize) -> Result<Vec<StateTensor>> {
        pollster::block_on(self.read_state_async(index))
    }

    /// [`AdafactorOptimizer::read_state`] without blocking (the web's form).
    ///
    /// **Errors:** as [`AdafactorOptimizer::read_state`].
    pub async fn read_state_async(&self, index: usize) -> Result<Vec<StateTensor>> {
        let place = *self.places.get(index).ok_or(OptimError::InvalidOptions("parameter index out of range"))?;
        let values = crate::device::read_f32_async(&self.device, &self.queue, &self.state, place.state, place.state_len()).await?;
        Ok(split_state(self.state_layout(index), &values).into_iter().map(|(name, shape, values)| StateTensor { name, shape, values }).collect())
    }

    /// The names and shapes [`AdafactorOptimizer::read_state`] gives tensor
    /// `index` (empty for a bad index), without reading anything back.
    pub fn state_layout(&self, index: usize) -> Vec<(&'static str, Vec<u64>)> {
        self.params.get(index).map_or_else(Vec::new, |p| state_layout(p.shape.as_deref().unwrap_or(&[p.len()])))
    }
}
