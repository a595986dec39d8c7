"""Shared by the benchmark scripts (run from scripts/, so a plain import finds it)."""

import json
import sys


def cpu_name():
    """The CPU's model name, for the benchmark's metadata."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or platform.machine()


def emit(lines, out, as_json):
    """The results: the table on stdout, or with --json the table on stderr and `out` as JSON
    on stdout."""
    table = "\n".join(lines)
    if as_json:
        print(table, file=sys.stderr)
        print(json.dumps(out, indent=2))
    else:
        print(table)


def parse_dtypes(ap, text, known):
    """The comma-separated --dtypes, each one of `known`; an unknown one is an argparse error."""
    dtypes = [d.strip() for d in text.split(",") if d.strip()]
    bad = [d for d in dtypes if d not in known]
    if bad:
        ap.error(f"unknown dtypes {bad}; choose from {','.join(known)}")
    return dtypes
