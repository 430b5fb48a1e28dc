import { describe, expect, it } from 'vitest';
import * as zeroth from '../src/index.js';

// 10,000 create/dispose cycles of a 1 MB tensor must not grow the resident set: native memory
// is freed by dispose(), not left for the garbage collector.
const CYCLES = 10_000;
const BYTES = 1 << 20;
// Bound: 64 MiB of growth over the whole loop, i.e. < 0.7% of the 10 GB allocated in total.
// A leak of even one tensor in 150 cycles exceeds it.
const BOUND = 64 * 2 ** 20;

describe('native memory', () => {
  it('memoryStats({device}) reports a CUDA device\'s allocator (E_DEVICE without one; live and peak bytes on a GPU)', () => {
    expect(() => zeroth.memoryStats({ device: 'cpu' as 'cuda:0' })).toThrow(expect.objectContaining({ code: 'E_INVALID_ARG' }));
    if (!zeroth.buildInfo().cuda || !zeroth.devices().some((d) => d.type === 'cuda')) {
      expect(() => zeroth.memoryStats({ device: 'cuda:0' })).toThrow(expect.objectContaining({ code: 'E_DEVICE' }));
      return;
    }
    const before = zeroth.memoryStats({ device: 'cuda:0', resetPeak: true });
    const t = zeroth.zeros([1 << 20], { device: 'cuda:0' }); // 4 MiB: one 4 MiB size class
    const during = zeroth.memoryStats({ device: 'cuda:0' });
    expect(during.allocatedBytes - before.allocatedBytes).toBe(4 << 20);
    t.dispose();
    const after = zeroth.memoryStats({ device: 'cuda:0' });
    expect(after.allocatedBytes).toBe(before.allocatedBytes);
    expect(after.peakAllocatedBytes).toBeGreaterThanOrEqual(before.allocatedBytes + (4 << 20));
  });

  it(`${CYCLES} create/dispose cycles of a 1 MB tensor keep RSS within ${BOUND / 2 ** 20} MiB`, () => {
    const live0 = zeroth.memoryStats();
    // Warm up allocator and JIT before the baseline.
    for (let i = 0; i < 200; i++) zeroth.zeros([BYTES / 4]).dispose();
    const rss0 = process.memoryUsage().rss;
    for (let i = 0; i < CYCLES; i++) {
      const t = zeroth.zeros([BYTES / 4]);
      t.dispose();
    }
    const grown = process.memoryUsage().rss - rss0;
    expect(grown).toBeLessThan(BOUND);
    const live1 = zeroth.memoryStats();
    expect({ liveTensors: live1.liveTensors, liveBytes: live1.liveBytes }).toEqual({ liveTensors: live0.liveTensors, liveBytes: live0.liveBytes });
    // The freed 1 MB blocks sit in the allocator's reuse cache until trimMemory returns them.
    expect(live1.cachedBytes).toBeGreaterThan(0);
    const released = zeroth.trimMemory();
    expect(released).toBe(live1.cachedBytes);
    expect(zeroth.memoryStats().cachedBytes).toBe(0);
  });

  it('the finalization backstop frees tensors that were never disposed', async () => {
    const gc = (globalThis as { gc?: () => void }).gc;
    if (!gc) {
      console.log('SKIP finalization backstop check: run node with --expose-gc to include it');
      return;
    }
    const live0 = zeroth.memoryStats().liveTensors;
    (() => {
      for (let i = 0; i < 100; i++) zeroth.zeros([1024]);
    })();
    for (let i = 0; i < 20 && zeroth.memoryStats().liveTensors > live0; i++) {
      gc();
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(zeroth.memoryStats().liveTensors).toBe(live0);
  });
});
