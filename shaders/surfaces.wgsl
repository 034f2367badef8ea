// Gradients of the 2-D test surfaces, so that whole optimisation loops run on
// the GPU. `xy` holds (x, y) pairs, one per independent problem; `grad`
// receives (∂f/∂x, ∂f/∂y). The surface is chosen by the override SURFACE:
//   0  quadratic   f = x² + 10·y²
//   1  Rosenbrock  f = (1 − x)² + 100·(y − x²)²
//   2  Beale       f = (1.5 − x + xy)² + (2.25 − x + xy²)² + (2.625 − x + xy³)²
//   3  saddle      f = x² − y²
override SURFACE: u32 = 0u;

@group(0) @binding(0) var<storage, read> xy: array<f32>;
@group(0) @binding(1) var<storage, read_write> grad: array<f32>;

fn gradient(x: f32, y: f32) -> vec2<f32> {
    switch SURFACE {
        case 0u: {
            return vec2<f32>(2.0 * x, 20.0 * y);
        }
        case 1u: {
            let r = y - x * x;
            return vec2<f32>(-2.0 * (1.0 - x) - 400.0 * x * r, 200.0 * r);
        }
        case 2u: {
            let a = 1.5 - x + x * y;
            let b = 2.25 - x + x * y * y;
            let c = 2.625 - x + x * y * y * y;
            let dx = 2.0 * a * (y - 1.0) + 2.0 * b * (y * y - 1.0) + 2.0 * c * (y * y * y - 1.0);
            let dy = 2.0 * a * x + 2.0 * b * 2.0 * x * y + 2.0 * c * 3.0 * x * y * y;
            return vec2<f32>(dx, dy);
        }
        default: {
            return vec2<f32>(2.0 * x, -2.0 * y);
        }
    }
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if (2u * i + 1u >= arrayLength(&xy)) {
        return;
    }
    let g = gradient(xy[2u * i], xy[2u * i + 1u]);
    grad[2u * i] = g.x;
    grad[2u * i + 1u] = g.y;
}
