#!/usr/bin/env bash
# The flood benchmark of the README: `kiln up` with a service that prints as fast as it can
# (`yes`, 100-byte lines) for SECONDS, with kiln's own output going to a terminal (`script`),
# /dev/null, a pipe nobody reads, and /dev/null plus an event-stream client that never
# reads. For each: kiln's peak RSS (VmHWM), how much of the flood it read (MB/s), and how
# long Ctrl-C then took to end it (stop_timeout is 2 s). With --baseline PATH, another kiln
# binary runs the same scenarios in the same run.
#
#   bash bench/flood.sh [--seconds N] [--baseline PATH]
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=30
baseline=""
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --baseline) baseline="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

bash scripts/install-deps.sh
cargo build --release --quiet -p kiln
kilns=("$(pwd)/target/release/kiln")
[ -n "$baseline" ] && kilns+=("$(realpath "$baseline")")

python3 - "$seconds" "${kilns[@]}" <<'EOF'
import json, os, signal, socket, subprocess, sys, tempfile, time

seconds = float(sys.argv[1])
kilns = sys.argv[2:]
CONFIG = '''
[service.flood]
cmd = "yes 'a flood of output, as fast as the pipe takes it ......................................'"
stop_timeout = "2s"
'''

def field(pid, file, name):
    try:
        for line in open(f"/proc/{pid}/{file}"):
            if line.startswith(name):
                return int(line.split(":")[1].split()[0])
    except OSError:
        pass
    return 0

def run(kiln, mode):
    root = tempfile.mkdtemp(prefix="kiln-flood-")
    open(os.path.join(root, "kiln.toml"), "w").write(CONFIG)
    env = dict(os.environ, NO_COLOR="1")
    env.pop("CI", None)
    if mode == "terminal":
        env["TERM"] = "xterm"
        proc = subprocess.Popen(["script", "-qfec", f"exec {kiln} up", "/dev/null"], cwd=root, env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elif mode == "unread pipe":
        proc = subprocess.Popen([kiln, "up"], cwd=root, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    else:
        proc = subprocess.Popen([kiln, "up"], cwd=root, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    api = os.path.join(root, ".kiln", "api.json")
    for _ in range(3000):
        if os.path.exists(api):
            break
        time.sleep(0.01)
    info = json.load(open(api))
    pid = info["pid"]
    client = None
    if mode == "unread SSE client":
        host, port = info["address"].rsplit(":", 1)
        client = socket.create_connection((host, int(port)))
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.sendall(f"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {info['token']}\r\n\r\n".encode())
    start_read = field(pid, "io", "rchar")
    t0 = time.time()
    time.sleep(seconds)
    read = field(pid, "io", "rchar") - start_read
    elapsed = time.time() - t0
    peak = field(pid, "status", "VmHWM")
    asked = time.time()
    os.kill(pid, signal.SIGINT)
    while os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/stat").read().split(") ")[1][0] != "Z":
        if time.time() - asked > 120:
            os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    stop = time.time() - asked
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
    if client:
        client.close()
    return peak / 1024, read / elapsed / 1e6, stop

print(f"flood for {seconds:.0f} s per scenario; peak RSS / flood read / Ctrl-C to exit (stop_timeout 2 s)")
print(f"{'kiln':<40} {'output to':<22} {'peak RSS':>10} {'read':>12} {'Ctrl-C':>8}")
for kiln in kilns:
    for mode in ["terminal", "/dev/null", "unread pipe", "unread SSE client"]:
        peak, rate, stop = run(kiln, mode)
        print(f"{kiln[-40:]:<40} {mode:<22} {peak:>7.1f} MB {rate:>7.1f} MB/s {stop:>7.2f}s", flush=True)
EOF
