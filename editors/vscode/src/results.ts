// T5 command plumbing: request arguments, result extraction, where results go. Pure.

import type { LspPosition, LspRange } from './inline';

export type T5Kind = 'summarize' | 'answer' | 'translate';
export const LANGUAGES = ['German', 'French', 'Romanian'] as const;
export type Language = (typeof LANGUAGES)[number];

/** The server's `workspace/executeCommand` ids (languageclient registers these itself). */
export const SERVER_COMMANDS: Record<T5Kind, string> = {
  summarize: 'quill.summarize',
  answer: 'quill.answer',
  translate: 'quill.translate',
};

/** The extension's own command ids: distinct from the server's. */
export const CLIENT_COMMANDS = {
  summarizeSelection: 'quill.summarizeSelection',
  askQuestion: 'quill.askQuestion',
  translateSelection: 'quill.translateSelection',
  toggleSuggestions: 'quill.toggleSuggestions',
  restartServer: 'quill.restartServer',
  showOutput: 'quill.showOutput',
} as const;

export interface CommandArgs {
  uri: string;
  range?: LspRange;
  question?: string;
  to?: Language;
}

/** Arguments of a server command; an empty selection means the whole document (no range). */
export function commandArgs(
  uri: string,
  selection: LspRange | undefined,
  extra: { question?: string; to?: Language } = {},
): CommandArgs {
  const args: CommandArgs = { uri };
  if (selection && !isEmptyRange(selection)) {
    args.range = selection;
  }
  if (extra.question !== undefined) {
    args.question = extra.question;
  }
  if (extra.to !== undefined) {
    args.to = extra.to;
  }
  return args;
}

export function isEmptyRange(r: LspRange): boolean {
  return r.start.line === r.end.line && r.start.character === r.end.character;
}

/** Picks `summary` / `answer` / `translation` out of a command's result. */
export function resultText(kind: T5Kind, result: unknown): string | undefined {
  if (typeof result === 'string') {
    return result;
  }
  if (result === null || typeof result !== 'object') {
    return undefined;
  }
  const key = kind === 'summarize' ? 'summary' : kind === 'answer' ? 'answer' : 'translation';
  const v = (result as Record<string, unknown>)[key];
  return typeof v === 'string' ? v : undefined;
}

/** Which kind a server command result belongs to (for results of code actions). */
export function kindOfServerCommand(command: string): T5Kind | undefined {
  for (const [kind, id] of Object.entries(SERVER_COMMANDS)) {
    if (id === command) {
      return kind as T5Kind;
    }
  }
  return undefined;
}

/** The notification's heading for a result. */
export function resultHeading(kind: T5Kind, to?: string): string {
  switch (kind) {
    case 'summarize':
      return 'Summary';
    case 'answer':
      return 'Answer';
    case 'translate':
      return to ? `${to} translation` : 'Translation';
  }
}

/** The text of the notification: "Summary: …". */
export function resultMessage(kind: T5Kind, text: string, to?: string): string {
  return `${resultHeading(kind, to)}: ${text}`;
}

/**
 * Where "Insert" puts a result: at the end of the selection's last line (a selection that ends
 * at the start of a line ends on the line before), as a new paragraph.
 */
export function insertBelow(
  selection: LspRange,
  lineLength: (line: number) => number,
  text: string,
  eol: '\n' | '\r\n' = '\n',
): { position: LspPosition; text: string } {
  let line = selection.end.line;
  if (selection.end.character === 0 && selection.end.line > selection.start.line) {
    line -= 1;
  }
  return { position: { line, character: lineLength(line) }, text: `${eol}${eol}${text}` };
}
