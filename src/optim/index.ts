// zeroth.optim — zeroth-order optimizers over named parameters, trajectories and replay.
export { ZOSGD, ZOAdam, ZOSignSGD } from './optimizers.js';
export type { ZOAdamOptions } from './optimizers.js';
export { ZOOptimizer } from './optimizer.js';
export type { ZOOptions, StepResult, QueryResult, LossClosure, LossValue } from './optimizer.js';
export { replay } from './replay.js';
export type { ReplayOptions } from './replay.js';
export { encodeTrajectory, decodeTrajectory } from './trajectory.js';
export type { Trajectory, TrajectoryHeader, TrajectoryStep, OptimizerKind } from './trajectory.js';
export { streamId } from './params.js';
export type { Params, Masks } from './params.js';
export { SeedSequence } from './seeds.js';
export type { Batch } from './model_prober.js';
export { HiZOO } from './hizoo.js';
export type { HiZOOOptions, HiZOOStepResult } from './hizoo.js';
