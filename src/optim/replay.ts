// replay.ts — rebuilds fine-tuned weights from base weights and a trajectory, without running
// a single forward pass: the same native update calls, in the same order, on the same bits.
import { ZerothError } from '../errors.js';
import { ParamSet, type Masks, type Params } from './params.js';
import { decodeTrajectory, type Trajectory } from './trajectory.js';
import { applyStep, UpdateState } from './update.js';

export interface ReplayOptions {
  /** The masks the run trained with (they are checked against the trajectory's digests). */
  masks?: Masks;
  /** Called after each step with (done, total). */
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

/** Applies every step of `trajectory` to `params` in place. */
export async function replay(params: Params, trajectory: Uint8Array | Trajectory, opts: ReplayOptions = {}): Promise<void> {
  const t = trajectory instanceof Uint8Array ? decodeTrajectory(trajectory) : trajectory;
  const set = new ParamSet(params, opts.masks);
  set.assertMatches(t.header.params, 'replay');
  const state = new UpdateState();
  try {
    for (let i = 0; i < t.steps.length; i++) {
      if (opts.signal?.aborted) {
        throw new ZerothError('E_ABORTED', `replay aborted after ${i} of ${t.steps.length} steps; the weights hold step ${i}`);
      }
      await applyStep(set, state, t.header, t.steps[i]!);
      opts.onProgress?.(i + 1, t.steps.length);
    }
  } finally {
    state.dispose();
  }
}
