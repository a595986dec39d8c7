// The `quill.*` VS Code settings and the settings object the server reads.
// Pure: no `vscode` import, so the unit tests run in plain node.

/** Settings the server reads (dotted paths under `quill.`), in the order of the README. */
export const SERVER_SETTING_KEYS = [
  'model',
  't5Model',
  'device',
  'dtype',
  'threads',
  'backend',
  'completion.enabled',
  'completion.maxTokens',
  'completion.numSuggestions',
  'completion.temperature',
  'completion.topK',
  'completion.topP',
  'completion.contextTokens',
  'completion.stopAtNewline',
  'completion.stopAtSentence',
  'completion.seed',
  'diagnostics.enabled',
  'diagnostics.minTokenLogprob',
  'diagnostics.minAlternativeGap',
  'diagnostics.maxSentencePerplexity',
  'diagnostics.debounceMs',
  'diagnostics.languages',
  'diagnostics.tokenSeverity',
  'diagnostics.sentenceSeverity',
  'diagnostics.dictionary',
  'diagnostics.ignoreRepeated',
  'diagnostics.exclude',
  't5.maxTokens',
] as const;

/** Settings only the extension reads; they are never sent to the server. */
export const CLIENT_SETTING_KEYS = ['server.path', 'server.extraEnv', 'trace.server'] as const;

export type ServerSettingKey = (typeof SERVER_SETTING_KEYS)[number];
export type JsonObject = { [key: string]: unknown };

/**
 * Builds the server's settings object from a getter of `quill.*` values (such as
 * `workspace.getConfiguration('quill').get`). Keys whose value is `undefined` are left out, so
 * the server keeps its defaults for them.
 */
export function buildServerSettings(get: (key: ServerSettingKey) => unknown): JsonObject {
  const out: JsonObject = {};
  for (const key of SERVER_SETTING_KEYS) {
    const value = get(key);
    if (value === undefined) {
      continue;
    }
    setPath(out, key, clone(value));
  }
  return out;
}

/**
 * Removes the client-only keys from a nested `quill` object (as `getConfiguration().get('quill')`
 * returns it) and keeps everything else.
 */
export function stripClientSettings(section: unknown): JsonObject {
  if (section === null || typeof section !== 'object' || Array.isArray(section)) {
    return {};
  }
  const out = clone(section) as JsonObject;
  for (const key of CLIENT_SETTING_KEYS) {
    deletePath(out, key);
  }
  for (const top of ['server', 'trace']) {
    const v = out[top];
    if (v && typeof v === 'object' && Object.keys(v).length === 0) {
      delete out[top];
    }
  }
  return out;
}

/** Sets `a.b.c` in a nested object, creating the parents. */
export function setPath(obj: JsonObject, dotted: string, value: unknown): void {
  const parts = dotted.split('.');
  let cur = obj;
  for (const p of parts.slice(0, -1)) {
    const next = cur[p];
    if (next === null || typeof next !== 'object' || Array.isArray(next)) {
      cur[p] = {};
    }
    cur = cur[p] as JsonObject;
  }
  cur[parts[parts.length - 1]] = value;
}

/** Reads `a.b.c` from a nested object. */
export function getPath(obj: unknown, dotted: string): unknown {
  let cur: unknown = obj;
  for (const p of dotted.split('.')) {
    if (cur === null || typeof cur !== 'object') {
      return undefined;
    }
    cur = (cur as JsonObject)[p];
  }
  return cur;
}

function deletePath(obj: JsonObject, dotted: string): void {
  const parts = dotted.split('.');
  let cur: unknown = obj;
  for (const p of parts.slice(0, -1)) {
    if (cur === null || typeof cur !== 'object') {
      return;
    }
    cur = (cur as JsonObject)[p];
  }
  if (cur !== null && typeof cur === 'object') {
    delete (cur as JsonObject)[parts[parts.length - 1]];
  }
}

function clone<T>(value: T): T {
  return value === undefined ? value : (JSON.parse(JSON.stringify(value)) as T);
}

/** Where a toggled setting is written: the most specific scope that already sets it. */
export type ConfigTarget = 'global' | 'workspace' | 'workspaceFolder';

export interface InspectLike<T> {
  globalValue?: T;
  workspaceValue?: T;
  workspaceFolderValue?: T;
}

export function toggleTarget(inspect: InspectLike<unknown> | undefined): ConfigTarget {
  if (inspect?.workspaceFolderValue !== undefined) {
    return 'workspaceFolder';
  }
  if (inspect?.workspaceValue !== undefined) {
    return 'workspace';
  }
  return 'global';
}
