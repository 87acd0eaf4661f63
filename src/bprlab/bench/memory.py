"""Process memory readings for benchmarks (Linux /proc; elsewhere the readings are None)."""

from __future__ import annotations

from pathlib import Path

STATUS = Path("/proc/self/status")


def _field(name: str) -> float | None:
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) / 1024.0  # kB -> MB
    except OSError:
        return None
    return None


def rss_mb() -> float | None:
    return _field("VmRSS")


def peak_mb() -> float | None:
    """Peak resident memory since the last `reset_peak()` (VmHWM)."""
    return _field("VmHWM")


def reset_peak() -> None:
    """Start a new peak-RSS window (writing 5 to clear_refs resets VmHWM, Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def rss_split_mb() -> dict:
    """Resident memory now, split into anonymous (the process's own) and file-backed (mapped files such as the
    memory-mapped passage store: page cache the kernel can reclaim)."""
    return {"anon_mb": _field("RssAnon"), "file_mb": _field("RssFile")}
