// zeroth devices — what this machine offers zeroth.
import { buildInfo, devices } from '../device.js';
import { parseFlags, usage, type FlagSpec } from './args.js';

const spec: Record<string, FlagSpec> = {
  json: { type: 'boolean', help: 'print JSON instead of a table' },
  help: { type: 'boolean', help: 'show this help' },
};

export async function run(argv: string[]): Promise<void> {
  const { flags } = parseFlags(argv, spec);
  if (flags.help) {
    console.log(usage('devices', 'Lists the CPU and every usable CUDA device, and how this copy of zeroth was built.', spec));
    return;
  }
  const list = devices();
  const build = buildInfo();
  if (flags.json) {
    console.log(JSON.stringify({ devices: list, build }, null, 2));
    return;
  }
  for (const d of list) {
    const name = d.type === 'cpu' ? 'cpu' : `cuda:${d.index}`;
    console.log(`${name.padEnd(8)} ${d.name}  ${(d.totalMemory / 2 ** 30).toFixed(1)} GiB`);
  }
  console.log(`build: CUDA backend ${build.cuda ? 'compiled in' : 'not built'}, CPU kernels ${build.simd}, ${build.threads} threads`);
}
