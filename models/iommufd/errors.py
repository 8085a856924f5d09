"""How a handler fails, and the driver session that threads the driver's state through one ioctl."""

from __future__ import annotations

from typing import Any, Mapping

from amdvi.models.iommufd.driver_api import DriverResult, IommuDriver


class Fail(Exception):
    """An ioctl's error. By default the ioctl changes nothing (the caller returns the original states).
    ``partial``: the work done so far stays (``state``, or the original iommufd state when None, and the
    session's driver state and steps), as for a non-atomic UNMAP or an RFC error path. ``state`` without ``partial``: a fault switch's wrong iommufd state, with
    the original driver state. ``out``: fields written back even on error (num_iovas, entry_num)."""

    def __init__(self, errno_value: int, *, state: Any = None, partial: bool = False,
                 out: Mapping[str, Any] | None = None) -> None:
        super().__init__(errno_value)
        self.errno, self.state, self.partial, self.out = errno_value, state, partial, dict(out or {})


class DriverError(Fail):
    """The driver refused an operation (its errno)."""


class Session:
    """The driver and its state during one ioctl: each call advances the state and collects its steps.
    Only the ioctl that owns it mutates it; what leaves the ioctl is immutable."""

    def __init__(self, driver: IommuDriver, state: Any) -> None:
        self.driver, self.state, self.steps = driver, state, []

    def attempt(self, operation: str, *args: Any, **kwargs: Any) -> DriverResult:
        """Call the driver; on success (or an error that keeps its work) keep its state and steps. The
        result says whether it failed."""
        result = getattr(self.driver, operation)(self.state, *args, **kwargs)
        if not result.errno or result.kept:
            self.state = result.state
            self.steps.extend(result.steps)
        return result

    def call(self, operation: str, *args: Any, **kwargs: Any) -> Any:
        """Call the driver and return its value; its error fails the ioctl (keeping the work done so far
        when the driver kept its own)."""
        result = self.attempt(operation, *args, **kwargs)
        if result.errno:
            raise DriverError(result.errno, partial=result.kept)
        return result.value
