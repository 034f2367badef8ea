//! The parameter table of a window, without a GPU: which workgroup steps
//! which elements. A row is one tensor's piece of up to `per_block`
//! elements, or, for pieces shorter than that, a *packed* row that several
//! short pieces of one param group share, so a model of many small tensors
//! (biases, norm scales) needs about as many workgroups as its elements
//! fill, not one per tensor.
//!
//! A packed row's pieces start on whole granules of [`GRANULE`] elements of
//! the row; a byte map per granule names the piece there, so each lane finds
//! its piece with two loads, and every lane of the workgroup has work.
//! Which elements a workgroup steps changes nothing element-wise (results
//! are bitwise those of unpacked rows); only the grad-norm partials, one
//! per workgroup, are summed in another order.

use std::collections::BTreeSet;

/// Table rows (workgroups) per launch: the table is read from uniform memory
/// (on lavapipe a per-workgroup row from a storage buffer turned every
/// operand access into a gather, about a third slower), and a 16-byte
/// header plus rows fill exactly the 16 KiB every adapter allows for a
/// uniform binding.
pub const TABLE_ROWS: usize = 1023;
/// Bytes of one launch's table.
pub const TABLE_BYTES: u64 = 16 + 16 * TABLE_ROWS as u64;

/// One row of the GPU parameter table (binding 6): the elements one
/// workgroup updates, up to `4·WG` consecutive elements of one tensor. One
/// row per workgroup means no search on the GPU, and a row is a single
/// 16-byte load (`len_group` = len | group << 16).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Block {
    /// First param element of the row, relative to the window's bound param range (elements).
    pub param_offset: u32,
    /// First grad element of the row, relative to the window's bound grad range (elements).
    pub grad_offset: u32,
    /// First state element of the row within the window's state (elements).
    pub state_offset: u32,
    /// `len | group << 16`: the row's length in elements (0: tensor skipped) and its param group.
    pub len_group: u32,
}

/// Pieces of a packed row start on multiples of this many elements of the
/// row: a multiple of every access unit (4, 8) and of the grad reduction's
/// chunk of 4, so every unit lies within one piece.
pub const GRANULE: u64 = 32;
/// Flag bit of a packed row's `len_group`.
pub const PACKED_ROW: u32 = 1 << 31;
/// Most pieces of one packed row: the map holds one byte per granule.
const MAX_PIECES: usize = 256;
/// Granules one table entry of a map holds (16 bytes).
const GRANULES_PER_ENTRY: u64 = 16;

/// A piece of one tensor as a row of its own, and the tensor's index (for
/// the activity mask).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    /// Index of the tensor.
    pub tensor: usize,
    /// Its row: offsets, and `len | group << 16`.
    pub block: Block,
}

impl Piece {
    fn len(&self) -> u64 {
        (self.block.len_group & 0xffff) as u64
    }

    fn group(&self) -> u32 {
        self.block.len_group >> 16
    }

    /// The row of this piece under `active`: length 0 leaves the tensor
    /// untouched (params and state), as PyTorch skips a param whose grad is None.
    fn masked(&self, active: &[bool]) -> Block {
        let on = active.get(self.tensor).copied().unwrap_or(true);
        Block { len_group: if on { self.block.len_group } else { self.block.len_group & !0xffff }, ..self.block }
    }
}

/// One workgroup's row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Row {
    /// One piece of one tensor.
    Plain(Piece),
    /// Short pieces of one group, each from a whole granule of the row on.
    Packed(Vec<Piece>),
}

impl Row {
    /// Table entries the row needs besides its own: its pieces and its map.
    fn extra_entries(&self) -> usize {
        match self {
            Row::Plain(_) => 0,
            Row::Packed(pieces) => pieces.len() + map_entries(pieces) as usize,
        }
    }
}

fn granules(len: u64) -> u64 {
    len.div_ceil(GRANULE)
}

fn map_entries(pieces: &[Piece]) -> u64 {
    granules_used(pieces).div_ceil(GRANULES_PER_ENTRY)
}

fn granules_used(pieces: &[Piece]) -> u64 {
    pieces.iter().map(|p| granules(p.len())).sum()
}

/// The rows of `pieces` (a window's, in order): every piece of `per_block`
/// elements its own row, in order, then the shorter ones packed by group
/// ([`best_fit`] over whole granules). A packed row of one piece stays
/// plain. `pack: false` keeps every piece its own row.
pub fn pack(pieces: &[Piece], per_block: u64, pack: bool) -> Vec<Row> {
    let capacity = per_block / GRANULE;
    let short = |p: &Piece| pack && capacity >= 2 && p.len() < per_block;
    let mut rows: Vec<Row> = pieces.iter().filter(|p| !short(p)).map(|&p| Row::Plain(p)).collect();
    let shorts: Vec<Piece> = pieces.iter().filter(|p| short(p)).copied().collect();
    let items: Vec<(u32, u64)> = shorts.iter().map(|p| (p.group(), granules(p.len()))).collect();
    for bin in best_fit(&items, capacity, MAX_PIECES) {
        rows.push(match bin[..] {
            [one] => Row::Plain(shorts[one]),
            _ => Row::Packed(bin.iter().map(|&i| shorts[i]).collect()),
        });
    }
    rows
}

/// Bins of `items` (`(key, size)`, each at most `capacity`), every bin of
/// one key, at most `capacity` in total size and `max_items` items: best
/// fit by decreasing size, ties in the given order, so the same items give
/// the same bins. Each bin lists item indices in the order they went in.
pub fn best_fit(items: &[(u32, u64)], capacity: u64, max_items: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| (items[i].0, std::cmp::Reverse(items[i].1)));
    let mut bins: Vec<Vec<usize>> = Vec::new();
    // Open bins of the current key by (free size, index).
    let mut open: BTreeSet<(u64, usize)> = BTreeSet::new();
    let mut key = None;
    for i in order {
        let (k, need) = items[i];
        if key != Some(k) {
            open.clear();
            key = Some(k);
        }
        let (free, bin) = open.range((need, 0)..).next().copied().unwrap_or_else(|| {
            bins.push(Vec::new());
            (capacity, bins.len() - 1)
        });
        open.remove(&(free, bin));
        bins[bin].push(i);
        if bins[bin].len() < max_items && free > need {
            open.insert((free - need, bin));
        }
    }
    bins
}

/// One launch of a window: the byte offset of its table chunk, its
/// workgroups, and the index of its first workgroup over all windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Launch {
    /// Byte offset of the launch's table chunk (its dynamic uniform offset).
    pub table_offset: u32,
    /// Workgroups of the launch: rows in its chunk.
    pub workgroups: u32,
    /// Index of the launch's first workgroup over all windows.
    pub first_block: u32,
}

/// The window's table in uniform memory, in chunks of at most
/// [`TABLE_ROWS`] entries (one launch each, so no launch exceeds the
/// dispatch grid), each chunk at a multiple of `stride` bytes with a
/// 16-byte header: rows in the chunk, its first workgroup over all windows,
/// the window's first state element over all windows (`state_base`, for
/// global stochastic-rounding keys), and the first u32 of the 8-bit block
/// scales in each state buffer. A chunk's entries are its rows, one per
/// workgroup, then the pieces and maps of its packed rows.
pub fn table(rows: &[Row], active: &[bool], stride: u64, first_block: u32, state_base: u64, state_len: u64) -> (Vec<u8>, Vec<Launch>) {
    let chunks = launch_chunks(rows);
    let mut bytes = vec![0u8; (chunks.len() as u64 * stride) as usize];
    let mut launches = Vec::with_capacity(chunks.len());
    let mut first = first_block;
    for (k, chunk) in chunks.iter().enumerate() {
        let entries = chunk_entries(chunk, active);
        let at = k * stride as usize;
        let head = [chunk.len() as u32, first, state_base as u32, (state_len / 4) as u32];
        bytes[at..at + 16].copy_from_slice(bytemuck::bytes_of(&head));
        bytes[at + 16..at + 16 + 16 * entries.len()].copy_from_slice(bytemuck::cast_slice(&entries));
        launches.push(Launch { table_offset: at as u32, workgroups: chunk.len() as u32, first_block: first });
        first += chunk.len() as u32;
    }
    (bytes, launches)
}

/// The rows split into launches whose entries fit [`TABLE_ROWS`].
fn launch_chunks(rows: &[Row]) -> Vec<&[Row]> {
    let mut chunks = Vec::new();
    let (mut start, mut used) = (0, 0);
    for (i, row) in rows.iter().enumerate() {
        let cost = 1 + row.extra_entries();
        if used + cost > TABLE_ROWS {
            chunks.push(&rows[start..i]);
            (start, used) = (i, 0);
        }
        used += cost;
    }
    if start < rows.len() {
        chunks.push(&rows[start..]);
    }
    chunks
}

/// A chunk's entries: one per row, then each packed row's pieces (`w`:
/// `len | first granule << 16`) and its map (one byte per granule: the
/// piece there, relative to the row's first). A packed row is
/// `(first piece entry, first map entry, elements spanned, PACKED_ROW | group << 16)`.
fn chunk_entries(chunk: &[Row], active: &[bool]) -> Vec<Block> {
    let mut entries: Vec<Block> = Vec::with_capacity(TABLE_ROWS);
    let mut extra: Vec<Block> = Vec::new();
    for row in chunk {
        match row {
            Row::Plain(piece) => entries.push(piece.masked(active)),
            Row::Packed(pieces) => {
                let first_piece = (chunk.len() + extra.len()) as u32;
                let first_map = first_piece + pieces.len() as u32;
                let span = (granules_used(pieces) * GRANULE) as u32;
                entries.push(Block { param_offset: first_piece, grad_offset: first_map, state_offset: span, len_group: PACKED_ROW | pieces[0].group() << 16 });
                let mut map = vec![<Block as bytemuck::Zeroable>::zeroed(); map_entries(pieces) as usize];
                let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut map);
                let mut granule = 0;
                for (k, p) in pieces.iter().enumerate() {
                    let b = p.masked(active);
                    extra.push(Block { len_group: (b.len_group & 0xffff) | (granule as u32) << 16, ..b });
                    let n = granules(p.len());
                    bytes[granule as usize..(granule + n) as usize].fill(k as u8);
                    granule += n;
                }
                extra.extend(map);
            }
        }
    }
    entries.extend(extra);
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(tensor: usize, offset: u32, len: u32, group: u32) -> Piece {
        Piece { tensor, block: Block { param_offset: offset, grad_offset: offset + 3, state_offset: offset + 7, len_group: len | group << 16 } }
    }

    /// What the shader sees at element `first` of workgroup `b`'s row
    /// (`row_piece` in shaders/prelude/common.wgsl): (param, grad, state, len from there).
    fn row_piece(entries: &[Block], b: usize, first: u32) -> Option<[u32; 4]> {
        let row = entries[b];
        if row.len_group & PACKED_ROW == 0 {
            let len = row.len_group & 0xffff;
            return (first < len).then(|| [row.param_offset + first, row.grad_offset + first, row.state_offset + first, len - first]);
        }
        if first >= row.state_offset {
            return None;
        }
        let granule = first / GRANULE as u32;
        let word = bytemuck::cast::<Block, [u32; 4]>(entries[(row.grad_offset + granule / 16) as usize])[((granule / 4) % 4) as usize];
        let sub = entries[(row.param_offset + ((word >> ((granule % 4) * 8)) & 0xff)) as usize];
        let off = first - (sub.len_group >> 16) * GRANULE as u32;
        let len = sub.len_group & 0xffff;
        (off < len).then(|| [sub.param_offset + off, sub.grad_offset + off, sub.state_offset + off, len - off])
    }

    /// Every element of every active piece is reached by exactly one lane
    /// of one workgroup (in units of 4), under its own group.
    fn check(pieces: &[Piece], per_block: u64, active: &[bool]) -> usize {
        let rows = pack(pieces, per_block, true);
        let (bytes, launches) = table(&rows, active, 16384, 0, 0, 0);
        let mut seen = std::collections::HashMap::new();
        for l in &launches {
            let at = l.table_offset as usize;
            let entries: &[Block] = bytemuck::cast_slice(&bytes[at + 16..at + 16 * (TABLE_ROWS + 1)]);
            for b in 0..l.workgroups as usize {
                let group = (entries[b].len_group >> 16) & 0x7fff;
                for first in (0..per_block as u32).step_by(4) {
                    if let Some([p, _, s, len]) = row_piece(entries, b, first) {
                        for e in 0..len.min(4) {
                            *seen.entry(p + e).or_insert(0) += 1;
                        }
                        assert_eq!(s - p, 7, "state follows the same piece");
                        let owner = pieces.iter().find(|q| q.block.param_offset <= p && p < q.block.param_offset + q.len() as u32).unwrap();
                        assert_eq!(owner.group(), group);
                    }
                }
            }
        }
        for q in pieces {
            let on = active.get(q.tensor).copied().unwrap_or(true);
            for e in q.block.param_offset..q.block.param_offset + q.len() as u32 {
                assert_eq!(seen.get(&e).copied().unwrap_or(0), on as i32, "element {e} of tensor {}", q.tensor);
            }
        }
        launches.iter().map(|l| l.workgroups as usize).sum()
    }

    fn pieces_of(lens: &[u32], groups: u32) -> Vec<Piece> {
        let mut at = 0;
        lens.iter().enumerate().map(|(i, &len)| {
            let p = piece(i, at, len, i as u32 % groups);
            at += len + 5;
            p
        }).collect()
    }

    #[test]
    fn short_pieces_share_rows_and_every_element_is_stepped_once() {
        let lens: Vec<u32> = (0..700).map(|i| [1, 46, 31, 33, 4096, 700, 4000, 2050, 64, 3][i % 10]).collect();
        let active: Vec<bool> = (0..700).map(|i| i % 7 != 3).collect();
        let rows = check(&pieces_of(&lens, 3), 4096, &active);
        let unpacked = lens.len();
        assert!(rows * 2 < unpacked, "{rows} workgroups for {unpacked} pieces");
        let short: Vec<u32> = lens.iter().map(|&l| l.min(1024)).collect();
        check(&pieces_of(&short, 1), 1024, &[]);
        check(&pieces_of(&[5; 600], 1), 4096, &[]);
    }

    #[test]
    fn packed_rows_hold_one_group_and_at_most_their_granules() {
        let rows = pack(&pieces_of(&[40, 40, 40, 40, 100, 3000, 1000], 2), 4096, true);
        for row in &rows {
            if let Row::Packed(ps) = row {
                assert!(ps.iter().all(|p| p.group() == ps[0].group()));
                assert!(granules_used(ps) <= 128);
            }
        }
        assert!(pack(&pieces_of(&[40; 10], 1), 4096, false).iter().all(|r| matches!(r, Row::Plain(_))));
    }

    #[test]
    fn table_chunks_hold_at_most_table_rows_and_count_blocks() {
        let rows = vec![Row::Plain(piece(0, 0, 4, 0)); 2500];
        let (bytes, launches) = table(&rows, &[], 16384, 7, 0, 0);
        assert_eq!(launches.iter().map(|l| l.workgroups).collect::<Vec<_>>(), vec![1023, 1023, 454]);
        assert_eq!(launches.iter().map(|l| l.first_block).collect::<Vec<_>>(), vec![7, 1030, 2053]);
        assert_eq!(bytes.len(), 3 * 16384);
        let packed = pack(&pieces_of(&[1; 5000], 1), 4096, true);
        let (_, launches) = table(&packed, &[], 16384, 0, 0, 0);
        assert!(launches.len() > 1 && launches.iter().all(|l| l.workgroups >= 1));
    }
}
