//! The shard plan: which rank owns which elements of the flat parameter
//! vector (every tensor, in order, end to end). A pure function of the
//! tensor sizes, the kind of rule and the number of ranks, so every rank
//! computes the same plan without talking (as PyTorch's
//! `ZeroRedundancyOptimizer` partitions its params).

use crate::error::{OptimError, Result};

/// Element-wise shard boundaries lie a multiple of this many elements into
/// a tensor (or at its start): the engine's wide access unit.
pub const UNIT: u64 = 8;

/// A run of one tensor's elements inside a shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    /// The tensor's index.
    pub tensor: usize,
    /// First element within the tensor.
    pub start: u64,
    /// Elements.
    pub len: u64,
}

/// What one rank owns: the flat range `[lo, hi)` and the tensor pieces it
/// covers, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    /// First flat element.
    pub lo: u64,
    /// One past the last flat element.
    pub hi: u64,
    /// The tensor pieces of `[lo, hi)`, in flat order.
    pub pieces: Vec<Piece>,
}

impl Shard {
    /// Elements owned.
    pub fn len(&self) -> u64 {
        self.hi - self.lo
    }

    /// Whether the rank owns nothing (more ranks than units of work).
    pub fn is_empty(&self) -> bool {
        self.hi == self.lo
    }
}

/// How a rule's work splits across ranks.
#[derive(Clone, Debug, PartialEq)]
pub enum Sharding {
    /// Element-wise rules: contiguous flat ranges of near-equal length
    /// (within [`UNIT`]), each boundary a multiple of [`UNIT`] into its
    /// tensor.
    Elements,
    /// Tensor-wise rules (LAMB, Adafactor, Muon) need whole tensors:
    /// contiguous runs of tensors, balanced by each tensor's cost (elements
    /// for LAMB and Adafactor, GEMM flops for Muon).
    WholeTensors {
        /// The cost of each tensor.
        costs: Vec<u64>,
    },
}

/// Every rank's shard of the flat vector.
#[derive(Clone, Debug, PartialEq)]
pub struct ShardPlan {
    /// The tensors' lengths, in flat order.
    pub lens: Vec<u64>,
    /// One shard per rank, in rank order, covering the flat vector.
    pub shards: Vec<Shard>,
}

impl ShardPlan {
    /// The plan of tensors of `lens` elements over `ranks` ranks.
    ///
    /// **Errors:** [`OptimError::EmptyParams`], [`OptimError::EmptyTensor`],
    /// [`OptimError::InvalidOptions`] for no ranks or a cost list of
    /// another length than `lens`.
    pub fn new(lens: &[u64], ranks: usize, sharding: &Sharding) -> Result<Self> {
        if lens.is_empty() {
            return Err(OptimError::EmptyParams);
        }
        if let Some(index) = lens.iter().position(|&l| l == 0) {
            return Err(OptimError::EmptyTensor { index });
        }
        if ranks == 0 {
            return Err(OptimError::InvalidOptions("a shard plan needs at least one rank"));
        }
        let starts: Vec<u64> = lens.iter().scan(0, |at, &l| Some(std::mem::replace(at, *at + l))).collect();
        let total: u64 = lens.iter().sum();
        let bounds = match sharding {
            Sharding::Elements => (0..=ranks as u64).map(|r| if r == ranks as u64 { total } else { unit_below(&starts, total * r / ranks as u64) }).collect::<Vec<_>>(),
            Sharding::WholeTensors { costs } => {
                if costs.len() != lens.len() {
                    return Err(OptimError::InvalidOptions("one cost per tensor"));
                }
                tensor_bounds(costs, ranks).into_iter().map(|t| starts.get(t).copied().unwrap_or(total)).collect()
            }
        };
        let shards = bounds.windows(2).map(|w| Shard { lo: w[0], hi: w[1], pieces: pieces(lens, &starts, w[0], w[1]) }).collect();
        Ok(ShardPlan { lens: lens.to_vec(), shards })
    }

    /// Elements of the flat vector.
    pub fn total(&self) -> u64 {
        self.lens.iter().sum()
    }

    /// Each rank's element count, in rank order (the collectives' counts).
    pub fn counts(&self) -> Vec<usize> {
        self.shards.iter().map(|s| s.len() as usize).collect()
    }

    /// Who owns what, one line per rank.
    pub fn explain(&self) -> String {
        let total = self.total().max(1);
        let mut out = format!("{} elements in {} tensors over {} ranks\n", self.total(), self.lens.len(), self.shards.len());
        for (rank, s) in self.shards.iter().enumerate() {
            let pieces: Vec<String> = s.pieces.iter().map(|p| if p.len == self.lens[p.tensor] { format!("t{}", p.tensor) } else { format!("t{}[{}..{}]", p.tensor, p.start, p.start + p.len) }).collect();
            out += &format!("rank {rank}: [{}, {}) {} elements ({:.1} %): {}\n", s.lo, s.hi, s.len(), 100.0 * s.len() as f64 / total as f64, pieces.join(" "));
        }
        out
    }
}

/// The last boundary at or before flat element `at` that starts its tensor
/// or lies a whole number of units into it: every piece then starts on a
/// unit of its tensor, so a shard's pieces keep the tensors' alignment (and
/// the engine its vector paths).
fn unit_below(starts: &[u64], at: u64) -> u64 {
    let tensor_start = starts[starts.partition_point(|&s| s <= at) - 1];
    tensor_start + (at - tensor_start) / UNIT * UNIT
}

/// The pieces of the tensors (starting at `starts`) that `[lo, hi)` covers.
fn pieces(lens: &[u64], starts: &[u64], lo: u64, hi: u64) -> Vec<Piece> {
    let mut out = Vec::new();
    for (tensor, (&start, &len)) in starts.iter().zip(lens).enumerate() {
        let (a, b) = (lo.max(start), hi.min(start + len));
        if a < b {
            out.push(Piece { tensor, start: a - start, len: b - a });
        }
    }
    out
}

/// The first tensor of each rank (and one past the last at the end):
/// rank r starts at the first tensor whose prefix cost reaches r/N of the
/// total, so each rank's cost is within one tensor of an equal share.
fn tensor_bounds(costs: &[u64], ranks: usize) -> Vec<usize> {
    let total: u128 = costs.iter().map(|&c| c as u128).sum();
    let mut prefix = Vec::with_capacity(costs.len() + 1);
    prefix.push(0u128);
    for &c in costs {
        prefix.push(prefix.last().copied().unwrap_or(0) + c as u128);
    }
    let mut bounds: Vec<usize> = (0..ranks).map(|r| prefix.partition_point(|&p| p * (ranks as u128) < total * r as u128)).collect();
    bounds.push(costs.len());
    // Non-decreasing by construction; rank 0 starts at tensor 0.
    bounds[0] = 0;
    bounds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_shards_cover_the_vector_on_units_of_each_tensor() {
        let lens = [1000, 37, 513, 5];
        for ranks in 1..=7 {
            let plan = ShardPlan::new(&lens, ranks, &Sharding::Elements).unwrap();
            assert_eq!(plan.shards.len(), ranks);
            assert_eq!(plan.shards[0].lo, 0);
            assert_eq!(plan.shards[ranks - 1].hi, 1555);
            for w in plan.shards.windows(2) {
                assert_eq!(w[0].hi, w[1].lo);
            }
            assert!(plan.shards.iter().flat_map(|s| &s.pieces).all(|p| p.start % UNIT == 0), "{ranks}: {plan:?}");
            for s in &plan.shards {
                assert_eq!(s.pieces.iter().map(|p| p.len).sum::<u64>(), s.len());
                assert!(s.len() <= 1555 / ranks as u64 + UNIT, "{ranks}: {s:?}");
            }
        }
        let plan = ShardPlan::new(&lens, 2, &Sharding::Elements).unwrap();
        assert_eq!(plan.shards[1].pieces[0], Piece { tensor: 0, start: 776, len: 224 });
        assert!(plan.explain().contains("rank 1: [776, 1555) 779 elements"), "{}", plan.explain());
    }

    #[test]
    fn whole_tensor_shards_balance_cost() {
        let lens = [100, 100, 100, 100, 400];
        let plan = ShardPlan::new(&lens, 2, &Sharding::WholeTensors { costs: lens.to_vec() }).unwrap();
        let owned: Vec<Vec<usize>> = plan.shards.iter().map(|s| s.pieces.iter().map(|p| p.tensor).collect()).collect();
        assert_eq!(owned, [vec![0, 1, 2, 3], vec![4]]);
        assert!(plan.shards.iter().flat_map(|s| &s.pieces).all(|p| p.start == 0 && p.len == lens[p.tensor]));
        // More ranks than tensors: some own nothing, none owns a part.
        let plan = ShardPlan::new(&[5, 5], 4, &Sharding::WholeTensors { costs: vec![5, 5] }).unwrap();
        assert_eq!(plan.counts().iter().sum::<usize>(), 10);
        assert!(plan.shards.iter().flat_map(|s| &s.pieces).all(|p| p.len == 5));
    }

    #[test]
    fn bad_plans_are_typed_errors() {
        assert_eq!(ShardPlan::new(&[], 2, &Sharding::Elements), Err(OptimError::EmptyParams));
        assert_eq!(ShardPlan::new(&[3, 0], 2, &Sharding::Elements), Err(OptimError::EmptyTensor { index: 1 }));
        assert!(ShardPlan::new(&[3], 0, &Sharding::Elements).is_err());
        assert!(ShardPlan::new(&[3], 2, &Sharding::WholeTensors { costs: vec![] }).is_err());
    }
}
