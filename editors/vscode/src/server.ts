// Finding the quill binary. Pure apart from the injected file checks.

import * as path from 'node:path';

export const INSTALL_HINT =
  'Install it (from the quill repository: `cargo install --path .`) or set `quill.server.path` to the binary.';

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
  let name = (setting ?? '').trim() || 'quill';
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

export function notFoundMessage(setting: string | undefined): string {
  const name = (setting ?? '').trim() || 'quill';
  return `Quill: the language server \`${name}\` was not found (setting quill.server.path). ${INSTALL_HINT}`;
}
