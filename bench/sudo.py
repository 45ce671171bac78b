"""Calls as root through another login's sudo (``login_user=``, for images that refuse
root): ours against Fabric's ``Connection.sudo()``, and against a root login.

Not a test: prints figures. One local instance (as root) given a user ``bench`` with the
precip key and passwordless sudo, as a stock cloud image's default user has. The same
experiment then logs in as root, or as ``bench`` with its calls as root going through
sudo (the attribute set after the user exists: on a cloud it exists at boot). Fabric's
peer call is ``Connection(user="bench").sudo(cmd)`` on an open connection.
Targets: ours through sudo ≤ Fabric's sudo; transfers through sudo ≤ 1.5 times a root login's.

Usage: python bench/sudo.py [--calls N] [--rounds R] [--megabytes M]
"""

from __future__ import annotations

import argparse
import os
import shutil

from _common import interleaved, scratch  # type: ignore[import-not-found]

SETUP = (
    "useradd -m -s /bin/bash bench && install -d -m 700 -o bench /home/bench/.ssh && "
    "cp /root/.ssh/authorized_keys /home/bench/.ssh/ && "
    "chown bench /home/bench/.ssh/authorized_keys && "
    "echo 'bench ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/bench"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--megabytes", type=int, default=100)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/sudo.py creates a user inside a local instance: run it as root")
    root = scratch()

    from fabric import Connection

    from precip_repro import LocalExperiment, finish_run

    exp = LocalExperiment("sudo", record=False)
    try:
        exp.provision("default", tags=["bench"])
        exp.wait()
        exp.run([], SETUP)
        host = exp.list()[0]["public_address"]
        fabric = Connection(
            host, user="bench", connect_kwargs={"key_filename": str(exp.keys.private_key_path)}
        )
        assert fabric.sudo("id -un", hide=True).stdout == "root\n"
        payload = root / "payload.bin"
        payload.write_bytes(os.urandom(args.megabytes << 20))
        back = root / "back.bin"

        def as_login(login: str) -> None:
            exp.login_user = login  # see the module's docstring

        def ours(login: str) -> None:
            as_login(login)
            for _ in range(args.calls):
                exp.run([], "true")

        def fabric_sudo() -> None:
            for _ in range(args.calls):
                fabric.sudo("true", hide=True)

        def transfer(login: str) -> None:
            as_login(login)
            exp.put([], payload, "/root/payload.bin")
            exp.get([], "/root/payload.bin", back)

        as_login("bench")
        assert exp.run([], "id -un")[1] == ["root\n"]
        calls = interleaved(
            {
                "ours, root login": lambda: ours("root"),
                "ours, sudo from bench": lambda: ours("bench"),
                "fabric, sudo from bench": fabric_sudo,
            },
            args.rounds,
        )
        moves = interleaved(
            {"root login": lambda: transfer("root"), "sudo": lambda: transfer("bench")},
            max(3, args.rounds // 3),
        )
        assert back.read_bytes() == payload.read_bytes()
        fabric.close()
    finally:
        exp.login_user = "root"
        exp.deprovision()
        finish_run()
        shutil.rmtree(root, ignore_errors=True)
    per = {name: seconds / args.calls * 1000 for name, seconds in calls.items()}
    print(f"run([...], 'true') as root, {args.calls} calls, median of {args.rounds} rounds:")
    for name, ms in per.items():
        print(f"  {name:<24} {ms:6.2f} ms per call")
    ratio = per["ours, sudo from bench"] / per["fabric, sudo from bench"]
    print(f"  ratio ours / fabric through sudo = {ratio:.2f} (target ≤ 1)")
    cost = per["ours, sudo from bench"] - per["ours, root login"]
    print(f"  sudo's cost over a root login: {cost:.2f} ms per call")
    print(f"put + get of {args.megabytes} MB as root:")
    for name, seconds in moves.items():
        print(f"  {name:<24} {seconds:6.2f} s")
    print(f"  ratio sudo / root login = {moves['sudo'] / moves['root login']:.2f} (target ≤ 1.5)")


if __name__ == "__main__":
    main()
