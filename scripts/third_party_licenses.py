#!/usr/bin/env python3
"""Writes the licenses of the crates linked into the quill binary, for the release archive.

    python3 scripts/third_party_licenses.py --target x86_64-unknown-linux-gnu > THIRD-PARTY-LICENSES.md

Reads `cargo metadata` for the target, walks the dependency graph from quill over normal
dependencies (not dev- or build-dependencies: those are not linked in), and prints each crate
with its SPDX expression followed by the texts of its license files (LICENSE*, COPYING*,
NOTICE*, UNLICENSE*), each distinct text once with the crates it covers. Fails when a crate
declares no license, so that nothing ships unaccounted for.
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys

LICENSE_PREFIXES = ("license", "licence", "copying", "notice", "unlicense")


def license_files(pkg):
    root = os.path.dirname(pkg["manifest_path"])
    files = []
    if pkg.get("license_file"):
        files.append(os.path.join(root, pkg["license_file"]))
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if name.lower().startswith(LICENSE_PREFIXES) and os.path.isfile(path) and path not in files:
            files.append(path)
    return files


def linked_packages(meta):
    """Packages reachable from the root over normal (kind null) dependencies."""
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    root = meta["resolve"]["root"]
    seen, stack = set(), [root]
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        for dep in nodes[pid]["deps"]:
            if any(k["kind"] is None for k in dep["dep_kinds"]):
                stack.append(dep["pkg"])
    seen.discard(root)
    return [p for p in meta["packages"] if p["id"] in seen]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", required=True, help="Rust target triple, e.g. aarch64-unknown-linux-gnu")
    ap.add_argument("--manifest-path", default=None)
    args = ap.parse_args()
    cmd = ["cargo", "metadata", "--format-version", "1", "--filter-platform", args.target]
    if args.manifest_path:
        cmd += ["--manifest-path", args.manifest_path]
    meta = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    pkgs = sorted(linked_packages(meta), key=lambda p: (p["name"], p["version"]))

    missing = [f'{p["name"]} {p["version"]}' for p in pkgs if not p.get("license") and not p.get("license_file")]
    if missing:
        sys.exit(f"crates without a declared license: {', '.join(missing)}")

    texts = {}  # sha -> (text, [crate names])
    order = []
    no_text = []
    for p in pkgs:
        files = license_files(p)
        if not files:
            no_text.append(p)
        for f in files:
            with open(f, encoding="utf-8", errors="replace") as fh:
                text = fh.read().strip()
            sha = hashlib.sha256(text.encode()).hexdigest()
            if sha not in texts:
                texts[sha] = (text, [])
                order.append(sha)
            label = f'{p["name"]} {p["version"]}'
            if label not in texts[sha][1]:
                texts[sha][1].append(label)

    out = sys.stdout
    out.write(f"# Third-party licenses of the quill binary ({args.target})\n\n")
    out.write(f"quill links these {len(pkgs)} crates; each is used under the license shown.\n\n")
    out.write("| crate | version | license |\n|---|---|---|\n")
    for p in pkgs:
        out.write(f'| {p["name"]} | {p["version"]} | {p.get("license") or "see its license file"} |\n')
    if no_text:
        out.write("\nCrates that ship no license file (their SPDX expression above is their license):\n")
        out.write(", ".join(f'{p["name"]} {p["version"]}' for p in no_text) + "\n")
    out.write("\n## License texts\n")
    for sha in order:
        text, crates = texts[sha]
        out.write(f"\n### {', '.join(crates)}\n\n```\n{text}\n```\n")


if __name__ == "__main__":
    main()
