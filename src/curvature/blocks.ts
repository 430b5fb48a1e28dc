// blocks.ts — which parameters form a block for per-block traces, and the Hessian-aware
// precision plan (HAWQ): blocks ranked by curvature, the sharpest first.
import { check } from '../errors.js';

/**
 * The default blocks: parameter names grouped by their prefix before the last '.'
 * ('h.0.attn.w' and 'h.0.attn.b' form block 'h.0.attn'); a name without '.' is its own block.
 */
export function defaultBlocks(names: readonly string[]): Record<string, string[]> {
  const blocks: Record<string, string[]> = {};
  for (const name of names) {
    const cut = name.lastIndexOf('.');
    const block = cut > 0 ? name.slice(0, cut) : name;
    (blocks[block] ??= []).push(name);
  }
  return blocks;
}

/** Validates a user's block map against the parameter names: known names, each in one block. */
export function checkBlocks(blocks: Record<string, readonly string[]>, names: readonly string[]): Record<string, string[]> {
  check(blocks !== null && typeof blocks === 'object', 'perBlock must be true or a Record of block name -> parameter names');
  const known = new Set(names);
  const owner = new Map<string, string>();
  const out: Record<string, string[]> = {};
  for (const [block, members] of Object.entries(blocks)) {
    check(Array.isArray(members) && members.length > 0, `perBlock.${block} must be a non-empty array of parameter names`);
    for (const m of members) {
      check(known.has(m), `perBlock.${block} names '${m}', which is not in params`);
      check(!owner.has(m), `parameter '${m}' is in blocks '${owner.get(m)}' and '${block}'; put each parameter in one block`);
      owner.set(m, block);
    }
    out[block] = [...members];
  }
  check(Object.keys(out).length > 0, 'perBlock names no blocks');
  return out;
}

export interface RankedBlock {
  name: string;
  trace: number;
  stdErr: number;
  /** trace / numel, when the block reports numel (HAWQ-V2's average trace). */
  meanTrace?: number;
}

export interface RankOptions {
  /** 'trace' (default): the block's trace; 'mean': trace per parameter (needs numel). */
  by?: 'trace' | 'mean';
}

/**
 * Blocks sorted by curvature, descending: the order in which a Hessian-aware precision plan
 * (HAWQ) keeps blocks at higher precision. Ties keep the input order.
 */
export function rankBlocksByTrace(
  blocks: Record<string, { trace: number; stdErr: number; numel?: number }>,
  opts: RankOptions = {},
): RankedBlock[] {
  const by = opts.by ?? 'trace';
  check(by === 'trace' || by === 'mean', "rankBlocksByTrace: by must be 'trace' or 'mean'");
  const rows = Object.entries(blocks).map(([name, b], index) => {
    const row: RankedBlock & { index: number; key: number } = { name, trace: b.trace, stdErr: b.stdErr, index, key: b.trace };
    if (b.numel !== undefined && b.numel > 0) row.meanTrace = b.trace / b.numel;
    if (by === 'mean') {
      check(row.meanTrace !== undefined, `rankBlocksByTrace: block '${name}' has no numel; rank by 'trace' instead`);
      row.key = row.meanTrace;
    }
    return row;
  });
  return rows
    .sort((a, b) => b.key - a.key || a.index - b.index)
    .map(({ name, trace, stdErr, meanTrace }) => (meanTrace === undefined ? { name, trace, stdErr } : { name, trace, stdErr, meanTrace }));
}
