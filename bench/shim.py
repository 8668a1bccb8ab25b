#!/usr/bin/env python3
"""Container start time under the containerd shim, with and without the
node's compile cache, side by side in one run.

A private containerd (root needed; Debian's containerd and runc) runs one
program as two kinds of image: its program as a wasm OCI layer (compiled
once per node by the shim's compiler hook, then handed to every container)
and its program as a file in a root file system (compiled at each start).
Each round makes fresh images (the program with a unique custom section, so
no earlier round's code is reused) and times `ctr run --rm` for the first
container and for `--runs` more. Prints medians over the rounds.

Usage: sudo python3 bench/shim.py [--program PATH.wasm] [--rounds N] [--runs N]
(default program: the 0.3 test component p3_net, built by `cargo test`; a
program must exit 0 when run with no arguments).
"""

import argparse
import glob
import hashlib
import io
import json
import os
import statistics
import subprocess
import tarfile
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIM = os.path.join(ROOT, "target", "release", "containerd-shim-warden-v1")
WASM_LAYERS = """[stream_processors]
  [stream_processors."io.containerd.warden.wasm"]
    accepts = ["application/wasm"]
    returns = "application/vnd.oci.image.layer.v1.tar"
    path = "/bin/sh"
    args = ["-c", "cat > /dev/null; tar -cf - -T /dev/null"]
"""


def tar_of(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for path, data in files.items():
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size = len(data)
            info.mode = 0o644
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def image_tar(name, platform, config, layer_type, layer):
    """An OCI image layout as a tar, with one layer."""
    blobs = {}

    def blob(data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[f"blobs/sha256/{digest[7:]}"] = data
        return {"digest": digest, "size": len(data)}

    layer_d = blob(layer)
    config_d = blob(json.dumps(config).encode())
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_d},
                "layers": [{"mediaType": layer_type, **layer_d}]}
    manifest_d = blob(json.dumps(manifest).encode())
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest_d,
        "platform": {"architecture": platform[0], "os": platform[1]},
        "annotations": {"io.containerd.image.name": name}}]}
    return tar_of({"oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
                   "index.json": json.dumps(index).encode(), **blobs})


def with_tag(program, tag):
    """The program with a custom section naming `tag` (a new digest)."""
    name = b"warden-bench"
    payload = bytes([len(name)]) + name + tag.encode()
    return program + bytes([0, len(payload)]) + payload


class Containerd:
    def __init__(self, work):
        self.sock = os.path.join(work, "c.sock")
        config = os.path.join(work, "config.toml")
        with open(config, "w") as f:
            f.write(f'version = 2\nroot = "{work}/root"\nstate = "{work}/state"\n'
                    f'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "{self.sock}"\n'
                    f'[ttrpc]\n  address = "{self.sock}.ttrpc"\n{WASM_LAYERS}')
        self.proc = subprocess.Popen(["containerd", "--config", config],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            if self.ctr("version").returncode == 0:
                return
            time.sleep(0.1)
        raise SystemExit("containerd did not start")

    def ctr(self, *args, data=None):
        return subprocess.run(["ctr", "-a", self.sock, *args], input=data, capture_output=True, timeout=300)

    def load(self, tar):
        r = self.ctr("images", "import", "--all-platforms", "-", data=tar)
        if r.returncode != 0:
            raise SystemExit(r.stderr.decode())

    def start_time(self, image, cid, options):
        t0 = time.perf_counter()
        r = self.ctr("run", "--rm", "--runtime", SHIM, *options, image, cid, "/app.wasm")
        elapsed = time.perf_counter() - t0
        if r.returncode != 0:
            raise SystemExit(f"{image} exited {r.returncode}: {r.stderr.decode()}")
        return elapsed

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = glob.glob(os.path.join(ROOT, "target", "debug", "build", "warden-test-artifacts-*", "out",
                                     "guests", "wasm32-wasip2", "release", "p3_net.wasm"))
    ap.add_argument("--program", default=default[0] if default else None)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if not args.program:
        raise SystemExit("no program: run `cargo test` first, or give --program")
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "warden-shim"], cwd=ROOT, check=True)
    program = open(args.program, "rb").read()
    times = {("layer", "first"): [], ("layer", "later"): [], ("rootfs", "first"): [], ("rootfs", "later"): []}
    with tempfile.TemporaryDirectory(prefix="wbench") as work:
        ctd = Containerd(work)
        try:
            for round_ in range(args.rounds):
                tag = f"{os.getpid()}x{round_}"
                p = with_tag(program, tag)
                empty = tar_of({})
                layer_config = {"architecture": "wasm", "os": "wasip1", "config": {"Entrypoint": ["/app.wasm"]},
                                "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(empty).hexdigest()]}}
                layer_image = f"docker.io/library/wlayer{tag}:latest"
                ctd.load(image_tar(layer_image, ("wasm", "wasip1"), layer_config, "application/wasm", p))
                rootfs = tar_of({"/app.wasm": p})
                root_config = {"architecture": "amd64", "os": "linux", "config": {"Entrypoint": ["/app.wasm"]},
                               "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(rootfs).hexdigest()]}}
                root_image = f"docker.io/library/wroot{tag}:latest"
                ctd.load(image_tar(root_image, ("amd64", "linux"), root_config,
                                   "application/vnd.oci.image.layer.v1.tar", rootfs))
                for kind, image, options in (("layer", layer_image, ["--platform", "wasip1/wasm"]),
                                             ("rootfs", root_image, [])):
                    for run in range(1 + args.runs):
                        t = ctd.start_time(image, f"{kind}{tag}r{run}", options)
                        times[(kind, "first" if run == 0 else "later")].append(t)
        finally:
            ctd.stop()
    print(f"{os.path.basename(args.program)} ({len(program)} bytes), {args.rounds} rounds, "
          f"medians of `ctr run --rm` wall time")
    print(f"{'image':<28}{'first container':>18}{'later containers':>18}")
    for kind, label in (("layer", "wasm layer (compile cache)"), ("rootfs", "file in root file system")):
        first = statistics.median(times[(kind, "first")])
        later = statistics.median(times[(kind, "later")])
        print(f"{label:<28}{first * 1000:>15.0f} ms{later * 1000:>15.0f} ms")
    saved = statistics.median(times[("rootfs", "later")]) / statistics.median(times[("layer", "later")])
    print(f"later containers: rootfs / cached layer = {saved:.2f}x")


if __name__ == "__main__":
    main()
