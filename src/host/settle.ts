// What migrate and convert both wait for and allow for before a copy: the clock past the last
// change of what is copied, and room beyond the copy's own blocks.
import { setTimeout as sleep } from 'node:timers/promises';

/** Room for metadata beyond a copy's own blocks. */
export const SPACE_MARGIN = 16 * 1024 * 1024;

// File timestamps come from a clock that advances by ticks of a few milliseconds (1–10 ms):
// a write within the tick of the last change could leave mtime and ctime as they were.
// A copy starts only once the clock is this far past the last change of what it copies.
export const TIMESTAMP_TICK_NS = 50_000_000n;

/**
 * What LOOK sees once the clock is past every last change LAST_CHANGES reads off it (ns) by a
 * timestamp tick, so any later change shows in mtime or ctime: one wait as long as the youngest
 * needs, looked at again after it, three waits at most. A change far in the future (a clock set
 * back) needs none: any write sets an earlier time, a change still.
 */
export async function settled<T>(look: () => T, lastChanges: (seen: T) => bigint[]): Promise<T> {
  let seen = look();
  for (let tries = 0; tries < 3; tries++) {
    const now = BigInt(Date.now()) * 1_000_000n;
    let wait = 0n;
    for (const last of lastChanges(seen)) {
      const age = now - last;
      if (age < TIMESTAMP_TICK_NS && age >= -1_000_000_000n && TIMESTAMP_TICK_NS - age > wait) wait = TIMESTAMP_TICK_NS - age;
    }
    if (wait === 0n) break;
    await sleep(Number(wait / 1_000_000n) + 1);
    seen = look();
  }
  return seen;
}
