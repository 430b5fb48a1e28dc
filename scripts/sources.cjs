// Lists the C++ sources of the CPU-only addon for binding.gyp (node-gyp has no globbing).
const fs = require('fs');
const path = require('path');
const root = path.join(__dirname, '..');
const dirs = ['native/core', 'native/cpu', 'native/model', 'native/napi'];
const files = [];
for (const d of dirs) {
  const abs = path.join(root, d);
  if (!fs.existsSync(abs)) continue;
  for (const f of fs.readdirSync(abs).sort()) if (f.endsWith('.cpp')) files.push(`${d}/${f}`);
}
process.stdout.write(files.join(' '));
