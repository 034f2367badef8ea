//! Flag bits of the step uniform, declared once: the WGSL constants every
//! shader sees are generated from [`ALL`] (see [`wgsl`]).

macro_rules! flag_bits {
    ($($(#[$doc:meta])* $name:ident = $value:expr,)+) => {
        $($(#[$doc])* pub const $name: u32 = $value;)+
        /// Every flag with its WGSL name, in bit order.
        pub const ALL: &[(&str, u32)] = &[$((stringify!($name), $name)),+];
    };
}

flag_bits! {
    /// Negate the gradient (`maximize = True`).
    MAXIMIZE = 1,
    /// This is the optimizer's first step (set by the engine).
    FIRST_STEP = 2,
    /// Adam/AdamW `amsgrad`.
    AMSGRAD = 4,
    /// RMSprop `centered`.
    CENTERED = 8,
    /// The textbook `g/√(v + eps)` instead of PyTorch's `g/(√v + eps)`.
    EPS_INSIDE_SQRT = 16,
    /// A momentum buffer is kept (RMSprop momentum, Newton's β₁).
    MOMENTUM = 32,
    /// Clip the grads to a total L2 norm (`GradControl::max_norm`).
    CLIP = 64,
    /// Dynamic loss scaling with non-finite skip (`GradControl::scaler`).
    SCALER = 128,
    /// Decoupled weight decay (AdamW; NAdam, RAdam `decoupled_weight_decay`; Lion).
    DECOUPLED = 256,
    /// Newton: keep an EMA of the Hessian diagonal (Sophia).
    HESSIAN_EMA = 512,
    /// Newton: clip each coordinate of the update (Sophia).
    CLIP_UPDATE = 1024,
    /// Skip a step whose grads hold a NaN or an infinity, for every tensor,
    /// with the optimizer's step counted on the device (on with a GradScaler,
    /// or alone with `GradControl::skip_nonfinite`).
    SKIP_NONFINITE = 2048,
    /// Clip (and report) each param group by its own norm instead of the
    /// one norm over every group (`ClipScope::PerGroup`).
    CLIP_PER_GROUP = 4096,
    /// The pipeline switches the params between train and eval form
    /// (schedule-free's `train()`/`eval()`) instead of stepping: a pipeline
    /// of its own, so the step's has no branch for it; `mode_switch()`.
    MODE_SWITCH = 8192,
}

/// `bit` if `on`, else 0.
pub fn bit(on: bool, flag: u32) -> u32 {
    if on { flag } else { 0 }
}

/// The WGSL declarations of every flag (`const MAXIMIZE: u32 = 1u;` …).
pub fn wgsl() -> String {
    ALL.iter().map(|(name, value)| format!("const {name}: u32 = {value}u;\n")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn flags_are_distinct_single_bits() {
        let mut seen = 0u32;
        for (name, v) in super::ALL {
            assert_eq!(v.count_ones(), 1, "{name} is not a single bit");
            assert_eq!(seen & v, 0, "{name} reuses a bit");
            seen |= v;
        }
    }
}
