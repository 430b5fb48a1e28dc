// sampler.ts — deterministic shuffling, held-out splits and batch order from a seed.
//
// The batch of step i is a pure function of (seed, i, dataset size, batch size): the rows are
// read as an endless stream of epochs, each epoch a seeded permutation. So a run that stops
// at step N and resumes sees exactly the batches an uninterrupted run sees.
import { check } from '../errors.js';

/** SplitMix64 as a generator of uniform doubles in [0, 1); small, fast and seedable by any integer. */
export class SplitMix {
  #state: bigint;

  constructor(seed: number | bigint) {
    this.#state = BigInt.asUintN(64, BigInt(seed));
  }

  nextU64(): bigint {
    this.#state = BigInt.asUintN(64, this.#state + 0x9e3779b97f4a7c15n);
    let z = this.#state;
    z = BigInt.asUintN(64, (z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n);
    z = BigInt.asUintN(64, (z ^ (z >> 27n)) * 0x94d049bb133111ebn);
    return z ^ (z >> 31n);
  }

  /** Uniform integer in [0, n), n < 2^32 (53 top bits, bias below 2^-20 for such n). */
  below(n: number): number {
    return Math.floor((Number(this.nextU64() >> 11n) / 2 ** 53) * n);
  }
}

/** A permutation of 0..n-1 (Fisher–Yates) from `seed`. */
export function permutation(n: number, seed: number | bigint): number[] {
  check(Number.isSafeInteger(n) && n >= 0, `permutation size must be a non-negative integer, got ${n}`);
  const rng = new SplitMix(seed);
  const p = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.below(i + 1);
    [p[i], p[j]] = [p[j]!, p[i]!];
  }
  return p;
}

/** Different purposes draw from unrelated streams of the same run seed. */
function derive(seed: number | bigint, purpose: number): bigint {
  return BigInt.asUintN(64, BigInt(seed) * 0x9e3779b97f4a7c15n + BigInt(purpose) * 0xd1b54a32d192ed03n + 1n);
}

/**
 * Splits `rows` into train and held-out parts: a seeded `fraction` (at least one row, at most
 * `maxHeldOut`) is held out. Both keep the file order of their rows.
 */
export function heldOutSplit<T>(rows: readonly T[], seed: number | bigint, fraction = 0.1, maxHeldOut = 500): { train: T[]; heldOut: T[] } {
  check(rows.length >= 2, `a held-out split needs at least 2 rows, got ${rows.length}; pass --eval FILE`);
  const count = Math.min(maxHeldOut, rows.length - 1, Math.max(1, Math.round(rows.length * fraction)));
  const held = new Set(permutation(rows.length, derive(seed, 1)).slice(0, count));
  return {
    train: rows.filter((_, i) => !held.has(i)),
    heldOut: rows.filter((_, i) => held.has(i)),
  };
}

/** Batch indices of any step: epochs of seeded permutations, read back to back. */
export class BatchOrder {
  readonly size: number;
  readonly batchSize: number;
  readonly #seed: number | bigint;
  readonly #epochs = new Map<number, number[]>();

  constructor(size: number, batchSize: number, seed: number | bigint) {
    check(size >= 1, 'the training set is empty');
    check(Number.isInteger(batchSize) && batchSize >= 1, `batch size must be a positive integer, got ${batchSize}`);
    this.size = size;
    this.batchSize = batchSize;
    this.#seed = seed;
  }

  /** Row indices of step `step` (0-based). */
  at(step: number): number[] {
    const out: number[] = [];
    for (let k = 0; k < this.batchSize; k++) {
      const j = step * this.batchSize + k;
      const epoch = Math.floor(j / this.size);
      out.push(this.epoch(epoch)[j % this.size]!);
    }
    return out;
  }

  private epoch(e: number): number[] {
    let p = this.#epochs.get(e);
    if (!p) {
      if (this.#epochs.size > 4) this.#epochs.clear(); // steps move forward: keep only recent epochs
      p = permutation(this.size, derive(this.#seed, 1000 + e));
      this.#epochs.set(e, p);
    }
    return p;
  }
}
