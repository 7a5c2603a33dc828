#!/usr/bin/env python3
"""Mapping edit → catalog updated, for `tidemark watch` with 10,000 cached resources and the local
catalog. Starts the daemon on a generated snapshot (bench/plan/generate.py), waits for /readyz, then
edits the mapping's title expressions several times; each edit changes every queue and function
entity. Measures from the file write until the SQLite catalog holds every new title (polled every
10 ms), and reports the median. The time includes the daemon's 500 ms debounce.

Usage: bench/watch/run.py [--bin target/release/tidemark] [--items 10000] [--edits 7]
"""
import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read().decode()
    except Exception as e:  # not up yet, or 503
        return getattr(e, "code", None), ""


def peak_rss_mib(pid):
    """VmHWM of a live process and of its children (the mapping worker), in MiB."""
    def hwm(p):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0
    children = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                children += f.read().split()
    except OSError:
        pass
    return hwm(pid), sum(hwm(c) for c in children)


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", default=os.path.join(ROOT, "target/release/tidemark"))
    p.add_argument("--items", type=int, default=10000)
    p.add_argument("--edits", type=int, default=7)
    args = p.parse_args()

    work = tempfile.mkdtemp()
    try:
        subprocess.run([sys.executable, os.path.join(ROOT, "bench/plan/generate.py"), os.path.join(work, "snap"), str(args.items)],
                       check=True, stdout=subprocess.DEVNULL)
        os.makedirs(os.path.join(work, "mappings"))
        shutil.copy(os.path.join(ROOT, "bench/plan/blueprints.json"), os.path.join(work, "mappings"))
        with open(os.path.join(ROOT, "bench/plan/mapping.yaml")) as f:
            mapping = f.read()
        mapping_path = os.path.join(work, "mappings/mapping.yaml")

        def write_mapping(prefix):
            text = mapping
            for field in ("QueueName", "FunctionName"):
                text = text.replace(f"title: .Properties.{field}", f"title: '\"{prefix}\" + .Properties.{field}'")
            tmp = mapping_path + ".tmp"
            with open(tmp, "w") as f:
                f.write(text)
            os.replace(tmp, mapping_path)

        write_mapping("start ")
        with open(os.path.join(work, "tidemark.yaml"), "w") as f:
            f.write("integration: {identifier: bench}\nsource: {type: snapshot, path: snap}\ncatalog: {type: local}\nmappings: [mappings]\n")
        port = free_port()
        log = open(os.path.join(work, "watch.log"), "w")
        env = dict(os.environ, RUST_LOG="info,tidemark::watch::sync=info", NO_COLOR="1")
        daemon = subprocess.Popen([args.bin, "watch", "-c", os.path.join(work, "tidemark.yaml"), "--listen", f"127.0.0.1:{port}"],
                                  stdout=log, stderr=log, env=env)
        try:
            deadline = time.time() + 600
            while get(f"http://127.0.0.1:{port}/readyz")[0] != 200:
                if time.time() > deadline or daemon.poll() is not None:
                    sys.exit("the daemon did not become ready; see " + os.path.join(work, "watch.log"))
                time.sleep(0.1)
            db = sqlite3.connect(os.path.join(work, ".tidemark/catalog.db"), timeout=30)
            titled = "owner = 'bench' AND placeholder = 0 AND blueprint IN ('queue', 'function')"
            total = db.execute(f"SELECT count(*) FROM entities WHERE {titled}").fetchone()[0]
            if total == 0:
                sys.exit("nothing was applied: " + repr(db.execute("SELECT owner, blueprint, placeholder, count(*) FROM entities GROUP BY 1, 2, 3").fetchall()) + open(os.path.join(work, "watch.log")).read()[-3000:])
            _, metrics = get(f"http://127.0.0.1:{port}/metrics")
            cached = metric(metrics, "tidemark_cache_items")
            times = []
            for i in range(args.edits):
                prefix = f"edit{i} "
                start = time.monotonic()
                write_mapping(prefix)
                while True:
                    try:
                        done = db.execute(f"SELECT count(*) FROM entities WHERE {titled} AND json_extract(entity, '$.title') LIKE ?",
                                          (prefix + "%",)).fetchone()[0]
                    except sqlite3.OperationalError:  # the apply holds the write lock
                        done = 0
                    if done == total:
                        break
                    if time.monotonic() - start > 120:
                        sys.exit(f"edit {i} not applied after 120 s ({done}/{total})")
                    time.sleep(0.01)
                times.append(time.monotonic() - start)
            _, metrics = get(f"http://127.0.0.1:{port}/metrics")
            listings = metric(metrics, "tidemark_source_listings_total")
            cache_bytes = metric(metrics, "tidemark_cache_bytes")
            daemon_mib, worker_mib = peak_rss_mib(daemon.pid)
        finally:
            daemon.terminate()
            code = daemon.wait(timeout=60)
        print(f"{args.items} resources listed once, {int(cached or 0)} raw items cached, {total} entities rewritten per edit")
        print(f"source listings during the run: {int(listings or 0)} (1 = only the start); daemon exit code after SIGTERM: {code}")
        print("edit → catalog updated (s, includes the 0.5 s debounce): " + ", ".join(f"{t:.3f}" for t in times))
        print(f"median: {statistics.median(times):.3f} s   min: {min(times):.3f} s   max: {max(times):.3f} s")
        with open(os.path.join(work, "watch.log")) as f:
            syncs = [l.strip() for l in f if "sync done" in l]
        print(f"peak RSS: daemon {daemon_mib:.0f} MiB, mapping worker {worker_mib:.0f} MiB; "
              f"raw-item cache {(cache_bytes or 0) / 1048576:.0f} MiB (tidemark_cache_bytes)")
        print("daemon's own breakdown of the last sync: " + (syncs[-1] if syncs else "(none)"))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
