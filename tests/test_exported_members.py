from __future__ import annotations

import inspect

import precip_repro
import precip_repro.exceptions

# Public beside precip_repro itself, as structlog.testing is beside structlog: the
# command-line core every precip-repro tool shares, and the test doubles.
PUBLIC_MODULES = ("precip_repro.commandline", "precip_repro.progress", "precip_repro.testing")


def test_all_is_sorted_and_names_exactly_the_public_members():
    names = precip_repro.__all__
    assert names == sorted(names)
    public = {
        name
        for name in dir(precip_repro)
        if not name.startswith("_")
        and not inspect.ismodule(getattr(precip_repro, name))
        and name != "annotations"
    }
    assert public == set(names) - {"__version__"}
    for name in names:
        assert getattr(precip_repro, name) is not None


def test_the_record_commands_start_without_the_ssh_and_cloud_libraries():
    import subprocess
    import sys

    code = (
        "import sys, precip_repro.cli, precip_repro.diff, precip_repro.report\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'paramiko', 'boto3'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "[]", done.stderr
    assert precip_repro.LocalExperiment.__module__ == "precip_repro.experiment.kinds"


def test_every_user_catchable_exception_is_exported_and_derives_from_the_base():
    for name in precip_repro.exceptions.__all__:
        exc = getattr(precip_repro.exceptions, name)
        assert issubclass(exc, precip_repro.ExperimentException)
        assert getattr(precip_repro, name) is exc


def test_replay_uses_only_the_public_api_and_precip_repro_never_imports_replay():
    import ast
    from pathlib import Path

    root = Path(__file__).parent.parent
    public = {"precip_repro", *PUBLIC_MODULES}
    for path in (root / "replay").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module in public or not node.module.startswith("precip_repro."), (
                    f"{path.name} imports {node.module}"
                )
    for path in (root / "precip_repro").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom | ast.Import):
                names = (
                    [node.module or ""]
                    if isinstance(node, ast.ImportFrom)
                    else [alias.name for alias in node.names]
                )
                assert not any(n == "replay" or n.startswith("replay.") for n in names), path


def test_each_public_module_names_its_members_in_a_sorted_all():
    import importlib

    for name in PUBLIC_MODULES:
        module = importlib.import_module(name)
        assert module.__all__ == sorted(module.__all__), name
        for member in module.__all__:
            assert getattr(module, member) is not None, (name, member)
        assert module.__doc__, name


def test_importing_the_package_loads_none_of_its_modules_until_a_name_is_used():
    import subprocess
    import sys

    code = (
        "import sys, precip_repro\n"
        "before = sorted(m for m in sys.modules if m.startswith('precip_repro.'))\n"
        "from precip_repro import Rule\n"
        "print(before, Rule.__module__, 'precip_repro.experiment' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.split() == ["[]", "precip_repro.expectations", "False"], done.stderr
