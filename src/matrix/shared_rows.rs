//! Rows that several small tensors share (LAMB's element passes): a model
//! of many biases and norm scales needs about as many workgroups as its
//! elements fill, and its per-tensor norms come from segmented sums inside
//! those rows, not from a workgroup per tensor.
//!
//! In a shared row each tensor takes ⌈numel / per_lane⌉ consecutive lanes
//! (a tensor of one row: at most [`MAX_SEGMENT_LANES`], the whole row);
//! lane k of a tensor's w lanes takes its units k, k + w, …, as a whole
//! row's lanes take theirs. Its lanes' partial sums are then summed in runs
//! of [`SEGMENT_RUN`] lanes in order, and the runs in order by the tensor's
//! first lane (a fixed order: deterministic), which writes the tensor's
//! trust ratio itself. The row's
//! lane entries follow the rows in the window's row buffer.

pub use super::rows::{MAX_SEGMENT_LANES, SEGMENT_RUN};
use super::rows::{RowDesc, WG};
use crate::engine::table::best_fit;

/// Flag of a shared row's `tensor`; the rest is the index of its lane
/// entries in the window's row buffer.
pub const SHARED_ROW: u32 = 1 << 31;
/// A lane entry's `tensor` past a shared row's last tensor.
pub const NO_TENSOR: u32 = u32::MAX;

/// The WGSL constants of these rows.
pub fn wgsl() -> String {
    format!("const SHARED_ROW: u32 = {SHARED_ROW}u;\nconst NO_TENSOR: u32 = {NO_TENSOR}u;\nconst SEGMENT_RUN: u32 = {SEGMENT_RUN}u;\n")
}

/// One window's row buffer: its workgroups' rows, then each shared row's
/// [`WG`] lane entries (`tensor`, `start`: the tensor's first lane, `len`:
/// its lanes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedRows {
    /// The buffer's entries.
    pub entries: Vec<RowDesc>,
    /// Workgroups of the window's element passes (its rows).
    pub workgroups: u32,
}

/// The rows of one window (`mine`, tensor by tensor, indices into
/// `numels`), tensors of at most `MAX_SEGMENT_LANES · per_lane` elements
/// (one row) sharing rows (best fit by lanes, a function of the rows
/// alone). `share: false` keeps every row.
pub fn share(mine: &[RowDesc], numels: &[u64], per_lane: u32, share: bool) -> SharedRows {
    let small = |r: &RowDesc| share && numels[r.tensor as usize] <= (MAX_SEGMENT_LANES * per_lane) as u64;
    let mut entries: Vec<RowDesc> = mine.iter().filter(|r| !small(r)).copied().collect();
    let smalls: Vec<RowDesc> = mine.iter().filter(|r| small(r)).copied().collect();
    let items: Vec<(u32, u64)> = smalls.iter().map(|r| (0, r.len.div_ceil(per_lane) as u64)).collect();
    let bins = best_fit(&items, WG as u64, WG as usize);
    let workgroups = (entries.len() + bins.len()) as u32;
    let mut lanes = Vec::new();
    // Even a tensor alone in its row takes the shared form: its sums then
    // depend on it alone, not on which tensors it shares with (a shard of
    // the model gives bitwise a whole model's ratios).
    for bin in bins {
        let base = workgroups + lanes.len() as u32;
        entries.push(RowDesc { tensor: SHARED_ROW | base, start: 0, len: 0, index: smalls[bin[0]].index });
        let mut first = 0;
        for &i in &bin {
            let (tensor, width) = (smalls[i].tensor, smalls[i].len.div_ceil(per_lane));
            lanes.extend((0..width).map(|_| RowDesc { tensor, start: first, len: width, index: 0 }));
            first += width;
        }
        lanes.resize(lanes.len().next_multiple_of(WG as usize), RowDesc { tensor: NO_TENSOR, ..RowDesc::default() });
    }
    entries.extend(lanes);
    SharedRows { entries, workgroups }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::rows::rows;

    /// Every element of every tensor is taken by exactly one lane of one
    /// workgroup, as the shaders walk them (lamb.wgsl's `share_of`).
    const UNIT: u32 = 4;

    #[test]
    fn shared_rows_take_every_element_once() {
        let per_lane = 16u32;
        let numels: Vec<u64> = (0..300u64).map(|i| [1, 46, 7, 1024, 5000, 130, 17, 1025, 4096][(i % 9) as usize]).collect();
        let (all, _) = rows(&numels, (per_lane * WG) as u64);
        let s = share(&all, &numels, per_lane, true);
        let mut seen: Vec<Vec<u32>> = numels.iter().map(|&n| vec![0; n as usize]).collect();
        for row in &s.entries[..s.workgroups as usize] {
            for lid in 0..WG {
                let (tensor, start, lane, lanes, len) = if row.tensor & SHARED_ROW == 0 {
                    (row.tensor, row.start, lid, WG, row.len)
                } else {
                    let me = s.entries[((row.tensor & !SHARED_ROW) + lid) as usize];
                    if me.tensor == NO_TENSOR {
                        continue;
                    }
                    (me.tensor, 0, lid - me.start, me.len, numels[me.tensor as usize] as u32)
                };
                for c in 0..per_lane / UNIT {
                    let i = (c * lanes + lane) * UNIT;
                    for e in i..(i + UNIT).min(len) {
                        seen[tensor as usize][(start + e) as usize] += 1;
                    }
                }
            }
        }
        assert!(seen.iter().flatten().all(|&k| k == 1), "an element is taken 0 or 2+ times");
        assert!(s.workgroups * 2 < all.len() as u32, "{} workgroups for {} rows", s.workgroups, all.len());
        assert!(share(&all, &numels, per_lane, false).entries == all);
    }
}
