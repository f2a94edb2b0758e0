"""Run an `edgectl export --target px4` model in TensorFlow Lite Micro on this machine, the way PX4's mc_nn_control
sets it up, and compare it with LiteRT (the export's own parity check) on the same 15-value inputs.

What the harness does is what mc_nn_control.cpp does with the model (InitializeNetwork, Run; PX4-Autopilot, commits in
export/px4.py SOURCES), written here from those facts: tflite::GetModel(control_net_tflite), a
MicroMutableOpResolver<3> with AddFullyConnected, AddRelu and AddAdd, a 10 * 1024 byte arena, AllocateTensors,
input(0)->data.f[0..14], Invoke, output(0)->data.f[0..3]. It prints the arena TFLM actually used. The harness
and control_net.cpp are compiled with PX4's own flags (export/px4.py PX4_CXXFLAGS, -Werror) plus the
-Wno-float-equal -Wno-shadow that PX4's tflm library passes on.

It needs the sources PX4 builds TFLM from (not on PyPI): a tensorflow/tflite-micro checkout, flatbuffers at the tag
that checkout's tensorflow/lite/micro/tools/make/flatbuffers_download.sh names (v25.9.23 for a 2026 checkout),
gemmlowp (fixedpoint/) and ruy (ruy/profiler/). Only the interpreter, its allocators and the three kernels are
compiled (about 45 files; ~15 min on two busy cores, objects reused by --build-dir).

    python3 bench/px4_tflm.py EXPORT_DIR --tflm TFLM --flatbuffers FB/include --gemmlowp GEMMLOWP --ruy RUY \
        [--build-dir /tmp/px4tflm-build] [--samples 2000]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent

_HARNESS = r"""// edgectl bench: the model set up as mc_nn_control's InitializeNetwork does, run on rows of 15 floats (stdin)
#include <cstdio>
#include "control_net.hpp"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {
constexpr int kArena = 10 * 1024;
alignas(16) uint8_t arena[kArena];
}

int main() {
	const tflite::Model *model = tflite::GetModel(control_net_tflite);
	static tflite::MicroMutableOpResolver<3> resolver;
	if (resolver.AddFullyConnected() != kTfLiteOk || resolver.AddRelu() != kTfLiteOk || resolver.AddAdd() != kTfLiteOk) {
		std::printf("error: ops\n");
		return 1;
	}
	static tflite::MicroInterpreter interpreter(model, resolver, arena, kArena);
	if (interpreter.AllocateTensors() != kTfLiteOk) {
		std::printf("error: AllocateTensors\n");
		return 1;
	}
	TfLiteTensor *in = interpreter.input(0);
	std::printf("arena_used_bytes %u input_bytes %u\n", static_cast<unsigned>(interpreter.arena_used_bytes()),
		    static_cast<unsigned>(in->bytes));
	float x[15];
	while (true) {
		for (int i = 0; i < 15; i++) {
			if (std::scanf("%f", &x[i]) != 1) { return 0; }
			in->data.f[i] = x[i];
		}
		if (interpreter.Invoke() != kTfLiteOk) {
			std::printf("error: Invoke\n");
			return 1;
		}
		const TfLiteTensor *out = interpreter.output(0);
		std::printf("%.9g %.9g %.9g %.9g\n", static_cast<double>(out->data.f[0]), static_cast<double>(out->data.f[1]),
			    static_cast<double>(out->data.f[2]), static_cast<double>(out->data.f[3]));
	}
}
"""


def _sources(tflm: Path) -> list[Path]:
    t = tflm / "tensorflow" / "lite"
    skip = ("_test", "test_helper", "mock_micro_graph", "fake_micro_context")
    srcs = [p for p in sorted((t / "micro").glob("*.cc")) if not any(s in p.name for s in skip)]
    srcs += [t / "micro" / "kernels" / f"{n}.cc" for n in ("fully_connected", "fully_connected_common", "add", "add_common",
                                                            "activations", "activations_common", "kernel_util")]
    for d in ("micro/memory_planner", "micro/arena_allocator", "micro/tflite_bridge", "core/api", "kernels/internal"):
        srcs += [p for p in sorted((t / d).glob("*.cc")) if "_test" not in p.name]
    m = tflm / "tensorflow" / "compiler" / "mlir" / "lite"  # ErrorReporter, GetBuiltinCode live here since 2024
    return srcs + [t / "core" / "c" / "common.cc", t / "kernels" / "kernel_util.cc",
                   m / "core" / "api" / "error_reporter.cc", m / "schema" / "schema_utils.cc"]


def build(args) -> Path:
    b = Path(args.build_dir)
    b.mkdir(parents=True, exist_ok=True)
    inc = [f"-I{args.tflm}", f"-I{args.flatbuffers}", f"-I{args.gemmlowp}", f"-I{args.ruy}"]
    flags = ["-std=c++17", "-O1", "-DTF_LITE_STATIC_MEMORY", "-fno-exceptions", "-fno-rtti", "-w", *inc]
    objs = []
    for s in _sources(Path(args.tflm)):
        o = b / "obj" / s.relative_to(args.tflm).with_suffix(".o")
        objs.append(o)
    mk = ["CXXFLAGS := " + " ".join(flags), "all: libtflm.a", "libtflm.a: " + " ".join(map(str, objs)), "\tar rcs $@ $^"]
    for s, o in zip(_sources(Path(args.tflm)), objs):
        mk += [f"{o}: {s}", "\t@mkdir -p $(dir $@)", "\tg++ $(CXXFLAGS) -c $< -o $@"]
    (b / "Makefile").write_text("\n".join(mk) + "\n")
    subprocess.run(["make", "-s", "-C", str(b), f"-j{args.jobs}"], check=True)
    exe = b / "harness"
    (b / "harness.cc").write_text(_HARNESS)
    from export.px4 import PX4_CXXFLAGS, TFLM_PUBLIC_FLAGS  # the harness and the model under PX4's own flags
    subprocess.run(["g++", *PX4_CXXFLAGS, *TFLM_PUBLIC_FLAGS, "-O1", "-DTF_LITE_STATIC_MEMORY", *inc, f"-I{args.export}",
                    str(b / "harness.cc"),
                    str(Path(args.export) / "control_net.cpp"), str(b / "libtflm.a"), "-o", str(exe)], check=True)
    return exe


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("export")
    for k in ("tflm", "flatbuffers", "gemmlowp", "ruy"):
        ap.add_argument(f"--{k}", required=True)
    ap.add_argument("--build-dir", default="/tmp/px4tflm-build")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--samples", type=int, default=2000)
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    from edgectl.bundle import load_bundle
    from export import px4
    from export.calibration import rollout_observations

    exe = build(args)
    report = json.loads((Path(args.export) / "report.json").read_text())
    b = load_bundle(report["bundle"])
    x = px4.module_inputs(b.contract, rollout_observations(b, args.samples, seed=11, source="random-states"))
    r = subprocess.run([str(exe)], input="\n".join(" ".join(f"{v:.9g}" for v in row) for row in x) + "\n",
                       capture_output=True, text=True, check=True)
    lines = r.stdout.strip().splitlines()
    head = dict(zip(lines[0].split()[::2], map(int, lines[0].split()[1::2])))
    tflm = np.array([[float(v) for v in line.split()] for line in lines[1:]], np.float32)
    data = (Path(args.export) / "policy.tflite").read_bytes()
    litert = px4.run_tflite_bytes(data, x)
    want = (np.clip(b.act(rollout_observations(b, args.samples, seed=11, source="random-states")), -1, 1) + 1) / 2
    out = {"samples": len(tflm), **head, "arena_bytes_module": px4.TENSOR_ARENA_BYTES,
           "tflm_vs_litert_max_abs": float(np.max(np.abs(tflm - litert))),
           "tflm_motor_command_vs_bundle_max_abs": float(np.max(np.abs(px4.module_command(tflm) - want)))}
    print(json.dumps(out))
    return 0 if len(tflm) == len(x) else 1


if __name__ == "__main__":
    sys.exit(main())
