// loss.ts — reading a closure's loss for curvature estimates. Second differences of losses
// cancel most of their digits, so the loss is brought to float64 before anything else: a
// per-example loss tensor [B] (f64 or f32) is summed in float64 and divided once by B.
import { check, ZerothError } from '../errors.js';
import { Tensor } from '../tensor.js';

/** A loss: a number, a scalar tensor, or per-example losses [B] (f64 preferred, f32 accepted). */
export type CurvatureLossValue = number | Tensor;
export type CurvatureClosure = () => CurvatureLossValue | Promise<CurvatureLossValue>;

/** The mean loss in float64. Tensors returned by the closure are read and disposed. */
export async function readMeanLoss(closure: CurvatureClosure): Promise<number> {
  const value = await closure();
  if (typeof value === 'number') return value;
  if (!(value instanceof Tensor)) {
    throw new ZerothError('E_INVALID_ARG', 'the loss closure must return a number, a scalar tensor or per-example losses [B]');
  }
  try {
    check(value.ndim <= 1 && value.numel >= 1,
      `the loss closure returned a tensor of shape [${value.shape.join(', ')}]; return a scalar or per-example losses [B]`, 'E_SHAPE');
    check(value.dtype === 'f64' || value.dtype === 'f32', `the loss tensor has dtype ${value.dtype}; use f64 (or f32)`, 'E_DTYPE');
    const data = value.toTypedArray() as Float64Array | Float32Array;
    let sum = 0;
    for (let i = 0; i < data.length; i++) sum += data[i]!;
    return sum / data.length;
  } finally {
    value.dispose();
  }
}
