// gpt2.mjs — the GPT-2-small-shaped model with random weights that the benchmarks share
// (12 layers, 768 wide, 12 heads, vocab 50257 by default), built in memory. Not a benchmark
// itself: run-all.mjs skips it.
let state = 0x9e3779b9;

// Uniform in ±0.05 around `around` (norm scales 1 ± 0.05): the values do not change speed.
function weight(zeroth, shape, around = 0) {
  const n = shape.reduce((a, b) => a * b, 1);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    a[i] = around + (state / 4294967296 - 0.5) * 0.1;
  }
  return zeroth.tensor(a, { shape });
}

/** {model, params} of a random GPT-2 of the given shape. */
export async function randomGpt2(zeroth, { L = 12, D = 768, H = 12, V = 50257, P = 1024 } = {}) {
  const w = { 'transformer.wte.weight': weight(zeroth, [V, D]), 'transformer.wpe.weight': weight(zeroth, [P, D]),
    'transformer.ln_f.weight': weight(zeroth, [D], 1), 'transformer.ln_f.bias': weight(zeroth, [D]) };
  for (let l = 0; l < L; l++) {
    const h = `transformer.h.${l}.`;
    Object.assign(w, {
      [h + 'ln_1.weight']: weight(zeroth, [D], 1), [h + 'ln_1.bias']: weight(zeroth, [D]),
      [h + 'attn.c_attn.weight']: weight(zeroth, [D, 3 * D]), [h + 'attn.c_attn.bias']: weight(zeroth, [3 * D]),
      [h + 'attn.c_proj.weight']: weight(zeroth, [D, D]), [h + 'attn.c_proj.bias']: weight(zeroth, [D]),
      [h + 'ln_2.weight']: weight(zeroth, [D], 1), [h + 'ln_2.bias']: weight(zeroth, [D]),
      [h + 'mlp.c_fc.weight']: weight(zeroth, [D, 4 * D]), [h + 'mlp.c_fc.bias']: weight(zeroth, [4 * D]),
      [h + 'mlp.c_proj.weight']: weight(zeroth, [4 * D, D]), [h + 'mlp.c_proj.bias']: weight(zeroth, [D]),
    });
  }
  const config = { model_type: 'gpt2', vocab_size: V, n_positions: P, n_embd: D, n_layer: L, n_head: H,
    activation_function: 'gelu_new', layer_norm_epsilon: 1e-5 };
  const model = await zeroth.modelFromWeights(config, w);
  let params = 0;
  for (const t of Object.values(w)) { params += t.numel; t.dispose(); }
  return { model, params };
}

/** Deterministic token ids [B, T] and an all-ones mask. */
export function tokenBatch(zeroth, B, T, V) {
  const ids = zeroth.tensor(Int32Array.from({ length: B * T }, (_, i) => (i * 7919 + 13) % V), { dtype: 'i32', shape: [B, T] });
  return { inputIds: ids, attentionMask: zeroth.ones([B, T], { dtype: 'i32' }) };
}
