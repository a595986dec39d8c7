import { strict as assert } from 'node:assert';
import { test } from 'node:test';

import { applyProgress, initialStatus, isLoadProgress, statusView, withBusy, type StatusState } from '../../src/status';

const ready: StatusState = { ...initialStatus, phase: 'ready' };

test('loading shows the percentage from $/progress', () => {
  let s = applyProgress(initialStatus, { kind: 'begin', title: 'quill', message: 'loading gpt2', percentage: 0 }, true);
  assert.equal(s.phase, 'loading');
  assert.equal(statusView(s).text, '$(sync~spin) Quill 0%');
  s = applyProgress(s, { kind: 'report', message: 'downloading model.safetensors', percentage: 42 }, true);
  assert.equal(statusView(s).text, '$(sync~spin) Quill 42%');
  assert.match(statusView(s).tooltip, /downloading model\.safetensors/);
  s = applyProgress(s, { kind: 'report' }, true);
  assert.equal(s.percentage, 42, 'a report without a percentage keeps the last one');
  s = applyProgress(s, { kind: 'end', message: 'gpt2 ready' }, true);
  assert.equal(s.phase, 'ready');
  assert.equal(statusView(s).text, '$(sparkle) Quill');
});

test('a failed load is an error with the reason in the tooltip', () => {
  const s = applyProgress(
    { ...initialStatus, phase: 'loading' },
    { kind: 'end', message: 'gpt2 failed to load' },
    true,
  );
  assert.equal(s.phase, 'error');
  const v = statusView(s);
  assert.equal(v.text, '$(error) Quill');
  assert.match(v.tooltip, /failed to load/);
  assert.equal(v.background, 'statusBarItem.errorBackground');
});

test('command progress does not change the phase', () => {
  const s = applyProgress(ready, { kind: 'begin', title: 'quill', message: 'summarizing' }, false);
  assert.deepEqual(s, ready);
});

test('busy while requests are in flight, never below zero', () => {
  let s = withBusy(ready, +1);
  assert.equal(statusView(s).text, '$(loading~spin) Quill');
  s = withBusy(withBusy(s, -1), -1);
  assert.equal(s.busy, 0);
  assert.equal(statusView(s).text, '$(sparkle) Quill');
});

test('suggestions off shows in the text and the tooltip says how to turn them on', () => {
  const v = statusView({ ...ready, suggestions: false });
  assert.equal(v.text, '$(circle-slash) Quill (off)');
  assert.match(v.tooltip, /Click to turn them on/);
  assert.match(statusView(ready).tooltip, /Click to turn suggestions off/);
});

test('the percentage is clamped and rounded', () => {
  assert.equal(statusView({ ...initialStatus, phase: 'loading', percentage: 133.3 }).text, '$(sync~spin) Quill 100%');
  assert.equal(statusView({ ...initialStatus, phase: 'loading' }).text, '$(sync~spin) Quill');
});

test('load progress is told from command progress by its token', () => {
  assert.equal(isLoadProgress('quill/load/ab12', { kind: 'begin', title: 'quill' }), true);
  assert.equal(isLoadProgress('quill/t5/ab12', { kind: 'begin', title: 'quill', message: 'loading the T5 model' }), false);
  assert.equal(isLoadProgress(7, { kind: 'begin', title: 'quill', message: 'loading gpt2' }), true);
  assert.equal(isLoadProgress(7, { kind: 'begin', title: 'quill', message: 'summarizing' }), false);
});
