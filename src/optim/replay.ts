// replay.ts — rebuilds fine-tuned weights from base weights and a trajectory, without running
// a single forward pass: the same native update calls, in the same order, on the same bits.
import { check, ZerothError } from '../errors.js';
import { LOADED_ADAPTERS, Model } from '../model.js';
import type { Tensor } from '../tensor.js';
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

/**
 * Applies every step of `trajectory` to `params` (named tensors, or a model: the parameters
 * the trajectory names) in place, without any forward pass.
 */
export async function replay(params: Params | Model, trajectory: Uint8Array | Trajectory, opts: ReplayOptions = {}): Promise<void> {
  const t = trajectory instanceof Uint8Array ? decodeTrajectory(trajectory) : trajectory;
  let views: Tensor[] = [];
  let masks = opts.masks;
  if (params instanceof Model) {
    // A LoRA run: rebuild its adapters (deterministic from the recorded seed) if the base lacks them.
    if (t.header.lora && !params.loraSpec()) {
      const { rank, alpha, seed, targets } = t.header.lora;
      check(seed !== LOADED_ADAPTERS, 'replay: this trajectory trained LoRA adapters read from a PEFT folder ' +
        '(adapter_model.safetensors), which no seed rebuilds; load the model from that folder, adapters included, then replay');
      for (const v of Object.values(params.trainable({ mode: 'lora', rank, alpha, seed: BigInt(seed), targets }))) v.dispose();
    }
    const wanted = new Set(t.header.params.map((p) => p.name));
    const all = params.parameters();
    const chosen: Params = {};
    for (const [n, tensor] of Object.entries(all)) {
      if (wanted.has(n)) chosen[n] = tensor;
      else tensor.dispose();
    }
    views = Object.values(chosen);
    masks = { ...params.trainableMasks(), ...(opts.masks ?? {}) };
    params = chosen;
  }
  const state = new UpdateState();
  try {
    const set = new ParamSet(params, masks);
    set.assertMatches(t.header.params, 'replay');
    state.initFloors(set, t.header.options.scaleFloor);
    for (let i = 0; i < t.steps.length; i++) {
      if (opts.signal?.aborted) {
        throw new ZerothError('E_ABORTED', `replay aborted after ${i} of ${t.steps.length} steps; the weights hold step ${i}`);
      }
      await applyStep(set, state, t.header, t.steps[i]!);
      opts.onProgress?.(i + 1, t.steps.length);
    }
  } finally {
    state.dispose();
    for (const v of views) v.dispose();
  }
}
