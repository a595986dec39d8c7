import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';

import {
  CLIENT_COMMANDS,
  SERVER_COMMANDS,
  commandArgs,
  insertBelow,
  kindOfServerCommand,
  resultMessage,
  resultText,
} from '../../src/results';

const pos = (line: number, character: number) => ({ line, character });

test('an empty selection sends no range (the whole document)', () => {
  assert.deepEqual(commandArgs('file:///a.md', { start: pos(1, 2), end: pos(1, 2) }), { uri: 'file:///a.md' });
  assert.deepEqual(commandArgs('file:///a.md', undefined, { question: 'Who?' }), {
    uri: 'file:///a.md',
    question: 'Who?',
  });
  const r = { start: pos(0, 0), end: pos(2, 5) };
  assert.deepEqual(commandArgs('file:///a.md', r, { to: 'German' }), { uri: 'file:///a.md', range: r, to: 'German' });
});

test('results are read from summary / answer / translation', () => {
  assert.equal(resultText('summarize', { summary: 'S' }), 'S');
  assert.equal(resultText('answer', { answer: 'A' }), 'A');
  assert.equal(resultText('translate', { translation: 'T' }), 'T');
  assert.equal(resultText('translate', { summary: 'S' }), undefined);
  assert.equal(resultText('summarize', null), undefined);
  assert.equal(resultText('summarize', 'plain'), 'plain');
  assert.equal(resultMessage('summarize', 'pe plan'), 'Summary: pe plan');
  assert.equal(resultMessage('translate', 'Hallo', 'German'), 'German translation: Hallo');
});

test('client command ids never clash with the server command ids', () => {
  const client = Object.values(CLIENT_COMMANDS) as string[];
  for (const id of Object.values(SERVER_COMMANDS)) {
    assert.ok(!client.includes(id), id);
  }
  for (const id of ['quill.summarize.insert', 'quill.translate.replace']) {
    assert.ok(!client.includes(id), id);
  }
  assert.equal(kindOfServerCommand('quill.summarize'), 'summarize');
  assert.equal(kindOfServerCommand('quill.translate'), 'translate');
  assert.equal(kindOfServerCommand('quill.summarize.insert'), undefined);
  assert.equal(kindOfServerCommand('quill.summarizeSelection'), undefined);
});

test('package.json contributes exactly the client commands', () => {
  const pkg = JSON.parse(fs.readFileSync(path.resolve(__dirname, '..', '..', '..', 'package.json'), 'utf8'));
  const contributed = pkg.contributes.commands.map((c: { command: string }) => c.command).sort();
  assert.deepEqual(contributed, Object.values(CLIENT_COMMANDS).sort());
  const titles = Object.fromEntries(
    pkg.contributes.commands.map((c: { command: string; category: string; title: string }) => [
      c.command,
      `${c.category}: ${c.title}`,
    ]),
  );
  assert.equal(titles['quill.summarizeSelection'], 'Quill: Summarize Selection');
  assert.equal(titles['quill.askQuestion'], 'Quill: Ask a Question About This File…');
  assert.equal(titles['quill.translateSelection'], 'Quill: Translate Selection…');
  for (const lang of ['markdown', 'plaintext']) {
    assert.ok(pkg.activationEvents.includes(`onLanguage:${lang}`), lang);
  }
});

test('insert goes below the selection, as a new paragraph', () => {
  const lines = ['first line', 'second one', '', 'x'];
  const len = (l: number) => lines[l].length;
  assert.deepEqual(insertBelow({ start: pos(0, 3), end: pos(1, 4) }, len, 'S'), {
    position: pos(1, 10),
    text: '\n\nS',
  });
  // a selection that ends at the start of a line ends on the line before
  assert.deepEqual(insertBelow({ start: pos(0, 0), end: pos(2, 0) }, len, 'S', '\r\n'), {
    position: pos(1, 10),
    text: '\r\n\r\nS',
  });
  // an empty selection at a line start stays on its line
  assert.deepEqual(insertBelow({ start: pos(3, 0), end: pos(3, 0) }, len, 'S').position, pos(3, 1));
});
