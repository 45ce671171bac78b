"""precip-repro: the precip experiment API with a flight recorder inside.

The names below are the public surface, with two public modules: :mod:`precip_repro.testing`
(``playback``, for a user's tests) and :mod:`precip_repro.commandline` (the core of the
command-line tools). Everything else may change without notice.

Each name is imported when first named, from the module ``__init__.pyi`` (the surface, for
type checkers too) says it comes from: ``precip-repro diff`` loads neither the experiment
machinery (paramiko, the clouds) nor the packaging (rocrate, securesystemslib), and a name
a script uses costs only its own module.
"""

from __future__ import annotations

import typing

import lazy_loader

_lazy_getattr, _dir, _names = lazy_loader.attach_stub(__name__, __file__)

__all__ = sorted({*_names, "__version__"} - {"progress"})


def __getattr__(name: str) -> typing.Any:
    if name == "__version__":
        from precip_repro.record.recorder import tool_version

        globals()["__version__"] = version = tool_version()
        return version
    try:
        return _lazy_getattr(name)
    except AttributeError:
        raise AttributeError(f"module 'precip_repro' has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
