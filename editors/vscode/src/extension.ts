// The Quill extension: starts the quill language server, shows ghost text from
// `textDocument/inlineCompletion`, runs the T5 commands, and keeps a status bar item.

import * as fs from 'node:fs';
import * as vscode from 'vscode';
import {
  ExecuteCommandRequest,
  InlineCompletionRequest,
  LanguageClient,
  LanguageClientOptions,
  ServerOptions,
  State,
  WorkDoneProgress,
  WorkDoneProgressCreateRequest,
  type FeatureState,
  type StaticFeature,
} from 'vscode-languageclient/node';

import { toGhostItems, toLspTriggerKind, type LspRange } from './inline';
import {
  CLIENT_COMMANDS,
  LANGUAGES,
  SERVER_COMMANDS,
  commandArgs,
  insertBelow,
  kindOfServerCommand,
  resultMessage,
  resultText,
  type CommandArgs,
  type Language,
  type T5Kind,
} from './results';
import { bundledServerPath, describeServer, ensureExecutable, findServer, notFoundMessage } from './server';
import { buildServerSettings, toggleTarget, type ServerSettingKey } from './settings';
import {
  applyProgress,
  initialStatus,
  isLoadProgress,
  statusView,
  withBusy,
  type ProgressValue,
  type StatusState,
} from './status';

/** Languages the client serves; prose ones are checked whole, the others in their comments. */
export const LANGUAGE_IDS = [
  'plaintext',
  'markdown',
  'gitcommit',
  'restructuredtext',
  'latex',
  'python',
  'rust',
  'javascript',
  'typescript',
  'go',
  'c',
  'cpp',
  'java',
  'shellscript',
  'lua',
];

let client: LanguageClient | undefined;
let status: StatusBar | undefined;
let output: vscode.LogOutputChannel | undefined;
let extensionUri: vscode.Uri | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  extensionUri = context.extensionUri;
  output = vscode.window.createOutputChannel('Quill', { log: true });
  status = new StatusBar();
  context.subscriptions.push(output, status);

  context.subscriptions.push(
    vscode.commands.registerCommand(CLIENT_COMMANDS.summarizeSelection, () => runT5('summarize')),
    vscode.commands.registerCommand(CLIENT_COMMANDS.askQuestion, () => runT5('answer')),
    vscode.commands.registerCommand(CLIENT_COMMANDS.translateSelection, () => runT5('translate')),
    vscode.commands.registerCommand(CLIENT_COMMANDS.toggleSuggestions, toggleSuggestions),
    vscode.commands.registerCommand(CLIENT_COMMANDS.restartServer, () => restart()),
    vscode.commands.registerCommand(CLIENT_COMMANDS.showOutput, () => output?.show(true)),
    vscode.languages.registerInlineCompletionItemProvider(documentSelector(), new GhostTextProvider()),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (e.affectsConfiguration('quill.completion.enabled')) {
        status?.update((s) => ({ ...s, suggestions: suggestionsEnabled() }));
      }
      if (e.affectsConfiguration('quill.server')) {
        void vscode.window
          .showInformationMessage('Quill: the server settings changed.', 'Restart Server')
          .then((choice) => choice && restart());
      }
    }),
  );
  await startClient();
}

export async function deactivate(): Promise<void> {
  const c = client;
  client = undefined;
  if (c) {
    await c.stop().catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------------
// The language client

function documentSelector(): { scheme: string; language: string }[] {
  return LANGUAGE_IDS.flatMap((language) => [
    { scheme: 'file', language },
    { scheme: 'untitled', language },
    { scheme: 'vscode-remote', language },
  ]);
}

function quillConfig(scope?: vscode.ConfigurationScope): vscode.WorkspaceConfiguration {
  return vscode.workspace.getConfiguration('quill', scope);
}

/** The `quill` settings object the server reads (client-only keys left out). */
function serverSettings(scope?: vscode.ConfigurationScope): Record<string, unknown> {
  const cfg = quillConfig(scope);
  return buildServerSettings((key: ServerSettingKey) => cfg.get(key));
}

function suggestionsEnabled(): boolean {
  return quillConfig().get<boolean>('completion.enabled', true);
}

async function startClient(): Promise<void> {
  const cfg = quillConfig();
  const setting = cfg.get<string>('server.path', 'quill');
  const folder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  // A platform-specific .vsix carries the server in server/ (see scripts/package.ts).
  const bundled = extensionUri ? bundledServerPath(extensionUri.fsPath) : undefined;
  if (bundled && ensureExecutable(bundled)) {
    output?.appendLine(`made ${bundled} executable`);
  }
  const found = findServer(setting, process.env, isExecutable, {
    workspaceFolder: folder,
    home: process.env.HOME ?? process.env.USERPROFILE,
    bundled,
  });
  if (!found) {
    status?.update((s) => ({ ...s, phase: 'error', error: `${setting} not found` }));
    output?.appendLine(notFoundMessage(setting));
    void showNotFound(setting);
    return;
  }
  output?.appendLine(describeServer(found));
  const command = found.path;
  const extraEnv = cfg.get<Record<string, string>>('server.extraEnv', {});
  const serverOptions: ServerOptions = {
    command,
    args: ['serve', '--stdio'],
    options: { env: { ...process.env, ...extraEnv } },
  };
  const clientOptions: LanguageClientOptions = {
    documentSelector: documentSelector(),
    outputChannel: output,
    initializationOptions: () => serverSettings(),
    synchronize: { configurationSection: 'quill' },
    middleware: {
      // Ghost text comes from GhostTextProvider; languageclient's own provider stays silent.
      provideInlineCompletionItems: () => null,
      provideCompletionItem: async (document, position, ctx, token, next) =>
        track(() => Promise.resolve(next(document, position, ctx, token))),
      // Results of the server's commands run from code actions ("Summarize selection", …).
      executeCommand: async (command, args, next) => {
        const kind = kindOfServerCommand(command);
        if (!kind) {
          return next(command, args);
        }
        const arg = (args?.[0] ?? {}) as CommandArgs;
        const result = await withCommandProgress(kind, () => Promise.resolve(next(command, args)));
        const text = resultText(kind, result);
        if (text !== undefined) {
          void showResult(kind, text, vscode.Uri.parse(arg.uri), arg.range, arg.to);
        }
        return result;
      },
      workspace: {
        configuration: async (params, token, next) => {
          const fallback = await next(params, token);
          if (!Array.isArray(fallback)) {
            return fallback;
          }
          return params.items.map((item, i) => {
            if (item.section !== 'quill') {
              return fallback[i];
            }
            const scope = item.scopeUri ? vscode.Uri.parse(item.scopeUri) : undefined;
            return serverSettings(scope);
          });
        },
        didChangeConfiguration: async (sections, next) => {
          if (!client || !sections?.includes('quill')) {
            return next(sections);
          }
          await client.sendNotification('workspace/didChangeConfiguration', {
            settings: { quill: serverSettings() },
          });
        },
      },
    },
  };
  const c = new LanguageClient('quill', 'Quill', serverOptions, clientOptions);
  silenceBuiltinInlineCompletion(c);
  c.registerFeature(new ProgressTracker(c));
  c.onDidChangeState((e) => {
    if (e.newState === State.Stopped) {
      status?.update((s) =>
        s.phase === 'error' ? s : { ...s, phase: 'stopped', busy: 0, percentage: undefined },
      );
    } else if (e.newState === State.Starting) {
      status?.update((s) => ({ ...s, phase: 'starting', error: undefined }));
    }
  });
  client = c;
  status?.update((s) => ({ ...s, phase: 'starting', suggestions: suggestionsEnabled() }));
  try {
    await c.start();
    // Loading progress may already have moved us on; otherwise the model loads in the
    // background and its `$/progress` will set the phase.
    status?.update((s) => (s.phase === 'starting' ? { ...s, phase: 'ready' } : s));
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    status?.update((s) => ({ ...s, phase: 'error', error: message }));
    output?.appendLine(`quill failed to start: ${message}`);
    if (/ENOENT|not found/i.test(message)) {
      void showNotFound(setting);
    } else {
      void vscode.window.showErrorMessage(`Quill: the language server failed to start: ${message}`, 'Show Output')
        .then((c) => c && output?.show(true));
    }
  }
}

async function restart(): Promise<void> {
  const c = client;
  client = undefined;
  if (c) {
    await c.stop().catch(() => undefined);
    c.dispose();
  }
  status?.update((s) => ({ ...initialStatus, suggestions: s.suggestions }));
  await startClient();
}

function isExecutable(file: string): boolean {
  try {
    const st = fs.statSync(file);
    if (!st.isFile()) {
      return false;
    }
    if (process.platform === 'win32') {
      return true;
    }
    fs.accessSync(file, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

async function showNotFound(setting: string): Promise<void> {
  const choice = await vscode.window.showErrorMessage(
    notFoundMessage(setting),
    'Open Install Instructions',
    'Open Settings',
  );
  if (choice === 'Open Install Instructions' && extensionUri) {
    // The extension's README (bundled in the .vsix) has an "Installing" section.
    const readme = vscode.Uri.joinPath(extensionUri, 'README.md');
    await vscode.commands.executeCommand('markdown.showPreview', readme).then(undefined, () =>
      vscode.window.showTextDocument(readme),
    );
  } else if (choice === 'Open Settings') {
    await vscode.commands.executeCommand('workbench.action.openSettings', 'quill.server.path');
  }
}

/**
 * languageclient 11 registers its own inline completion provider when the server advertises
 * `inlineCompletionProvider`; quill's GhostTextProvider replaces it, so the built-in one is
 * never registered (and, should it be, the middleware above makes it return nothing).
 */
function silenceBuiltinInlineCompletion(c: LanguageClient): void {
  const feature = c.getFeature(InlineCompletionRequest.method) as
    | { register?: (data: unknown) => void }
    | undefined;
  if (feature && typeof feature.register === 'function') {
    feature.register = () => undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Progress and status

/**
 * Tracks `$/progress` of the server (title "quill") for the status bar. It is registered after
 * languageclient's own progress feature, so its `window/workDoneProgress/create` handler wins.
 */
class ProgressTracker implements StaticFeature {
  constructor(private readonly c: LanguageClient) {}
  fillClientCapabilities(capabilities: { window?: { workDoneProgress?: boolean } }): void {
    capabilities.window = capabilities.window ?? {};
    capabilities.window.workDoneProgress = true;
  }
  getState(): FeatureState {
    return { kind: 'static' };
  }
  initialize(): void {
    this.c.onRequest(WorkDoneProgressCreateRequest.type, (params) => {
      const token = params.token;
      let isLoad = false;
      let ours = false;
      const sub = this.c.onProgress(WorkDoneProgress.type, token, (value: ProgressValue) => {
        if (value.kind === 'begin') {
          ours = value.title === undefined || /quill/i.test(value.title);
          isLoad = isLoadProgress(token, value);
        }
        if (!ours) {
          return;
        }
        status?.update((s) => applyProgress(s, value, isLoad));
        if (!isLoad && value.kind === 'report' && value.message) {
          commandProgress?.report({ message: value.message });
        }
        if (value.kind === 'end') {
          sub.dispose();
        }
      });
    });
  }
  clear(): void {}
}

class StatusBar implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem('quill.status', vscode.StatusBarAlignment.Right, 100);
  private state: StatusState = { ...initialStatus, suggestions: suggestionsEnabled() };

  constructor() {
    this.item.name = 'Quill';
    this.item.command = CLIENT_COMMANDS.toggleSuggestions;
    this.render();
    this.item.show();
  }
  private busyTimer: NodeJS.Timeout | undefined;
  private showBusy = false;

  update(f: (s: StatusState) => StatusState): void {
    const wasBusy = this.state.busy > 0;
    this.state = f(this.state);
    const isBusy = this.state.busy > 0;
    // Show "busy" only for requests that take a while, so that typing does not make it flicker.
    if (isBusy && !wasBusy) {
      clearTimeout(this.busyTimer);
      this.busyTimer = setTimeout(() => {
        this.showBusy = true;
        this.render();
      }, 300);
    } else if (!isBusy) {
      clearTimeout(this.busyTimer);
      this.showBusy = false;
    }
    this.render();
  }
  private render(): void {
    const view = statusView(this.showBusy ? this.state : { ...this.state, busy: 0 });
    this.item.text = view.text;
    this.item.tooltip = view.tooltip;
    this.item.backgroundColor = view.background ? new vscode.ThemeColor(view.background) : undefined;
  }
  dispose(): void {
    clearTimeout(this.busyTimer);
    this.item.dispose();
  }
}

async function track<T>(f: () => Promise<T>): Promise<T> {
  status?.update((s) => withBusy(s, +1));
  try {
    return await f();
  } finally {
    status?.update((s) => withBusy(s, -1));
  }
}

async function toggleSuggestions(): Promise<void> {
  const cfg = quillConfig();
  const target = toggleTarget(cfg.inspect('completion.enabled'));
  const next = !suggestionsEnabled();
  await cfg.update(
    'completion.enabled',
    next,
    target === 'global'
      ? vscode.ConfigurationTarget.Global
      : target === 'workspace'
        ? vscode.ConfigurationTarget.Workspace
        : vscode.ConfigurationTarget.WorkspaceFolder,
  );
  status?.update((s) => ({ ...s, suggestions: next }));
  vscode.window.setStatusBarMessage(`Quill: suggestions ${next ? 'on' : 'off'}`, 2000);
}

// ---------------------------------------------------------------------------------------------
// Ghost text

class GhostTextProvider implements vscode.InlineCompletionItemProvider {
  async provideInlineCompletionItems(
    document: vscode.TextDocument,
    position: vscode.Position,
    context: vscode.InlineCompletionContext,
    token: vscode.CancellationToken,
  ): Promise<vscode.InlineCompletionList | undefined> {
    const c = client;
    if (!c || !c.isRunning() || !suggestionsEnabled()) {
      return undefined;
    }
    const c2p = c.code2ProtocolConverter;
    const cursor = c2p.asPosition(position);
    const params = {
      textDocument: c2p.asTextDocumentIdentifier(document),
      position: cursor,
      context: {
        triggerKind: toLspTriggerKind(context.triggerKind),
        selectedCompletionInfo: context.selectedCompletionInfo
          ? {
              range: c2p.asRange(context.selectedCompletionInfo.range),
              text: context.selectedCompletionInfo.text,
            }
          : undefined,
      },
    };
    try {
      const result = await track(() => c.sendRequest(InlineCompletionRequest.type, params, token));
      if (token.isCancellationRequested) {
        return undefined;
      }
      const items = toGhostItems(result as Parameters<typeof toGhostItems>[0], cursor).map((g) => {
        const range = g.range ? toVsRange(g.range) : undefined;
        const item = new vscode.InlineCompletionItem(
          g.snippet ? new vscode.SnippetString(g.insertText) : g.insertText,
          range,
        );
        if (g.filterText !== undefined) {
          item.filterText = g.filterText;
        }
        return item;
      });
      return new vscode.InlineCompletionList(items);
    } catch (e) {
      if (!token.isCancellationRequested) {
        output?.appendLine(`inline completion failed: ${e instanceof Error ? e.message : String(e)}`);
      }
      return undefined;
    }
  }
}

function toVsRange(r: LspRange): vscode.Range {
  return new vscode.Range(r.start.line, r.start.character, r.end.line, r.end.character);
}

function toLspRange(r: vscode.Range): LspRange {
  return {
    start: { line: r.start.line, character: r.start.character },
    end: { line: r.end.line, character: r.end.character },
  };
}

// ---------------------------------------------------------------------------------------------
// T5 commands

let commandProgress: vscode.Progress<{ message?: string }> | undefined;

async function withCommandProgress<T>(kind: T5Kind, f: (token: vscode.CancellationToken) => Promise<T>): Promise<T> {
  const title = kind === 'summarize' ? 'Summarizing' : kind === 'answer' ? 'Answering' : 'Translating';
  return vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: `Quill: ${title}…`, cancellable: true },
    async (progress, token) => {
      commandProgress = progress;
      try {
        return await track(() => f(token));
      } finally {
        commandProgress = undefined;
      }
    },
  );
}

async function runT5(kind: T5Kind): Promise<void> {
  const c = client;
  const editor = vscode.window.activeTextEditor;
  if (!editor) {
    void vscode.window.showWarningMessage('Quill: open a document first.');
    return;
  }
  if (!c || !c.isRunning()) {
    void vscode.window.showErrorMessage('Quill: the language server is not running.', 'Restart Server')
      .then((x) => x && vscode.commands.executeCommand(CLIENT_COMMANDS.restartServer));
    return;
  }
  const document = editor.document;
  const selection = editor.selection;
  const range = selection.isEmpty ? undefined : toLspRange(selection);
  let question: string | undefined;
  let to: Language | undefined;
  if (kind === 'answer') {
    question = await vscode.window.showInputBox({
      title: 'Quill: Ask a Question About This File',
      prompt: range ? 'Asked about the selection' : 'Asked about the whole file',
      placeHolder: 'Who woke early?',
      ignoreFocusOut: true,
      validateInput: (v) => (v.trim() ? undefined : 'Type a question'),
    });
    if (!question) {
      return;
    }
  } else if (kind === 'translate') {
    const pick = await vscode.window.showQuickPick([...LANGUAGES], {
      title: 'Quill: Translate Selection',
      placeHolder: range ? 'Translate the selection from English to…' : 'Translate the file from English to…',
    });
    if (!pick) {
      return;
    }
    to = pick as Language;
  }
  const args = commandArgs(c.code2ProtocolConverter.asUri(document.uri), range, { question, to });
  let result: unknown;
  try {
    result = await withCommandProgress(kind, (token) =>
      c.sendRequest(ExecuteCommandRequest.type, { command: SERVER_COMMANDS[kind], arguments: [args] }, token),
    );
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    if (!/cancel/i.test(message)) {
      void vscode.window.showErrorMessage(`Quill: ${message}`);
    }
    return;
  }
  const text = resultText(kind, result);
  if (text === undefined) {
    void vscode.window.showErrorMessage(`Quill: unexpected result from ${SERVER_COMMANDS[kind]}.`);
    return;
  }
  await showResult(kind, text, document.uri, range, to);
}

/** Shows a result in a notification with Insert (below the selection) / Replace / Copy. */
async function showResult(
  kind: T5Kind,
  text: string,
  uri: vscode.Uri,
  range: LspRange | undefined,
  to?: string,
): Promise<void> {
  const actions = range ? ['Insert', 'Replace', 'Copy'] : ['Insert', 'Copy'];
  const choice = await vscode.window.showInformationMessage(resultMessage(kind, text, to), ...actions);
  if (!choice) {
    return;
  }
  if (choice === 'Copy') {
    await vscode.env.clipboard.writeText(text);
    vscode.window.setStatusBarMessage('Quill: copied', 2000);
    return;
  }
  const document = await vscode.workspace.openTextDocument(uri);
  const edit = new vscode.WorkspaceEdit();
  if (choice === 'Replace' && range) {
    edit.replace(uri, toVsRange(range), text);
  } else {
    const sel = range ?? toLspRange(new vscode.Range(document.lineCount - 1, 0, document.lineCount - 1, 0));
    const eol = document.eol === vscode.EndOfLine.CRLF ? '\r\n' : '\n';
    const ins = insertBelow(sel, (line) => document.lineAt(line).text.length, text, eol);
    edit.insert(uri, new vscode.Position(ins.position.line, ins.position.character), ins.text);
  }
  const editor = vscode.window.visibleTextEditors.find((e) => e.document.uri.toString() === uri.toString());
  const before = editor?.selection;
  const applied = await vscode.workspace.applyEdit(edit);
  if (applied && editor && before && choice === 'Insert') {
    // an insertion at the selection's end would otherwise grow the selection
    editor.selection = before;
  }
}
