"""Memory of this process, per case: the peak RSS since a reset of the high-water mark (Linux)."""

from __future__ import annotations

import resource


def status_kb() -> dict[str, int]:
    """The ``Vm*`` lines of ``/proc/self/status``, in kB (empty where there is no /proc)."""
    out = {}
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("Vm"):
                    key, value = line.split(":", 1)
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


class PeakMemory:
    """Peak RSS per case: reset the high-water mark before, read it after."""

    def __init__(self) -> None:
        self.resettable = self._reset()

    @staticmethod
    def _reset() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
            return True
        except OSError:
            return False

    def start(self) -> int:
        """Reset the mark; return the current RSS in kB."""
        if self.resettable:
            self._reset()
        return status_kb().get("VmRSS", 0)

    def peak(self) -> int:
        """The peak RSS in kB since :meth:`start` (since the process began if not resettable)."""
        if self.resettable:
            return status_kb().get("VmHWM", 0)
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
