//! Dispatch planning, without a GPU: which ranges of which buffers each
//! binding window covers, where each tensor's state lives, and the
//! pieces of the parameter table (one per workgroup before packing).

use super::table::{Block, Piece};

/// Elements each invocation updates (one vec4 chunk).
pub const LANES: u64 = 4;

/// One tensor as the planner sees it: element ranges of a param buffer and
/// a grad buffer (buffers named by index), and its param group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorRange {
    /// Index of the param buffer.
    pub param_buf: usize,
    /// First element of the tensor in its param buffer (elements).
    pub param_offset: u64,
    /// Index of the grad buffer.
    pub grad_buf: usize,
    /// First element of the tensor's grad in its grad buffer (elements).
    pub grad_offset: u64,
    /// Length of the tensor (elements).
    pub len: u64,
    /// Index of the tensor's param group.
    pub group: u32,
}

/// The limits a plan must respect, in f32 elements.
#[derive(Clone, Copy, Debug)]
pub struct PlanLimits {
    /// Most elements one binding may cover.
    pub binding: u64,
    /// Bindings start on multiples of this many elements
    /// (`min_storage_buffer_offset_alignment / 4`).
    pub align: u64,
    /// Each segment's state is padded to a multiple of this (4, or a whole
    /// workgroup row for 8-bit state).
    pub state_align: u64,
}

/// A piece of one tensor inside one window: `(tensor index, start, len)`.
pub type Segment = (usize, u64, u64);

/// A window of one param buffer and one grad buffer, bound once per dispatch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// Index of the param buffer.
    pub param_buf: usize,
    /// Index of the grad buffer.
    pub grad_buf: usize,
    /// Bound element ranges `[lo, hi)` of both buffers.
    pub p_lo: u64,
    /// End (exclusive) of the bound param range (elements).
    pub p_hi: u64,
    /// Start of the bound grad range (elements).
    pub g_lo: u64,
    /// End (exclusive) of the bound grad range (elements).
    pub g_hi: u64,
    /// Elements of state (segments padded to `state_align`).
    pub state_len: u64,
    /// The pieces of tensors the window covers, in state order.
    pub segments: Vec<Segment>,
}

fn align_down(x: u64, a: u64) -> u64 {
    x / a * a
}

impl Window {
    fn new(t: &TensorRange, start: u64, limits: &PlanLimits) -> Self {
        Window {
            param_buf: t.param_buf,
            grad_buf: t.grad_buf,
            p_lo: align_down(t.param_offset + start, limits.align),
            p_hi: 0,
            g_lo: align_down(t.grad_offset + start, limits.align),
            g_hi: 0,
            state_len: 0,
            segments: Vec::new(),
        }
    }

    /// Adds `[start, start+len)` of tensor `index` if the window stays
    /// within the binding limit.
    fn try_add(&mut self, index: usize, t: &TensorRange, start: u64, len: u64, limits: &PlanLimits) -> bool {
        if self.param_buf != t.param_buf || self.grad_buf != t.grad_buf {
            return false;
        }
        let (ps, gs) = (t.param_offset + start, t.grad_offset + start);
        let p_lo = self.p_lo.min(align_down(ps, limits.align));
        let g_lo = self.g_lo.min(align_down(gs, limits.align));
        let (p_hi, g_hi) = (self.p_hi.max(ps + len), self.g_hi.max(gs + len));
        let state_len = self.state_len + len.next_multiple_of(limits.state_align);
        if p_hi - p_lo > limits.binding || g_hi - g_lo > limits.binding || state_len > limits.binding {
            return false;
        }
        (self.p_lo, self.p_hi, self.g_lo, self.g_hi) = (p_lo, p_hi, g_lo, g_hi);
        self.state_len = state_len;
        self.segments.push((index, start, len));
        true
    }

    /// Whether the window can be bound in units of `unit` elements (4: vec4,
    /// 8: wide): the bound ranges and every segment start on whole units of
    /// both buffers, and the bound ranges rounded up to whole units stay
    /// inside the buffers (`*_len`: their sizes in elements).
    pub fn aligned_to(&self, unit: u64, tensors: &[TensorRange], param_len: u64, grad_len: u64) -> bool {
        let aligned = self.segments.iter().all(|&(i, start, _)| {
            let t = &tensors[i];
            (t.param_offset + start).is_multiple_of(unit) && (t.grad_offset + start).is_multiple_of(unit)
        });
        let starts = self.p_lo.is_multiple_of(unit) && self.g_lo.is_multiple_of(unit);
        aligned && starts && self.p_hi.next_multiple_of(unit) <= param_len && self.g_hi.next_multiple_of(unit) <= grad_len
    }

    /// Rounds the bound ranges up to whole units of `unit` elements.
    pub fn round_to(&mut self, unit: u64) {
        self.p_hi = self.p_hi.next_multiple_of(unit);
        self.g_hi = self.g_hi.next_multiple_of(unit);
    }

    /// The state offset of each segment within the window's state.
    pub fn state_offsets(&self, state_align: u64) -> Vec<u64> {
        let mut at = 0;
        self.segments
            .iter()
            .map(|&(_, _, len)| {
                let here = at;
                at += len.next_multiple_of(state_align);
                here
            })
            .collect()
    }

    /// The pieces of this window as table rows: one per `per_block`
    /// elements of each segment, offsets relative to the bound ranges
    /// (packed into shared rows by [`super::table::pack`]).
    pub fn pieces(&self, tensors: &[TensorRange], per_block: u64, state_align: u64) -> Vec<Piece> {
        let mut pieces = Vec::new();
        for (&(index, start, len), state_offset) in self.segments.iter().zip(self.state_offsets(state_align)) {
            let t = &tensors[index];
            for at in (0..len).step_by(per_block as usize) {
                let block = Block {
                    param_offset: (t.param_offset + start + at - self.p_lo) as u32,
                    grad_offset: (t.grad_offset + start + at - self.g_lo) as u32,
                    state_offset: (state_offset + at) as u32,
                    len_group: (len - at).min(per_block) as u32 | t.group << 16,
                };
                pieces.push(Piece { tensor: index, block });
            }
        }
        pieces
    }
}

/// Splits the tensors into binding windows no larger than the binding limit.
pub fn plan_windows(tensors: &[TensorRange], limits: &PlanLimits) -> Vec<Window> {
    let mut windows: Vec<Window> = Vec::new();
    for (index, t) in tensors.iter().enumerate() {
        let mut start = 0;
        while start < t.len {
            let (ps, gs) = (t.param_offset + start, t.grad_offset + start);
            // What fits a fresh window: the binding limit less the alignment
            // slack of both buffers, and whole padded state blocks.
            let fresh_room = (limits.binding - ps % limits.align - gs % limits.align).min(align_down(limits.binding, limits.state_align));
            let len = (t.len - start).min(fresh_room);
            let added = windows.last_mut().is_some_and(|w| w.try_add(index, t, start, len, limits));
            if !added {
                let mut w = Window::new(t, start, limits);
                let ok = w.try_add(index, t, start, len, limits);
                debug_assert!(ok, "a piece always fits a fresh window");
                windows.push(w);
            }
            start += len;
        }
    }
    windows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(binding: u64, align: u64) -> PlanLimits {
        PlanLimits { binding, align, state_align: LANES }
    }

    fn tensor(param_buf: usize, offset: u64, len: u64, group: u32) -> TensorRange {
        TensorRange { param_buf, param_offset: offset, grad_buf: param_buf + 100, grad_offset: offset + 3, len, group }
    }

    /// Every element of every tensor is in exactly one row, rows stay within
    /// the bound ranges, and no window exceeds the binding limit.
    fn check_cover(tensors: &[TensorRange], l: &PlanLimits, per_block: u64) {
        let windows = plan_windows(tensors, l);
        let mut seen: Vec<Vec<u32>> = tensors.iter().map(|t| vec![0; t.len as usize]).collect();
        for w in &windows {
            assert!(w.p_hi - w.p_lo <= l.binding && w.g_hi - w.g_lo <= l.binding && w.state_len <= l.binding, "{w:?}");
            assert_eq!(w.p_lo % l.align, 0);
            assert_eq!(w.g_lo % l.align, 0);
            let rows: Vec<Block> = w.pieces(tensors, per_block, l.state_align).iter().map(|p| p.block).collect();
            for (&(index, start, len), off) in w.segments.iter().zip(w.state_offsets(l.state_align)) {
                assert_eq!(off % l.state_align, 0);
                for e in start..start + len {
                    seen[index][e as usize] += 1;
                }
            }
            let covered: u64 = rows.iter().map(|r| (r.len_group & 0xffff) as u64).sum();
            assert_eq!(covered, w.segments.iter().map(|s| s.2).sum::<u64>());
            for r in &rows {
                let len = (r.len_group & 0xffff) as u64;
                assert!(len >= 1 && len <= per_block);
                assert!(w.p_lo + r.param_offset as u64 + len <= w.p_hi);
                assert!(w.g_lo + r.grad_offset as u64 + len <= w.g_hi);
                assert!(r.state_offset as u64 + len <= w.state_len);
            }
        }
        assert!(seen.iter().flatten().all(|&c| c == 1), "an element is covered 0 or 2+ times");
    }

    #[test]
    fn windows_cover_every_element_once_within_limits() {
        let ts = vec![tensor(0, 0, 1000, 0), tensor(0, 1003, 77, 1), tensor(1, 5, 4000, 0), tensor(0, 2000, 1, 2)];
        check_cover(&ts, &limits(1 << 20, 1), 1024);
        check_cover(&ts, &limits(1024, 64), 256);
        check_cover(&ts, &limits(500, 16), 64);
    }

    #[test]
    fn tensors_of_one_buffer_pair_share_a_window() {
        let ts = vec![tensor(0, 0, 10, 0), tensor(0, 16, 10, 1), tensor(0, 40, 3, 0)];
        let w = plan_windows(&ts, &limits(1 << 20, 64));
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].segments.len(), 3);
        let other = vec![tensor(0, 0, 10, 0), tensor(1, 0, 10, 0)];
        assert_eq!(plan_windows(&other, &limits(1 << 20, 64)).len(), 2);
    }

    #[test]
    fn vector_access_needs_aligned_starts_and_room_to_round_up() {
        let t = [TensorRange { param_buf: 0, param_offset: 8, grad_buf: 1, grad_offset: 4, len: 10, group: 0 }];
        let w = plan_windows(&t, &limits(1 << 20, 1)).remove(0);
        assert!(w.aligned_to(4, &t, 20, 16));
        assert!(!w.aligned_to(4, &t, 18, 16), "param range rounded up to 20 exceeds 18 elements");
        assert!(!w.aligned_to(8, &t, 100, 100), "the grad starts at 4: not a whole unit of 8");
        let odd = [TensorRange { param_offset: 9, ..t[0] }];
        let w = plan_windows(&odd, &limits(1 << 20, 1)).remove(0);
        assert!(!w.aligned_to(4, &odd, 100, 100));
        let even = [TensorRange { grad_offset: 16, ..t[0] }];
        let w = plan_windows(&even, &limits(1 << 20, 1)).remove(0);
        assert!(w.aligned_to(8, &even, 24, 32));
        assert!(!w.aligned_to(8, &even, 20, 32), "param range rounded up to 24 exceeds 20 elements");
    }
}
