// cli.test.ts — the built CLI (dist/cli/main.js) end to end, as a user runs it.
//
// A short finetune of the embedded default (models/default + data/default; the gpt2-tiny
// fixture with a byte-level tokenizer written here while the default is absent) must print
// `eval before:` / `eval after:` and write every output file. A run stopped by Ctrl-C (SIGINT)
// and resumed must equal the uninterrupted run bit for bit (trajectory and weights), and replay
// must rebuild the same weights. Plus --help, eval, generate, and one-line errors.
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const here = dirname(fileURLToPath(import.meta.url));
const ROOT = join(here, '..');
const CLI = join(ROOT, 'dist', 'cli', 'main.js');
const FIXTURES = process.env.ZEROTH_FIXTURES ?? join(ROOT, '..', 'shared', 'fixtures');
const HAS_DEFAULT = existsSync(join(ROOT, 'models', 'default', 'tokenizer.json')) && existsSync(join(ROOT, 'data', 'default', 'train.jsonl'));
const scratch = mkdtempSync(join(tmpdir(), 'zeroth-cli-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function run(args: string[], timeout = 120_000): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: scratch, encoding: 'utf8', timeout });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** gpt2-tiny plus a byte-level tokenizer (id 0 <|endoftext|>, byte b → id b + 1), and a small text file. */
function tinyModel(): { model: string; data: string } {
  const model = join(scratch, 'tiny');
  mkdirSync(model, { recursive: true });
  for (const f of ['config.json', 'model.safetensors']) copyFileSync(join(FIXTURES, 'gpt2-tiny', f), join(model, f));
  const vocab: Record<string, number> = { '<|endoftext|>': 0 };
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    vocab[String.fromCodePoint(printable ? b : 256 + n++)] = b + 1;
  }
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  writeFileSync(join(model, 'tokenizer.json'), JSON.stringify({
    version: '1.0', truncation: null, padding: null, normalizer: null,
    added_tokens: [{ id: 0, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
    pre_tokenizer: byteLevel, post_processor: byteLevel, decoder: byteLevel,
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false, byte_fallback: false, vocab, merges: [] },
  }));
  const lines = ['the cat sat on the mat', 'a dog ran in the park', 'birds sing in the morning', 'the sun is warm today'];
  const data = join(scratch, 'tiny.jsonl');
  writeFileSync(data, Array.from({ length: 120 }, (_, i) => JSON.stringify({ text: `${lines[i % 4]} ${i}` })).join('\n') + '\n');
  return { model, data };
}

let tiny: { model: string; data: string };
beforeAll(() => {
  // `npm test` compiles first; a bare `vitest run` after editing src/ gets a fresh build here.
  const built = existsSync(CLI) ? statSync(CLI).mtimeMs : 0;
  const newest = Math.max(...readdirSync(join(ROOT, 'src', 'cli')).map((f) => statSync(join(ROOT, 'src', 'cli', f)).mtimeMs));
  if (built < newest) spawnSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(ROOT, 'tsconfig.json')], { stdio: 'ignore' });
  tiny = tinyModel();
}, 120_000);

function evalLoss(stdout: string, label: 'before' | 'after'): number {
  const line = stdout.split('\n').find((l) => l.startsWith(`eval ${label}:`));
  expect(line, `a line starting "eval ${label}:" in:\n${stdout}`).toBeDefined();
  return Number(/loss ([0-9.]+)/.exec(line!)![1]);
}

describe('zeroth finetune', () => {
  it(`runs end to end on ${HAS_DEFAULT ? 'the embedded default' : 'the gpt2-tiny fixture (no embedded default yet)'}`, () => {
    const out = join(scratch, 'out-default');
    const args = HAS_DEFAULT
      ? ['finetune', '--steps', '6', '--eval-every', '3', '--trace-probes', '2', '--out', out]
      : ['finetune', '--model', tiny.model, '--data', tiny.data, '--steps', '6', '--eval-every', '3', '--lr', '1e-3', '--trace-probes', '2', '--out', out];
    const r = run(args);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const before = evalLoss(r.stdout, 'before');
    const after = evalLoss(r.stdout, 'after');
    expect(Number.isFinite(before) && Number.isFinite(after)).toBe(true);
    expect(r.stdout).toMatch(/eval at step 3:/);
    expect(r.stdout).toMatch(/^trace before: -?[\d.e+-]+ ± /m);
    expect(r.stdout).toMatch(/^trace after: -?[\d.e+-]+ ± /m);
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'trajectory.bin', 'state.json', 'metrics.jsonl', 'report.html']) {
      expect(existsSync(join(out, f)), f).toBe(true);
    }
    const metrics = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { type: string; step: number; loss: number });
    expect(metrics.filter((m) => m.type === 'train').map((m) => m.step)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(metrics.filter((m) => m.type === 'eval').map((m) => m.step)).toEqual([0, 3, 6]);
    expect(metrics.find((m) => m.type === 'eval' && m.step === 6)!.loss).toBeCloseTo(after, 4);
    const html = readFileSync(join(out, 'report.html'), 'utf8');
    expect(html).toContain('<svg');
    expect(html).toContain('Hessian trace');
    expect(html).not.toMatch(/<script|https?:\/\/(?!www\.w3\.org)/); // self-contained
    expect(JSON.parse(readFileSync(join(out, 'state.json'), 'utf8'))).toMatchObject({ step: 6, steps: 6, finished: true });
    // The saved folder is a model the other commands load.
    const ev = run(['eval', '--model', out, '--data', HAS_DEFAULT ? join(ROOT, 'data', 'default', 'eval.jsonl') : tiny.data, '--json']);
    expect(ev.code).toBe(0);
    expect(JSON.parse(ev.stdout).loss).toBeGreaterThan(0);
    const gen = run(['generate', '--model', out, '--prompt', 'the cat', '--max-new-tokens', '5', '--temperature', '0']);
    expect(gen.code).toBe(0);
    expect(gen.stdout.startsWith('the cat')).toBe(true);
  });

  it('Ctrl-C stops after a step with a checkpoint; --resume equals the uninterrupted run; replay rebuilds it', async () => {
    const common = ['--model', tiny.model, '--data', tiny.data, '--lr', '1e-3', '--eval-every', '0', '--batch', '4'];
    const full = join(scratch, 'full');
    const whole = run(['finetune', ...common, '--steps', '400', '--out', full]);
    expect(whole.code).toBe(0);

    // Interrupt a run as soon as it reports its first steps.
    const part = join(scratch, 'part');
    const child = spawn(process.execPath, [CLI, 'finetune', ...common, '--steps', '400', '--log-every', '1', '--out', part], { cwd: scratch });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const code = await new Promise<number | null>((resolve) => {
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString();
        if (/^step +\d+\/400/m.test(stdout) && !child.killed) child.kill('SIGINT');
      });
      child.on('exit', (c) => resolve(c));
    });
    expect(code).toBe(130);
    expect(stderr).toMatch(/interrupted after step \d+ of 400.*--resume/);
    expect(stderr.trim().split('\n').filter((l) => l.startsWith('zeroth finetune:'))).toHaveLength(1);
    const state = JSON.parse(readFileSync(join(part, 'state.json'), 'utf8')) as { step: number; finished: boolean };
    expect(state.finished).toBe(false);
    expect(state.step).toBeGreaterThan(0);
    expect(state.step).toBeLessThan(400);

    const resumed = run(['finetune', '--resume', part]);
    expect(resumed.code).toBe(0);
    expect(resumed.stdout).toContain(`resumed at step ${state.step}`);
    expect(evalLoss(resumed.stdout, 'after')).toBe(evalLoss(whole.stdout, 'after'));
    expect(Buffer.compare(readFileSync(join(part, 'trajectory.bin')), readFileSync(join(full, 'trajectory.bin')))).toBe(0);
    expect(Buffer.compare(readFileSync(join(part, 'model.safetensors')), readFileSync(join(full, 'model.safetensors')))).toBe(0);

    const rebuilt = join(scratch, 'rebuilt');
    const rp = run(['replay', '--model', tiny.model, '--trajectory', join(full, 'trajectory.bin'), '--out', rebuilt]);
    expect(rp.code).toBe(0);
    expect(Buffer.compare(readFileSync(join(rebuilt, 'model.safetensors')), readFileSync(join(full, 'model.safetensors')))).toBe(0);
    expect(existsSync(join(rebuilt, 'tokenizer.json'))).toBe(true);
  });

  it('--config supplies flags; command-line flags win', () => {
    const cfg = join(scratch, 'cfg.json');
    writeFileSync(cfg, JSON.stringify({ model: tiny.model, data: tiny.data, steps: 2, evalEvery: 0, lr: 0.5 }));
    const out = join(scratch, 'cfg-out');
    const r = run(['finetune', '--config', cfg, '--lr', '1e-4', '--out', out]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('lr 0.0001');
    expect(JSON.parse(readFileSync(join(out, 'state.json'), 'utf8'))).toMatchObject({ step: 2, config: { lr: 1e-4 } });
  });
});

describe('zeroth quantize', () => {
  it('writes a GPTQ checkpoint that eval loads, and finetune --trainable scales trains it (QZO)', () => {
    const q = join(scratch, 'tiny-int4');
    const r = run(['quantize', '--model', tiny.model, '--data', tiny.data, '--group-size', '32', '--eval-examples', '16', '--out', q]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/quantized 8 linear layers \(8 int4, 0 int8\)/);
    const before = evalLoss(r.stdout, 'before');
    const after = evalLoss(r.stdout, 'after');
    expect(Math.abs(after - before)).toBeLessThan(0.5); // int4 at group 32 stays close to f32
    const config = JSON.parse(readFileSync(join(q, 'config.json'), 'utf8')) as { quantization_config: { quant_method: string; group_size: number } };
    expect(config.quantization_config).toMatchObject({ quant_method: 'gptq', group_size: 32 });
    expect(existsSync(join(q, 'tokenizer.json'))).toBe(true);
    const ev = run(['eval', '--model', q, '--data', tiny.data, '--json']);
    expect(ev.code).toBe(0);
    const out = join(scratch, 'tiny-qzo');
    const ft = run(['finetune', '--model', q, '--data', tiny.data, '--trainable', 'scales', '--steps', '4', '--lr', '1e-4', '--grad-clip', '10', '--eval-every', '0', '--out', out]);
    expect(ft.stderr).toBe('');
    expect(ft.code).toBe(0);
    expect(ft.stdout).toMatch(/quantization scale parameters train: [\d,]+\)/);
    expect(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).quantization_config.quant_method).toBe('gptq');
  });

  it('--plan hessian keeps the blocks that matter at int8 within --budget; a budget below int4 is refused', () => {
    const r = run(['quantize', '--model', tiny.model, '--data', tiny.data, '--plan', 'hessian', '--budget', '1MB', '--group-size', '32',
      '--probes', '4', '--eval-examples', '0', '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout.trim().split('\n').pop()!) as { bytesAfter: number; blocks: { bits: number }[] };
    expect(report.bytesAfter).toBeLessThanOrEqual(1e6);
    expect(report.blocks).toHaveLength(2);
    const tooSmall = run(['quantize', '--model', tiny.model, '--data', tiny.data, '--plan', 'hessian', '--budget', '10kB', '--eval-examples', '0']);
    expect(tooSmall.code).not.toBe(0);
    expect(tooSmall.stderr).toMatch(/budgetBytes.*E_INVALID_ARG/s);
  });
});

describe('help and errors', () => {
  it('--help of every command', () => {
    for (const [cmd, flags] of [['finetune', ['--model', '--data', '--eval', '--steps', '--lr', '--eps', '--batch', '--seed', '--trainable', '--device', '--out', '--resume']],
      ['eval', ['--model', '--data']], ['generate', ['--prompt', '--max-new-tokens', '--temperature', '--top-k', '--top-p']],
      ['replay', ['--model', '--trajectory', '--out']]] as const) {
      const r = run([cmd, '--help']);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`usage: zeroth ${cmd}`);
      for (const f of flags) expect(r.stdout).toContain(f);
    }
    const top = run(['--help']);
    for (const cmd of ['finetune', 'eval', 'generate', 'replay', 'devices']) expect(top.stdout).toContain(cmd);
  });

  it('bad flags and inputs give one clear line and a non-zero exit code', () => {
    const cases: [string[], RegExp][] = [
      [['finetune', '--stepz', '3'], /unknown flag --stepz/],
      [['finetune', '--steps', 'many'], /--steps must be a number/],
      [['finetune', '--trainable', 'dora'], /--trainable must be one of full, bias, lora/],
      [['finetune', '--optimizer', 'adamw'], /--optimizer must be one of zosgd, zoadam, zosign/],
      [['finetune', '--model', tiny?.model ?? '', '--data', tiny?.data ?? '', '--device', 'cuda'], /device 'cuda'/],
      [['finetune', '--model', join(scratch, 'nowhere')], /cannot read .*nowhere/],
      [['finetune', '--resume', join(scratch, 'nowhere')], /state\.json/],
      [['replay', '--trajectory', 'x.bin'], /--out/],
    ];
    for (const [args, message] of cases) {
      const r = run(args);
      expect(r.code, args.join(' ')).not.toBe(0);
      const lines = r.stderr.trim().split('\n');
      expect(lines, r.stderr).toHaveLength(1);
      expect(lines[0]).toMatch(/^zeroth \w+: /);
      expect(lines[0]).toMatch(message);
    }
    const bad = join(scratch, 'bad.jsonl');
    writeFileSync(bad, '{"text": "fine"}\n{"text": "broken\n');
    const r = run(['finetune', '--model', tiny.model, '--data', bad]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/bad\.jsonl:2: invalid JSON.*\[E_FORMAT\]/);
  });

  it('finetune --device cuda without a GPU: zoadam / zosign / momentum / lora / scales reach the device and get one E_DEVICE line', async () => {
    const { buildInfo, devices } = await import('../src/index.js');
    if (buildInfo().cuda && devices().some((d) => d.type === 'cuda')) {
      console.log('SKIP the no-GPU --device cuda errors: this machine has a GPU (cuda_optim.test.ts trains there)');
      return;
    }
    const common = ['finetune', '--model', tiny.model, '--data', tiny.data, '--steps', '1', '--device', 'cuda'];
    // Every run gets as far as loading the model on the device, which answers one E_DEVICE line
    // naming what is missing (with a GPU they train: cuda_optim.test.ts).
    const cases: [string[], RegExp][] = [];
    for (const extra of [['--optimizer', 'zoadam'], ['--optimizer', 'zosign'], ['--momentum', '0.9'], ['--trainable', 'lora'],
      ['--trainable', 'scales']]) {
      cases.push([extra, /device 'cuda'.*E_DEVICE/]);
    }
    for (const [extra, message] of cases) {
      const r = run([...common, ...extra, '--out', join(scratch, 'out-device')]);
      expect(r.code, extra.join(' ')).not.toBe(0);
      const lines = r.stderr.trim().split('\n');
      expect(lines, r.stderr).toHaveLength(1);
      expect(lines[0]).toMatch(/^zeroth finetune: /);
      expect(lines[0]).toMatch(message);
    }
  });
});
