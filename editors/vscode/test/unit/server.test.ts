import { strict as assert } from 'node:assert';
import { test } from 'node:test';

import { notFoundMessage, resolveServerPath } from '../../src/server';

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
