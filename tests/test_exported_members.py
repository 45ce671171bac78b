from __future__ import annotations

import inspect

import precip_repro
import precip_repro.exceptions


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
    for path in (root / "replay").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module == "precip_repro" or not node.module.startswith(
                    "precip_repro."
                ), f"{path.name} imports {node.module}"
    for path in (root / "precip_repro").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom | ast.Import):
                names = (
                    [node.module or ""]
                    if isinstance(node, ast.ImportFrom)
                    else [alias.name for alias in node.names]
                )
                assert not any(n == "replay" or n.startswith("replay.") for n in names), path
