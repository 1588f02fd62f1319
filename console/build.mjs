// Builds the console into dist/: one bundled, minified script (esbuild) beside the page and its
// styles. The ingest API serves dist/ at /console (HOOKSTREAM_CONSOLE_DIR); nothing is fetched
// from anywhere else at run time.
import * as esbuild from 'esbuild';
import { cp, mkdir, rm } from 'node:fs/promises';

await rm('dist', { recursive: true, force: true });
await mkdir('dist', { recursive: true });
await esbuild.build({
  entryPoints: ['src/main.jsx'],
  bundle: true,
  minify: true,
  sourcemap: true,
  format: 'esm',
  target: 'es2022',
  jsx: 'automatic',
  jsxImportSource: 'preact',
  outfile: 'dist/app.js',
  logLevel: 'warning',
});
await cp('src/index.html', 'dist/index.html');
await cp('src/style.css', 'dist/style.css');
