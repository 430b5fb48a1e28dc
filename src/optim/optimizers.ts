// optimizers.ts — the public ZO optimizers: the step is shared (optimizer.ts); each differs in
// its update rule (update.ts) and constants.
import { check } from '../errors.js';
import type { Model } from '../model.js';
import type { Params } from './params.js';
import { ZOOptimizer, type ZOOptions } from './optimizer.js';

/** ZO-SGD as in MeZO, with optional heavy-ball momentum and n-SPSA queries. */
export class ZOSGD extends ZOOptimizer {
  constructor(params: Params | Model, opts: ZOOptions) {
    const momentum = opts.momentum ?? 0;
    check(Number.isFinite(momentum) && momentum >= 0 && momentum < 1, 'momentum must be in [0, 1)');
    super('zosgd', params, opts, { momentum });
  }
}

export interface ZOAdamOptions extends ZOOptions {
  beta1?: number;
  beta2?: number;
  /** Adam's denominator epsilon (default 1e-8); distinct from the perturbation size `eps`. */
  adamEps?: number;
}

/** ZO-Adam (ZO-Bench): Adam moments over the ZO gradient estimate; two f32 buffers per parameter. */
export class ZOAdam extends ZOOptimizer {
  constructor(params: Params | Model, opts: ZOAdamOptions) {
    const beta1 = opts.beta1 ?? 0.9;
    const beta2 = opts.beta2 ?? 0.999;
    const adamEps = opts.adamEps ?? 1e-8;
    check(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1, 'beta1 and beta2 must be in [0, 1)');
    check(Number.isFinite(adamEps) && adamEps > 0, 'adamEps must be positive');
    super('zoadam', params, opts, { beta1, beta2, adamEps });
  }
}

/** ZO-SignSGD: θ ← θ − lr·sign(ĝ); robust to the scale of the loss. */
export class ZOSignSGD extends ZOOptimizer {
  constructor(params: Params | Model, opts: ZOOptions) {
    super('zosign', params, opts, {});
  }
}
