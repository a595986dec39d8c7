// `npm run package`: the plain .vsix (no server inside), or with `--server BIN [--target T]` a
// platform-specific .vsix that carries the quill binary as server/quill (server/quill.exe on
// Windows), mode 0755. The extension starts it when quill.server.path is unset and no quill is
// on PATH (src/server.ts). See PACKAGE_USAGE in platform.ts.

import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

import {
  binaryPlatform,
  defaultTarget,
  parseArgs,
  targetMismatch,
  targetPlatform,
  zipEntries,
  type VsceTarget,
} from './platform';

// out/scripts -> the extension's root
const EXT_DIR = path.resolve(__dirname, '..', '..');
const SERVER_DIR = path.join(EXT_DIR, 'server');
const VSCE_FLAGS = ['--skip-license', '--allow-missing-repository', '--no-rewrite-relative-links'];

function fail(message: string): never {
  console.error(`package: ${message}`);
  process.exit(1);
}

function vsce(args: string[]): void {
  const bin = path.join(EXT_DIR, 'node_modules', '@vscode', 'vsce', 'vsce');
  const r = spawnSync(process.execPath, [bin, 'package', ...VSCE_FLAGS, ...args], { cwd: EXT_DIR, stdio: 'inherit' });
  if (r.status !== 0) {
    fail(`vsce package failed (${r.error?.message ?? `exit ${r.status}`})`);
  }
}

function readHead(file: string, n = 4096): Buffer {
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.alloc(n);
    const got = fs.readSync(fd, buf, 0, n, 0);
    return buf.subarray(0, got);
  } finally {
    fs.closeSync(fd);
  }
}

function main(): void {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2), process.env);
  } catch (e) {
    fail((e as Error).message);
  }
  // paths on the command line are relative to where `npm run` was typed, not to this directory
  const cwd = process.env.INIT_CWD ?? process.cwd();
  // a server/ left by an interrupted run must not slip into the plain .vsix
  fs.rmSync(SERVER_DIR, { recursive: true, force: true });

  if (!opts.server) {
    vsce(['-o', path.resolve(cwd, opts.out ?? path.join(EXT_DIR, 'quill.vsix'))]);
    return;
  }

  const server = path.resolve(cwd, opts.server);
  if (!fs.existsSync(server) || !fs.statSync(server).isFile()) {
    fail(`no quill binary at ${server}`);
  }
  const platform = binaryPlatform(readHead(server));
  if (!platform) {
    fail(`${server} is not an executable for a platform VS Code has (ELF, Mach-O or PE for x64, arm64, armhf)`);
  }
  const target = (opts.target ?? defaultTarget(platform)) as VsceTarget;
  const mismatch = targetMismatch(target, platform);
  if (mismatch) {
    fail(`${server}: ${mismatch}`);
  }
  const out = path.resolve(cwd, opts.out ?? path.join(EXT_DIR, `quill-${target}.vsix`));
  const name = targetPlatform(target).os === 'win32' ? 'quill.exe' : 'quill';
  fs.mkdirSync(SERVER_DIR);
  try {
    const dest = path.join(SERVER_DIR, name);
    fs.copyFileSync(server, dest);
    fs.chmodSync(dest, 0o755);
    console.log(`package: ${server} -> server/${name} for ${target}`);
    vsce(['--target', target, '-o', out]);
  } finally {
    fs.rmSync(SERVER_DIR, { recursive: true, force: true });
  }

  // vsce keeps the file mode in the zip (VS Code restores it on install): check that it did
  const entry = zipEntries(fs.readFileSync(out)).find((e) => e.name === `extension/server/${name}`);
  if (!entry) {
    fail(`${out} has no extension/server/${name}`);
  }
  if (name === 'quill' && (entry.mode & 0o111) === 0) {
    fail(`${out}: extension/server/quill lost its executable bit (mode ${entry.mode.toString(8)})`);
  }
  console.log(`package: ${out} (${target}, server/${name} mode ${(entry.mode & 0o777).toString(8)})`);
}

main();
