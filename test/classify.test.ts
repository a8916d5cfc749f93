// src/convert/classify.ts: the recovery table of nocow convert, row by row, as classify() reads
// it off what is found at PATH, NEW and OLD (pure: no file system; the rows' real states are
// made by killing conversions in convert.test.ts).
import t from 'tap';
import { classify, type Action, type NewState, type OldState, type PathState } from '../src/convert/classify.js';

const P = '/b/images';
const N = '/b/images.nocow-new';
const O = '/b/images.nocow-old';

type PathIs = 'missing' | 'plain' | 'subvolume' | 'marked subvolume' | 'other' | 'plain on ext4';
const path = (is: PathIs): PathState => ({
  name: P,
  is: is === 'missing' ? 'missing' : is === 'other' ? 'other' : 'dir',
  fileSystem: is === 'plain on ext4' ? 'ext2/ext3' : 'btrfs',
  subvolume: is.endsWith('subvolume'),
  marked: is === 'marked subvolume',
});
const neu = (is: NewState['is']): NewState => ({ name: N, is });
const old = (is: OldState['is']): OldState => ({ name: O, is });

/** [PATH, NEW, OLD, the action]: the table's rows, then the states beside them (something in the way, not Btrfs). */
const ROWS: [PathIs, NewState['is'], OldState['is'], Action][] = [
  // The table in src/convert/classify.ts.
  ['plain', 'missing', 'missing', { act: 'convert', first: [] }],
  ['plain', 'ours', 'missing', { act: 'convert', first: ['remove-new'] }],
  ['plain', 'empty', 'missing', { act: 'convert', first: ['rmdir-new'] }],
  ['plain', 'foreign', 'missing', { act: 'refuse', why: `${N} is left over and holds files that nocow convert did not put there: left alone` }],
  ['plain', 'foreign', 'full', { act: 'refuse', why: `${N} is left over and holds files that nocow convert did not put there: left alone` }],
  ['missing', 'ours', 'full', { act: 'complete-swap' }],
  ['missing', 'missing', 'full', { act: 'restore-old' }],
  ['subvolume', 'missing', 'full', { act: 'finish-old', first: [] }],
  ['marked subvolume', 'missing', 'missing', { act: 'unmark', first: [] }],
  ['subvolume', 'missing', 'missing', { act: 'nothing', why: 'already a subvolume' }],
  // Beside the table: leftovers together, empty ones, things in the way.
  ['plain', 'missing', 'empty', { act: 'convert', first: ['rmdir-old'] }],
  ['plain', 'ours', 'empty', { act: 'convert', first: ['remove-new', 'rmdir-old'] }],
  ['plain', 'missing', 'full', { act: 'refuse', why: `${O} is in the way (not left by nocow convert on a plain ${P}): move it away` }],
  ['plain', 'missing', 'other', { act: 'refuse', why: `${O} is in the way (not left by nocow convert on a plain ${P}): move it away` }],
  ['plain', 'other', 'missing', { act: 'refuse', why: `${N} is in the way (not left by nocow): move it away` }],
  ['subvolume', 'ours', 'full', { act: 'finish-old', first: ['remove-new'] }],
  ['subvolume', 'missing', 'other', { act: 'refuse', why: `${O} is in the way (not left by nocow): move it away` }],
  ['missing', 'ours', 'empty', { act: 'complete-swap' }],
  ['missing', 'empty', 'full', { act: 'refuse', why: `${N} and ${O} are left by an interrupted nocow apply: nocow apply repairs them` }],
  ['missing', 'foreign', 'full', { act: 'refuse', why: `${N} and ${O} are left by an interrupted nocow apply: nocow apply repairs them` }],
  ['missing', 'other', 'full', { act: 'refuse', why: `${N} is in the way (not left by nocow): move it away` }],
  ['missing', 'ours', 'missing', { act: 'refuse', why: `${P} is missing; ${N} holds a copy of it that was not verified: left alone` }],
  ['missing', 'missing', 'missing', { act: 'refuse', why: `${P} does not exist` }],
  ['missing', 'missing', 'other', { act: 'refuse', why: `${P} does not exist` }],
  ['other', 'missing', 'missing', { act: 'refuse', why: `${P} is not a directory` }],
  ['plain on ext4', 'missing', 'missing', { act: 'refuse', why: 'not on Btrfs (ext2/ext3)' }],
];

t.test('GIVEN each state of PATH, NEW and OLD an interrupted conversion (or another program) may leave WHEN classified THEN the action is the table\'s', async (t) => {
  for (const [p, n, o, action] of ROWS) t.same(classify(path(p), neu(n), old(o)), action, `PATH ${p}, NEW ${n}, OLD ${o}: ${action.act}`);
});

t.test('GIVEN a state with NEW or OLD in the way WHEN classified THEN nothing is acted on: a refusal, never a cleanup of what is not ours', async (t) => {
  for (const p of ['missing', 'plain', 'subvolume', 'marked subvolume'] as const) {
    for (const n of ['other', 'foreign'] as const) {
      const action = classify(path(p), neu(n), old('full'));
      t.equal(action.act, 'refuse', `PATH ${p}, NEW ${n}: refused`);
    }
  }
});
