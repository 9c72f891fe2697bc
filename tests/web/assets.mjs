// The browser client's modules, loaded in node for the checks beside this file.

import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/**
 * Copies `files` (paths under broker/src/web/assets/) to `dir` and returns a function
 * that imports one of them. The assets are `.js` ES modules served to browsers; a
 * package.json saying so lets any node (18 too, without module detection) import them.
 */
export function loadAssets(dir, files) {
  const assets = fileURLToPath(new URL('../../broker/src/web/assets/', import.meta.url));
  for (const file of files) {
    mkdirSync(dirname(join(dir, file)), { recursive: true });
    copyFileSync(join(assets, file), join(dir, file));
  }
  writeFileSync(join(dir, 'package.json'), '{"type": "module"}\n');
  return (file) => import(pathToFileURL(join(dir, file)).href);
}
