// Reports as text: JSON (schema version 1, see README), a table for a terminal, plain lines otherwise. Pure.
import { exitStatus, type Judgement } from './evaluate.js';
import type { CowFile, Facts } from './inspect.js';
import type { Subject } from './subject.js';
import { printable, size } from '../io.js';

export interface Entry {
  subject: Subject;
  facts: Facts;
  judgement: Judgement;
}

// One escaping and one size style for every line the CLI prints (see src/io.ts).
export { printable };

const OVERALL = ['as-declared', 'deviates', 'error'] as const;

function overall(entries: Entry[]): (typeof OVERALL)[number] {
  return OVERALL[exitStatus(entries.map((e) => e.judgement.state))]!;
}

/** Field order is fixed: the output is stable for the same facts. */
export function statusJson(root: string, home: string | null, entries: Entry[]): string {
  const targets = entries.map(({ subject: s, facts: f, judgement: j }) => ({
    name: s.name,
    declared: s.name !== null,
    source: s.source,
    scope: s.scope,
    path: s.path,
    location: f.location,
    declaration: { subvolume: s.subvolume, nocow: s.nocow, redundancy: s.redundancy, compression: s.compression ?? 'keep' },
    fstype: f.fstype,
    exists: f.exists,
    directory: f.directory,
    subvolume: f.subvolume,
    nocow: f.nocow,
    dataProfile: f.dataProfile,
    optOut: f.optOut === null ? null : { by: f.optOut.by, file: f.optOut.file },
    leftovers: f.leftovers.map((l) => l.path),
    cowFiles: f.cowFiles === null ? null : f.cowFiles.map((c) => ({ path: c.path, size: c.size, extents: c.extents })),
    expected: j.expected,
    state: j.state,
    deviations: j.deviations,
    notes: j.notes,
    errors: f.problems,
  }));
  return `${JSON.stringify({ version: 1, root, home, state: overall(entries), targets }, null, 2)}\n`;
}

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

const yesNo = (v: boolean | null): string => (v === null ? '-' : v ? 'yes' : 'no');

function label(s: Subject): string {
  return s.name ?? '(undeclared)';
}

function summary(entries: Entry[]): string {
  const counts = new Map<string, number>();
  for (const e of entries) counts.set(e.judgement.state, (counts.get(e.judgement.state) ?? 0) + 1);
  return `${plural(entries.length, 'target')}: ${[...counts].map(([state, n]) => `${n} ${state}`).join(', ')}\n`;
}

function optOutText(f: Facts): string {
  return f.optOut === null ? 'no' : f.optOut.by === 'env' ? 'NOCOW_DISABLE=1' : `masked ${printable(f.optOut.file)}`;
}

function existsText(f: Facts): string {
  if (f.location === null) return '-';
  return !f.exists ? 'no' : f.directory ? 'yes, a directory' : 'yes, not a directory';
}

function withExpectation(actual: boolean | null, expected: boolean): string {
  return actual === false && expected ? 'no (expected: yes)' : yesNo(actual);
}

/** One block of `field: value` lines per target: for pipes, logs and grep. */
export function statusPlain(root: string, entries: Entry[]): string {
  const out: string[] = [];
  if (root !== '/') out.push(`root: ${printable(root)}`);
  for (const { subject: s, facts: f, judgement: j } of entries) {
    out.push(`${printable(label(s))}: ${printable(s.path)}: ${j.state}`);
    const field = (name: string, value: string) => out.push(`  ${`${name}:`.padEnd(13)}${value}`);
    if (f.location !== null) field('location', printable(f.location));
    if (f.fstype !== null) field('file system', f.dataProfile === null ? f.fstype : `${f.fstype}, data profile ${f.dataProfile}`);
    if (f.location !== null) {
      field('exists', existsText(f));
      field('subvolume', withExpectation(f.subvolume, j.expected.subvolume));
      field('+C', withExpectation(f.nocow, j.expected.nocow));
    }
    field('opt-out', optOutText(f));
    for (const d of j.deviations) field('deviation', printable(d));
    for (const n of j.notes) field('note', printable(n));
    for (const e of f.problems) field('error', printable(e));
    for (const c of f.cowFiles ?? []) {
      out.push(`  file without +C: ${printable(c.path)} (${size(c.size)}, ${c.extents === null ? '? extents' : plural(c.extents, 'extent')})`);
    }
  }
  return `${out.join('\n')}\n${summary(entries)}`;
}

function table(rows: string[][], rightAligned: ReadonlySet<number> = new Set()): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) =>
    r
      .map((cell, i) => (rightAligned.has(i) ? cell.padStart(widths[i]!) : i === r.length - 1 ? cell : cell.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd(),
  );
}

// The fragmentation that hurts most first.
const byExtents = (a: CowFile, b: CowFile) => (b.extents ?? -1) - (a.extents ?? -1) || (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);

/** A table of all targets, then what needs explaining, target by target: for a terminal. */
export function statusTable(root: string, entries: Entry[]): string {
  const rows = [['TARGET', 'PATH', 'FS', 'PROFILE', 'SUBVOLUME', '+C', 'OPT-OUT', 'COW FILES', 'STATE']];
  for (const { subject: s, facts: f, judgement: j } of entries) {
    rows.push([
      printable(label(s)),
      printable(s.path),
      f.fstype ?? '-',
      f.dataProfile ?? '-',
      f.location !== null && !f.exists ? 'missing' : yesNo(f.subvolume),
      yesNo(f.nocow),
      f.optOut === null ? '-' : f.optOut.by === 'env' ? 'env' : 'masked',
      f.cowFiles === null ? '-' : String(f.cowFiles.length),
      j.state,
    ]);
  }
  const out = root === '/' ? [] : [`root: ${printable(root)}`, ''];
  out.push(...table(rows, new Set([7])));
  for (const { subject: s, facts: f, judgement: j } of entries) {
    const lines = [...j.deviations.map((d) => `deviation: ${d}`), ...j.notes.map((n) => `note: ${n}`), ...f.problems.map((e) => `error: ${e}`)];
    const files = f.cowFiles ?? [];
    if (lines.length === 0 && files.length === 0) continue;
    out.push('', `${printable(label(s))}  ${printable(s.path)}`, ...lines.map((l) => `  ${printable(l)}`));
    if (files.length > 0) {
      const fileRows = [['SIZE', 'EXTENTS', 'FILE WITHOUT +C'], ...[...files].sort(byExtents).map((c) => [size(c.size), c.extents === null ? '?' : String(c.extents), printable(c.path)])];
      out.push(...table(fileRows, new Set([0, 1])).map((l) => `  ${l}`));
    }
  }
  return `${out.join('\n')}\n\n${summary(entries)}`;
}
