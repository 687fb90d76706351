#!/usr/bin/env python3
"""pg_cluster.py — a private PostgreSQL cluster for the PostgreSQL engine's tests.

    pg_cluster.py start STATE   initdb + pg_ctl start on 127.0.0.1, a free port;
                                writes STATE (a JSON file) with the URL and the paths
    pg_cluster.py stop STATE    pg_ctl stop (immediate) and remove the cluster
    pg_cluster.py url STATE     print the URL of the running cluster
    pg_cluster.py restart STATE pg_ctl restart -m fast (same port): the database restarted under load
    pg_cluster.py fresh STATE NAME  (re)create database NAME, empty, and print its URL (for a
                                program that takes a store's location, as examples/shop's do)

CTest runs `start` and `stop` as the setup and cleanup of the fixture
"pg_cluster" (CMakeLists.txt); the tests that require it read the URL from
STATE (the environment variable EVS_PG_STATE).  Debian's `postgresql`
package provides the server (/usr/lib/postgresql/*/bin).  initdb refuses to
run as root, so as root the cluster runs as the unprivileged user `nobody`
in a directory under /tmp that it owns.  Without PostgreSQL, `start` exits
with 77 and the tests that need it are skipped, saying why.
"""
import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time


def pg_bin():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return os.path.dirname(found[-1]) if found else None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_user(cmd, user):
    if user is None:
        return cmd
    return ["runuser", "-u", user, "--"] + cmd


def start(state):
    bindir = pg_bin()
    if not bindir:
        print("pg_cluster: PostgreSQL is not installed (Debian package postgresql)", file=sys.stderr)
        sys.exit(77)
    user = "nobody" if os.geteuid() == 0 else None
    root = tempfile.mkdtemp(prefix="evs-pg-")
    data = os.path.join(root, "data")
    if user:
        pw = pwd.getpwnam(user)
        os.chown(root, pw.pw_uid, pw.pw_gid)
    os.chmod(root, 0o700)
    env = dict(os.environ, LC_ALL="C.UTF-8", LANG="C.UTF-8")
    subprocess.run(as_user([os.path.join(bindir, "initdb"), "-D", data, "-U", "evs", "-A", "trust", "-E", "UTF8",
                            "--no-sync", "--locale=C.UTF-8"], user),
                   check=True, env=env, stdout=subprocess.DEVNULL, cwd=root)
    for attempt in range(5):
        port = free_port()
        # fsync stays on: the tests' kill -9 and restarts are about what PostgreSQL acknowledged
        opts = (f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root} "
                f"-c max_connections=300 -c shared_buffers=64MB")
        r = subprocess.run(as_user([os.path.join(bindir, "pg_ctl"), "-D", data, "-l", os.path.join(root, "log"),
                                    "-o", opts, "-w", "-t", "60", "start"], user),
                           env=env, stdout=subprocess.DEVNULL, cwd=root)
        if r.returncode == 0:
            break
        time.sleep(0.5)
    else:
        sys.stderr.write(open(os.path.join(root, "log")).read())
        sys.exit("pg_cluster: the server did not start")
    url = f"postgresql://evs@127.0.0.1:{port}/postgres"
    with open(state, "w") as f:
        json.dump({"url": url, "root": root, "data": data, "bindir": bindir, "user": user, "port": port}, f)
    print(url)


def stop(state):
    try:
        st = json.load(open(state))
    except (OSError, ValueError):
        return
    subprocess.run(as_user([os.path.join(st["bindir"], "pg_ctl"), "-D", st["data"], "-m", "immediate", "-w", "stop"],
                           st["user"]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=st["root"])
    shutil.rmtree(st["root"], ignore_errors=True)
    os.unlink(state)


def restart(state):
    with open(state) as f:
        st = json.load(f)
    subprocess.run(as_user([os.path.join(st["bindir"], "pg_ctl"), "-D", st["data"], "-m", "fast", "-w", "-t", "60",
                            "-l", os.path.join(st["root"], "log"), "restart"], st["user"]),
                   check=True, stdout=subprocess.DEVNULL, cwd=st["root"])


def fresh(state, name):
    st = json.load(open(state))
    if not name.replace("_", "").isalnum():
        sys.exit(f"pg_cluster: fresh: {name!r} is not a plain database name")
    psql = [os.path.join(st["bindir"], "psql"), st["url"], "-q", "-v", "ON_ERROR_STOP=1"]
    subprocess.run(psql + ["-c", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", "-c", f"CREATE DATABASE {name}"],
                   check=True, stdout=subprocess.DEVNULL)
    print(st["url"].rsplit("/", 1)[0] + "/" + name)


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "fresh":
        fresh(os.path.abspath(sys.argv[2]), sys.argv[3])
        return
    if len(sys.argv) != 3 or sys.argv[1] not in ("start", "stop", "url", "restart"):
        sys.exit(__doc__)
    cmd, state = sys.argv[1], os.path.abspath(sys.argv[2])
    if cmd == "start":
        stop(state)  # a cluster a crashed run left behind
        start(state)
    elif cmd == "stop":
        stop(state)
    elif cmd == "restart":
        restart(state)
    else:
        print(json.load(open(state))["url"])


if __name__ == "__main__":
    main()
