"""Regenerate the policy bundles under tests/data with the current trainer.

    python3 tests/data/regenerate.py            # every fixture (about 6 minutes on 2 cores)
    python3 tests/data/regenerate.py hover_bundle avoid_bundle

Each fixture is trained by the real `edgectl train` command line below, so its manifest records that command
(versions.command) and the git commit of the code that trained it (versions.edgectl_git_commit; commit first,
or it says "-dirty"). The budgets are fixed and the seeds too; a fixture is test data, so its budget is chosen
for a policy good enough for the tests that fly it, not for the 20 s headline. After regenerating, run the
suite: tests that pin figures of a fixture (hold errors, survival) say which fixture they read.
"""
from __future__ import annotations

import shlex
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

# name -> edgectl arguments (after "edgectl"); --out and --overwrite are added.
FIXTURES: dict[str, list[str]] = {
    # The hover task, robust preset (position-error integral, 0-1 period actuation delay, the platform's ranges).
    "hover_bundle": ["train", "quadrotor", "--task", "hover", "--robust", "--seconds", "120", "--seed", "0"],
    # a trajectory bundle for the host loop's moving reference (tests/test_runtime_reference.py)
    "figure8_bundle": ["train", "quadrotor", "--task", "figure8", "--seconds", "120", "--seed", "0"],
    # Rate level (collective thrust + body rates through the Crazyflie firmware's rate loop): what a real PX4 /
    # ArduPilot accepts over MAVLink; hil_tests fly it against the simulated vehicle in both identities.
    "ctbr_hover_bundle": ["train", "quadrotor", "--task", "hover", "--action", "ctbr", "--seconds", "120", "--seed", "0"],
    # PX4 on board: hover on the X500 with the policy mc_nn_control runs (ReLU, no previous actions, no integral, no
    # weight on R[2, :]); `edgectl export --target px4` accepts it (tests/test_px4_train.py).
    "px4_hover_bundle": ["train", "quadrotor", "--platform", "px4_x500_v2", "--for", "px4", "--seconds", "120",
                         "--seed", "0"],
    # Vision-based avoidance (velocity setpoints: no motor convention involved).
    "avoid_bundle": ["train", "quadrotor", "--task", "avoid", "--seconds", "150", "--seed", "0"],
    # 1/10 RC car on the oval track.
    "race_bundle": ["train", "rc-car", "--track", "oval", "--seconds", "120", "--seed", "0"],
}


def main(argv: list[str]) -> int:
    names = argv or list(FIXTURES)
    unknown = [n for n in names if n not in FIXTURES]
    if unknown:
        print(f"regenerate.py: unknown fixture {unknown[0]!r}; known: {', '.join(FIXTURES)}", file=sys.stderr)
        return 2
    for name in names:
        cmd = [sys.executable, "-m", "edgectl", *FIXTURES[name], "--out", f"tests/data/{name}", "--overwrite"]
        print(f"{name}: edgectl {shlex.join(cmd[3:])}", flush=True)
        t = time.time()
        r = subprocess.run(cmd, cwd=ROOT)
        if r.returncode != 0:
            print(f"regenerate.py: {name}: edgectl exited {r.returncode}", file=sys.stderr)
            return 1
        print(f"{name}: done in {time.time() - t:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
