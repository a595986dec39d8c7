import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';

import {
  bundledServerPath,
  describeServer,
  ensureExecutable,
  findServer,
  notFoundMessage,
  resolveServerPath,
} from '../../src/server';

const files = (...names: string[]) => (f: string) => names.includes(f);

test('a bare name is looked up on PATH', () => {
  const found = resolveServerPath('quill', { PATH: '/usr/bin:/opt/q/bin' }, files('/opt/q/bin/quill'), { platform: 'linux' });
  assert.equal(found, '/opt/q/bin/quill');
  assert.equal(resolveServerPath('', { PATH: '/a' }, files('/a/quill'), { platform: 'linux' }), '/a/quill');
  assert.equal(resolveServerPath(undefined, { PATH: '/a' }, files(), { platform: 'linux' }), undefined);
});

test('a bare name not on PATH is found in ~/.cargo/bin', () => {
  const found = resolveServerPath('quill', { PATH: '/usr/bin' }, files('/home/u/.cargo/bin/quill'), {
    platform: 'linux',
    home: '/home/u',
  });
  assert.equal(found, '/home/u/.cargo/bin/quill');
});

test('paths are absolute, relative to the workspace, or under ~', () => {
  assert.equal(resolveServerPath('/x/quill', {}, files('/x/quill'), { platform: 'linux' }), '/x/quill');
  assert.equal(
    resolveServerPath('target/debug/quill', {}, files('/ws/target/debug/quill'), { platform: 'linux', workspaceFolder: '/ws' }),
    '/ws/target/debug/quill',
  );
  assert.equal(
    resolveServerPath('~/.cargo/bin/quill', {}, files('/home/u/.cargo/bin/quill'), { platform: 'linux', home: '/home/u' }),
    '/home/u/.cargo/bin/quill',
  );
  assert.equal(resolveServerPath('/missing/quill', {}, files(), { platform: 'linux' }), undefined);
});

test('windows uses PATHEXT', () => {
  const found = resolveServerPath('quill', { PATH: 'C:\\q', PATHEXT: '.EXE;.CMD' }, files('C:\\q\\quill.EXE'), {
    platform: 'win32',
  });
  assert.equal(found, 'C:\\q\\quill.EXE');
});

test('the not-found message names the setting and says what to do', () => {
  const m = notFoundMessage('quill');
  assert.match(m, /quill\.server\.path/);
  assert.match(m, /cargo install/);
});

// --- the order: setting, PATH, bundled -----------------------------------------------------------

const BUNDLED = '/ext/quill-0.1.0-linux-x64/server/quill';

test('the bundled server lies in server/ of the extension (quill.exe on Windows)', () => {
  assert.equal(bundledServerPath('/ext/q', 'linux'), '/ext/q/server/quill');
  assert.equal(bundledServerPath('/ext/q', 'darwin'), '/ext/q/server/quill');
  assert.equal(bundledServerPath('C:\\ext\\q', 'win32'), 'C:\\ext\\q\\server\\quill.exe');
});

test('with the setting left at its default, quill on PATH comes before the bundled server', () => {
  const opts = { platform: 'linux', home: '/home/u', bundled: BUNDLED };
  for (const setting of [undefined, '', '  ', 'quill']) {
    assert.deepEqual(findServer(setting, { PATH: '/usr/bin:/opt/q' }, files('/opt/q/quill', BUNDLED), opts), {
      path: '/opt/q/quill',
      source: 'path',
    });
  }
  // ~/.cargo/bin counts as PATH: it is where `cargo install` puts quill
  assert.deepEqual(findServer('quill', { PATH: '/usr/bin' }, files('/home/u/.cargo/bin/quill', BUNDLED), opts), {
    path: '/home/u/.cargo/bin/quill',
    source: 'path',
  });
});

test('with no setting and no quill on PATH, the bundled server is used', () => {
  const found = findServer('quill', { PATH: '/usr/bin:/bin' }, files(BUNDLED), { platform: 'linux', home: '/home/u', bundled: BUNDLED });
  assert.deepEqual(found, { path: BUNDLED, source: 'bundled' });
  assert.equal(describeServer(found!), `server: ${BUNDLED} (bundled with the extension)`);
});

test('a set quill.server.path wins over PATH and the bundled server', () => {
  const everywhere = files('/usr/bin/quill', BUNDLED, '/opt/dev/quill', '/usr/bin/quill-dev');
  const opts = { platform: 'linux', bundled: BUNDLED };
  assert.deepEqual(findServer('/opt/dev/quill', { PATH: '/usr/bin' }, everywhere, opts), { path: '/opt/dev/quill', source: 'setting' });
  // a bare name other than the default is the user's choice too, looked up on PATH
  assert.deepEqual(findServer('quill-dev', { PATH: '/usr/bin' }, everywhere, opts), { path: '/usr/bin/quill-dev', source: 'setting' });
});

test('a set quill.server.path that is missing is reported, never replaced by PATH or the bundled server', () => {
  const found = findServer('/nonexistent/quill', { PATH: '/usr/bin' }, files('/usr/bin/quill', BUNDLED), {
    platform: 'linux',
    bundled: BUNDLED,
  });
  assert.equal(found, undefined);
});

test('nothing anywhere: not found; a bundled file that is not executable does not count', () => {
  assert.equal(findServer('quill', { PATH: '/usr/bin' }, files(), { platform: 'linux', bundled: BUNDLED }), undefined);
  assert.equal(findServer('quill', { PATH: '/usr/bin' }, files('/usr/bin/other'), { platform: 'linux' }), undefined);
});

test('windows: PATH with PATHEXT, then server\\quill.exe', () => {
  const bundled = bundledServerPath('C:\\ext\\q', 'win32');
  const opts = { platform: 'win32', bundled };
  assert.deepEqual(findServer('quill', { PATH: 'C:\\bin', PATHEXT: '.EXE' }, files('C:\\bin\\quill.EXE', bundled), opts), {
    path: 'C:\\bin\\quill.EXE',
    source: 'path',
  });
  assert.deepEqual(findServer('quill', { PATH: 'C:\\bin', PATHEXT: '.EXE' }, files(bundled), opts), { path: bundled, source: 'bundled' });
});

test('the not-found message names the three ways to get a server', () => {
  for (const setting of ['quill', '/nonexistent/quill']) {
    const m = notFoundMessage(setting);
    assert.match(m, /three ways/);
    assert.match(m, /set `quill\.server\.path`/);
    assert.match(m, /PATH.*cargo install --path \./);
    assert.match(m, /\.vsix built for your platform/);
  }
  assert.match(notFoundMessage('/nonexistent/quill'), /`\/nonexistent\/quill` was not found/);
  assert.match(notFoundMessage(''), /`quill\.server\.path` is not set, there is no `quill` on PATH/);
});

test('ensureExecutable gives a bundled server that lost its mode the execute bits back, once', { skip: process.platform === 'win32' }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'quill-bundled-'));
  try {
    const file = path.join(dir, 'quill');
    fs.writeFileSync(file, '#!/bin/sh\n');
    fs.chmodSync(file, 0o644);
    assert.equal(ensureExecutable(file), true);
    assert.equal(fs.statSync(file).mode & 0o777, 0o755);
    assert.equal(ensureExecutable(file), false); // already executable: left alone
    fs.chmodSync(file, 0o700);
    assert.equal(ensureExecutable(file), false);
    assert.equal(fs.statSync(file).mode & 0o777, 0o700);
    assert.equal(ensureExecutable(path.join(dir, 'absent')), false);
    assert.equal(ensureExecutable(dir), false); // a directory is not a server
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
