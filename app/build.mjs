// Bundles assets/ into public/build/ with content-hashed names, and writes
// public/build/manifest.json ({"app.css": "/build/app-HASH.css", ...}) for View::asset().
import { build } from 'esbuild';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';

const outdir = 'public/build';

// Start clean so the build holds exactly one version of each asset.
await rm(outdir, { recursive: true, force: true });
await mkdir(outdir, { recursive: true });

const result = await build({
  entryPoints: ['assets/app.js', 'assets/app.css'],
  outdir,
  entryNames: '[name]-[hash]',
  bundle: true,
  minify: true,
  sourcemap: false,
  target: ['es2020'],
  metafile: true,
  logLevel: 'info',
});

// metafile.outputs: { "public/build/app-HASH.js": { entryPoint: "assets/app.js", ... } }
const manifest = {};
for (const [output, meta] of Object.entries(result.metafile.outputs)) {
  if (meta.entryPoint) {
    manifest[path.basename(meta.entryPoint)] = '/build/' + path.basename(output);
  }
}
await writeFile(path.join(outdir, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
console.log('manifest:', manifest);
