"""A local instance's machine: a real OpenSSH ``sshd`` on its own loopback address, with its
own host key, hostname, process tree and copy-on-write filesystem view — what sets it up,
starts it and waits for it to boot.

Two mechanisms (DESIGN §8), chosen by who runs it:

- **as root**: ``unshare -m -p -u --fork`` runs a set-up script that mounts an overlay per
  top-level directory (lower: the image's directory, then the host's — except ``/root``
  and ``/home``, which start fresh as on a new cloud instance; upper: a tmpfs of the
  instance's own), fresh tmpfs on ``/tmp`` and ``/run``, ``proc`` and ``/dev``, then
  ``exec chroot ROOT /usr/sbin/sshd``. sshd is PID 1 of the instance's PID namespace and
  sees the instance's own users: ``adduser wf`` inside works for logging in as ``wf``.
- **as an ordinary user**: a holder ``unshare -Urpfmu`` sets up the same view and sleeps;
  sshd runs outside as the user, and every session enters the holder's namespaces through
  a ``ForceCommand`` wrapper (``nsenter``). Inside, the session is root; logging in as any
  other user is refused (:class:`UnsupportedUser`). The host's files belong to a user the
  namespace cannot map, so nothing can be created inside the host's own subdirectories of
  ``/usr``, ``/var`` or ``/opt`` (top-level entries, ``/tmp``, ``/srv``, ``/root`` and
  ``/home`` are fine); ``/etc`` is therefore a private copy, fully writable.

Killing PID 1 of the instance's PID namespace ends every process the instance started
(``nohup … &`` included) and its mounts vanish with it. Instances share the host's kernel,
network, ``/dev`` (each has a ``/dev/shm`` of its own) and ``/sys``: this isolates experiments
from each other, it is **not** a security boundary.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from precip_repro.clouds.local_state import children
from precip_repro.exceptions import LocalCloudUnavailable

__all__ = [
    "BOOT_TIMEOUT",
    "SETUP",
    "SFTP_SERVER",
    "SSHD",
    "await_init",
    "check_host",
    "host_key",
    "last_words",
    "pick_port",
    "sshd_config",
    "start_launcher",
    "start_user_sshd",
    "whoami",
    "write_machine",
]

SSHD: Final = Path("/usr/sbin/sshd")
SFTP_SERVER: Final = Path("/usr/lib/openssh/sftp-server")
OVERLAID: Final = ("usr", "etc", "opt", "var", "root", "home", "srv")
BOOT_TIMEOUT: Final = 20.0
_READY: Final = "precip-instance-ready"
"""What the set-up script says in its log once the instance is up."""

# Run by `unshare` inside the instance's new namespaces. Arguments: mode (root|user),
# state dir, hostname, image dir or "", address; then the lines of the sshd config are written by
# Python beforehand. Every path is absolute.
SETUP: Final = r"""
set -eu
mode=$1 state=$2 name=$3 image=$4 address=$5
root=$state/root layers=$state/layers
mount --make-rprivate /
mount -t tmpfs -o mode=755 precip-root "$root"
mount -t tmpfs -o mode=700 precip-layers "$layers"
dirs="usr etc opt var root home srv"
if [ -n "$image" ]; then
  for d in "$image"/*; do
    [ -d "$d" ] || continue
    b=$(basename "$d")
    case " $dirs tmp run proc dev sys bin sbin lib lib64 " in *" $b "*) ;; *) dirs="$dirs $b";; esac
  done
fi
if [ "$mode" = user ]; then
  # In a user namespace the host's files belong to an unmapped user: nothing can be
  # created inside their directories. /etc is small and written often: copy it instead.
  mkdir -p "$root/etc"
  cp -R /etc/. "$root/etc/" 2>/dev/null || true
  if [ -n "$image" ] && [ -d "$image/etc" ]; then cp -R "$image/etc/." "$root/etc/"; fi
  dirs=$(echo " $dirs " | sed 's/ etc / /')
fi
for d in $dirs; do
  mkdir -p "$layers/$d/upper" "$layers/$d/work" "$root/$d"
  lower=""
  if [ -n "$image" ] && [ -d "$image/$d" ]; then lower="$image/$d"; fi
  # /root and /home start fresh, as on a new cloud instance: the host's dotfiles (and
  # whatever secrets they hold) stay on the host.
  if [ -d "/$d" ] && [ "$d" != root ] && [ "$d" != home ]; then
    lower="${lower:+$lower:}/$d"
  fi
  if [ -z "$lower" ]; then
    mkdir -p "$layers/$d/empty"; lower="$layers/$d/empty"
  fi
  options="lowerdir=$lower,upperdir=$layers/$d/upper,workdir=$layers/$d/work"
  mount -t overlay overlay -o "$options" "$root/$d"
done
mkdir -p "$root/tmp" "$root/run" "$root/proc" "$root/dev" "$root/sys"
mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
mount -t tmpfs -o mode=755 tmpfs "$root/run"
mkdir -p "$root/run/sshd"
for l in bin sbin lib lib32 lib64 libx32; do
  if [ -L "/$l" ]; then ln -s "$(readlink "/$l")" "$root/$l"
  elif [ -d "/$l" ]; then mkdir -p "$root/$l"; mount --rbind "/$l" "$root/$l"; fi
done
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
# /dev is the host's, but its shared memory is a scratch space programs write to: one of
# the instance's own, as on a machine of its own (files there must not outlive it).
if [ -d "$root/dev/shm" ]; then mount -t tmpfs -o mode=1777,nosuid,nodev shm "$root/dev/shm"; fi
mount --rbind /sys "$root/sys" 2>/dev/null || true
hostname "$name"
# As an ordinary user, files the host's root owns cannot be rewritten in place (they are
# owned by an unmapped user), but they can be replaced.
rm -f "$root/etc/hostname"
echo "$name" > "$root/etc/hostname"
# A cloud's DNS resolves an instance's own name (`hostname -f`, servers that look up their
# own address, such as Condor's, need it); here /etc/hosts does.
hosts=$(cat "$root/etc/hosts" 2>/dev/null || true)
rm -f "$root/etc/hosts"
printf '%s\n%s\t%s\n' "$hosts" "$address" "$name" > "$root/etc/hosts"
if [ -d /etc/skel ]; then cp -R /etc/skel/. "$root/root/"; fi
chmod 700 "$root/root"
mkdir -p "$root/etc/ssh" "$root/root/.ssh"
cp "$state/host_key" "$root/etc/ssh/precip_host_key"
chmod 600 "$root/etc/ssh/precip_host_key"
cp "$state/authorized_keys" "$root/root/.ssh/authorized_keys"
chmod 700 "$root/root/.ssh"
chmod 600 "$root/root/.ssh/authorized_keys"
if [ "$mode" = root ]; then
  cp "$state/sshd_config" "$root/etc/ssh/precip_sshd_config"
  echo "precip-instance-ready"
  exec chroot "$root" /usr/sbin/sshd -D -e -f /etc/ssh/precip_sshd_config
fi
echo "precip-instance-ready"
exec chroot "$root" /bin/sleep infinity
"""

_WRAPPER: Final = r"""#!/bin/sh
# Every session of a local instance (run as an ordinary user) enters the instance as a root
# login there would: in root's home, with root's shell and sshd's PATH for root (sbin
# included), not the host user's HOME, USER and PATH, which mean nothing inside.
holder=$(cat "{state}/holder.pid")
exec nsenter --preserve-credentials -t "$holder" -U -m -p -u -r -w -- /bin/sh -c '
shell=$(sed -n "s/^root:\([^:]*:\)\{{5\}}//p" /etc/passwd)
[ -x "$shell" ] || shell=/bin/sh
export HOME=/root USER=root LOGNAME=root MAIL=/var/mail/root SHELL="$shell"
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
cd /root 2>/dev/null || cd /
if [ -n "${{SSH_ORIGINAL_COMMAND:-}}" ]; then
  exec "$SHELL" -c "$SSH_ORIGINAL_COMMAND"
fi
exec "$SHELL" -l
'
"""


def sshd_config(
    *, address: str, port: int, state: Path, root_mode: bool, host_key: str, user: str
) -> str:
    common = [
        f"ListenAddress {address}:{port}",
        f"HostKey {host_key}",
        "StrictModes no",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes",
        "MaxStartups 200",
        "MaxSessions 10",  # sshd's default, as on a stock cloud image
        "UseDNS no",
        "PrintMotd no",
        "PrintLastLog no",
        "LogLevel ERROR",
        "AcceptEnv LANG LC_*",
    ]
    if root_mode:
        # PAM lets users created inside the instance log in even with a locked password
        # (`adduser --disabled-password` leaves '!', which sshd without PAM refuses).
        return "\n".join(
            [
                *common,
                "PidFile /run/precip_sshd.pid",
                "UsePAM yes",
                "PermitRootLogin prohibit-password",
                "Subsystem sftp internal-sftp",
            ]
        )
    return "\n".join(
        [
            *common,
            f"PidFile {state}/sshd.pid",
            f"AuthorizedKeysFile {state}/authorized_keys",
            "UsePAM no",
            f"AllowUsers {user}",
            f"ForceCommand {state}/enter",
            f"Subsystem sftp {SFTP_SERVER}",
        ]
    )


def host_key() -> tuple[bytes, str]:
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return pem, public.decode()


def check_host(*, root_mode: bool) -> None:
    """Raise :class:`LocalCloudUnavailable` saying what this machine lacks for local
    instances: OpenSSH's server, util-linux, or namespaces the kernel allows."""
    if not SSHD.exists():
        raise LocalCloudUnavailable(
            f"{SSHD} is missing: local instances are OpenSSH servers; install the Debian "
            "package openssh-server (`make test` does, as root)"
        )
    if shutil.which("unshare") is None or shutil.which("nsenter") is None:
        raise LocalCloudUnavailable(
            "unshare and nsenter (util-linux) are missing: install util-linux"
        )
    probe = (
        ["unshare", "-m", "-p", "-u", "--fork", "true"]
        if root_mode
        else ["unshare", "-U", "-r", "-p", "-f", "-m", "-u", "true"]
    )
    done = subprocess.run(probe, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        what = (
            "mount, PID and UTS namespaces"
            if root_mode
            else "user namespaces for ordinary users (sysctl kernel.unprivileged_userns_clone=1"
            ", or run as root)"
        )
        raise LocalCloudUnavailable(
            f"the kernel refuses {what}: {done.stderr.strip() or done.returncode}; "
            "local instances cannot start here"
        )


def write_machine(
    state_dir: Path, *, public_key: str, address: str, port: int, root_mode: bool, user: str
) -> None:
    """Create an instance's state directory with what its machine boots from: a host key
    of its own, the key it lets in, the set-up script and sshd's config."""
    (state_dir / "root").mkdir(parents=True)
    (state_dir / "layers").mkdir()
    pem, public = host_key()
    key_path = state_dir / "host_key"
    key_path.write_bytes(pem)
    key_path.chmod(0o600)
    (state_dir / "host_key.pub").write_text(public + "\n")
    (state_dir / "authorized_keys").write_text(public_key + "\n")
    (state_dir / "setup.sh").write_text(SETUP)
    config = sshd_config(
        address=address,
        port=port,
        state=state_dir,
        root_mode=root_mode,
        host_key="/etc/ssh/precip_host_key" if root_mode else str(key_path),
        user=user,
    )
    (state_dir / "sshd_config").write_text(config + "\n")


def start_launcher(
    state_dir: Path, *, root_mode: bool, name: str, image: Path | None, address: str
) -> subprocess.Popen[bytes]:
    """Start the ``unshare`` that runs the set-up script in the instance's new namespaces;
    its output goes to ``boot.log``. It returns at once: :func:`await_init` waits."""
    unshare = (
        ["unshare", "-m", "-p", "-u", "--fork", "--kill-child"]
        if root_mode
        else ["unshare", "-U", "-r", "-p", "-f", "-m", "-u", "--kill-child"]
    )
    argv = [
        *unshare,
        "/bin/sh",
        str(state_dir / "setup.sh"),
        "root" if root_mode else "user",
        str(state_dir),
        name,
        str(image or ""),
        address,
    ]
    with (state_dir / "boot.log").open("wb") as log_file:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )


def await_init(
    proc: subprocess.Popen[bytes], state_dir: Path, *, instance_id: str, slot: str
) -> int:
    """Wait until the set-up script says the instance is up; return the pid of its init
    (PID 1 of its namespaces). Raise :class:`LocalCloudUnavailable` with the end of its
    log when it fails or takes longer than :data:`BOOT_TIMEOUT`."""
    log_path = state_dir / "boot.log"
    deadline = time.monotonic() + BOOT_TIMEOUT
    marker = _READY.encode()
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_bytes().decode(errors="replace").strip().splitlines()[-5:]
            raise LocalCloudUnavailable(
                f"local instance {instance_id} ({slot}) failed to start "
                f"(exit {proc.returncode}): {' | '.join(tail) or 'no output'} — see {log_path}"
            )
        found = children(proc.pid)
        if found and marker in log_path.read_bytes():
            return found[0]
        time.sleep(0.005)
    raise LocalCloudUnavailable(
        f"local instance {instance_id} did not start within {BOOT_TIMEOUT} s; see {log_path}"
    )


def start_user_sshd(state_dir: Path, holder_pid: int) -> subprocess.Popen[bytes]:
    """Start the sshd of an ordinary user's instance, outside it: each session enters the
    holder's namespaces through the wrapper its config forces."""
    (state_dir / "holder.pid").write_text(f"{holder_pid}\n")
    wrapper = state_dir / "enter"
    wrapper.write_text(_WRAPPER.format(state=state_dir))
    wrapper.chmod(0o755)
    with (state_dir / "sshd.log").open("wb") as log_file:
        return subprocess.Popen(
            [str(SSHD), "-D", "-e", "-f", str(state_dir / "sshd_config")],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def last_words(state_dir: Path) -> str:
    """What an instance that ended said last (its sshd's log): why it ended."""
    for name in ("sshd.log", "boot.log"):
        with contextlib.suppress(OSError):
            lines = (state_dir / name).read_bytes().decode(errors="replace").split("\n")
            said = [s for line in lines if (s := line.strip()) and s != _READY]
            if said:
                return f"its processes ended; {name} last said: {said[-1][:300]}"
    return "its processes ended without a word (killed?)"


def whoami() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


def pick_port(address: str, preferred: int | None) -> int:
    """``preferred`` if it can be bound on ``address`` (an sshd on *:22 prevents it), else a
    free port of the kernel's choosing."""
    if preferred is not None:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((address, preferred))
                return preferred
            except OSError:
                pass
    with socket.socket() as probe:
        probe.bind((address, 0))
        port: int = probe.getsockname()[1]
        return port
