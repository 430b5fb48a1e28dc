// zeroth curvature — Hessian trace, per-block traces and the Hessian diagonal from forward passes.
export { hessianTrace, DEFAULT_STEP_LENGTH } from './trace.js';
export type { HessianTraceOptions, HessianTraceResult, BlockTrace, TraceProgress } from './trace.js';
export { hessianDiagonal } from './diagonal.js';
export type { HessianDiagonalOptions, HessianDiagonalResult } from './diagonal.js';
export { rankBlocksByTrace, defaultBlocks } from './blocks.js';
export type { RankedBlock, RankOptions } from './blocks.js';
export type { CurvatureParams, CurvatureParam, Perturber } from './perturber.js';
export type { CurvatureClosure, CurvatureLossValue } from './loss.js';
