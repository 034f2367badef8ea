//! Blockwise 8-bit state (bitsandbytes style): each block of state values
//! is stored as one f32 absmax scale and 8-bit codes into a 256-entry
//! dynamic quantisation map, so that small values keep relative precision.

use crate::rules::Quantity;

/// bitsandbytes' dynamic map (`create_dynamic_map`, 8 bits, 7 exponent
/// bits): for each decade 10⁻⁶ … 10⁰, linearly spaced fractions in
/// [0.1, 1], finer in the larger decades; plus 0 and 1. `signed` mirrors
/// the positive values (for moments such as `exp_avg`), with −1 in place
/// of the smallest negative value; unsigned spends every code on [0, 1]
/// (for `exp_avg_sq`-like state). Sorted ascending.
pub fn dynamic_map(signed: bool) -> [f32; 256] {
    let mut data: Vec<f64> = Vec::with_capacity(256);
    for i in 0..7 {
        let items = if signed { (1usize << i) + 1 } else { (1usize << (i + 1)) + 1 };
        let scale = 10f64.powi(i - 6);
        let bound = |k: usize| 0.1 + 0.9 * k as f64 / (items - 1) as f64;
        for k in 0..items - 1 {
            let mean = (bound(k) + bound(k + 1)) / 2.0;
            data.push(scale * mean);
            if signed {
                data.push(-scale * mean);
            }
        }
    }
    data.push(0.0);
    data.push(1.0);
    if signed {
        // Symmetric extremes (unlike bitsandbytes): trade the smallest
        // negative code for −1, so a block's absmax encodes exactly whatever
        // its sign and decode → encode is the identity (bitwise resume).
        let smallest_negative = data.iter().cloned().filter(|v| *v < 0.0).fold(f64::NEG_INFINITY, f64::max);
        data.retain(|v| *v != smallest_negative);
        data.push(-1.0);
    }
    data.sort_by(f64::total_cmp);
    debug_assert_eq!(data.len(), 256);
    std::array::from_fn(|i| data[i] as f32)
}

/// The code of the map entry nearest to `x` (|x| ≤ 1).
pub fn nearest(map: &[f32; 256], x: f32) -> u8 {
    // largest index with map[i] <= x (0 if none)
    let (mut lo, mut hi) = (0usize, 255usize);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if map[mid] <= x { lo = mid } else { hi = mid - 1 }
    }
    if lo < 255 && (map[lo + 1] - x).abs() < (x - map[lo]).abs() { (lo + 1) as u8 } else { lo as u8 }
}

/// How a state slot is quantised.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Coding {
    /// Signed map (the slot can be negative).
    pub signed: bool,
    /// Quantise √x and square on decode: for second-moment slots, whose
    /// dynamic range is the square of the gradient's. In the plain domain a
    /// block's small entries of `exp_avg_sq` fall below the map's smallest
    /// code (10⁻⁶ of the absmax) while `exp_avg` does not, and m/√v blows up;
    /// in the root domain both span the same decades.
    pub sqrt: bool,
}

impl Coding {
    /// The coding of a slot holding `quantity`: signed maps for signed
    /// values, the root domain for second moments.
    pub fn of(quantity: Quantity) -> Coding {
        match quantity {
            Quantity::Signed => Coding { signed: true, sqrt: false },
            Quantity::SecondMoment => Coding { signed: false, sqrt: true },
            Quantity::NonNegative => Coding { signed: false, sqrt: false },
        }
    }
}

/// Codes and one absmax scale per `block` values.
pub fn encode(values: &[f32], block: usize, coding: Coding) -> (Vec<u8>, Vec<f32>) {
    let map = dynamic_map(coding.signed);
    let mut codes = Vec::with_capacity(values.len());
    let mut scales = Vec::with_capacity(values.len().div_ceil(block));
    for chunk in values.chunks(block) {
        let t: Vec<f32> = chunk.iter().map(|&v| if coding.sqrt { v.max(0.0).sqrt() } else { v }).collect();
        let absmax = t.iter().fold(0f32, |m, v| m.max(v.abs()));
        scales.push(absmax);
        codes.extend(t.iter().map(|&v| nearest(&map, if absmax > 0.0 { v / absmax } else { 0.0 })));
    }
    (codes, scales)
}

/// Values from codes and per-block scales.
pub fn decode(codes: &[u8], scales: &[f32], block: usize, coding: Coding) -> Vec<f32> {
    let map = dynamic_map(coding.signed);
    codes
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let v = map[c as usize] * scales[i / block];
            if coding.sqrt { v * v } else { v }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_are_sorted_distinct_and_span_the_range() {
        for signed in [true, false] {
            let m = dynamic_map(signed);
            assert!(m.windows(2).all(|w| w[0] < w[1]), "signed {signed}: not strictly increasing");
            assert_eq!(m[255], 1.0);
            assert_eq!(m[0], if signed { -1.0 } else { 0.0 });
            assert!(m.contains(&0.0));
        }
    }

    #[test]
    fn codes_are_nearest_and_round_trips_are_close() {
        let values: Vec<f32> = (0..5000).map(|i| (i as f32 * 0.37).sin() * 10f32.powi(-(i % 5))).collect();
        for signed in [true, false] {
            let vals: Vec<f32> = values.iter().map(|v| if signed { *v } else { v.abs() }).collect();
            let map = dynamic_map(signed);
            let coding = Coding { signed, sqrt: false };
            let (codes, scales) = encode(&vals, 1024, coding);
            let back = decode(&codes, &scales, 1024, coding);
            for (i, (&a, &c)) in vals.iter().zip(&codes).enumerate() {
                let x = a / scales[i / 1024];
                let err = (x - map[c as usize]).abs();
                for n in [c.saturating_sub(1), c.saturating_add(1)] {
                    assert!(err <= (x - map[n as usize]).abs(), "elem {i}: code {c} is not the nearest");
                }
            }
            // Relative precision is worst at the bottom of each decade of
            // the map; over a vector the error is a few per cent.
            let num: f32 = vals.iter().zip(&back).map(|(a, b)| (a - b) * (a - b)).sum();
            let den: f32 = vals.iter().map(|a| a * a).sum();
            assert!((num / den).sqrt() < 0.03, "signed {signed}: relative L2 {}", (num / den).sqrt());
        }
    }
}
