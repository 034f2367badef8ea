//! The narrow interface a transport implements for sharded steps, and the
//! world of one process.

use crate::error::Result;

/// The collective operations a sharded step needs, as a transport provides
/// them. Every rank calls each operation in the same order.
pub trait Collectives {
    /// This process's rank, `0..ranks()`.
    fn rank(&self) -> usize;
    /// The number of ranks.
    fn ranks(&self) -> usize;
    /// Sums `send` (the whole vector, the same length on every rank)
    /// element-wise over the ranks; rank r receives block r, of
    /// `counts[r]` elements, into `recv`.
    ///
    /// **Errors:** the transport's failures.
    fn reduce_scatter_sum(&self, send: &[f32], counts: &[usize], recv: &mut [f32]) -> Result<()>;
    /// Concatenates every rank's `send` (`counts[r]` elements from rank r)
    /// in rank order into `recv`, on every rank.
    ///
    /// **Errors:** the transport's failures.
    fn all_gather(&self, send: &[f32], counts: &[usize], recv: &mut [f32]) -> Result<()>;
    /// Every rank's `send` (the same length on every rank), concatenated in
    /// rank order.
    ///
    /// **Errors:** the transport's failures.
    fn all_gather_bytes(&self, send: &[u8]) -> Result<Vec<u8>>;
}

/// A borrowed transport is a transport (keep the communicator, lend it to
/// an optimizer).
impl<T: Collectives + ?Sized> Collectives for &T {
    fn rank(&self) -> usize {
        (**self).rank()
    }

    fn ranks(&self) -> usize {
        (**self).ranks()
    }

    fn reduce_scatter_sum(&self, send: &[f32], counts: &[usize], recv: &mut [f32]) -> Result<()> {
        (**self).reduce_scatter_sum(send, counts, recv)
    }

    fn all_gather(&self, send: &[f32], counts: &[usize], recv: &mut [f32]) -> Result<()> {
        (**self).all_gather(send, counts, recv)
    }

    fn all_gather_bytes(&self, send: &[u8]) -> Result<Vec<u8>> {
        (**self).all_gather_bytes(send)
    }
}

/// One process alone: the collectives of a world of one rank.
#[derive(Clone, Copy, Debug, Default)]
pub struct SingleProcess;

impl Collectives for SingleProcess {
    fn rank(&self) -> usize {
        0
    }

    fn ranks(&self) -> usize {
        1
    }

    fn reduce_scatter_sum(&self, send: &[f32], _counts: &[usize], recv: &mut [f32]) -> Result<()> {
        recv.copy_from_slice(send);
        Ok(())
    }

    fn all_gather(&self, send: &[f32], _counts: &[usize], recv: &mut [f32]) -> Result<()> {
        recv.copy_from_slice(send);
        Ok(())
    }

    fn all_gather_bytes(&self, send: &[u8]) -> Result<Vec<u8>> {
        Ok(send.to_vec())
    }
}
