// errors.ts — the one error type users catch. `code` is stable across releases; the message
// says what went wrong and what to do about it.

/** Stable error codes. The native core uses the same names (native/include/zeroth.h). */
export type ZerothErrorCode =
  | 'E_INVALID_ARG'
  | 'E_SHAPE'
  | 'E_DTYPE'
  | 'E_DEVICE'
  | 'E_DISPOSED'
  | 'E_FORMAT'
  | 'E_UNSUPPORTED'
  | 'E_OOM'
  | 'E_IO'
  | 'E_NAN'
  | 'E_ABORTED'
  | 'E_INTERNAL';

export class ZerothError extends Error {
  readonly code: ZerothErrorCode;

  constructor(code: ZerothErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ZerothError';
    this.code = code;
  }
}

/** Throws E_INVALID_ARG (or the given code) unless `cond` holds. */
export function check(cond: unknown, message: string, code: ZerothErrorCode = 'E_INVALID_ARG'): asserts cond {
  if (!cond) throw new ZerothError(code, message);
}
