// Finding the quill binary. Pure apart from the injected file checks (and ensureExecutable).

import * as fs from 'node:fs';
import * as path from 'node:path';

/** The default of `quill.server.path`: "not set", i.e. look on PATH, then use the bundled binary. */
export const DEFAULT_SERVER_NAME = 'quill';

/** The three ways to get a server, as the not-found message and the README name them. */
export const INSTALL_HINT =
  'Fix it in one of three ways: set `quill.server.path` to the quill binary; ' +
  'or put `quill` on PATH (from the quill repository: `cargo install --path .`); ' +
  'or install the Quill .vsix built for your platform (e.g. quill-linux-x64.vsix), which carries the server.';

/** Where a platform-specific .vsix carries the server, relative to the extension's directory. */
export function bundledServerPath(extensionDir: string, platform: string = process.platform): string {
  const p = platform === 'win32' ? path.win32 : path.posix;
  return p.join(extensionDir, 'server', platform === 'win32' ? 'quill.exe' : 'quill');
}

/** Where the server was found: the setting, PATH (or ~/.cargo/bin), or inside the extension. */
export type ServerSource = 'setting' | 'path' | 'bundled';

export interface FoundServer {
  path: string;
  source: ServerSource;
}

/** True when `quill.server.path` is left at its default (or empty): the user named no binary. */
export function isDefaultSetting(setting: string | undefined): boolean {
  const name = (setting ?? '').trim();
  return name === '' || name === DEFAULT_SERVER_NAME;
}

/**
 * Finds the server in this order:
 * 1. `quill.server.path` when the user set it (anything but the default `quill`): that binary
 *    or nothing, with no fallback, so that a wrong setting is reported, not silently replaced;
 * 2. `quill` on PATH (then ~/.cargo/bin, where `cargo install` puts it);
 * 3. the binary bundled in a platform-specific .vsix (`opts.bundled`).
 * Returns undefined when none is an executable file.
 */
export function findServer(
  setting: string | undefined,
  env: { PATH?: string; PATHEXT?: string },
  isExecutable: (file: string) => boolean,
  opts: { platform?: string; workspaceFolder?: string; home?: string; bundled?: string } = {},
): FoundServer | undefined {
  if (!isDefaultSetting(setting)) {
    const found = resolveServerPath(setting, env, isExecutable, opts);
    return found ? { path: found, source: 'setting' } : undefined;
  }
  const onPath = resolveServerPath(DEFAULT_SERVER_NAME, env, isExecutable, opts);
  if (onPath) {
    return { path: onPath, source: 'path' };
  }
  if (opts.bundled && isExecutable(opts.bundled)) {
    return { path: opts.bundled, source: 'bundled' };
  }
  return undefined;
}

/**
 * Resolves `quill.server.path`: an absolute or relative path (relative to the workspace folder)
 * is taken as is; a bare name is looked up on PATH (with PATHEXT on Windows), then in
 * ~/.cargo/bin.
 * Returns undefined when no executable file is found.
 */
export function resolveServerPath(
  setting: string | undefined,
  env: { PATH?: string; PATHEXT?: string },
  isExecutable: (file: string) => boolean,
  opts: { platform?: string; workspaceFolder?: string; home?: string } = {},
): string | undefined {
  const platform = opts.platform ?? process.platform;
  const p = platform === 'win32' ? path.win32 : path.posix;
  let name = (setting ?? '').trim() || DEFAULT_SERVER_NAME;
  if (name.startsWith('~/') && opts.home) {
    name = p.join(opts.home, name.slice(2));
  }
  const exts = platform === 'win32' ? ['', ...(env.PATHEXT ?? '.EXE;.CMD;.BAT').split(';')] : [''];
  const hasDir = name.includes('/') || (platform === 'win32' && name.includes('\\'));
  if (hasDir) {
    const full = p.isAbsolute(name) || !opts.workspaceFolder ? name : p.join(opts.workspaceFolder, name);
    return exts.map((e) => full + e).find(isExecutable);
  }
  const dirs = (env.PATH ?? '').split(platform === 'win32' ? ';' : ':').filter(Boolean);
  // `cargo install` puts binaries in ~/.cargo/bin, which a desktop session's PATH may lack
  if (opts.home) {
    dirs.push(p.join(opts.home, '.cargo', 'bin'));
  }
  for (const dir of dirs) {
    for (const e of exts) {
      const candidate = p.join(dir, name + e);
      if (isExecutable(candidate)) {
        return candidate;
      }
    }
  }
  return undefined;
}

/** Says which server was looked for and where, and the three ways to get one. */
export function notFoundMessage(setting: string | undefined): string {
  if (isDefaultSetting(setting)) {
    return (
      'Quill: no language server found: `quill.server.path` is not set, there is no `quill` on PATH, ' +
      `and this copy of the extension carries no server. ${INSTALL_HINT}`
    );
  }
  const name = (setting ?? '').trim();
  return `Quill: the language server \`${name}\` was not found (setting quill.server.path). ${INSTALL_HINT}`;
}

/** The output channel's line for the server that will be started. */
export function describeServer(found: FoundServer): string {
  const where =
    found.source === 'setting'
      ? 'from quill.server.path'
      : found.source === 'path'
        ? 'found on PATH'
        : 'bundled with the extension';
  return `server: ${found.path} (${where})`;
}

/**
 * The bundled server must be executable. vsce records the file mode in the .vsix and VS Code
 * restores it, but an unpacker that drops it (or a copy made by hand) leaves it 0644: this sets
 * the execute bits again. True when it changed the mode; false when there was nothing to do,
 * no such file (the plain .vsix), or the mode could not be changed (findServer then reports it).
 */
export function ensureExecutable(file: string, platform: string = process.platform): boolean {
  if (platform === 'win32') {
    return false;
  }
  try {
    const st = fs.statSync(file);
    if (st.isFile() && (st.mode & 0o111) === 0) {
      fs.chmodSync(file, (st.mode & 0o777) | 0o755);
      return true;
    }
  } catch {
    // absent, or not ours to change
  }
  return false;
}
