// The payoff as an SVG bar chart (no dependency): extents on a log scale, and write IOPS
// relative to plain copy-on-write, one pair of bars per layout.
const LAYOUTS = ['cow', 'cow+defrag', 'nocow-dir', 'subvolume', 'nocow-dir+snapshot'];
const LABELS = { cow: 'plain CoW', 'cow+defrag': 'CoW + defrag', 'nocow-dir': '+C directory', subvolume: '+C subvolume (generated)', 'nocow-dir+snapshot': '+C dir, parent snapshotted' };

const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function payoffSvg({ writes, seconds, result }) {
  const width = 760;
  const rowH = 56;
  const left = 210;
  const barW = 240;
  const height = 70 + LAYOUTS.length * rowH;
  const maxExtents = Math.max(...LAYOUTS.map((l) => result[l]?.extents ?? 1), 10);
  const logScale = (n) => (Math.log10(Math.max(n, 1)) / Math.log10(maxExtents)) * barW;
  const maxRatio = Math.max(...LAYOUTS.map((l) => result[l]?.iopsRatio ?? 1), 1);
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    '<rect width="100%" height="100%" fill="white"/>',
    `<text x="${left}" y="20" font-weight="bold">extents after ${writes.toLocaleString('en')} random 4 KiB writes (log)</text>`,
    `<text x="${left + barW + 40}" y="20" font-weight="bold">write IOPS × plain CoW (${seconds} s, iodepth 16)</text>`,
  ];
  LAYOUTS.forEach((l, i) => {
    const r = result[l];
    if (!r) return;
    const y = 40 + i * rowH;
    out.push(`<text x="${left - 8}" y="${y + 20}" text-anchor="end">${esc(LABELS[l])}</text>`);
    out.push(`<rect x="${left}" y="${y + 6}" width="${logScale(r.extents).toFixed(1)}" height="20" fill="#c0504d"/>`);
    out.push(`<text x="${left + logScale(r.extents) + 4}" y="${y + 21}">${r.extents.toLocaleString('en')}</text>`);
    const w = (r.iopsRatio / maxRatio) * barW;
    out.push(`<rect x="${left + barW + 40}" y="${y + 6}" width="${w.toFixed(1)}" height="20" fill="#4f81bd"/>`);
    out.push(`<text x="${left + barW + 44 + w}" y="${y + 21}">${r.iopsRatio.toFixed(2)}×</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
