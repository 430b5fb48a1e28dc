// seeds.ts — the seedable generator that hands each ZO query its 64-bit seed (SplitMix64:
// a tiny, well-mixed sequence, so a run is reproducible from one number).

const MASK64 = (1n << 64n) - 1n;

export class SeedSequence {
  #state: bigint;

  constructor(seed: number | bigint) {
    this.#state = BigInt.asUintN(64, BigInt(seed));
  }

  /** The next 64-bit seed. */
  next(): bigint {
    this.#state = (this.#state + 0x9e3779b97f4a7c15n) & MASK64;
    let z = this.#state;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
    return z ^ (z >> 31n);
  }

  /** The generator's state, to resume a run exactly where it stopped. */
  get state(): bigint {
    return this.#state;
  }

  set state(s: bigint) {
    this.#state = BigInt.asUintN(64, s);
  }
}
