"""The seed's methods as one table: the call model.

What each method of the precip API takes (its recorded arguments, in order, with their
defaults), what its recorded ``result`` is, what it costs and how playback answers it. The
Experiment records its arguments through :meth:`Method.recorded`; the recorder syncs before a
costly call; diff and replay compare through :attr:`Method.result`; playback answers through
:attr:`Method.answer`; the replay plan re-executes the methods marked ``replayed`` and binds
the defaults of arguments a record left out (records of older versions have fewer).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final

import attrs

from precip_repro.record.canonical import JSON

__all__ = ["METHODS", "CallAnswer", "CallResult", "Method", "Param", "method"]


class CallAnswer(enum.Enum):
    """What a call gives back to the script (and so what playback must give back)."""

    NOTHING = "nothing"
    """``None``."""
    RESULT = "result"
    """The recorded ``result`` itself (``list``, the hostnames)."""
    OUTPUTS = "outputs"
    """``(exit_codes, stdouts, stderrs)`` from the call's ``command.finished`` events."""
    FILES = "files"
    """``None``, having written the files of the call's ``file.got`` events."""


class CallResult(enum.Enum):
    """What the recorded ``result`` of a finished call holds, and so whether a comparison
    of two calls looks at it."""

    ANSWER = "answer"
    """What the script was given: compared by diff and by replay."""
    BOOKKEEPING = "bookkeeping"
    """What the tool did (instance ids started or ended, rules opened): compared by diff;
    a replay's differ by nature (another cloud's ids), so its verdicts leave it out."""
    DERIVED = "derived"
    """A summary of the call's command and file events, which are compared instead."""


_REQUIRED: Final = object()


@attrs.frozen(kw_only=True)
class Param:
    name: str
    default: JSON | object = _REQUIRED
    local_path: bool = False
    """A path on the machine that ran the script: compared by its name only (a replay or
    a colleague's rerun reads and writes elsewhere; what moved is compared by content)."""
    placed: bool = False
    """Compared per instance (the image and the type each instance has), not per call:
    a replay maps them on purpose."""
    optional: bool = False
    """Recorded only when given (not None): records without it, older or newer, align;
    not compared (what it declares is not what ran)."""

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED


@attrs.frozen(kw_only=True)
class Method:
    name: str
    params: tuple[Param, ...]
    """The recorded arguments, in the order the record holds them."""
    answer: CallAnswer
    result: CallResult
    costly: bool = False
    """Starts or ends instances someone pays for: the record is on disk before it begins."""
    replayed: bool = True
    """Re-executed by ``precip-replay``."""

    names: tuple[str, ...] = attrs.field(init=False)
    local_paths: frozenset[str] = attrs.field(init=False)
    placed: frozenset[str] = attrs.field(init=False)
    """Looked up per argument on the diff path: computed once."""
    optional: frozenset[str] = attrs.field(init=False)
    defaults: Mapping[str, JSON] = attrs.field(init=False)
    """The defaults of the parameters that have one (optional ones aside)."""

    @names.default
    def _names(self) -> tuple[str, ...]:
        return tuple(param.name for param in self.params)

    @local_paths.default
    def _local_paths(self) -> frozenset[str]:
        return frozenset(param.name for param in self.params if param.local_path)

    @placed.default
    def _placed(self) -> frozenset[str]:
        return frozenset(param.name for param in self.params if param.placed)

    @optional.default
    def _optional(self) -> frozenset[str]:
        return frozenset(param.name for param in self.params if param.optional)

    @defaults.default
    def _defaults(self) -> Mapping[str, JSON]:
        return {
            param.name: param.default
            for param in self.params
            if not param.required and not param.optional
        }

    def recorded(self, **given: JSON) -> dict[str, JSON]:
        """The arguments as a call records them: every parameter, in the table's order
        (an optional one only when given)."""
        if not (set(self.names) - self.optional <= given.keys() <= set(self.names)):
            raise TypeError(
                f"{self.name} records {', '.join(self.names)}; given {', '.join(sorted(given))}"
            )
        return {
            name: given[name]
            for name in self.names
            if name in given and (given[name] is not None or name not in self.optional)
        }

    def bound(self, args: Mapping[str, JSON]) -> dict[str, JSON]:
        """Recorded arguments with the defaults of those the record left out (a run recorded
        before an argument was recorded), in the table's order; unknown ones kept last."""
        if len(args) >= len(self.params) and all(name in args for name in self.names):
            return dict(args)  # a record of this version holds them all
        out: dict[str, JSON] = {}
        for param in self.params:
            if param.name in args:
                out[param.name] = args[param.name]
            elif not param.required and not param.optional:
                out[param.name] = param.default
        out.update({key: value for key, value in args.items() if key not in out})
        return out


def _tags(default: JSON | object = None) -> Param:
    return Param(name="tags", default=default)


_USER: Final = Param(name="user", default="root")
_CHECK: Final = Param(name="check_exit_code", default=True)
_TIMEOUT: Final = Param(name="timeout", default=None)
_EXPECT: Final = Param(name="expect", default=None, optional=True)
"""Rules declared for this call's outputs or files (:mod:`precip_repro.expectations`)."""

METHODS: Final[Mapping[str, Method]] = {
    m.name: m
    for m in (
        Method(
            name="provision",
            params=(
                Param(name="image_id", placed=True),
                Param(name="instance_type", default="m1.small", placed=True),
                Param(name="count", default=1),
                _tags(),
            ),
            answer=CallAnswer.NOTHING,
            result=CallResult.BOOKKEEPING,
            costly=True,
        ),
        Method(
            name="wait",
            params=(_tags(), Param(name="timeout", default=600)),
            answer=CallAnswer.NOTHING,
            result=CallResult.BOOKKEEPING,
        ),
        Method(
            name="open_port",
            params=(
                Param(name="port"),
                Param(name="protocol", default="tcp"),
                Param(name="cidr", default="0.0.0.0/0"),
            ),
            answer=CallAnswer.NOTHING,
            result=CallResult.BOOKKEEPING,
        ),
        Method(
            name="deprovision",
            params=(_tags(),),
            answer=CallAnswer.NOTHING,
            result=CallResult.BOOKKEEPING,
            costly=True,
        ),
        Method(name="list", params=(_tags(),), answer=CallAnswer.RESULT, result=CallResult.ANSWER),
        Method(
            name="get_public_hostnames",
            params=(_tags(),),
            answer=CallAnswer.RESULT,
            result=CallResult.ANSWER,
        ),
        Method(
            name="get_private_hostnames",
            params=(_tags(),),
            answer=CallAnswer.RESULT,
            result=CallResult.ANSWER,
        ),
        Method(
            name="run",
            params=(_tags(_REQUIRED), Param(name="cmd"), _USER, _CHECK, _TIMEOUT, _EXPECT),
            answer=CallAnswer.OUTPUTS,
            result=CallResult.DERIVED,
        ),
        Method(
            name="copy_and_run",
            params=(
                _tags(_REQUIRED),
                Param(name="local_script", local_path=True),
                Param(name="args", default=None),
                _USER,
                _CHECK,
                _TIMEOUT,
                _EXPECT,
            ),
            answer=CallAnswer.OUTPUTS,
            result=CallResult.DERIVED,
        ),
        Method(
            name="put",
            params=(
                _tags(_REQUIRED),
                Param(name="local_path", local_path=True),
                Param(name="remote_path"),
                _USER,
            ),
            answer=CallAnswer.NOTHING,
            result=CallResult.DERIVED,
        ),
        Method(
            name="get",
            params=(
                _tags(_REQUIRED),
                Param(name="remote_path"),
                Param(name="local_path", local_path=True),
                _USER,
                _EXPECT,
            ),
            answer=CallAnswer.FILES,
            result=CallResult.DERIVED,
        ),
        Method(
            name="expect",
            params=(Param(name="rules"),),
            answer=CallAnswer.NOTHING,
            result=CallResult.BOOKKEEPING,
            # Declares, does nothing: a replay judges by the recorded rules (and --rules).
            replayed=False,
        ),
    )
}
"""The seed's methods by name."""


def method(name: str) -> Method:
    """The method of a recorded call; one this version does not know (a newer tool's) is
    answered with nothing, compared by its result and not replayed."""
    found = METHODS.get(name)
    if found is None:
        found = Method(name=name, params=(), answer=CallAnswer.NOTHING,
                       result=CallResult.BOOKKEEPING, replayed=False)  # fmt: skip
    return found
