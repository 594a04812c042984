/** "Did you mean" hints for misspelt keys and values. */

/**
 * Edit distance counting a swap of two neighbours as one edit (optimal string alignment), bounded:
 * returns `max + 1` as soon as the distance exceeds `max`.
 */
function distance(a: string, b: string, max: number): number {
  if (Math.abs(a.length - b.length) > max) return max + 1;
  let before: number[] = [];
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    let best = i;
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, before[j - 2]! + 1);
      row.push(v);
      if (v < best) best = v;
    }
    if (best > max) return max + 1;
    [before, prev] = [prev, row];
  }
  return prev[b.length]!;
}

/**
 * The closest candidate to `input` (case-insensitive, `-`/`_` folded), or `undefined` when none is
 * close enough to be a plausible typo.
 */
export function suggest(input: string, candidates: readonly string[]): string | undefined {
  const fold = (s: string) => s.toLowerCase().replace(/-/g, "_");
  const needle = fold(input);
  const max = Math.max(1, Math.min(3, Math.floor(needle.length / 3)));
  let best: string | undefined;
  let bestDistance = max + 1;
  for (const candidate of candidates) {
    const d = distance(needle, fold(candidate), max);
    if (d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  return best;
}
