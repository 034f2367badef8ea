//! # wgpu-optim-mpi
//!
//! [wgpu-optim](wgpu_optim)'s sharded optimizer ([`ShardedOptimizer`],
//! ZeRO stage 1) over MPI: [`MpiCollectives`] implements the engine's
//! transport-agnostic [`Collectives`] with rsmpi on the system's MPI (Open
//! MPI on Debian). One process per GPU, launched by `mpirun`.
//!
//! ```no_run
//! use wgpu_optim::{device, shard::ShardedOptimizer, AdamW, EngineOptions, ParamArena};
//! use wgpu_optim_mpi::MpiCollectives;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // wgpu_optim_mpi::run_rank(|comm| { ... }) wraps a rank's main: an error or a
//! // panic on any rank ends the whole job instead of leaving the others waiting.
//! let comm = MpiCollectives::init()?; // MPI_Init; a panic on any rank now ends the job
//! let gpu = device::headless()?;
//! let arena = ParamArena::new(&gpu.device, &[4096, 64])?; // the same model on every rank
//! let mut opt = ShardedOptimizer::new(comm, &gpu.device, &gpu.queue, &[AdamW::default().into()], &arena.slices(), EngineOptions::default())?;
//! // each rank: backward on its slice of the batch into the arena's grads, then
//! opt.step()?; // mean grads over ranks; params equal on every rank after it
//! # Ok(()) }
//! ```

use mpi::collective::SystemOperation;
use mpi::datatype::{Equivalence, PartitionMut};
use mpi::raw::AsRaw;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::*;
use wgpu_optim::shard::Collectives;
use wgpu_optim::{OptimError, Result};

pub use wgpu_optim::shard::{ShardPlan, ShardedOptimizer};

/// The world communicator of an initialised MPI, as [`Collectives`].
/// Dropping it finalises MPI.
pub struct MpiCollectives {
    world: SimpleCommunicator,
    _universe: mpi::environment::Universe,
}

impl MpiCollectives {
    /// Initialises MPI (once per process) and installs [`abort_on_panic`].
    ///
    /// **Errors:** [`OptimError::InvalidOptions`] if MPI was initialised
    /// already.
    pub fn init() -> Result<Self> {
        let universe = mpi::initialize().ok_or(OptimError::InvalidOptions("MPI is initialised already"))?;
        abort_on_panic();
        Ok(MpiCollectives { world: universe.world(), _universe: universe })
    }

    /// The world communicator.
    pub fn world(&self) -> &SimpleCommunicator {
        &self.world
    }
}

/// Runs a rank's `main` with an initialised MPI world and ends the process:
/// on `Ok`, MPI is finalised and the process exits 0; on an error, it is
/// printed and the whole job is aborted (`MPI_Abort`, exit code 1), so the
/// other ranks do not wait forever in a collective for this one. Panics
/// abort the job too ([`abort_on_panic`]).
pub fn run_rank(main: impl FnOnce(&MpiCollectives) -> std::result::Result<(), Box<dyn std::error::Error>>) -> ! {
    let comm = match MpiCollectives::init() {
        Ok(comm) => comm,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = main(&comm) {
        eprintln!("rank {} of {}: {e}", comm.rank(), comm.ranks());
        comm.world.abort(1);
    }
    drop(comm);
    std::process::exit(0);
}

/// Makes a panic on this rank end the whole job (`MPI_Abort`), instead of
/// leaving the other ranks waiting in a collective forever.
pub fn abort_on_panic() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        SimpleCommunicator::world().abort(101);
    }));
}

/// MPI counts and displacements of `counts`.
fn partition(counts: &[usize]) -> Result<(Vec<i32>, Vec<i32>)> {
    let too_big = || OptimError::ExceedsLimits("a shard of more than 2^31 elements for one MPI call".into());
    let counts: Vec<i32> = counts.iter().map(|&c| i32::try_from(c).map_err(|_| too_big())).collect::<Result<_>>()?;
    // Allgatherv's displacements are i32 too: the whole vector must fit.
    let displs = counts.iter().scan(0i32, |at, &c| Some(at.checked_add(c).map(|next| std::mem::replace(at, next)))).collect::<Option<Vec<i32>>>();
    let displs = displs.ok_or_else(|| OptimError::ExceedsLimits("a vector of more than 2^31 elements for one MPI call".into()))?;
    Ok((counts, displs))
}

fn mpi_error(what: &str, code: i32) -> OptimError {
    OptimError::Wgpu(format!("MPI {what} failed with error code {code}"))
}

impl Collectives for MpiCollectives {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn ranks(&self) -> usize {
        self.world.size() as usize
    }

    /// `MPI_Reduce_scatter` with per-rank counts (rsmpi's safe
    /// `reduce_scatter_block` takes equal blocks only): no zero padding.
    fn reduce_scatter_sum(&self, send: &[f32], counts: &[usize], recv: &mut [f32]) -> Result<()> {
        let (counts, _) = partition(counts)?;
        if send.len() != counts.iter().map(|&c| c as usize).sum::<usize>() || recv.len() != counts[self.rank()] as usize {
            return Err(OptimError::InvalidOptions("reduce-scatter buffers do not match the counts"));
        }
        // SAFETY: send holds Σcounts f32, recv holds this rank's count, as
        // checked; the datatype, op and communicator are live rsmpi handles.
        let code = unsafe {
            mpi::ffi::MPI_Reduce_scatter(
                send.as_ptr().cast(),
                recv.as_mut_ptr().cast(),
                counts.as_ptr(),
                f32::equivalent_datatype().as_raw(),
                SystemOperation::sum().as_raw(),
                self.world.as_raw(),
            )
        };
        match code {
            0 => Ok(()),
            code => Err(mpi_error("reduce-scatter", code)),
        }
    }

    fn all_gather(&self, send: &[f32], counts: &[usize], recv: &mut [f32]) -> Result<()> {
        let (counts, displs) = partition(counts)?;
        if send.len() != counts[self.rank()] as usize || recv.len() != counts.iter().map(|&c| c as usize).sum::<usize>() {
            return Err(OptimError::InvalidOptions("all-gather buffers do not match the counts"));
        }
        let mut partition = PartitionMut::new(recv, counts, displs);
        self.world.all_gather_varcount_into(send, &mut partition);
        Ok(())
    }

    fn all_gather_bytes(&self, send: &[u8]) -> Result<Vec<u8>> {
        let mut all = vec![0u8; send.len() * self.ranks()];
        self.world.all_gather_into(send, &mut all[..]);
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts and displacements must fit MPI's i32: a typed error, not an
    /// overflow, when the whole vector does not.
    #[test]
    fn partitions_past_i32_are_typed_errors() {
        assert_eq!(partition(&[3, 5, 2]).unwrap(), (vec![3, 5, 2], vec![0, 3, 8]));
        assert!(matches!(partition(&[i32::MAX as usize, 2]), Err(OptimError::ExceedsLimits(_))));
        assert!(matches!(partition(&[1usize << 31]), Err(OptimError::ExceedsLimits(_))));
    }
}
