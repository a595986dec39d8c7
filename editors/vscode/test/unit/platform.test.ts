import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';

import {
  VSCE_TARGETS,
  binaryPlatform,
  defaultTarget,
  parseArgs,
  targetMismatch,
  zipEntries,
  type VsceTarget,
} from '../../scripts/platform';

// Headers as the linkers write them (only the bytes binaryPlatform reads are filled in).
function elf(machine: number): Buffer {
  const b = Buffer.alloc(64);
  b.writeUInt32BE(0x7f454c46, 0);
  b[4] = 2; // 64-bit
  b[5] = 1; // little-endian
  b.writeUInt16LE(machine, 18);
  return b;
}
function macho(cpu: number): Buffer {
  const b = Buffer.alloc(32);
  b.writeUInt32LE(0xfeedfacf, 0);
  b.writeUInt32LE(cpu, 4);
  return b;
}
function universal(...cpus: number[]): Buffer {
  const b = Buffer.alloc(8 + 20 * cpus.length);
  b.writeUInt32BE(0xcafebabe, 0);
  b.writeUInt32BE(cpus.length, 4);
  cpus.forEach((c, i) => b.writeUInt32BE(c, 8 + 20 * i));
  return b;
}
function pe(machine: number): Buffer {
  const b = Buffer.alloc(0x100);
  b.write('MZ', 0, 'latin1');
  b.writeUInt32LE(0x80, 0x3c);
  b.writeUInt32BE(0x50450000, 0x80);
  b.writeUInt16LE(machine, 0x84);
  return b;
}

test('binaryPlatform reads ELF, Mach-O, universal Mach-O and PE headers', () => {
  assert.deepEqual(binaryPlatform(elf(0x3e)), { os: 'linux', arches: ['x64'] });
  assert.deepEqual(binaryPlatform(elf(0xb7)), { os: 'linux', arches: ['arm64'] });
  assert.deepEqual(binaryPlatform(elf(0x28)), { os: 'linux', arches: ['armhf'] });
  assert.deepEqual(binaryPlatform(macho(0x0100000c)), { os: 'darwin', arches: ['arm64'] });
  assert.deepEqual(binaryPlatform(macho(0x01000007)), { os: 'darwin', arches: ['x64'] });
  assert.deepEqual(binaryPlatform(universal(0x01000007, 0x0100000c)), { os: 'darwin', arches: ['x64', 'arm64'] });
  assert.deepEqual(binaryPlatform(pe(0x8664)), { os: 'win32', arches: ['x64'] });
  assert.deepEqual(binaryPlatform(pe(0xaa64)), { os: 'win32', arches: ['arm64'] });
});

test('binaryPlatform refuses scripts, truncated headers and unknown machines', () => {
  assert.equal(binaryPlatform(Buffer.from('#!/bin/sh\necho quill\n')), undefined);
  assert.equal(binaryPlatform(elf(0x3e).subarray(0, 10)), undefined);
  assert.equal(binaryPlatform(elf(0xf3)), undefined); // RISC-V: no vsce target
  assert.equal(binaryPlatform(Buffer.alloc(0)), undefined);
});

test('the quill that cargo built here is read as this machine\'s platform', (t) => {
  const bin = path.resolve(__dirname, '..', '..', '..', '..', '..', 'target', 'debug', 'quill');
  if (!fs.existsSync(bin) || process.platform !== 'linux' || process.arch !== 'x64') {
    t.skip('no target/debug/quill on x86-64 Linux');
    return;
  }
  const fd = fs.openSync(bin, 'r');
  const head = Buffer.alloc(4096);
  fs.readSync(fd, head, 0, head.length, 0);
  fs.closeSync(fd);
  assert.deepEqual(binaryPlatform(head), { os: 'linux', arches: ['x64'] });
});

test('the default target follows the binary; a mismatched target is refused with the reason', () => {
  assert.equal(defaultTarget({ os: 'linux', arches: ['arm64'] }), 'linux-arm64');
  assert.equal(defaultTarget({ os: 'darwin', arches: ['x64', 'arm64'] }), 'darwin-arm64');
  assert.equal(defaultTarget({ os: 'win32', arches: ['x64'] }), 'win32-x64');
  const x64 = { os: 'linux' as const, arches: ['x64' as const] };
  assert.equal(targetMismatch('linux-x64', x64), undefined);
  assert.equal(targetMismatch('alpine-x64', x64), undefined);
  assert.equal(targetMismatch('linux-arm64', x64), 'the binary is built for linux-x64, not for linux-arm64');
  assert.match(targetMismatch('darwin-x64', x64)!, /not for darwin-x64/);
  const fat = { os: 'darwin' as const, arches: ['x64' as const, 'arm64' as const] };
  assert.equal(targetMismatch('darwin-x64', fat), undefined);
  assert.equal(targetMismatch('darwin-arm64', fat), undefined);
  for (const t of VSCE_TARGETS) {
    const ok = ['linux-x64', 'alpine-x64'].includes(t);
    assert.equal(targetMismatch(t as VsceTarget, x64) === undefined, ok, t);
  }
});

test('package arguments: options, --x=v, the environment, and clear errors', () => {
  assert.deepEqual(parseArgs([], {}), {});
  assert.deepEqual(parseArgs(['--server', 'q', '--target', 'linux-arm64', '-o', 'x.vsix'], {}), {
    server: 'q',
    target: 'linux-arm64',
    out: 'x.vsix',
  });
  assert.deepEqual(parseArgs(['--server=q'], { QUILL_VSIX_TARGET: 'darwin-arm64' }), { server: 'q', target: 'darwin-arm64' });
  assert.deepEqual(parseArgs([], { QUILL_SERVER_BIN: '/b/quill' }), { server: '/b/quill' });
  assert.deepEqual(parseArgs(['--server', 'mine'], { QUILL_SERVER_BIN: '/b/quill' }), { server: 'mine' });
  assert.throws(() => parseArgs(['--target', 'linux-x64'], {}), /needs --server/);
  assert.throws(() => parseArgs(['--server', 'q', '--target', 'linux-x86'], {}), /unknown target linux-x86; vsce targets: win32-x64/);
  assert.throws(() => parseArgs(['--server'], {}), /--server needs a value/);
  assert.throws(() => parseArgs(['--strip'], {}), /unknown argument --strip/);
});

test('zipEntries lists names and Unix modes of a zip written like vsce writes a .vsix', async () => {
  // yazl is what vsce packages with
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const yazl = require('yazl');
  const zip = new yazl.ZipFile();
  zip.addBuffer(Buffer.from('#!/bin/sh\n'), 'extension/server/quill', { mode: 0o100755 });
  zip.addBuffer(Buffer.from('{}'), 'extension/package.json', { mode: 0o100644 });
  zip.end();
  const chunks: Buffer[] = [];
  for await (const c of zip.outputStream) chunks.push(c as Buffer);
  const entries = zipEntries(Buffer.concat(chunks));
  assert.deepEqual(
    entries.map((e) => [e.name, (e.mode & 0o777).toString(8)]),
    [
      ['extension/server/quill', '755'],
      ['extension/package.json', '644'],
    ],
  );
  assert.throws(() => zipEntries(Buffer.from('not a zip at all, just some text')), /not a zip archive/);
});
