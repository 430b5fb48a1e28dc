// report.ts — a self-contained HTML report of a fine-tuning run: the training loss per step
// (raw and smoothed) and the held-out loss, drawn as inline SVG. No scripts, no external assets,
// so it opens anywhere and can be attached to an issue as is.

export interface ReportPoint {
  step: number;
  loss: number;
  accuracy?: number;
}

export interface ReportData {
  title: string;
  train: ReportPoint[];
  eval: ReportPoint[];
  /** Key/value lines shown under the chart (model, data, flags, results). */
  facts: [string, string][];
}

const escape = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function smooth(points: readonly ReportPoint[], window: number): ReportPoint[] {
  const out: ReportPoint[] = [];
  let sum = 0;
  const q: number[] = [];
  for (const p of points) {
    q.push(p.loss);
    sum += p.loss;
    if (q.length > window) sum -= q.shift()!;
    out.push({ step: p.step, loss: sum / q.length });
  }
  return out;
}

/** Nice tick values covering [lo, hi]. */
function ticks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-12; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

export function lossChartSvg(train: readonly ReportPoint[], evals: readonly ReportPoint[]): string {
  const W = 760, H = 360, L = 60, R = 20, T = 20, B = 40;
  const finite = (p: ReportPoint): boolean => Number.isFinite(p.loss);
  const tr = train.filter(finite);
  const ev = evals.filter(finite);
  const all = [...tr, ...ev];
  if (all.length === 0) return '<p>No finite losses were recorded.</p>';
  const x0 = Math.min(...all.map((p) => p.step), 0);
  const x1 = Math.max(...all.map((p) => p.step), x0 + 1);
  let y0 = Math.min(...all.map((p) => p.loss));
  let y1 = Math.max(...all.map((p) => p.loss));
  if (y1 - y0 < 1e-9) { y0 -= 0.5; y1 += 0.5; }
  const pad = (y1 - y0) * 0.05;
  y0 -= pad; y1 += pad;
  const sx = (s: number): number => L + ((s - x0) / (x1 - x0)) * (W - L - R);
  const sy = (v: number): number => T + (1 - (v - y0) / (y1 - y0)) * (H - T - B);
  const path = (pts: readonly ReportPoint[]): string => pts.map((p, i) => `${i ? 'L' : 'M'}${sx(p.step).toFixed(1)},${sy(p.loss).toFixed(1)}`).join('');
  const parts: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`];
  for (const v of ticks(y0, y1)) {
    parts.push(`<line x1="${L}" x2="${W - R}" y1="${sy(v).toFixed(1)}" y2="${sy(v).toFixed(1)}" stroke="#e5e5e5"/>`,
      `<text x="${L - 6}" y="${(sy(v) + 4).toFixed(1)}" text-anchor="end">${v}</text>`);
  }
  for (const s of ticks(x0, x1)) {
    parts.push(`<text x="${sx(s).toFixed(1)}" y="${H - B + 16}" text-anchor="middle">${s}</text>`);
  }
  parts.push(`<line x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}" stroke="#888"/>`,
    `<line x1="${L}" x2="${L}" y1="${T}" y2="${H - B}" stroke="#888"/>`,
    `<text x="${(L + W - R) / 2}" y="${H - 6}" text-anchor="middle">step</text>`,
    `<text x="14" y="${(T + H - B) / 2}" text-anchor="middle" transform="rotate(-90 14 ${(T + H - B) / 2})">loss</text>`);
  if (tr.length > 0) {
    parts.push(`<path d="${path(tr)}" fill="none" stroke="#9ecae1" stroke-width="1"/>`);
    parts.push(`<path d="${path(smooth(tr, Math.max(1, Math.round(tr.length / 25))))}" fill="none" stroke="#08519c" stroke-width="2"/>`);
  }
  if (ev.length > 0) {
    parts.push(`<path d="${path(ev)}" fill="none" stroke="#d94801" stroke-width="2" stroke-dasharray="5,3"/>`);
    for (const p of ev) parts.push(`<circle cx="${sx(p.step).toFixed(1)}" cy="${sy(p.loss).toFixed(1)}" r="4" fill="#d94801"><title>step ${p.step}: ${p.loss.toFixed(4)}</title></circle>`);
  }
  const legend: [string, string][] = [['#9ecae1', 'train loss (batch)'], ['#08519c', 'train loss (smoothed)'], ['#d94801', 'held-out loss']];
  legend.forEach(([color, label], i) => {
    const y = T + 10 + i * 16;
    parts.push(`<line x1="${W - R - 160}" x2="${W - R - 140}" y1="${y}" y2="${y}" stroke="${color}" stroke-width="2"/>`,
      `<text x="${W - R - 134}" y="${y + 4}">${label}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

export function renderReport(data: ReportData): string {
  const rows = data.facts.map(([k, v]) => `<tr><th>${escape(k)}</th><td>${escape(v)}</td></tr>`).join('\n');
  const evalRows = data.eval.map((p) => `<tr><td>${p.step}</td><td>${p.loss.toFixed(4)}</td><td>${p.accuracy === undefined ? '' : `${(100 * p.accuracy).toFixed(1)}%`}</td></tr>`).join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escape(data.title)}</title>
<style>body{font-family:sans-serif;max-width:820px;margin:2em auto;color:#222}table{border-collapse:collapse;margin:1em 0}th,td{text-align:left;padding:2px 12px 2px 0;vertical-align:top}th{font-weight:600}</style>
</head><body>
<h1>${escape(data.title)}</h1>
${lossChartSvg(data.train, data.eval)}
<h2>Held-out evaluations</h2>
<table><tr><th>step</th><th>loss</th><th>accuracy</th></tr>
${evalRows}
</table>
<h2>Run</h2>
<table>
${rows}
</table>
</body></html>
`;
}
