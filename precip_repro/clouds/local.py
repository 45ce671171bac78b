"""The embedded default cloud: each instance is a real OpenSSH ``sshd`` on its own loopback
address, with its own host key, hostname, process tree and copy-on-write filesystem view.

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

State (pids, addresses, run id) lives in ``$PRECIP_HOME/local/instances/<id>/state.json``,
where ``gc`` finds instances whose recording process died.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import ipaddress
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import attrs
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from precip_repro.clouds.base import CloudInstance, LaunchRequest
from precip_repro.exceptions import (
    CloudError,
    InvalidOption,
    LocalCloudUnavailable,
    UnsupportedUser,
)
from precip_repro.keys import Keys, ensure_home, precip_home
from precip_repro.logs import get_logger
from precip_repro.record.events import CloudInfo

__all__ = ["LocalCloud", "LocalInstanceState", "image_digest", "live_local_instances"]

log = get_logger(__name__)

SSHD: Final = Path("/usr/sbin/sshd")
SFTP_SERVER: Final = Path("/usr/lib/openssh/sftp-server")
OVERLAID: Final = ("usr", "etc", "opt", "var", "root", "home", "srv")
POOL: Final = ipaddress.IPv4Network("127.128.0.0/9")
BOOT_TIMEOUT: Final = 20.0
_READY: Final = "precip-instance-ready"
"""What the set-up script says in its log once the instance is up."""

# Run by `unshare` inside the instance's new namespaces. Arguments: mode (root|user),
# state dir, hostname, image dir or "", address; then the lines of the sshd config are written by
# Python beforehand. Every path is absolute.
_SETUP: Final = r"""
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


def _sshd_config(
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


@attrs.define(kw_only=True)
class LocalInstanceState:
    """What ``state.json`` holds about a local instance."""

    instance_id: str
    cloud_id: str
    run: str
    exp: str
    slot: str
    address: str
    port: int
    image_id: str
    instance_type: str
    image_digest: str | None
    mode: str
    launcher_pid: int
    init_pid: int | None = None
    sshd_pid: int | None = None
    started_ns: int = 0
    owner_pid: int = 0
    launcher_start: int | None = None
    init_start: int | None = None
    sshd_start: int | None = None
    """When each process started (clock ticks since boot, /proc's): a pid of a state left
    behind by a reboot, or by an instance long gone, may name another process by now — gc
    must never take that for the instance, nor kill it. (States written before these were
    kept fall back on the command line and the parent.)"""

    def path(self, home: Path) -> Path:
        return home / "local" / "instances" / self.instance_id

    def launcher_alive(self) -> bool:
        return _alive(self.launcher_pid, self.instance_id, start=self.launcher_start)

    def init_alive(self) -> bool:
        """The instance's init (PID 1 of its namespaces), a child of the launcher."""
        if self.init_start is None and self.init_pid is not None:
            return self.launcher_alive() and _parent(self.init_pid) == self.launcher_pid
        return _alive(self.init_pid, start=self.init_start)

    def sshd_alive(self) -> bool:
        """The sshd outside the instance (an ordinary user's mode; its config is in the
        instance's state directory, named by its id)."""
        return _alive(self.sshd_pid, self.instance_id, start=self.sshd_start)

    def save(self, home: Path) -> None:
        directory = self.path(home)
        tmp = directory / "state.json.tmp"
        tmp.write_text(json.dumps(attrs.asdict(self), sort_keys=True, indent=1))
        tmp.replace(directory / "state.json")

    @classmethod
    def load(cls, directory: Path) -> LocalInstanceState:
        data: dict[str, Any] = json.loads((directory / "state.json").read_text())
        return cls(**data)


def _stat_fields(pid: int) -> list[str] | None:
    """``/proc/PID/stat`` from its third field (the state) on: the command name before it
    may hold spaces and parentheses."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return None


def start_time(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot: with the pid, it names one process
    (a pid alone is reused)."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields is not None and len(fields) > 19 else None


def _parent(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields is not None and len(fields) > 1 else None


def _alive(pid: int | None, marker: str | None = None, *, start: int | None = None) -> bool:
    """Whether ``pid`` runs and is the process meant: the one that started at ``start``,
    or, where that is not known, one whose command line mentions ``marker``."""
    if not pid:
        return False
    fields = _stat_fields(pid)
    if fields is None or fields[0] == "Z":
        return False
    if start is not None:
        return len(fields) > 19 and int(fields[19]) == start
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return marker is None or marker.encode() in cmdline


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def live_local_instances(home: Path | None = None) -> Iterator[LocalInstanceState]:
    """Every local instance whose processes still run, whoever started it."""
    root = (home or precip_home()) / "local" / "instances"
    if not root.is_dir():
        return
    for directory in sorted(root.iterdir()):
        try:
            state = LocalInstanceState.load(directory)
        except (OSError, ValueError, TypeError):
            continue
        if state.launcher_alive() or state.sshd_alive():
            yield state


def terminate_local(state: LocalInstanceState, home: Path) -> None:
    """End a local instance's processes and remove its state (also from another process)."""
    for pid, alive in ((state.init_pid, state.init_alive), (state.sshd_pid, state.sshd_alive)):
        if pid and alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    if state.launcher_alive():
        with contextlib.suppress(ProcessLookupError):
            os.kill(state.launcher_pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (
        state.launcher_alive() or state.init_alive() or state.sshd_alive()
    ):
        time.sleep(0.01)
    shutil.rmtree(state.path(home), ignore_errors=True)


def image_problem(image_id: str) -> str | None:
    """Why the local cloud cannot start ``image_id``, or None when it can."""
    if image_id == "default" or Path(image_id).expanduser().is_dir():
        return None
    return (
        f"image {image_id!r} is neither 'default' nor a directory; a local image is a "
        "directory whose tree is layered over the instance's view"
    )


def is_local_image(image_id: str) -> bool:
    """Whether ``image_id`` names a local cloud's image (no EC2-style cloud has one so
    named): ``default`` or a path."""
    return image_id == "default" or "/" in image_id or image_id.startswith("~")


def image_digest(image: Path) -> str:
    """A digest of a directory tree: paths, modes, file contents and link targets."""
    outer = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(image):
        dirnames.sort()
        for name in sorted([*dirnames, *filenames]):
            path = Path(dirpath) / name
            rel = path.relative_to(image).as_posix()
            info = path.lstat()
            outer.update(f"{rel}\0{info.st_mode:o}\0".encode())
            if path.is_symlink():
                outer.update(str(path.readlink()).encode() + b"\0")
            elif path.is_file():
                with path.open("rb") as f:
                    outer.update(hashlib.file_digest(f, "sha256").digest())
    return outer.hexdigest()


def _host_key() -> tuple[bytes, str]:
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


def _parse_block(block: str) -> ipaddress.IPv4Network:
    try:
        network = ipaddress.ip_network(block if "/" in block else f"{block}/24", strict=False)
    except ValueError as exc:
        raise InvalidOption(
            "address_block", block, ["a /24 inside 127.0.0.0/8, e.g. 127.140.3.0/24"]
        ) from exc
    if not isinstance(network, ipaddress.IPv4Network) or not network.subnet_of(
        ipaddress.IPv4Network("127.0.0.0/8")
    ):
        raise InvalidOption("address_block", block, ["a block inside 127.0.0.0/8 (loopback)"])
    if network.prefixlen > 28:
        raise InvalidOption("address_block", block, ["a block of at least 16 addresses (/28)"])
    return network


class LocalCloud:
    """Instances as namespaced sshd processes on loopback addresses of one block."""

    kind = "local"
    launch_workers = 4
    """A launch mostly waits for its instance to boot: 40 took 2.5 s in turn, 1.3 s so."""

    def __init__(
        self, *, address_block: str | None = None, home: Path | None = None, port: int | None = None
    ) -> None:
        self.home = home or precip_home()
        self.root_mode = os.geteuid() == 0
        self.cloud_id = secrets.token_hex(4)
        self._lock = threading.Lock()
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._sshd_procs: dict[str, subprocess.Popen[bytes]] = {}
        self._states: dict[str, LocalInstanceState] = {}
        self._keys: Keys | None = None
        self._checked = False
        self._port = port
        self._block_lock: int | None = None
        self.block = self._claim_block(address_block)
        self._next_host = 2
        self._user = _whoami()
        self.session_user = None if self.root_mode else "root"
        self.denied_hint = (
            None
            if self.root_mode
            else "root inside an ordinary user's local instance cannot change what belongs to "
            "host users it does not map, such as the host's own directories under /usr, /var "
            "and /opt: write under /tmp, /srv, /root, /etc or a new directory, or run the "
            "local cloud as root"
        )

    # -- set-up --------------------------------------------------------------------------

    def _claim_block(self, wanted: str | None) -> ipaddress.IPv4Network:
        blocks = ensure_home(self.home) / "local" / "blocks"
        blocks.mkdir(parents=True, exist_ok=True)
        if wanted is not None:
            network = _parse_block(wanted)
            self._block_lock = self._lock_block(blocks, network)
            if self._block_lock is None:
                raise CloudError(
                    f"address block {network} is in use by another local cloud on this "
                    "machine; choose another address_block, or leave it out to get a free one"
                )
            return network
        in_use = {ipaddress.ip_address(s.address) for s in live_local_instances(self.home)}
        subnets = POOL.prefixlen
        for _ in range(200):
            index = random.randrange(1, 2 ** (24 - subnets))
            network = ipaddress.IPv4Network(f"{POOL.network_address + index * 256}/24")
            if any(address in network for address in in_use):
                continue
            lock = self._lock_block(blocks, network)
            if lock is not None:
                self._block_lock = lock
                return network
        raise CloudError("no free address block in 127.128.0.0/9; run `precip-repro gc`")

    @staticmethod
    def _lock_block(blocks: Path, network: ipaddress.IPv4Network) -> int | None:
        fd = os.open(blocks / f"{network.network_address}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return None
            raise
        return fd

    def info(self) -> CloudInfo:
        return CloudInfo(kind="local", endpoint=str(self.block), region=None)

    def prepare(self, keys: Keys) -> None:
        self._keys = keys
        if self._checked:
            return
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
            if self.root_mode
            else ["unshare", "-U", "-r", "-p", "-f", "-m", "-u", "true"]
        )
        done = subprocess.run(probe, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            what = (
                "mount, PID and UTS namespaces"
                if self.root_mode
                else "user namespaces for ordinary users (sysctl kernel.unprivileged_userns_clone=1"
                ", or run as root)"
            )
            raise LocalCloudUnavailable(
                f"the kernel refuses {what}: {done.stderr.strip() or done.returncode}; "
                "local instances cannot start here"
            )
        self._checked = True

    def ssh_user(self, user: str) -> str:
        """The account to log in as for ``user`` inside an instance."""
        if self.root_mode:
            return user
        if user != "root":
            raise UnsupportedUser(
                f"this local cloud runs as the ordinary user {self._user!r}: every session is "
                f"root inside the instance, and logging in as {user!r} is not possible. "
                "Run as root for instances with users of their own"
            )
        return self._user

    def ssh_users(self) -> frozenset[str] | None:
        return None if self.root_mode else frozenset({"root"})

    def check_capacity(self, count: int) -> None:
        """Its block gives one address per instance for the whole run (terminated ones
        included): refuse at once what it has no addresses left for."""
        with self._lock:
            free = max(0, self.block.num_addresses - 1 - self._next_host)
        if count > free:
            raise self._block_full(free)

    def _block_full(self, free: int) -> CloudError:
        bigger = ipaddress.IPv4Network(f"{self.block.network_address}/20", False)
        total = self.block.num_addresses - 3
        given = (
            f"is full: this local cloud has given out all its {total} addresses"
            if free == 0
            else f"has {free} of its {total} addresses left: this local cloud gives"
        )
        return CloudError(
            f"address block {self.block} {given}, one per instance for the whole run "
            "(terminated ones included), so that the record tells instances apart; for "
            "more instances give a larger block, e.g. "
            f"LocalExperiment(address_block={str(bigger)!r})",
            code="AddressBlockFull",
        )

    # -- instances -----------------------------------------------------------------------

    def _next_address(self) -> str:
        with self._lock:
            while True:
                if self._next_host >= self.block.num_addresses - 1:
                    raise self._block_full(0)
                address = str(self.block.network_address + self._next_host)
                self._next_host += 1
                return address

    def launch(self, request: LaunchRequest) -> CloudInstance:
        if self._keys is None:
            raise CloudError("prepare() the local cloud before launching")
        image = None
        digest = None
        if request.image_id != "default":
            problem = image_problem(request.image_id)
            if problem is not None:
                raise CloudError(problem, code="InvalidAMIID.NotFound")
            image = Path(request.image_id).expanduser().resolve()
            digest = image_digest(image)
        instance_id = "i-" + secrets.token_hex(8)
        address = self._next_address()
        port = self._port or _pick_port(address, 22 if self.root_mode else None)
        state_dir = self.home / "local" / "instances" / instance_id
        (state_dir / "root").mkdir(parents=True)
        (state_dir / "layers").mkdir()
        pem, public = _host_key()
        host_key = state_dir / "host_key"
        host_key.write_bytes(pem)
        host_key.chmod(0o600)
        (state_dir / "host_key.pub").write_text(public + "\n")
        (state_dir / "authorized_keys").write_text(self._keys.public_key + "\n")
        (state_dir / "setup.sh").write_text(_SETUP)
        config = _sshd_config(
            address=address,
            port=port,
            state=state_dir,
            root_mode=self.root_mode,
            host_key="/etc/ssh/precip_host_key" if self.root_mode else str(host_key),
            user=self._user,
        )
        (state_dir / "sshd_config").write_text(config + "\n")
        log_path = state_dir / "boot.log"
        unshare = (
            ["unshare", "-m", "-p", "-u", "--fork", "--kill-child"]
            if self.root_mode
            else ["unshare", "-U", "-r", "-p", "-f", "-m", "-u", "--kill-child"]
        )
        argv = [
            *unshare,
            "/bin/sh",
            str(state_dir / "setup.sh"),
            "root" if self.root_mode else "user",
            str(state_dir),
            instance_id,
            str(image or ""),
            address,
        ]
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        state = LocalInstanceState(
            instance_id=instance_id,
            cloud_id=self.cloud_id,
            run=request.run,
            exp=request.exp,
            slot=request.slot,
            address=address,
            port=port,
            image_id=request.image_id,
            instance_type=request.instance_type,
            image_digest=digest,
            mode="root" if self.root_mode else "user",
            launcher_pid=proc.pid,
            launcher_start=start_time(proc.pid),
            started_ns=time.time_ns(),
            owner_pid=os.getpid(),
        )
        with self._lock:
            self._procs[instance_id] = proc
            self._states[instance_id] = state
        state.save(self.home)
        try:
            self._await_boot(state, proc, log_path)
        except BaseException:
            self.terminate([instance_id])
            raise
        return self._describe_one(state)

    def _await_boot(
        self, state: LocalInstanceState, proc: subprocess.Popen[bytes], log_path: Path
    ) -> None:
        deadline = time.monotonic() + BOOT_TIMEOUT
        marker = _READY.encode()
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = log_path.read_bytes().decode(errors="replace").strip().splitlines()[-5:]
                raise LocalCloudUnavailable(
                    f"local instance {state.instance_id} ({state.slot}) failed to start "
                    f"(exit {proc.returncode}): {' | '.join(tail) or 'no output'} — see {log_path}"
                )
            children = _children(proc.pid)
            if children and marker in log_path.read_bytes():
                state.init_pid, state.init_start = children[0], start_time(children[0])
                break
            time.sleep(0.005)
        else:
            raise LocalCloudUnavailable(
                f"local instance {state.instance_id} did not start within {BOOT_TIMEOUT} s; "
                f"see {log_path}"
            )
        if not self.root_mode:
            self._start_user_sshd(state)
        state.save(self.home)
        log.debug("local instance started", instance=state.instance_id, address=state.address)

    def _start_user_sshd(self, state: LocalInstanceState) -> None:
        state_dir = state.path(self.home)
        (state_dir / "holder.pid").write_text(f"{state.init_pid}\n")
        wrapper = state_dir / "enter"
        wrapper.write_text(_WRAPPER.format(state=state_dir))
        wrapper.chmod(0o755)
        with (state_dir / "sshd.log").open("wb") as log_file:
            sshd = subprocess.Popen(
                [str(SSHD), "-D", "-e", "-f", str(state_dir / "sshd_config")],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        state.sshd_pid, state.sshd_start = sshd.pid, start_time(sshd.pid)
        with self._lock:
            self._sshd_procs[state.instance_id] = sshd

    def _describe_one(self, state: LocalInstanceState) -> CloudInstance:
        # The launcher outlives the namespace's init by a moment: a crashed instance
        # must not be described as running in between.
        running = (
            state.launcher_alive()
            and (state.init_pid is None or state.init_alive())
            and (self.root_mode or state.sshd_alive())
        )
        return CloudInstance(
            instance_id=state.instance_id,
            image_id=state.image_id,
            instance_type=state.instance_type,
            state="running" if running else "terminated",
            public_address=state.address,
            private_address=state.address,
            public_hostname=state.address,
            private_hostname=state.address,
            ssh_port=state.port,
            image_digest=state.image_digest,
            state_reason=None if running else self._last_words(state),
        )

    def _last_words(self, state: LocalInstanceState) -> str:
        """What an instance that ended said last (its sshd's log): why it ended."""
        directory = state.path(self.home)
        for name in ("sshd.log", "boot.log"):
            with contextlib.suppress(OSError):
                lines = (directory / name).read_bytes().decode(errors="replace").split("\n")
                said = [s for line in lines if (s := line.strip()) and s != _READY]
                if said:
                    return f"its processes ended; {name} last said: {said[-1][:300]}"
        return "its processes ended without a word (killed?)"

    def describe(self, instance_ids: Sequence[str]) -> list[CloudInstance]:
        with self._lock:
            states = [self._states[i] for i in instance_ids if i in self._states]
        return [self._describe_one(state) for state in states]

    def terminate(self, instance_ids: Sequence[str]) -> None:
        for instance_id in instance_ids:
            with self._lock:
                state = self._states.pop(instance_id, None)
                proc = self._procs.pop(instance_id, None)
                sshd = self._sshd_procs.pop(instance_id, None)
            if state is None:
                continue
            terminate_local(state, self.home)
            for child in (proc, sshd):
                if child is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        child.wait(timeout=10)

    def close(self) -> None:
        with self._lock:
            remaining = list(self._states)
        self.terminate(remaining)
        if self._block_lock is not None:
            os.close(self._block_lock)
            self._block_lock = None


def _whoami() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


def _pick_port(address: str, preferred: int | None) -> int:
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
