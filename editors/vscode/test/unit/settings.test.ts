import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';

import {
  CLIENT_SETTING_KEYS,
  SERVER_SETTING_KEYS,
  buildServerSettings,
  getPath,
  stripClientSettings,
  toggleTarget,
} from '../../src/settings';

// out/test/unit -> the extension's root, and the repository's root above it
const extRoot = path.resolve(__dirname, '..', '..', '..');
const repoRoot = path.resolve(extRoot, '..', '..');
const pkg = JSON.parse(fs.readFileSync(path.join(extRoot, 'package.json'), 'utf8'));
const props: Record<string, { default: unknown; description?: string; markdownDescription?: string }> =
  pkg.contributes.configuration.properties;

test('buildServerSettings nests dotted keys and leaves out undefined values', () => {
  const values: Record<string, unknown> = {
    model: '/m/gpt2',
    'completion.maxTokens': 8,
    'completion.temperature': 0,
    'diagnostics.languages': ['markdown'],
    't5.maxTokens': 20,
  };
  const s = buildServerSettings((k) => values[k]);
  assert.deepEqual(s, {
    model: '/m/gpt2',
    completion: { maxTokens: 8, temperature: 0 },
    diagnostics: { languages: ['markdown'] },
    t5: { maxTokens: 20 },
  });
});

test('buildServerSettings copies values (no shared arrays)', () => {
  const langs = ['markdown'];
  const s = buildServerSettings((k) => (k === 'diagnostics.languages' ? langs : undefined));
  langs.push('x');
  assert.deepEqual(getPath(s, 'diagnostics.languages'), ['markdown']);
});

test('client-only settings never reach the server', () => {
  const section = {
    model: 'gpt2',
    server: { path: '/usr/bin/quill', extraEnv: { A: '1' } },
    trace: { server: 'verbose' },
    completion: { enabled: false },
  };
  assert.deepEqual(stripClientSettings(section), { model: 'gpt2', completion: { enabled: false } });
  assert.deepEqual(stripClientSettings(null), {});
  for (const key of CLIENT_SETTING_KEYS) {
    assert.ok(!(SERVER_SETTING_KEYS as readonly string[]).includes(key));
  }
});

test('package.json contributes every server setting, and only known ones', () => {
  const contributed = Object.keys(props).map((k) => k.replace(/^quill\./, ''));
  for (const key of SERVER_SETTING_KEYS) {
    assert.ok(contributed.includes(key), `quill.${key} missing from contributes.configuration`);
  }
  for (const key of contributed) {
    assert.ok(
      (SERVER_SETTING_KEYS as readonly string[]).includes(key) ||
        (CLIENT_SETTING_KEYS as readonly string[]).includes(key),
      `quill.${key} is neither a server nor a client setting`,
    );
    const p = props[`quill.${key}`];
    assert.ok(p.description || p.markdownDescription, `quill.${key} has no description`);
  }
});

/** The settings JSON block of the README's "### Settings" section: the source of truth. */
function readmeDefaults(): Record<string, unknown> | undefined {
  const readme = path.join(repoRoot, 'README.md');
  if (!fs.existsSync(readme)) {
    return undefined;
  }
  const text = fs.readFileSync(readme, 'utf8');
  const at = text.indexOf('### Settings');
  if (at < 0) {
    return undefined;
  }
  const m = /```json\n([\s\S]*?)\n```/.exec(text.slice(at));
  return m ? JSON.parse(m[1]) : undefined;
}

test('package.json defaults equal the server defaults in the README', (t) => {
  const defaults = readmeDefaults();
  if (!defaults) {
    t.skip('README.md with a "### Settings" JSON block not found');
    return;
  }
  for (const key of SERVER_SETTING_KEYS) {
    const expected = getPath(defaults, key);
    assert.notEqual(expected, undefined, `README has no default for ${key}`);
    assert.deepEqual(props[`quill.${key}`].default, expected, `default of quill.${key}`);
  }
  // and the README names no setting that the extension lacks
  const leaves: string[] = [];
  const walk = (o: Record<string, unknown>, prefix: string) => {
    for (const [k, v] of Object.entries(o)) {
      if (v && typeof v === 'object' && !Array.isArray(v)) {
        walk(v as Record<string, unknown>, `${prefix}${k}.`);
      } else {
        leaves.push(`${prefix}${k}`);
      }
    }
  };
  walk(defaults, '');
  assert.deepEqual([...leaves].sort(), [...SERVER_SETTING_KEYS].sort());
});

test('toggling writes to the most specific scope that sets the value', () => {
  assert.equal(toggleTarget(undefined), 'global');
  assert.equal(toggleTarget({ globalValue: false }), 'global');
  assert.equal(toggleTarget({ globalValue: true, workspaceValue: false }), 'workspace');
  assert.equal(toggleTarget({ workspaceValue: true, workspaceFolderValue: false }), 'workspaceFolder');
});
