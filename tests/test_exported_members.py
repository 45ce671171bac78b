from __future__ import annotations

import inspect

import precip_repro
import precip_repro.exceptions


def test_all_is_sorted_and_names_exactly_the_public_members():
    names = precip_repro.__all__
    assert names == sorted(names)
    public = {
        name
        for name, value in vars(precip_repro).items()
        if not name.startswith("_") and not inspect.ismodule(value) and name != "annotations"
    }
    assert public == set(names) - {"__version__"}


def test_every_user_catchable_exception_is_exported_and_derives_from_the_base():
    for name in precip_repro.exceptions.__all__:
        exc = getattr(precip_repro.exceptions, name)
        assert issubclass(exc, precip_repro.ExperimentException)
        assert getattr(precip_repro, name) is exc
