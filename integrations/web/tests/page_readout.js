// Run by tests/page.rs (WebDriver execute/sync) once the page is done: the
// final f of every rule on every surface as the page wrote it, the MLP's
// test accuracy, and the coloured (path, not contour or background) pixels
// of each panel's canvas.
const losses = {};
for (const td of document.querySelectorAll('td.final-loss')) {
  (losses[td.dataset.surface] ??= {})[td.dataset.rule] = td.dataset.loss;
}
const pixels = {};
for (const box of document.querySelectorAll('.panel')) {
  const canvas = box.querySelector('canvas.paths');
  const d = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (Math.max(d[i], d[i + 1], d[i + 2]) - Math.min(d[i], d[i + 1], d[i + 2]) > 60) n++;
  }
  pixels[box.dataset.surface] = n;
}
return { losses, pixels, mlp: document.getElementById('mlp-result').dataset.accuracy };
