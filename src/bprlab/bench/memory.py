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


class AnonPeak:
    """Samples the process's anonymous resident memory (RssAnon) every `interval` seconds in a daemon thread and
    keeps the largest reading: the peak of the memory the process itself holds, which VmHWM mixes with the
    file-backed pages of memory-mapped files."""

    def __init__(self, interval: float = 0.05):
        import threading

        self.interval = interval
        self.peak_mb = _field("RssAnon")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            value = _field("RssAnon")
            if value is not None and (self.peak_mb is None or value > self.peak_mb):
                self.peak_mb = value

    def stop(self) -> float | None:
        self._stop.set()
        self._thread.join()
        value = _field("RssAnon")
        if value is not None and (self.peak_mb is None or value > self.peak_mb):
            self.peak_mb = value
        return self.peak_mb


def total_mb() -> float | None:
    """This machine's memory (MemTotal), or None where /proc/meminfo is absent."""
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError):
        pass
    return None
