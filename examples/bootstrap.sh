#!/bin/sh
# Bootstraps an instance of the example pool. Usage: bootstrap.sh master|worker MASTER_ADDR
# The master serves /srv/pool/pool.txt on MASTER_ADDR:9618 (its private address only);
# a worker fetches it from there into ~wf/joined.txt.
set -eu
ROLE=$1
MASTER_ADDR=$2
PORT=9618

# The user the experiment runs its workflow as, reachable with the experiment's key.
if ! id wf >/dev/null 2>&1; then
    adduser --disabled-password --gecos "" wf >/dev/null 2>&1 || {
        echo "cannot create the user wf on $(hostname): on the local cloud that needs root" \
            "(the instances of an ordinary user have root only); run the pool as root" >&2
        exit 1
    }
fi
mkdir -p ~wf/.ssh
cp ~/.ssh/authorized_keys ~wf/.ssh/
chown -R wf: ~wf/.ssh

if [ "$ROLE" = master ]; then
    mkdir -p /srv/pool
    echo "pool master $(hostname) at $MASTER_ADDR" > /srv/pool/pool.txt
    nohup python3 -m http.server "$PORT" --bind "$MASTER_ADDR" --directory /srv/pool \
        >/tmp/pool-server.log 2>&1 &
    # Wait until the master answers, so workers can join at once.
    for _ in $(seq 100); do
        python3 -c "import socket,sys; socket.create_connection((sys.argv[1], $PORT), 1)" \
            "$MASTER_ADDR" 2>/dev/null && exit 0
        sleep 0.05
    done
    echo "the pool master did not start" >&2
    exit 1
fi

python3 - "$MASTER_ADDR" "$PORT" <<'PY' > ~wf/joined.txt
import sys, urllib.request
addr, port = sys.argv[1], sys.argv[2]
body = urllib.request.urlopen(f"http://{addr}:{port}/pool.txt", timeout=10).read().decode()
print(f"worker joined {addr}: {body.strip()}")
PY
chown wf: ~wf/joined.txt
