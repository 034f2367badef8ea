//! Per-step scalars ("coefficients"): declared once per rule with
//! [`coefficients!`](crate::coefficients), which gives both the Rust struct
//! the host fills in f64 each step and the shader's `struct Coeffs` and
//! `at_step`, so the two sides cannot disagree on the layout.

/// Number of per-group f32 scalars in the step uniform.
pub const N_COEFFS: usize = 12;

/// One group's scalars as the uniform holds them: rounded once to f32.
pub type Packed = [f32; N_COEFFS];

/// The step-dependent factors of one (device step, group), as the shader's
/// `at_step(c, f)` sees them (`f.x` … `f.w`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Factors {
    /// Factor 0, `f.x` in `at_step`.
    pub x: f64,
    /// Factor 1, `f.y` in `at_step`.
    pub y: f64,
    /// Factor 2, `f.z` in `at_step`.
    pub z: f64,
    /// Factor 3, `f.w` in `at_step`.
    pub w: f64,
}

impl From<[f64; 4]> for Factors {
    fn from(f: [f64; 4]) -> Self {
        Factors { x: f[0], y: f[1], z: f[2], w: f[3] }
    }
}

/// A rule's per-step scalars (implemented by [`coefficients!`](crate::coefficients)).
pub trait CoeffSet: Copy + std::fmt::Debug {
    /// Field names in uniform order.
    const NAMES: &'static [&'static str];
    /// The names of `at_step`'s two parameters, and its assignments
    /// `(field, WGSL expression)`.
    const AT_STEP: (&'static str, &'static str, &'static [(&'static str, &'static str)]);
    /// Each value rounded once to f32, in `NAMES` order, zero-padded.
    fn pack(&self) -> Packed;
    /// The packed values widened back to f64.
    fn unpack(packed: &Packed) -> Self;
    /// `at_step` evaluated on the host (the model the tests hold the
    /// shader's `at_step` and the rule's `step_factors` to).
    fn at_step(&self, f: Factors) -> Self;
}

/// The WGSL `struct Coeffs` and `fn at_step` of a coefficient set.
pub fn wgsl<C: CoeffSet>() -> String {
    let mut out = String::from("struct Coeffs {\n");
    for name in C::NAMES {
        out += &format!("    {name}: f32,\n");
    }
    for k in C::NAMES.len()..N_COEFFS {
        out += &format!("    _pad{k}: f32,\n");
    }
    let (c, f, assignments) = C::AT_STEP;
    out += &format!("}}\n\n// The step-dependent scalars at the device's step (GradScaler): `{f}` from the host, f64.\nfn at_step({c}: Coeffs, {f}: vec4<f32>) -> Coeffs {{\n    var d = {c};\n");
    for (field, expr) in assignments {
        out += &format!("    d.{field} = {expr};\n");
    }
    out + "    return d;\n}\n"
}

/// Declares a rule's per-step scalars: a struct of `f64` fields in uniform
/// order, and optionally the fields a GradScaler's device-side step
/// recomputes from the host's step factors `f` (`f.x` … `f.w`):
///
/// ```ignore
/// coefficients! {
///     /// Adam's scalars.
///     pub struct AdamCoeffs { lr, weight_decay, step_size, bc2_sqrt }
///     at_step(c, f) { step_size = c.lr * f.x, bc2_sqrt = f.y }
/// }
/// ```
///
/// The `at_step` expressions are both WGSL (in the generated shader) and
/// Rust (in [`CoeffSet::at_step`]), so they use only fields, `*`, `+` and
/// literals.
#[macro_export]
macro_rules! coefficients {
    ($(#[$doc:meta])* pub struct $name:ident { $($field:ident),+ $(,)? }
     $(at_step($c:ident, $f:ident) { $($target:ident = $e:expr),+ $(,)? })?) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq)]
        pub struct $name {
            $(
                #[doc = concat!("The per-step scalar `", stringify!($field), "`, rounded to f32 in the step uniform.")]
                pub $field: f64,
            )+
        }

        const _: () = assert!([$(stringify!($field)),+].len() <= $crate::rules::N_COEFFS, "too many coefficients for the step uniform");

        impl $crate::rules::CoeffSet for $name {
            const NAMES: &'static [&'static str] = &[$(stringify!($field)),+];
            const AT_STEP: (&'static str, &'static str, &'static [(&'static str, &'static str)]) =
                $crate::coefficients!(@at_step_wgsl $($c, $f, $($target = $e),+)?);

            fn pack(&self) -> $crate::rules::Packed {
                let mut out = [0f32; $crate::rules::N_COEFFS];
                for (o, x) in out.iter_mut().zip([$(self.$field),+]) {
                    *o = x as f32;
                }
                out
            }

            fn unpack(packed: &$crate::rules::Packed) -> Self {
                let mut values = packed.iter().map(|&x| x as f64);
                $name { $($field: values.next().unwrap_or(0.0),)+ }
            }

            #[allow(unused_variables, unused_mut, clippy::redundant_locals)]
            fn at_step(&self, f: $crate::rules::Factors) -> Self {
                let mut d = *self;
                $(
                    let $c = *self;
                    let $f = f;
                    $(d.$target = $e;)+
                )?
                d
            }
        }
    };
    (@at_step_wgsl $c:ident, $f:ident, $($target:ident = $e:expr),+) => {
        (stringify!($c), stringify!($f), &[$((stringify!($target), stringify!($e))),+])
    };
    (@at_step_wgsl) => {
        ("c", "f", &[])
    };
}
