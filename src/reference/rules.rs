//! One f64 function per update rule; each mirrors the shader of the same name.

use crate::config::{Adadelta, Adagrad, Adamax, Lion, NAdam, Newton, RAdam, RmsProp, Sgd};

fn effective_grad(g: f64, p: f64, maximize: bool, weight_decay: f64) -> f64 {
    let g = if maximize { -g } else { g };
    if weight_decay != 0.0 { g + weight_decay * p } else { g }
}

/// `sgd.wgsl`, `momentum.wgsl` and `nag.wgsl`.
pub fn sgd(c: &Sgd, t: u32, p: &mut [f64], g: &[f64], buf: &mut [f64]) {
    for i in 0..p.len() {
        let mut d = effective_grad(g[i], p[i], c.maximize, c.weight_decay);
        if c.momentum != 0.0 {
            let b = if t == 1 { d } else { c.momentum * buf[i] + (1.0 - c.dampening) * d };
            buf[i] = b;
            d = if c.nesterov { d + c.momentum * b } else { b };
        }
        p[i] -= c.lr * d;
    }
}

/// `adagrad.wgsl`.
pub fn adagrad(c: &Adagrad, t: u32, p: &mut [f64], g: &[f64], sum: &mut [f64]) {
    let clr = c.lr / (1.0 + (t as f64 - 1.0) * c.lr_decay);
    for i in 0..p.len() {
        let d = effective_grad(g[i], p[i], c.maximize, c.weight_decay);
        sum[i] += d * d;
        let denom = if c.eps_inside_sqrt { (sum[i] + c.eps).sqrt() } else { sum[i].sqrt() + c.eps };
        p[i] -= clr * d / denom;
    }
}

/// `rmsprop.wgsl`.
pub fn rmsprop(c: &RmsProp, p: &mut [f64], g: &[f64], sq: &mut [f64], buf: &mut [f64], gavg: &mut [f64]) {
    for i in 0..p.len() {
        let d = effective_grad(g[i], p[i], c.maximize, c.weight_decay);
        sq[i] = c.alpha * sq[i] + (1.0 - c.alpha) * d * d;
        let mut v = sq[i];
        if c.centered {
            gavg[i] += (1.0 - c.alpha) * (d - gavg[i]);
            v -= gavg[i] * gavg[i];
        }
        let denom = if c.eps_inside_sqrt { (v + c.eps).sqrt() } else { v.sqrt() + c.eps };
        if c.momentum > 0.0 {
            buf[i] = c.momentum * buf[i] + d / denom;
            p[i] -= c.lr * buf[i];
        } else {
            p[i] -= c.lr * d / denom;
        }
    }
}

/// `adadelta.wgsl`.
pub fn adadelta(c: &Adadelta, p: &mut [f64], g: &[f64], sq: &mut [f64], acc: &mut [f64]) {
    for i in 0..p.len() {
        let d = effective_grad(g[i], p[i], c.maximize, c.weight_decay);
        sq[i] = c.rho * sq[i] + (1.0 - c.rho) * d * d;
        let delta = (acc[i] + c.eps).sqrt() / (sq[i] + c.eps).sqrt() * d;
        acc[i] = c.rho * acc[i] + (1.0 - c.rho) * delta * delta;
        p[i] -= c.lr * delta;
    }
}

/// Options shared by Adam (`l2`) and AdamW (`decoupled`).
pub struct AdamLike {
    pub lr: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    pub l2: f64,
    pub decoupled: f64,
    pub amsgrad: bool,
    pub maximize: bool,
    pub eps_inside_sqrt: bool,
}

impl AdamLike {
    /// Options without any weight decay.
    pub fn new(lr: f64, betas: (f64, f64), eps: f64, amsgrad: bool, maximize: bool, eps_inside_sqrt: bool) -> Self {
        AdamLike { lr, betas, eps, l2: 0.0, decoupled: 0.0, amsgrad, maximize, eps_inside_sqrt }
    }
}

/// `adam.wgsl` and `adamw.wgsl`.
pub fn adam(c: &AdamLike, t: u32, p: &mut [f64], g: &[f64], m: &mut [f64], v: &mut [f64], vmax: &mut [f64]) {
    let (b1, b2) = c.betas;
    let bc1 = 1.0 - b1.powi(t as i32);
    let bc2 = 1.0 - b2.powi(t as i32);
    let step_size = c.lr / bc1;
    for i in 0..p.len() {
        p[i] *= 1.0 - c.lr * c.decoupled;
        let d = effective_grad(g[i], p[i], c.maximize, c.l2);
        m[i] += (1.0 - b1) * (d - m[i]);
        v[i] = b2 * v[i] + (1.0 - b2) * d * d;
        let mut vv = v[i];
        if c.amsgrad {
            vmax[i] = vmax[i].max(vv);
            vv = vmax[i];
        }
        let denom = if c.eps_inside_sqrt { (vv / bc2 + c.eps).sqrt() } else { vv.sqrt() / bc2.sqrt() + c.eps };
        p[i] -= step_size * m[i] / denom;
    }
}

/// `adamax.wgsl`.
pub fn adamax(c: &Adamax, t: u32, p: &mut [f64], g: &[f64], m: &mut [f64], u: &mut [f64]) {
    let clr = c.lr / (1.0 - c.betas.0.powi(t as i32));
    for i in 0..p.len() {
        let d = effective_grad(g[i], p[i], c.maximize, c.weight_decay);
        m[i] += (1.0 - c.betas.0) * (d - m[i]);
        u[i] = (c.betas.1 * u[i]).max(d.abs() + c.eps);
        p[i] -= clr * m[i] / u[i];
    }
}

/// Weight decay of NAdam / RAdam: the gradient term, or the decoupled
/// factor applied to θ first.
fn decayed(p: &mut f64, g: f64, maximize: bool, lr: f64, wd: f64, decoupled: bool) -> f64 {
    if decoupled {
        *p *= 1.0 - lr * wd;
        effective_grad(g, *p, maximize, 0.0)
    } else {
        effective_grad(g, *p, maximize, wd)
    }
}

/// `nadam.wgsl`, with μₜ and Πₜ in f64 straight from their definitions.
pub fn nadam(c: &NAdam, t: u32, p: &mut [f64], g: &[f64], m: &mut [f64], v: &mut [f64]) {
    let (b1, b2) = c.betas;
    let mu = |i: f64| b1 * (1.0 - 0.5 * 0.96f64.powf(i * c.momentum_decay));
    let prod: f64 = (1..=t).map(|i| mu(i as f64)).product();
    let (mu_t, mu_next) = (mu(t as f64), mu(t as f64 + 1.0));
    let bc2 = 1.0 - b2.powi(t as i32);
    for i in 0..p.len() {
        let d = decayed(&mut p[i], g[i], c.maximize, c.lr, c.weight_decay, c.decoupled_weight_decay);
        m[i] += (1.0 - b1) * (d - m[i]);
        v[i] = b2 * v[i] + (1.0 - b2) * d * d;
        let denom = (v[i] / bc2).sqrt() + c.eps;
        p[i] -= c.lr * (1.0 - mu_t) / (1.0 - prod) * d / denom;
        p[i] -= c.lr * mu_next / (1.0 - prod * mu_next) * m[i] / denom;
    }
}

/// `radam.wgsl`.
pub fn radam(c: &RAdam, t: u32, p: &mut [f64], g: &[f64], m: &mut [f64], v: &mut [f64]) {
    let (b1, b2) = c.betas;
    let (bc1, bc2) = (1.0 - b1.powi(t as i32), 1.0 - b2.powi(t as i32));
    let rho_inf = 2.0 / (1.0 - b2) - 1.0;
    let rho_t = rho_inf - 2.0 * t as f64 * b2.powi(t as i32) / bc2;
    for i in 0..p.len() {
        let d = decayed(&mut p[i], g[i], c.maximize, c.lr, c.weight_decay, c.decoupled_weight_decay);
        m[i] += (1.0 - b1) * (d - m[i]);
        v[i] = b2 * v[i] + (1.0 - b2) * d * d;
        let corrected = m[i] / bc1;
        if rho_t > 5.0 {
            let rect = ((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t)).sqrt();
            let adaptive = bc2.sqrt() / (v[i].sqrt() + c.eps);
            p[i] -= corrected * c.lr * adaptive * rect;
        } else {
            p[i] -= corrected * c.lr;
        }
    }
}

/// `newton.wgsl`: `h` is the user-supplied Hessian diagonal (an input).
pub fn newton(c: &Newton, p: &mut [f64], g: &[f64], h: &[f64], h_ema: &mut [f64], m: &mut [f64]) {
    for i in 0..p.len() {
        let d = effective_grad(g[i], p[i], c.maximize, c.weight_decay);
        let mut mi = d;
        if c.beta1 > 0.0 {
            m[i] += (1.0 - c.beta1) * (d - m[i]);
            mi = m[i];
        }
        let mut hi = h[i];
        if c.beta2 > 0.0 {
            h_ema[i] = c.beta2 * h_ema[i] + (1.0 - c.beta2) * h[i];
            hi = h_ema[i];
        }
        let mut u = mi / (hi.abs() + c.damping);
        if c.clip > 0.0 {
            u = u.clamp(-c.clip, c.clip);
        }
        p[i] -= c.lr * u;
    }
}

/// `lion.wgsl`. Returns, per element, whether sign(c) was decided by less
/// than the f32 rounding of c (so the GPU may take the other sign): the
/// validation harness allows 2·lr for each such step.
pub fn lion(c: &Lion, p: &mut [f64], g: &[f64], m: &mut [f64], ambiguous: &mut [bool]) {
    let (b1, b2) = c.betas;
    for i in 0..p.len() {
        let d = effective_grad(g[i], p[i], c.maximize, 0.0);
        let (a, b) = (b1 * m[i], (1.0 - b1) * d);
        let ci = a + b;
        ambiguous[i] = ci.abs() <= 4.0 * f32::EPSILON as f64 * (a.abs() + b.abs());
        let s = if ci > 0.0 { 1.0 } else if ci < 0.0 { -1.0 } else { 0.0 };
        p[i] = p[i] * (1.0 - c.lr * c.weight_decay) - c.lr * s;
        m[i] = b2 * m[i] + (1.0 - b2) * d;
    }
}
