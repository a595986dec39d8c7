import { strict as assert } from 'node:assert';
import { test } from 'node:test';

import { ghostSuffix, toGhostItems, toLspTriggerKind } from '../../src/inline';

const pos = (line: number, character: number) => ({ line, character });
const range = (a: number, b: number, line = 3) => ({ start: pos(line, a), end: pos(line, b) });

test('trigger kinds map from VS Code to LSP', () => {
  assert.equal(toLspTriggerKind(0), 1); // Invoke -> Invoked
  assert.equal(toLspTriggerKind(1), 2); // Automatic -> Automatic
});

test('a list, an array and null are all accepted', () => {
  const item = { insertText: 'wor ld', range: range(4, 7) };
  assert.equal(toGhostItems({ items: [item] }, pos(3, 7)).length, 1);
  assert.equal(toGhostItems([item], pos(3, 7)).length, 1);
  assert.deepEqual(toGhostItems(null, pos(3, 7)), []);
  assert.deepEqual(toGhostItems(undefined, pos(3, 7)), []);
});

test('the word-start..cursor range is kept; items are ordered and deduplicated', () => {
  const items = toGhostItems(
    {
      items: [
        { insertText: 'coffee and', range: range(10, 13) },
        { insertText: 'coffee and', range: range(10, 13) },
        { insertText: 'cof fins', range: range(10, 13) },
      ],
    },
    pos(3, 13),
  );
  assert.deepEqual(
    items.map((i) => i.insertText),
    ['coffee and', 'cof fins'],
  );
  assert.deepEqual(items[0].range, range(10, 13));
  assert.equal(items[0].snippet, false);
});

test('items whose range does not reach the cursor, or that add nothing, are dropped', () => {
  const items = toGhostItems(
    [
      { insertText: 'abc', range: range(0, 2) }, // ends before the cursor
      { insertText: 'abc', range: range(6, 8) }, // starts after it
      { insertText: 'cof', range: range(10, 13) }, // only what is typed
      { insertText: '', range: range(13, 13) }, // empty
      { insertText: ' ok', range: range(13, 13) },
    ],
    pos(3, 13),
  );
  assert.deepEqual(items.map((i) => i.insertText), [' ok']);
});

test('snippets and items without a range pass through', () => {
  const items = toGhostItems([{ insertText: { kind: 'snippet', value: 'x${1}' } }, { insertText: 'plain' }], pos(0, 0));
  assert.deepEqual(
    items.map((i) => [i.insertText, i.snippet, i.range]),
    [
      ['x${1}', true, undefined],
      ['plain', false, undefined],
    ],
  );
});

test('the ghost suffix is what comes after the typed word', () => {
  assert.equal(ghostSuffix({ insertText: 'coffee and', snippet: false }, 'cof'), 'fee and');
  assert.equal(ghostSuffix({ insertText: ' and then', snippet: false }, ''), ' and then');
});
