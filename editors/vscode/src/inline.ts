// Conversion of `textDocument/inlineCompletion` results (LSP 3.18) into plain ghost-text items.
// Pure: no `vscode` import.

export interface LspPosition {
  line: number;
  character: number;
}
export interface LspRange {
  start: LspPosition;
  end: LspPosition;
}
export interface LspStringValue {
  kind: 'snippet';
  value: string;
}
export interface LspInlineCompletionItem {
  insertText: string | LspStringValue;
  filterText?: string;
  range?: LspRange;
  command?: unknown;
}
export type LspInlineCompletionResult =
  | { items: LspInlineCompletionItem[] }
  | LspInlineCompletionItem[]
  | null
  | undefined;

/** A ghost-text suggestion, ready to become a `vscode.InlineCompletionItem`. */
export interface GhostItem {
  insertText: string;
  snippet: boolean;
  filterText?: string;
  /** The text the suggestion replaces: from the start of the current word to the cursor. */
  range?: LspRange;
}

/** VS Code's InlineCompletionTriggerKind (Invoke = 0, Automatic = 1) -> LSP's (Invoked = 1, Automatic = 2). */
export function toLspTriggerKind(vscodeKind: number): 1 | 2 {
  return vscodeKind === 0 ? 1 : 2;
}

export function comparePositions(a: LspPosition, b: LspPosition): number {
  return a.line !== b.line ? a.line - b.line : a.character - b.character;
}

/**
 * Normalizes a result: accepts a list or an array, drops empty and duplicate suggestions and
 * items whose range does not contain the cursor (VS Code would ignore them anyway), keeps the
 * server's order (the first is the best).
 */
export function toGhostItems(result: LspInlineCompletionResult, cursor: LspPosition): GhostItem[] {
  if (!result) {
    return [];
  }
  const items = Array.isArray(result) ? result : result.items ?? [];
  const out: GhostItem[] = [];
  const seen = new Set<string>();
  for (const item of items) {
    if (!item || item.insertText === undefined || item.insertText === null) {
      continue;
    }
    const snippet = typeof item.insertText !== 'string';
    const insertText = typeof item.insertText === 'string' ? item.insertText : item.insertText.value;
    const range = item.range;
    if (range) {
      if (
        comparePositions(range.start, range.end) > 0 ||
        comparePositions(range.start, cursor) > 0 ||
        comparePositions(range.end, cursor) < 0
      ) {
        continue;
      }
    }
    // What the suggestion adds beyond what is already typed must not be empty.
    const typedLength = range && range.start.line === range.end.line
      ? range.end.character - range.start.character
      : 0;
    if (insertText.length <= typedLength && !snippet) {
      continue;
    }
    const key = `${snippet ? 's' : 't'}:${insertText}:${range ? JSON.stringify(range) : ''}`;
    if (seen.has(key)) {
      continue;
    }
    seen.add(key);
    out.push({ insertText, snippet, filterText: item.filterText, range });
  }
  return out;
}

/** The suffix that ghost text shows after the cursor: the insert text minus what is already typed. */
export function ghostSuffix(item: GhostItem, typed: string): string {
  return item.insertText.startsWith(typed) ? item.insertText.slice(typed.length) : item.insertText;
}
