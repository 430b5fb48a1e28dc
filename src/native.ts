// native.ts — loads the compiled addon once and hands it our ZerothError class, so every
// native failure arrives as a ZerothError with a stable code.
//
// Lookup order: ZEROTH_ADDON_PATH (a specific zeroth.node, for development), then
// node-gyp-build (prebuilds/ matching this platform, then build/Release).
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ZerothError } from './errors.js';

const require = createRequire(import.meta.url);
const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..');

/** The raw addon: an untyped bag of functions. Only src/ touches it; users never see it. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type NativeAddon = Record<string, any>;

function load(): NativeAddon {
  const explicit = process.env.ZEROTH_ADDON_PATH;
  try {
    const addon = explicit
      ? (require(explicit) as NativeAddon)
      : (require('node-gyp-build')(packageRoot) as NativeAddon);
    addon.setErrorClass(ZerothError);
    return addon;
  } catch (err) {
    throw new ZerothError(
      'E_UNSUPPORTED',
      `could not load zeroth's native addon (${(err as Error).message}). ` +
        'Run `npm install` (or `npm run build:native`) in the zeroth package to build it for this platform.',
    );
  }
}

export const native: NativeAddon = load();
