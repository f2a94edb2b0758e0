"""Tests for export.stm32: processor-in-the-loop on an emulated STM32F405 (QEMU netduinoplus2).

The stand-in policies here have the generated API (edgectl_policy.h / edgectl_policy_step) so
the harness is tested without export.c_codegen. Tests that need arm-none-eabi-gcc and
qemu-system-arm skip when those are missing, unless EDGECTL_REQUIRE_TOOLCHAIN=1 (CI), where
they fail instead.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgectl.platforms import load_platform
from export import stm32
from export.errors import ExportError, TargetUnavailable

REPO = Path(__file__).resolve().parent.parent
OBS, ACT, HIDDEN = 7, 4, 16  # HIDDEN even: the int8 layer packs activations in pairs for __smlad


@pytest.fixture
def toolchain():
    try:
        stm32.check_toolchain()
    except TargetUnavailable as e:
        if os.environ.get("EDGECTL_REQUIRE_TOOLCHAIN") == "1":
            pytest.fail(f"EDGECTL_REQUIRE_TOOLCHAIN=1 but {e}")
        pytest.skip(str(e))


def _host_gcc():
    if shutil.which("gcc") is None:
        if os.environ.get("EDGECTL_REQUIRE_TOOLCHAIN") == "1":
            pytest.fail("EDGECTL_REQUIRE_TOOLCHAIN=1 but host gcc (for the reference build) is not on PATH")
        pytest.skip("host gcc not on PATH: needed to build the reference policy")


def header(obs: int = OBS, act: int = ACT) -> str:
    return (f"#ifndef EDGECTL_POLICY_H\n#define EDGECTL_POLICY_H\n"
            f"#define EDGECTL_POLICY_OBS_SIZE {obs}\n#define EDGECTL_POLICY_ACTION_SIZE {act}\n"
            "void edgectl_policy_step(const float obs[EDGECTL_POLICY_OBS_SIZE], "
            "float action[EDGECTL_POLICY_ACTION_SIZE]);\n#endif\n")


def _floats(a) -> str:
    return ", ".join(f"{float(v).hex()}f" for v in np.asarray(a, np.float32).ravel())


def mlp_policy(seed: int = 0, table: int = 0, scratch: int = 0) -> dict[str, str]:
    """Float hidden layer (ReLU) and an int8 output layer that uses __smlad on the MCU.

    table: adds a const float table of that many entries (rodata); scratch: a zeroed float
    buffer of that many entries (bss). Both are read, so --gc-sections keeps them.
    """
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 0.5, (HIDDEN, OBS)).astype(np.float32)
    b1 = rng.normal(0, 0.1, HIDDEN).astype(np.float32)
    w2 = rng.integers(-127, 128, (ACT, HIDDEN))
    packed = [[(int(w2[i, 2 * k]) & 0xFFFF) | ((int(w2[i, 2 * k + 1]) & 0xFFFF) << 16) for k in range(HIDDEN // 2)]
              for i in range(ACT)]
    b2 = rng.normal(0, 0.1, ACT).astype(np.float32)
    w1_c = ",\n".join("{" + _floats(row) + "}" for row in w1)
    w2_c = ",\n".join("{" + ", ".join(f"0x{p:08x}u" for p in row) + "}" for row in packed)
    extra_decl, extra_use = "", ""
    if table:
        extra_decl += f"static const float TABLE[{table}] = {{{_floats(np.linspace(-1, 1, table))}}};\n"
        extra_use += f"    action[0] += TABLE[(unsigned)(h[0] * 8.0f) % {table}u];\n"
    if scratch:
        extra_decl += f"static float scratch[{scratch}];\n"
        extra_use += f"    scratch[(unsigned)(h[1] * 8.0f) % {scratch}u] += 1.0f;\n    action[1] += scratch[0];\n"
    c = f"""#include <stdint.h>
#include "edgectl_policy.h"
#if defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
#endif
#define HIDDEN {HIDDEN}
static const float W1[HIDDEN][EDGECTL_POLICY_OBS_SIZE] = {{{w1_c}}};
static const float B1[HIDDEN] = {{{_floats(b1)}}};
static const uint32_t W2[EDGECTL_POLICY_ACTION_SIZE][HIDDEN / 2] = {{{w2_c}}};
static const float B2[EDGECTL_POLICY_ACTION_SIZE] = {{{_floats(b2)}}};
{extra_decl}
static int32_t dot_pairs(const uint32_t *w, const uint32_t *x, int n)
{{
    int32_t acc = 0;
    int k;
    for (k = 0; k < n; ++k) {{
#if defined(__ARM_FEATURE_DSP)
        acc = __smlad((int32_t)w[k], (int32_t)x[k], acc);
#else
        acc += (int32_t)(int16_t)(w[k] & 0xFFFFu) * (int16_t)(x[k] & 0xFFFFu)
             + (int32_t)(int16_t)(w[k] >> 16) * (int16_t)(x[k] >> 16);
#endif
    }}
    return acc;
}}

void edgectl_policy_step(const float obs[EDGECTL_POLICY_OBS_SIZE], float action[EDGECTL_POLICY_ACTION_SIZE])
{{
    float h[HIDDEN];
    uint32_t q[HIDDEN / 2];
    int i, j;
    for (i = 0; i < HIDDEN; ++i) {{
        float s = B1[i];
        for (j = 0; j < EDGECTL_POLICY_OBS_SIZE; ++j) {{
            s += W1[i][j] * obs[j];
        }}
        h[i] = s > 0.0f ? s : 0.0f;
    }}
    for (i = 0; i < HIDDEN; i += 2) {{
        float a = h[i] * 128.0f, b = h[i + 1] * 128.0f;
        int16_t qa = (int16_t)(a > 32767.0f ? 32767.0f : a);
        int16_t qb = (int16_t)(b > 32767.0f ? 32767.0f : b);
        q[i / 2] = (uint32_t)(uint16_t)qa | ((uint32_t)(uint16_t)qb << 16);
    }}
    for (i = 0; i < EDGECTL_POLICY_ACTION_SIZE; ++i) {{
        float y = (float)dot_pairs(W2[i], q, HIDDEN / 2) * (1.0f / 16384.0f) + B2[i];
        action[i] = y > 1.0f ? 1.0f : (y < -1.0f ? -1.0f : y);
    }}
{extra_use}}}
"""
    return {"edgectl_policy.h": header(), "edgectl_policy.c": c}


def loop_policy(k: int) -> dict[str, str]:
    """A step written in asm: k iterations of a 7-instruction loop with an IT block, then a store.

    Executed instructions: 2 (setup) + 7 k (loop, both IT-conditional instructions counted,
    as the core issues them whether or not the condition holds) + 4 (convert, store, return).
    """
    asm = "\\n\"\n    \"".join([
        ".syntax unified", ".thumb", ".section .text.edgectl_policy_step,\\\"ax\\\",%progbits",
        ".global edgectl_policy_step", ".type edgectl_policy_step, %function", ".thumb_func",
        "edgectl_policy_step:",
        f"movw r2, #{k}", "movs r3, #0",
        "1: subs r2, r2, #1", "cmp r2, #50", "ite lo", "addlo r3, r3, #1", "subhs r3, r3, #2", "cmp r2, #0", "bne 1b",
        "vmov s0, r3", "vcvt.f32.s32 s0, s0", "vstr s0, [r1]", "bx lr",
        ".size edgectl_policy_step, .-edgectl_policy_step", ".text"])
    return {"edgectl_policy.h": header(3, 1), "edgectl_policy.c": f'#include "edgectl_policy.h"\n__asm__(\n    "{asm}\\n");\n'}


def host_policy(files: dict[str, str], tmp: Path):
    """Build the same sources for the host (gcc, no FMA contraction) and return step(obs) -> action."""
    for name, text in files.items():
        (tmp / name).write_text(text)
    lib = tmp / "libpolicy.so"
    cmd = ["gcc", "-std=c99", "-ffp-contract=off", "-O2", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror",
           *[str(tmp / n) for n in files if n.endswith(".c")], "-o", str(lib)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    step = ctypes.CDLL(str(lib)).edgectl_policy_step
    step.argtypes = [ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_float)]

    def run(obs: np.ndarray) -> np.ndarray:
        out = np.zeros((len(obs), ACT), np.float32)
        for i, row in enumerate(np.ascontiguousarray(obs, np.float32)):
            step(row.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), out[i].ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
        return out
    return run


def test_mlp_actions_match_host_bit_exactly(toolchain, tmp_path):
    _host_gcc()
    files = mlp_policy()
    obs = np.random.default_rng(1).normal(0, 1.5, (32, OBS)).astype(np.float32)
    obs[0] = 0.0
    obs[1, 0] = -0.0
    r = stm32.run_pil(files, obs, tmp_path / "pil", mark_index=3)
    (tmp_path / "host").mkdir()
    want = host_policy(files, tmp_path / "host")(obs)
    assert r.actions.dtype == np.float32 and r.actions.shape == (32, ACT)
    np.testing.assert_array_equal(r.actions.view(np.uint32), want.view(np.uint32))
    assert len(np.unique(r.actions[:, 0])) > 8, "stand-in policy should not be saturated"
    assert r.instructions_per_inference > 16 * OBS * 2  # at least a multiply and an add per weight
    assert r.elf.exists() and r.qemu_seconds > 0 and r.mark_index == 3


@pytest.mark.parametrize("k", [57, 1000])
def test_instruction_count_is_exact_on_a_calibrated_loop(toolchain, tmp_path, k):
    files = loop_policy(k)
    obs = np.zeros((3, 3), np.float32)
    first = stm32.run_pil(files, obs, tmp_path / "a", mark_index=2)
    below = min(k, 50)  # iterations that take the `addlo` branch of the IT block
    assert first.actions[:, 0].tolist() == [float(below - 2 * (k - below))] * 3
    assert first.instructions_per_inference == 2 + 7 * k + 4
    again = stm32.run_pil(files, obs[:1], tmp_path / "b", mark_index=0)
    assert again.instructions_per_inference == first.instructions_per_inference


def test_mlp_count_is_repeatable(toolchain, tmp_path):
    files = mlp_policy()
    obs = np.random.default_rng(2).normal(0, 1, (4, OBS)).astype(np.float32)
    a = stm32.run_pil(files, obs, tmp_path / "a", mark_index=1)
    b = stm32.run_pil(files, obs, tmp_path / "b", mark_index=1)
    assert a.instructions_per_inference == b.instructions_per_inference
    off = stm32.run_pil(files, obs, tmp_path / "c", count_instructions=False)
    assert off.instructions_per_inference is None
    np.testing.assert_array_equal(off.actions.view(np.uint32), a.actions.view(np.uint32))


def test_footprint_positive_and_grows_with_data(toolchain, tmp_path):
    obs = np.zeros((2, OBS), np.float32)
    base = stm32.run_pil(mlp_policy(), obs, tmp_path / "base", count_instructions=False)
    fp = base.footprint
    assert base.flash_bytes == fp.text + fp.rodata + fp.data > 0
    assert fp.rodata >= 4 * (HIDDEN * OBS + HIDDEN + ACT) + 4 * HIDDEN * ACT // 2
    assert fp.stack_static > 0 and fp.stack_measured > 0
    assert fp.stack_measured <= fp.stack_static  # no library calls: the static bound covers the run
    assert base.ram_bytes == fp.data + fp.bss + fp.stack > 0
    assert fp.library_members == ()  # the harness pulls in no library code; this policy neither
    table = stm32.run_pil(mlp_policy(table=512), obs, tmp_path / "table", count_instructions=False)
    assert table.flash_bytes >= base.flash_bytes + 512 * 4
    assert table.ram_bytes == base.ram_bytes
    scratch = stm32.run_pil(mlp_policy(scratch=300), obs, tmp_path / "scratch", count_instructions=False)
    assert scratch.ram_bytes >= base.ram_bytes + 300 * 4
    assert scratch.footprint.bss >= 300 * 4


def test_compile_error_names_file_and_compiler(toolchain, tmp_path):
    files = mlp_policy()
    files["edgectl_policy.c"] = files["edgectl_policy.c"].replace("int i, j;", "int i, j, unused;")
    with pytest.raises(ExportError, match=r"arm-none-eabi-gcc failed on edgectl_policy\.c(?s:.*)unused"):
        stm32.run_pil(files, np.zeros((1, OBS), np.float32), tmp_path)


def test_fault_and_timeout_give_export_errors(toolchain, tmp_path):
    trap = {"edgectl_policy.h": header(3, 1),
            "edgectl_policy.c": '#include "edgectl_policy.h"\nvoid edgectl_policy_step(const float obs[3], float action[1])\n'
                                "{\n    if (obs[0] > 0.5f) {\n        __builtin_trap();\n    }\n    action[0] = obs[0];\n}\n"}
    obs = np.array([[0, 0, 0], [1, 0, 0]], np.float32)
    with pytest.raises(ExportError, match=r"status 3 \(the MCU took a fault(?s:.*)PIL FAULT"):
        stm32.run_pil(trap, obs, tmp_path / "trap", count_instructions=False)
    spin = dict(trap, **{"edgectl_policy.c": trap["edgectl_policy.c"].replace("__builtin_trap();", "for (;;) {\n        }")})
    with pytest.raises(ExportError, match=r"did not exit within 1 s(?s:.*)A 00000000"):
        stm32.run_pil(spin, obs, tmp_path / "spin", count_instructions=False, timeout=1)


def test_int_step_status_and_nan_pass_through(toolchain, tmp_path):
    files = {"edgectl_policy.h": header(3, 2).replace("void edgectl_policy_step", "int edgectl_policy_step"),
             "edgectl_policy.c": '#include "edgectl_policy.h"\n'
                                 "int edgectl_policy_step(const float obs[3], float action[2])\n{\n"
                                 "    action[0] = obs[1];\n    action[1] = obs[2];\n    return obs[0] != obs[0];\n}\n"}
    obs = np.array([[0, np.nan, -0.0], [np.nan, np.inf, 1e-45]], np.float32)
    r = stm32.run_pil(files, obs, tmp_path, mark_index=1)
    assert r.status.tolist() == [0, 1]
    np.testing.assert_array_equal(r.actions.view(np.uint32), obs[:, 1:].view(np.uint32))


def test_bad_inputs_are_refused(toolchain, tmp_path):
    with pytest.raises(ExportError, match=r"expected \(N >= 1, 7\)"):
        stm32.run_pil(mlp_policy(), np.zeros((2, 6), np.float32), tmp_path)
    with pytest.raises(ExportError, match="no edgectl_policy.h"):
        stm32.run_pil({"p.c": ""}, np.zeros((1, 7), np.float32), tmp_path)
    with pytest.raises(ExportError, match="clashes with a PIL harness file"):
        stm32.run_pil(dict(mlp_policy(), **{"pil_main.c": ""}), np.zeros((1, 7), np.float32), tmp_path)


def test_mcu_budget():
    cf = load_platform(REPO / "hardware" / "crazyflie_2_1.toml")
    stm32.check_mcu_budget(131072, 16384, cf)  # exactly at budget is fine
    with pytest.raises(ExportError, match=r"crazyflie_2_1\.toml.*policy flash 200000 B exceeds mcu\.policy_flash_budget = 131072 B"):
        stm32.check_mcu_budget(200000, 100, cf)
    with pytest.raises(ExportError, match=r"policy RAM 16385 B exceeds mcu\.policy_ram_budget = 16384 B \(by 1 B\)"):
        stm32.check_mcu_budget(100, 16385, cf)


def test_missing_toolchain_names_tools_and_apt(monkeypatch, tmp_path):
    compilers = {t: shutil.which(t) for t in ("arm-none-eabi-gcc", "arm-none-eabi-nm")}
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TargetUnavailable) as e:
        stm32.check_toolchain()
    msg = str(e.value)
    for tool in ("arm-none-eabi-gcc", "arm-none-eabi-nm", "qemu-system-arm", stm32.APT_INSTALL):
        assert tool in msg
    with pytest.raises(TargetUnavailable):
        stm32.run_pil(mlp_policy(), np.zeros((1, OBS), np.float32), tmp_path / "w")
    if all(compilers.values()):  # the compiler present, QEMU not: only QEMU is named
        (tmp_path / "bin").mkdir()
        for tool, found in compilers.items():
            (tmp_path / "bin" / tool).symlink_to(found)
        monkeypatch.setenv("PATH", str(tmp_path / "bin"))
        with pytest.raises(TargetUnavailable, match="missing qemu-system-arm") as e:
            stm32.check_toolchain()
        assert "arm-none-eabi-gcc (not on PATH)" not in str(e.value)


def test_count_trace_drops_blocks_qemu_left_unexecuted():
    log = "\n".join([
        "Trace 0: 0x7f00 [00800408/08000010/00000110/ff000201] caller",
        "Trace 0: 0x7f01 [00800408/08000060/00000110/ff000201] pil_mark_begin",
        "Trace 0: 0x7f02 [00800408/08000014/00000110/ff000201] caller",  # bl step: excluded
        "Trace 0: 0x7f03 [00800408/08000100/00000110/ff000201] step",
        "Trace 0: 0x7f04 [00800408/08000102/00000110/ff000201] step",
        "Stopped execution of TB chain before 0x7f04 [08000102] step",
        "Trace 0: 0x7f04 [00800408/08000102/00000110/ff000201] step",
        "Trace 0: 0x7f05 [00800408/08000104/00000110/ff000201] step",
        "Trace 0: 0x7f06 [00800408/08000018/00000110/ff000201] caller",
        "Trace 0: 0x7f07 [00800408/08000064/00000110/ff000201] pil_mark_end",
    ])
    assert stm32.count_trace(log, begin=0x08000060, end=0x08000064, caller=(0x08000000, 0x40)) == 3
    with pytest.raises(ExportError, match="executed 2 times"):
        stm32.count_trace(log + "\n" + log, begin=0x08000060, end=0x08000064, caller=(0x08000000, 0x40))
