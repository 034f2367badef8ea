//! Clipping and loss scaling of a sharded step, identical on every rank.
//!
//! Each rank holds the mean grads of its shard only, so no rank can take a
//! norm alone. Every rank computes its per-group partial sums of squares
//! (of the unscaled grads, in f64) and a found-inf flag, all-gathers them,
//! and adds the N partials **in rank order**: every rank gets bitwise the
//! same norms, the same grad multipliers and the same skip decision (an
//! all-reduce would leave the order of the sum to the transport). The
//! GradScaler's state is then updated alike on every rank, as
//! `torch.amp.GradScaler.update` does.

use super::Collectives;
use crate::engine::{ClipScope, GradControl, ScalerState};
use crate::error::{OptimError, Result};

/// What one sharded step does with its grads, the same on every rank.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// Skip the step on every rank (a non-finite grad with a GradScaler or
    /// `skip_nonfinite`).
    pub skip: bool,
    /// The factor each group's grads are multiplied by (unscaling and
    /// clipping), by group.
    pub multipliers: Vec<f32>,
    /// The norms: one over every group ([`ClipScope::Global`]) or one per
    /// group ([`ClipScope::PerGroup`]).
    pub norms: Vec<f32>,
}

/// A rank's contribution: each group's sum of squares of its unscaled
/// grads, in f64 and element order, and whether any grad is non-finite.
/// `runs` gives the grads' groups as consecutive (elements, group) runs.
pub fn partials(grads: &[f32], runs: &[(usize, usize)], groups: usize, scale: f32) -> (Vec<f64>, bool) {
    let mut sums = vec![0.0f64; groups];
    let mut found = false;
    let inv = 1.0 / scale as f64;
    let mut at = 0;
    for &(len, group) in runs {
        for &g in &grads[at..at + len] {
            found |= !g.is_finite();
            let u = g as f64 * inv;
            sums[group] += u * u;
        }
        at += len;
    }
    (sums, found)
}

/// The host side of [`GradControl`] for a sharded step: the settings, the
/// GradScaler's state and the last norms.
#[derive(Clone, Debug)]
pub struct ShardControl {
    control: GradControl,
    state: ScalerState,
    norms: Vec<f32>,
}

impl ShardControl {
    /// Control per `control` (already validated), the scaler at its
    /// initial scale.
    pub fn new(control: GradControl) -> Self {
        let scale = control.scaler.map_or(1.0, |s| s.init_scale as f32);
        ShardControl { control, state: ScalerState { scale, growth_tracker: 0, skipped: 0, found_inf: 0 }, norms: Vec::new() }
    }

    /// Whether a step needs the norms or the found-inf flag.
    pub fn active(&self) -> bool {
        self.control.active()
    }

    /// The GradScaler's state (scale 1 without one).
    pub fn state(&self) -> ScalerState {
        self.state
    }

    /// Restores the GradScaler's state (from a checkpoint).
    pub fn set_state(&mut self, state: ScalerState) {
        self.state = state;
    }

    /// The norms of the last step (empty before the first, or without clipping or scaling).
    pub fn norms(&self) -> &[f32] {
        &self.norms
    }

    /// Every rank's partials all-gathered and added in rank order: the
    /// decision, the same on every rank. Updates the scaler's state.
    ///
    /// **Errors:** the transport's failures; [`OptimError::RanksDisagree`]
    /// if a rank sent another number of groups.
    pub fn decide(&mut self, comm: &impl Collectives, sums: &[f64], found: bool) -> Result<Decision> {
        let mine: Vec<u8> = std::iter::once(found as u8).chain(sums.iter().flat_map(|s| s.to_le_bytes())).collect();
        let all = comm.all_gather_bytes(&mine)?;
        if all.len() != mine.len() * comm.ranks() {
            return Err(OptimError::RanksDisagree { rank: comm.rank(), what: "the number of param groups in a step's norms" });
        }
        let mut totals = vec![0.0f64; sums.len()];
        let mut found_any = false;
        for rank in all.chunks_exact(mine.len()) {
            found_any |= rank[0] != 0;
            for (g, word) in rank[1..].chunks_exact(8).enumerate() {
                totals[g] += f64::from_le_bytes(word.try_into().expect("8 bytes"));
            }
        }
        Ok(self.finish(&totals, found_any))
    }

    /// The norms, multipliers and skip from the world's per-group sums, and
    /// the scaler's update (`_amp_update_scale_`, in f32 as PyTorch's).
    fn finish(&mut self, totals: &[f64], found: bool) -> Decision {
        let every: f64 = totals.iter().sum();
        let norm_of = |g: usize| match self.control.clip_scope {
            ClipScope::Global => every.sqrt(),
            ClipScope::PerGroup => totals[g].sqrt(),
        };
        let inv_scale = 1.0 / self.state.scale as f64;
        let multipliers = (0..totals.len())
            .map(|g| {
                let clip = self.control.max_norm.map_or(1.0, |m| (m / (norm_of(g) + self.control.norm_eps())).min(1.0));
                (inv_scale * clip) as f32
            })
            .collect();
        self.norms = match self.control.clip_scope {
            ClipScope::Global => vec![every.sqrt() as f32],
            ClipScope::PerGroup => totals.iter().map(|t| t.sqrt() as f32).collect(),
        };
        let skip = found && self.control.device_step();
        self.update_scaler(found);
        if skip {
            self.state.skipped += 1;
        }
        self.state.found_inf = skip as u32;
        Decision { skip, multipliers, norms: self.norms.clone() }
    }

    fn update_scaler(&mut self, found: bool) {
        let Some(sc) = self.control.scaler else { return };
        let s = &mut self.state;
        if found {
            s.scale *= sc.backoff_factor as f32;
            s.growth_tracker = 0;
        } else if s.growth_tracker + 1 >= sc.growth_interval {
            let grown = s.scale * sc.growth_factor as f32;
            if grown.is_finite() {
                s.scale = grown;
            }
            s.growth_tracker = 0;
        } else {
            s.growth_tracker += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::GradScaler;
    use crate::shard::SingleProcess;

    /// Grads (3, 0) in group 0 and (4) in group 1: a global norm of 5, group
    /// norms of 3 and 4, and the clip factors of `clip_grad_norm_`.
    #[test]
    fn norms_and_multipliers_by_scope() {
        let grads = [3.0, 0.0, 4.0];
        let (sums, found) = partials(&grads, &[(2, 0), (1, 1)], 2, 1.0);
        assert_eq!((sums.as_slice(), found), ([9.0, 16.0].as_slice(), false));
        let global = GradControl { max_norm: Some(1.0), ..GradControl::default() };
        let d = ShardControl::new(global).decide(&SingleProcess, &sums, found).unwrap();
        assert_eq!(d.norms, vec![5.0]);
        assert_eq!(d.multipliers, vec![(1.0 / (5.0 + 1e-6)) as f32; 2]);
        let per_group = GradControl { clip_scope: ClipScope::PerGroup, ..global };
        let d = ShardControl::new(per_group).decide(&SingleProcess, &sums, found).unwrap();
        assert_eq!(d.norms, vec![3.0, 4.0]);
        assert_eq!(d.multipliers, vec![(1.0 / (3.0 + 1e-6)) as f32, (1.0 / (4.0 + 1e-6)) as f32]);
    }

    /// A non-finite grad skips the step and backs the scale off; clean
    /// steps grow it after `growth_interval`; grads are unscaled.
    #[test]
    fn the_scaler_follows_pytorch() {
        let scaler = GradScaler { init_scale: 8.0, growth_interval: 2, ..GradScaler::default() };
        let mut c = ShardControl::new(GradControl { scaler: Some(scaler), ..GradControl::default() });
        let (sums, found) = partials(&[f32::NAN, 1.0], &[(2, 0)], 1, 8.0);
        assert!(found);
        let d = c.decide(&SingleProcess, &sums, found).unwrap();
        assert!(d.skip);
        assert_eq!((c.state().scale, c.state().skipped, c.state().found_inf), (4.0, 1, 1));
        for expected in [4.0, 8.0] {
            let d = c.decide(&SingleProcess, &partials(&[4.0], &[(1, 0)], 1, c.state().scale).0, false).unwrap();
            assert!(!d.skip);
            assert_eq!(d.multipliers, vec![0.25]);
            assert_eq!(d.norms, vec![1.0]);
            assert_eq!(c.state().scale, expected);
        }
    }
}
