// The playground page: asks the wasm module (src/page.rs, src/train.rs) for
// paths and training epochs computed by the engine on WebGPU, and draws
// them on Canvas 2D. When the first paths and a short training run are
// done, document.body.dataset.state becomes "done" ("error" with the
// message shown otherwise), for tests to wait on.
import init, { adapter, setup, run, loss, train } from './pkg/wgpu_optim_web.js';

const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#17becf',
  '#bcbd22', '#7f3fbf', '#00a087', '#e64b35', '#3c5488', '#f39b7f'];
const SIZE = 360;
const ELEMENTWISE = ['adamw', 'adam', 'sgd', 'momentum', 'nag', 'adagrad', 'rmsprop', 'adadelta', 'adamax',
  'nadam', 'radam', 'asgd', 'rprop', 'adan', 'adamw_schedulefree'];
const settings = {};   // label -> { scale, beta1 }
let panels = [];
let generation = 0;

function fail(message) {
  document.body.dataset.state = 'error';
  const e = document.getElementById('error');
  e.hidden = false;
  e.textContent = message;
}

function el(tag, attrs = {}, text = '') {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text) e.textContent = text;
  return e;
}

// A rule's PyTorch options with the page's settings applied.
function options(rule) {
  const o = structuredClone(rule.options);
  const s = settings[rule.label];
  o.lr = o.lr * Math.pow(10, s.scale);
  if (Array.isArray(o.betas) && s.beta1 !== null) o.betas[0] = s.beta1;
  return o;
}

function toPixel(panel, x, y) {
  return [(x - panel.x[0]) / (panel.x[1] - panel.x[0]) * SIZE, (1 - (y - panel.y[0]) / (panel.y[1] - panel.y[0])) * SIZE];
}

function drawContours(panel, ctx) {
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, SIZE, SIZE);
  ctx.strokeStyle = '#d0d0d0';
  ctx.lineWidth = 1;
  ctx.beginPath();
  const c = panel.contours;
  for (let i = 0; i < c.length; i += 4) {
    const [a, b] = toPixel(panel, c[i], c[i + 1]);
    const [d, e] = toPixel(panel, c[i + 2], c[i + 3]);
    ctx.moveTo(a, b);
    ctx.lineTo(d, e);
  }
  ctx.stroke();
}

// Each path's first `upto` steps; a path is cut where it leaves the panel.
function drawPaths(panel, upto) {
  const ctx = panel.canvas.getContext('2d');
  drawContours(panel, ctx);
  const inside = (x, y) => x >= panel.x[0] && x <= panel.x[1] && y >= panel.y[0] && y <= panel.y[1];
  panel.paths.forEach((path, r) => {
    if (!path) return;
    ctx.strokeStyle = COLORS[r % COLORS.length];
    ctx.lineWidth = 2;
    ctx.beginPath();
    let drawing = false;
    for (let k = 0; k <= Math.min(upto, path.length / 2 - 1); k++) {
      const [x, y] = [path[2 * k], path[2 * k + 1]];
      if (!Number.isFinite(x) || !Number.isFinite(y) || !inside(x, y)) { drawing = false; continue; }
      const [px, py] = toPixel(panel, x, y);
      if (drawing) ctx.lineTo(px, py); else ctx.moveTo(px, py);
      drawing = true;
    }
    ctx.stroke();
  });
  const [sx, sy] = toPixel(panel, panel.start[0], panel.start[1]);
  ctx.fillStyle = '#000';
  ctx.beginPath();
  ctx.arc(sx, sy, 4, 0, 2 * Math.PI);
  ctx.fill();
}

// |f| along each path, log scale.
function drawLosses(panel) {
  const ctx = panel.lossCanvas.getContext('2d');
  const [w, h] = [panel.lossCanvas.width, panel.lossCanvas.height];
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, w, h);
  const lg = v => Math.log10(Math.abs(v) + 1e-12);
  const all = panel.curves.flat().filter(Number.isFinite).map(lg);
  const [lo, hi] = [Math.min(...all), Math.max(...all) + 1e-9];
  panel.curves.forEach((curve, r) => {
    ctx.strokeStyle = COLORS[r % COLORS.length];
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    curve.forEach((v, k) => {
      const [px, py] = [k / (curve.length - 1) * w, h - (lg(v) - lo) / (hi - lo) * (h - 4) - 2];
      if (k === 0) ctx.moveTo(px, py); else ctx.lineTo(px, py);
    });
    ctx.stroke();
  });
  ctx.fillStyle = '#555';
  ctx.fillText(`|f|, log scale: 1e${hi.toFixed(0)} … 1e${lo.toFixed(0)}`, 6, 12);
}

function animate(panel) {
  return new Promise(resolve => {
    const frames = 45;
    let frame = 0;
    const tick = () => {
      frame += 1;
      drawPaths(panel, Math.round(panel.steps * frame / frames));
      if (frame < frames) setTimeout(tick, 20); else resolve();
    };
    tick();
  });
}

async function runPanel(panel) {
  const mine = generation;
  const paths = [];
  for (const rule of panel.rules) {
    paths.push(await run(panel.surface, rule.optimizer, JSON.stringify(options(rule)), panel.start[0], panel.start[1], panel.steps));
    if (mine !== generation) return;
  }
  panel.paths = paths;
  panel.curves = paths.map(p => Array.from({ length: p.length / 2 }, (_, k) => loss(panel.surface, p[2 * k], p[2 * k + 1])));
  panel.rules.forEach((rule, r) => {
    const f = panel.curves[r][panel.curves[r].length - 1];
    const cell = panel.table.querySelector(`td[data-rule="${rule.label}"]`);
    cell.dataset.loss = String(f);
    cell.textContent = f.toPrecision(4);
  });
  drawLosses(panel);
  await animate(panel);
}

function buildPanels() {
  const root = document.getElementById('panels');
  panels.forEach(panel => {
    const box = el('div', { class: 'panel', 'data-surface': panel.surface });
    box.append(el('h3', {}, `${panel.surface}, ${panel.steps} steps`));
    panel.canvas = el('canvas', { width: SIZE, height: SIZE, class: 'paths' });
    panel.lossCanvas = el('canvas', { width: SIZE, height: 120 });
    panel.table = el('table');
    panel.table.append(el('tr', {}, ''));
    panel.table.rows[0].append(el('th', {}, 'rule'), el('th', {}, 'final f'));
    panel.rules.forEach((rule, r) => {
      const row = el('tr');
      const name = el('td');
      name.append(el('span', { class: 'swatch', style: `background:${COLORS[r % COLORS.length]}` }), rule.label);
      row.append(name, el('td', { 'data-surface': panel.surface, 'data-rule': rule.label, class: 'final-loss' }, '…'));
      panel.table.append(row);
    });
    panel.canvas.addEventListener('click', ev => {
      const rect = panel.canvas.getBoundingClientRect();
      const fx = (ev.clientX - rect.left) / rect.width, fy = (ev.clientY - rect.top) / rect.height;
      panel.start = [panel.x[0] + fx * (panel.x[1] - panel.x[0]), panel.y[1] - fy * (panel.y[1] - panel.y[0])];
      runPanel(panel).catch(e => fail(String(e.message || e)));
    });
    box.append(panel.canvas, panel.lossCanvas, panel.table);
    root.append(box);
    drawContours(panel, panel.canvas.getContext('2d'));
  });
}

function buildControls() {
  const body = document.querySelector('#controls tbody');
  panels[0].rules.forEach((rule, r) => {
    const betas = rule.options.betas;
    settings[rule.label] = { scale: 0, beta1: Array.isArray(betas) ? betas[0] : null };
    const row = el('tr');
    const name = el('td');
    name.append(el('span', { class: 'swatch', style: `background:${COLORS[r % COLORS.length]}` }), rule.label);
    const slider = el('input', { type: 'range', min: '-1', max: '1', step: '0.1', value: '0' });
    const shown = el('td', {}, '1');
    slider.addEventListener('change', () => {
      settings[rule.label].scale = Number(slider.value);
      shown.textContent = Math.pow(10, slider.value).toPrecision(2);
      rerunAll();
    });
    const beta = el('td');
    if (Array.isArray(betas)) {
      const input = el('input', { type: 'number', min: '0', max: '0.999', step: '0.01', value: String(betas[0]) });
      input.addEventListener('change', () => { settings[rule.label].beta1 = Number(input.value); rerunAll(); });
      beta.append(input);
    }
    const sliderCell = el('td');
    sliderCell.append(slider);
    row.append(name, sliderCell, shown, beta);
    body.append(row);
  });
}

function rerunAll() {
  generation += 1;
  (async () => { for (const p of panels) await runPanel(p); })().catch(e => fail(String(e.message || e)));
}

function drawCurve(losses) {
  const canvas = document.getElementById('mlp-curve');
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  const lg = losses.map(v => Math.log10(v));
  const [lo, hi] = [Math.min(...lg) - 0.05, Math.max(...lg) + 0.05];
  ctx.strokeStyle = COLORS[0];
  ctx.lineWidth = 2;
  ctx.beginPath();
  lg.forEach((v, k) => {
    const [x, y] = [(k + 0.5) / losses.length * canvas.width, canvas.height - (v - lo) / (hi - lo) * canvas.height];
    if (k === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
  });
  ctx.stroke();
  ctx.fillStyle = '#555';
  ctx.fillText('train loss per epoch, log scale', 6, 12);
}

async function trainMlp() {
  const rule = document.getElementById('mlp-rule').value;
  const epochs = Number(document.getElementById('mlp-epochs').value);
  const body = document.querySelector('#mlp-epochs-table tbody');
  body.replaceChildren();
  const losses = [];
  const result = document.getElementById('mlp-result');
  result.textContent = `training with ${rule}…`;
  const accuracy = await train(rule, epochs, 0, (epoch, trainLoss, testAccuracy) => {
    losses.push(trainLoss);
    const row = el('tr');
    row.append(el('td', {}, String(epoch)), el('td', {}, trainLoss.toFixed(4)), el('td', {}, `${(100 * testAccuracy).toFixed(1)} %`));
    body.append(row);
    drawCurve(losses);
  });
  result.dataset.accuracy = String(accuracy);
  result.dataset.rule = rule;
  result.textContent = `${rule}: ${(100 * accuracy).toFixed(1)} % test accuracy after ${epochs} epochs`;
}

const ENABLE = 'Use a recent Chrome or Edge (WebGPU is on by default), Firefox with dom.webgpu.enabled, ' +
  'Safari 26, or start Chromium with --enable-unsafe-webgpu.';

async function main() {
  if (!navigator.gpu) {
    fail(`WebGPU is not available in this browser, so nothing can run here. ${ENABLE}`);
    return;
  }
  await init();
  let name;
  try {
    name = await adapter();
  } catch (e) {
    fail(`This browser offers no WebGPU adapter (${e && e.message ? e.message : e}), so nothing can run here. ${ENABLE}`);
    return;
  }
  document.getElementById('adapter').textContent = `Adapter: ${name} (WebGPU)`;
  panels = JSON.parse(setup());
  buildPanels();
  buildControls();
  const select = document.getElementById('mlp-rule');
  ELEMENTWISE.forEach(name => select.append(el('option', { value: name }, name)));
  document.getElementById('mlp-go').addEventListener('click', () => trainMlp().catch(e => fail(String(e.message || e))));
  for (const p of panels) await runPanel(p);
  await trainMlp();
  document.body.dataset.state = 'done';
}

main().catch(e => fail(`error: ${e && e.message ? e.message : e}`));
