"""Shared by the benchmark scripts (run from scripts/, so a plain import finds it)."""


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
