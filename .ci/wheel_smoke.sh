#!/usr/bin/env bash
# Wheel smoke: build edgectl's wheel, install it into fresh virtual environments outside the repository, and run the
# commands a user runs, from a directory outside the repository, so nothing can come from the source tree:
#   full venv (.[train,export,fly]):  train 5 s, export onnx and c, run --uri sim://, sim-vehicle crazyflie + a stock
#                                     cflib connect;
#   flight venv (.[fly] only, no JAX): run tests/data/hover_bundle --uri sim://, and every ground- and robot-floor
#                                     module imports (tests/test_layers.py's check) with jax, train_fast and export
#                                     blocked; again on Python 3.10 (JetPack 6, ROS 2 Humble) when python3.10, or
#                                     $PYTHON310, runs here, unless EDGECTL_SMOKE_PY310=0.
# Called by .ci/run; runs alone too: .ci/wheel_smoke.sh (PYTHON=python3.11 to pick the interpreter). Needs network
# access to the package index (or a pip cache that has the wheels) and gcc (export --target c checks the C).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}
t0=$SECONDS
WORK=$(mktemp -d "${TMPDIR:-/tmp}/edgectl-wheel-smoke.XXXXXX")
SIM_PID=""
cleanup() {
  if [ -n "$SIM_PID" ]; then kill "$SIM_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
step() { echo "wheel smoke [$((SECONDS - t0)) s]: $*"; }
# --no-compile: pip byte-compiles every installed module (JAX, SciPy, matplotlib...) up front; Python compiles the
# few the smoke imports when it imports them
pipq() { "$1/bin/python" -m pip install --quiet --disable-pip-version-check --no-compile "${@:2}"; }

# 1. The wheel, built from a copy of the tree (tracked and unignored files, links kept), so a stale build/ in the
#    checkout cannot leak into it.
step "building the wheel"
mkdir "$WORK/src" "$WORK/dist" "$WORK/run"
if git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1; then
  (cd "$REPO" && git ls-files -z --cached --others --exclude-standard | tar --null -T - --ignore-failed-read -cf -) |
    tar -xf - -C "$WORK/src"
else
  cp -a "$REPO/." "$WORK/src/"
fi
"$PY" -m pip wheel --quiet --disable-pip-version-check --no-deps -w "$WORK/dist" "$WORK/src"
WHEEL=$(ls "$WORK"/dist/edgectl-*.whl)
# Package data: the platform files and tracks (found through the package), the type marker.
"$PY" - "$WHEEL" <<'EOF'
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
need = ["edgectl/py.typed", "edgectl/hardware/crazyflie_2_1.toml", "edgectl/hardware/rc_car_1_10.toml",
        "edgectl/hardware/tracks/oval.csv", "firmware_bridge/sim/crazyflie/host_firmware/edgectl_host.c",
        "firmware_bridge/rccar/firmware/car_link.c", "export/crazyflie/edgectl_controller.c.in",
        "export/templates/edgectl_policy_float.c.in", "export/templates/edgectl_policy_int8.c.in",
        "export/templates/edgectl_policy.h.in", "edgectl/safety/templates/edgectl_backup.c.in",
        "edgectl/safety/templates/edgectl_signals.c.in"]
missing = [n for n in need if n not in names]
assert not missing, f"the wheel lacks {missing}"
print(f"  {sys.argv[1].rsplit('/', 1)[-1]}: {len(names)} files")
EOF

cd "$WORK/run"  # outside the repository from here on
# 2. Full install: train, export, fly, a simulated vehicle.
step "installing the wheel with [train,export,fly] into a fresh venv"
"$PY" -m venv "$WORK/full"
pipq "$WORK/full" "$WHEEL[train,export,fly]"
E="$WORK/full/bin/edgectl"
"$E" --version
step "edgectl train quadrotor --seconds 5"
"$E" train quadrotor --seconds 5 --out "$WORK/run/bundle"
# --samples 100: the parity checks draw observations from episodes the policy survives, and a 5 s policy
# crashes within about half a second (827 in-flight observations from 16 episodes, measured).
step "edgectl export --target onnx"
"$E" export "$WORK/run/bundle" --target onnx --out "$WORK/run/onnx" --samples 100
step "edgectl export --target c"
"$E" export "$WORK/run/bundle" --target c --out "$WORK/run/c" --samples 100
check_run() {  # the run summary: the last stdout line, one JSON object
  "$1" - "$2" <<'EOF'
import json, sys
s = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
assert s["ticks"] == 300 and s["nominal_fraction"] > 0, s
print(f"  {s['ticks']} ticks, backend {s['backend']}, nominal {100 * s['nominal_fraction']:.0f} %, final {s['final_mode']}")
EOF
}
step "edgectl run --uri sim:// (the trained bundle, then its C export)"
"$E" run "$WORK/run/bundle" --uri sim:// --seconds 3 --json --log "$WORK/run/flight.csv" > "$WORK/run.out"
check_run "$WORK/full/bin/python" "$WORK/run.out"
"$E" run "$WORK/run/bundle" --uri sim:// --seconds 3 --json --policy "$WORK/run/c" --log "$WORK/run/c.csv" > "$WORK/run.out"
check_run "$WORK/full/bin/python" "$WORK/run.out"
step "edgectl sim-vehicle crazyflie + a stock cflib connect"
PORT=$("$PY" -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$E" sim-vehicle crazyflie --uri "udp://127.0.0.1:$PORT" > "$WORK/sim.log" 2>&1 &
SIM_PID=$!
for _ in $(seq 120); do grep -q "serving CRTP" "$WORK/sim.log" && break; kill -0 "$SIM_PID" || break; sleep 0.5; done
grep -q "serving CRTP" "$WORK/sim.log" || { cat "$WORK/sim.log"; echo "sim-vehicle did not start" >&2; exit 1; }
# cflib over UDP has no connect timeout: the outer timeout is the test's.
timeout 60 "$WORK/full/bin/python" - "udp://127.0.0.1:$PORT" <<'EOF'
import sys
import cflib.crtp
from cflib.crazyflie import Crazyflie
from cflib.crazyflie.syncCrazyflie import SyncCrazyflie
cflib.crtp.init_drivers()
with SyncCrazyflie(sys.argv[1], cf=Crazyflie(rw_cache=None)) as scf:
    scf.wait_for_params()
    toc = scf.cf.log.toc
    assert toc.get_element_by_complete_name("stateEstimate.z") is not None
    print(f"  stock cflib connected to {sys.argv[1]}: protocol {scf.cf.platform.get_protocol_version()}, "
          f"stabilizer.controller = {scf.cf.param.get_value('stabilizer.controller')}")
EOF
kill "$SIM_PID"; wait "$SIM_PID" 2>/dev/null || true; SIM_PID=""

# 3. A flight computer: [fly] only, no JAX.
fly_smoke() {  # $1: interpreter, $2: venv folder
  "$1" -m venv "$2"
  pipq "$2" "$WHEEL[fly]"
  if "$2/bin/python" -c "import jax" 2>/dev/null; then echo "[fly] pulled in JAX" >&2; exit 1; fi
  "$2/bin/python" -c "import sys; sys.path.insert(0, '$REPO/tests'); import test_layers as t; \
t.test_robot_side_imports_without_jax_train_fast_or_export(); print(f'  {len(t.MODULES)} modules scanned in {t.ROOT}')"
  "$2/bin/edgectl" run "$REPO/tests/data/hover_bundle" --uri sim:// --seconds 3 --json --log "$WORK/run/fly.mcap" > "$WORK/run.out"  # MCAP: the [fly] extra brings mcap
  check_run "$2/bin/python" "$WORK/run.out"
}
step "installing the wheel with [fly] only into a fresh venv; edgectl run tests/data/hover_bundle --uri sim://"
fly_smoke "$PY" "$WORK/fly"
PY310=${PYTHON310:-python3.10}
if [ "${EDGECTL_SMOKE_PY310:-1}" != 0 ] && "$PY310" -c 'import venv, ensurepip' 2>/dev/null; then
  step "the same on $("$PY310" --version)"
  fly_smoke "$PY310" "$WORK/fly310"
else
  step "no $PY310 here (PYTHON310=/path/to/python3.10 names one; EDGECTL_SMOKE_PY310=0 skips): 3.10 not smoked"
fi
step "passed"
