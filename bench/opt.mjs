// opt.mjs — an OPT-shaped checkpoint with random weights for the benchmarks (OPT-1.3B by
// default: 24 layers, d_model 2048, 32 heads, ffn 8192, vocab 50272, learned positions, ReLU,
// pre-LN, tied head), written straight to a folder as HF lays it out (config.json +
// model.safetensors) for loadModel. Not a benchmark itself: run-all.mjs skips it.
//
// Memory: the weights are never all in memory at once. Each tensor is streamed to the file in
// 1 Mi-element chunks cut from one pool of random bf16 values (the values do not change speed),
// so building a 1.3B model takes a few MiB of host memory and 2.6 GB of disk; loadModel then
// widens bf16 to the dtype it computes in, tensor by tensor.
import { closeSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';

const CHUNK = 1 << 20;

// bf16 bits of `count` values uniform in around ± 0.05 (round-to-nearest-even of the f32 value).
function pool(count, around, seed) {
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  const out = new Uint16Array(count);
  let state = seed >>> 0;
  for (let i = 0; i < count; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    f[0] = around + (state / 4294967296 - 0.5) * 0.1;
    out[i] = (u[0] + 0x7fff + ((u[0] >>> 16) & 1)) >>> 16;
  }
  return out;
}

/** The weight names and shapes of an HF OPTForCausalLM (pre-LN, biases, tied head). */
export function optShapes({ L = 24, D = 2048, F = 8192, V = 50272, P = 2048 } = {}) {
  const p = 'model.decoder.';
  const w = [[p + 'embed_tokens.weight', [V, D]], [p + 'embed_positions.weight', [P + 2, D]]];
  for (let l = 0; l < L; l++) {
    const h = `${p}layers.${l}.`;
    for (const m of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) w.push([`${h}self_attn.${m}.weight`, [D, D]], [`${h}self_attn.${m}.bias`, [D]]);
    w.push([h + 'self_attn_layer_norm.weight', [D]], [h + 'self_attn_layer_norm.bias', [D]]);
    w.push([h + 'fc1.weight', [F, D]], [h + 'fc1.bias', [F]], [h + 'fc2.weight', [D, F]], [h + 'fc2.bias', [D]]);
    w.push([h + 'final_layer_norm.weight', [D]], [h + 'final_layer_norm.bias', [D]]);
  }
  w.push([p + 'final_layer_norm.weight', [D]], [p + 'final_layer_norm.bias', [D]]);
  return w;
}

/**
 * Writes a random OPT of the given shape into `dir` (config.json, model.safetensors) and
 * returns {params, bytes}.
 */
export function writeRandomOpt(dir, { L = 24, D = 2048, H = 32, F = 8192, V = 50272, P = 2048 } = {}) {
  const config = { model_type: 'opt', architectures: ['OPTForCausalLM'], vocab_size: V, hidden_size: D,
    num_hidden_layers: L, num_attention_heads: H, ffn_dim: F, max_position_embeddings: P, word_embed_proj_dim: D,
    activation_function: 'relu', do_layer_norm_before: true, enable_bias: true, layer_norm_elementwise_affine: true,
    tie_word_embeddings: true, pad_token_id: 1, bos_token_id: 2, eos_token_id: 2, torch_dtype: 'bfloat16' };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2));

  const shapes = optShapes({ L, D, F, V, P });
  const header = { __metadata__: { format: 'pt' } };
  let offset = 0, params = 0;
  for (const [name, shape] of shapes) {
    const n = shape.reduce((a, b) => a * b, 1);
    header[name] = { dtype: 'BF16', shape, data_offsets: [offset, offset + 2 * n] };
    offset += 2 * n;
    params += n;
  }
  // The header is padded with spaces to a multiple of 8 bytes, as the safetensors writer does.
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(json.length));

  // Two pools a little longer than a chunk, so chunk k starts at a different offset (k * 7919).
  const weights = pool(CHUNK + 65536, 0, 0x9e3779b9), norms = pool(CHUNK + 65536, 1, 0x85ebca6b);
  const fd = openSync(join(dir, 'model.safetensors'), 'w');
  try {
    writeSync(fd, head);
    writeSync(fd, Buffer.from(json, 'latin1'));
    let k = 0;
    for (const [name, shape] of shapes) {
      const src = /layer_norm\.weight$/.test(name) ? norms : weights;
      let left = shape.reduce((a, b) => a * b, 1);
      while (left > 0) {
        const n = Math.min(left, CHUNK);
        const start = (k++ * 7919) % 65536;
        writeSync(fd, new Uint8Array(src.buffer, 2 * start, 2 * n));
        left -= n;
      }
    }
  } finally {
    closeSync(fd);
  }
  return { params, bytes: 8 + json.length + offset };
}
