// Pure helpers of the packaging script (scripts/package.ts): which platform a binary is built
// for, which vsce targets it fits, how the arguments read, and what a .vsix holds.

/** vsce's platform targets (`vsce package --target`), without `web`: quill is a native binary. */
export const VSCE_TARGETS = [
  'win32-x64',
  'win32-arm64',
  'linux-x64',
  'linux-arm64',
  'linux-armhf',
  'alpine-x64',
  'alpine-arm64',
  'darwin-x64',
  'darwin-arm64',
] as const;
export type VsceTarget = (typeof VSCE_TARGETS)[number];

export type Os = 'linux' | 'darwin' | 'win32';
export type Arch = 'x64' | 'arm64' | 'armhf';

/** What an executable's header says: its OS family and the architectures it holds. */
export interface BinaryPlatform {
  os: Os;
  arches: Arch[];
}

const ELF_MACHINES: Record<number, Arch> = { 0x3e: 'x64', 0xb7: 'arm64', 0x28: 'armhf' };
const MACHO_CPUS: Record<number, Arch> = { 0x01000007: 'x64', 0x0100000c: 'arm64' };
const PE_MACHINES: Record<number, Arch> = { 0x8664: 'x64', 0xaa64: 'arm64' };

/**
 * Reads an executable's platform from its first bytes (ELF, Mach-O, universal Mach-O, PE).
 * Undefined when the bytes are none of these or name an architecture no vsce target has.
 */
export function binaryPlatform(head: Uint8Array): BinaryPlatform | undefined {
  const b = Buffer.from(head.buffer, head.byteOffset, head.byteLength);
  if (b.length >= 20 && b.readUInt32BE(0) === 0x7f454c46) {
    const machine = b[5] === 2 ? b.readUInt16BE(18) : b.readUInt16LE(18);
    const arch = ELF_MACHINES[machine];
    return arch ? { os: 'linux', arches: [arch] } : undefined;
  }
  if (b.length >= 8 && b.readUInt32LE(0) === 0xfeedfacf) {
    const arch = MACHO_CPUS[b.readUInt32LE(4)];
    return arch ? { os: 'darwin', arches: [arch] } : undefined;
  }
  if (b.length >= 8 && b.readUInt32BE(0) === 0xcafebabe) {
    // universal binary: nfat_arch entries of 20 bytes, big-endian, cputype first
    const n = b.readUInt32BE(4);
    const arches: Arch[] = [];
    for (let i = 0; i < n && 8 + 20 * i + 4 <= b.length; i++) {
      const arch = MACHO_CPUS[b.readUInt32BE(8 + 20 * i)];
      if (arch && !arches.includes(arch)) {
        arches.push(arch);
      }
    }
    return arches.length ? { os: 'darwin', arches } : undefined;
  }
  if (b.length >= 0x40 && b[0] === 0x4d && b[1] === 0x5a) {
    const pe = b.readUInt32LE(0x3c);
    if (pe + 6 <= b.length && b.readUInt32BE(pe) === 0x50450000) {
      const arch = PE_MACHINES[b.readUInt16LE(pe + 4)];
      return arch ? { os: 'win32', arches: [arch] } : undefined;
    }
  }
  return undefined;
}

/** The OS and architecture a vsce target runs on (alpine is Linux with musl). */
export function targetPlatform(target: VsceTarget): { os: Os; arch: Arch } {
  const [os, arch] = target.split('-') as [string, Arch];
  return { os: os === 'alpine' ? 'linux' : (os as Os), arch };
}

/** The target a binary is for when none is named (glibc Linux for ELF). */
export function defaultTarget(p: BinaryPlatform): VsceTarget {
  const arch = p.os === 'darwin' && p.arches.includes('arm64') ? 'arm64' : p.arches[0];
  return `${p.os}-${arch}` as VsceTarget;
}

/** Why `binary` cannot serve `target`, or undefined when it can. */
export function targetMismatch(target: VsceTarget, binary: BinaryPlatform): string | undefined {
  const want = targetPlatform(target);
  if (want.os !== binary.os || !binary.arches.includes(want.arch)) {
    return `the binary is built for ${binary.os}-${binary.arches.join('+')}, not for ${target}`;
  }
  return undefined;
}

export function isVsceTarget(s: string): s is VsceTarget {
  return (VSCE_TARGETS as readonly string[]).includes(s);
}

/** The packaging script's options: a target and the server binary for it, and the output file. */
export interface PackageOptions {
  target?: string;
  server?: string;
  out?: string;
}

export const PACKAGE_USAGE = `usage: npm run package [-- [--target TARGET] [--server QUILL_BINARY] [--out FILE.vsix]]
  no options: the plain .vsix without a server (quill.vsix)
  --server: a platform-specific .vsix that carries this quill binary as server/quill
            (quill-TARGET.vsix); the target defaults to the binary's own platform
  --target: one of ${VSCE_TARGETS.join(', ')}
  environment: QUILL_SERVER_BIN, QUILL_VSIX_TARGET (the options win)`;

/** Reads `--target T`, `--server PATH`, `--out FILE` (also `--x=v`), then the environment. */
export function parseArgs(argv: string[], env: Record<string, string | undefined>): PackageOptions {
  const opts: PackageOptions = {};
  const keys: Record<string, keyof PackageOptions> = { '--target': 'target', '--server': 'server', '--out': 'out', '-o': 'out' };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const eq = arg.indexOf('=');
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    const key = keys[name];
    if (!key) {
      throw new Error(`unknown argument ${arg}\n${PACKAGE_USAGE}`);
    }
    const value = eq > 0 ? arg.slice(eq + 1) : argv[++i];
    if (value === undefined || value === '') {
      throw new Error(`${name} needs a value\n${PACKAGE_USAGE}`);
    }
    opts[key] = value;
  }
  if (!opts.target && env.QUILL_VSIX_TARGET) {
    opts.target = env.QUILL_VSIX_TARGET;
  }
  if (!opts.server && env.QUILL_SERVER_BIN) {
    opts.server = env.QUILL_SERVER_BIN;
  }
  if (opts.target && !isVsceTarget(opts.target)) {
    throw new Error(`unknown target ${opts.target}; vsce targets: ${VSCE_TARGETS.join(', ')}`);
  }
  if (opts.target && !opts.server) {
    throw new Error(`--target ${opts.target} needs --server (the quill binary built for it)\n${PACKAGE_USAGE}`);
  }
  return opts;
}

/** An entry of a zip's central directory: its name and Unix mode (0 when not recorded). */
export interface ZipEntry {
  name: string;
  mode: number;
}

/** Lists a zip archive (a .vsix) from its central directory. */
export function zipEntries(zip: Buffer): ZipEntry[] {
  let eocd = -1;
  for (let i = zip.length - 22; i >= Math.max(0, zip.length - 22 - 0xffff); i--) {
    if (zip.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) {
    throw new Error('not a zip archive (no end of central directory)');
  }
  const count = zip.readUInt16LE(eocd + 10);
  let at = zip.readUInt32LE(eocd + 16);
  const entries: ZipEntry[] = [];
  for (let n = 0; n < count; n++) {
    if (zip.readUInt32LE(at) !== 0x02014b50) {
      throw new Error(`bad central directory entry at ${at}`);
    }
    const madeBy = zip.readUInt16LE(at + 4) >> 8; // 3: Unix, whose mode is in the high bits
    const nameLen = zip.readUInt16LE(at + 28);
    const extraLen = zip.readUInt16LE(at + 30);
    const commentLen = zip.readUInt16LE(at + 32);
    const external = zip.readUInt32LE(at + 38);
    entries.push({ name: zip.toString('utf8', at + 46, at + 46 + nameLen), mode: madeBy === 3 ? external >>> 16 : 0 });
    at += 46 + nameLen + extraLen + commentLen;
  }
  return entries;
}
