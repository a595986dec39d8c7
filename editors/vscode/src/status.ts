// The status bar item's states and texts. Pure: no `vscode` import.

export type Phase = 'starting' | 'loading' | 'ready' | 'error' | 'stopped';

export interface StatusState {
  phase: Phase;
  /** Requests in flight (completions, commands). */
  busy: number;
  /** `quill.completion.enabled`. */
  suggestions: boolean;
  /** Load/download percentage while loading. */
  percentage?: number;
  /** Latest progress message ("loading openai-community/gpt2", "downloading model.safetensors"). */
  message?: string;
  /** Why it failed, for the tooltip. */
  error?: string;
}

export interface StatusView {
  text: string;
  tooltip: string;
  /** A ThemeColor id for the background, for errors. */
  background?: string;
}

export const initialStatus: StatusState = { phase: 'starting', busy: 0, suggestions: true };

export function statusView(s: StatusState): StatusView {
  const toggle = s.suggestions
    ? 'Click to turn suggestions off.'
    : 'Suggestions are off. Click to turn them on.';
  const off = s.suggestions ? '' : ' (off)';
  switch (s.phase) {
    case 'starting':
      return { text: '$(loading~spin) Quill', tooltip: `Quill: starting the language server. ${toggle}` };
    case 'loading': {
      const pct = s.percentage !== undefined ? ` ${Math.max(0, Math.min(100, Math.round(s.percentage)))}%` : '';
      const msg = s.message ? `: ${s.message}` : '';
      return { text: `$(sync~spin) Quill${pct}`, tooltip: `Quill is loading${msg}. ${toggle}` };
    }
    case 'error':
      return {
        text: '$(error) Quill',
        tooltip: `Quill: ${s.error ?? 'error'}. ${toggle}`,
        background: 'statusBarItem.errorBackground',
      };
    case 'stopped':
      return { text: '$(circle-slash) Quill', tooltip: 'Quill: the language server is not running.' };
    case 'ready':
    default:
      if (s.busy > 0) {
        return { text: `$(loading~spin) Quill${off}`, tooltip: `Quill is working… ${toggle}` };
      }
      return {
        text: s.suggestions ? '$(sparkle) Quill' : '$(circle-slash) Quill (off)',
        tooltip: `Quill is ready. ${toggle}`,
      };
  }
}

/** A `$/progress` value (WorkDoneProgressBegin/Report/End). */
export interface ProgressValue {
  kind: 'begin' | 'report' | 'end';
  title?: string;
  message?: string;
  percentage?: number;
}

/**
 * Applies one `$/progress` notification of a token whose begin had the title "quill".
 * `isLoad` tells model-load progress (tokens `quill/load/…`) from command progress.
 */
export function applyProgress(s: StatusState, v: ProgressValue, isLoad: boolean): StatusState {
  if (!isLoad) {
    // Command progress (T5): busy while it runs; the command itself counts the request.
    return s;
  }
  switch (v.kind) {
    case 'begin':
      return { ...s, phase: 'loading', percentage: v.percentage, message: v.message, error: undefined };
    case 'report':
      return {
        ...s,
        phase: 'loading',
        percentage: v.percentage ?? s.percentage,
        message: v.message ?? s.message,
      };
    case 'end':
      if (v.message && /fail|error/i.test(v.message)) {
        return { ...s, phase: 'error', error: v.message, percentage: undefined };
      }
      return { ...s, phase: 'ready', percentage: undefined, message: v.message };
  }
}

export function withBusy(s: StatusState, delta: number): StatusState {
  return { ...s, busy: Math.max(0, s.busy + delta) };
}

/** Model-load progress uses tokens `quill/load/…`; T5 commands use `quill/t5/…`. */
export function isLoadProgress(token: string | number, begin: ProgressValue): boolean {
  if (typeof token === 'string') {
    if (token.startsWith('quill/load/')) {
      return true;
    }
    if (token.startsWith('quill/')) {
      return false;
    }
  }
  return /^loading /i.test(begin.message ?? '') && !/T5/.test(begin.message ?? '');
}
