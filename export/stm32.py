"""Processor-in-the-loop (PIL) on the Crazyflie's MCU: STM32F405 (Cortex-M4F) under QEMU.

run_pil cross-compiles a generated C policy (edgectl_policy.h/.c) together with our bare-metal
harness (export/stm32/: startup, semihosting, linker script, pil_main.c), runs it on
`qemu-system-arm -M netduinoplus2`, and returns the actions the MCU code computed (bit-exact:
the firmware prints each float's bit pattern), the exact number of instructions one inference
executes, and the policy's flash and RAM use.

Instruction counting: QEMU has no cycle model, but with one instruction per translation block
(-singlestep) and `-d exec,nochain` it logs every executed instruction's PC, conditional and
IT-block instructions included. A second ELF, identical except that it holds only the timed
observation, is run that way; the count is the number of instructions executed from the first
instruction of edgectl_policy_step through its return (callees included, the caller's `bl`
excluded), found between the pil_mark_begin / pil_mark_end calls that bracket it.

Needs Debian's gcc-arm-none-eabi, libnewlib-arm-none-eabi and qemu-system-arm (check_toolchain).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ExportError, TargetUnavailable

HARNESS_DIR = Path(__file__).resolve().parent / "stm32"
HARNESS_SOURCES = ("startup.c", "semihost.c", "pil_main.c")
HARNESS_FILES = HARNESS_SOURCES + ("semihost.h", "linker.ld")
POLICY_HEADER = "edgectl_policy.h"
APT_INSTALL = "apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"

GCC, NM, QEMU = "arm-none-eabi-gcc", "arm-none-eabi-nm", "qemu-system-arm"
MACHINE = "netduinoplus2"  # QEMU's STM32F405 board: the Crazyflie 2.1's MCU
CFLAGS = ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-std=c99",
          "-ffp-contract=off", "-ffunction-sections", "-fdata-sections", "-Wall", "-Wextra", "-Werror")
LDFLAGS = ("--specs=nano.specs", "-nostartfiles", "-Wl,--gc-sections")
# The harness is always -O2: its code outside the markers does not count, and at -O0 the
# marker functions would push a frame that the stack measurement would charge to the policy.
HARNESS_OPT = "-O2"

_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*\.[ch]")
_RESERVED = set(HARNESS_FILES) | {"pil_data.c", "pil_data_count.c"}
_EXIT_CODES = {2: "pil_data.c does not match the policy header", 3: "the MCU took a fault (HardFault/BusFault/UsageFault)"}
# Observations live in flash beside the code; leave most of the 1 MB to the policy.
_MAX_OBS_BYTES = 512 * 1024
_TAIL = 3000


def _tail(text: str) -> str:
    """The end of a tool's output, each line cut short: GCC quotes whole source lines, and a
    line of generated weights would otherwise push the diagnostics out of the message."""
    lines = [ln if len(ln) <= 240 else ln[:240] + " [...]" for ln in text.splitlines()]
    return "\n".join(lines)[-_TAIL:]


@dataclass(frozen=True)
class Footprint:
    """What the policy's own code and data take on the MCU (from the linker map and GCC's stack data).

    Counted: every input section, kept after --gc-sections, from the policy's object files and
    from the library members (libc/libm/libgcc) they pull in -- the harness uses no library
    code, so all library code in the image is the policy's. Not counted: the harness (vector
    table, startup, semihosting, pil_main, the observation data) and alignment padding.
    """
    text: int  # machine code
    rodata: int  # constants (weights, tables, string literals)
    data: int  # initialized variables: their image in flash and their copy in RAM
    bss: int  # zero-initialized variables
    stack_static: int  # deepest call chain from edgectl_policy_step, from -fstack-usage/-fcallgraph-info
    stack_measured: int  # bytes below sp written during the timed inference (stack painting)
    stack_unknown: tuple[str, ...] = ()  # callees GCC has no stack figure for (library code, dynamic frames)
    library_members: tuple[str, ...] = ()  # archive members linked in for the policy

    @property
    def flash(self) -> int:
        return self.text + self.rodata + self.data

    @property
    def stack(self) -> int:
        # The static figure misses library callees; the measured one misses untaken paths.
        return max(self.stack_static, self.stack_measured)

    @property
    def ram(self) -> int:
        return self.data + self.bss + self.stack


@dataclass(frozen=True)
class PilResult:
    actions: np.ndarray  # (N, ACTION_SIZE) float32, as computed on the emulated MCU
    instructions_per_inference: int | None  # None when run with count_instructions=False
    flash_bytes: int  # Footprint.flash: text + rodata + data
    ram_bytes: int  # Footprint.ram: data + bss + max(static, measured) stack of one inference
    elf: Path  # the firmware that produced `actions`
    qemu_seconds: float  # wall time of the QEMU runs, summed (they run concurrently)
    mark_index: int = 0  # the observation whose inference was counted and stack-measured
    status: np.ndarray | None = None  # (N,) int32 the step returned (0 = ok); all 0 for a void step
    footprint: Footprint | None = field(default=None, repr=False)


def check_toolchain() -> None:
    """Raise TargetUnavailable naming every missing piece of the STM32 PIL toolchain."""
    missing = [f"{tool} (not on PATH)" for tool in (GCC, NM, QEMU) if shutil.which(tool) is None]
    if shutil.which(GCC) is not None:
        specs = _tool_output([GCC, "-print-file-name=nano.specs"]).strip()
        if not os.path.isabs(specs) or not os.path.exists(specs):
            missing.append(f"newlib nano.specs ({GCC} -print-file-name=nano.specs found none)")
    if shutil.which(QEMU) is not None and MACHINE not in _tool_output([QEMU, "-machine", "help"]):
        missing.append(f"{QEMU} machine {MACHINE!r} (not in `{QEMU} -machine help`)")
    if missing:
        raise TargetUnavailable(f"STM32 PIL toolchain incomplete: missing {', '.join(missing)}; "
                                f"install with: {APT_INSTALL}")


def run_pil(files: dict[str, str], obs: np.ndarray, workdir: Path, *, opt: str = "-O2",
            count_instructions: bool = True, timeout: float = 60, mark_index: int = 0) -> PilResult:
    """Run `edgectl_policy_step` on every row of `obs` on an emulated STM32F405.

    files: file name -> C source; must include edgectl_policy.h and at least one .c file (all
    .c files are compiled with CFLAGS + `opt`, -Werror included: a warning is a failure).
    obs: (N, EDGECTL_POLICY_OBS_SIZE), cast to float32 and passed bit for bit (NaN included).
    workdir: build folder, created; its src/ and obj/ are replaced; it keeps pil.elf, pil.map,
    pil_count.elf and trace.log for inspection. mark_index: the observation whose inference is
    counted and stack-measured. timeout: seconds allowed to each compiler, linker or QEMU run.

    instructions_per_inference: instructions executed from the first instruction of
    edgectl_policy_step through its return, callees included (exact, from QEMU's trace).
    flash_bytes = text + rodata + data of the policy objects and the library members they pull
    in. ram_bytes = their data + bss + the stack one inference needs: the larger of the static
    bound (deepest -fstack-usage call chain from edgectl_policy_step) and the measured use
    (stack painting around the timed inference). The harness is not counted; see Footprint.

    Raises TargetUnavailable when the toolchain is missing, ExportError on bad input, a compile
    or link error (with the compiler's output), a QEMU timeout, fault or non-zero exit (with the
    firmware's semihosting output), or when the counting run disagrees with the full run.
    """
    check_toolchain()
    obs_size, action_size, returns_int = _validate_files(files)
    x = np.ascontiguousarray(np.asarray(obs, dtype=np.float32))
    if x.ndim != 2 or x.shape[1] != obs_size or x.shape[0] == 0:
        raise ExportError(f"run_pil: obs has shape {list(np.shape(obs))}, expected (N >= 1, {obs_size}) "
                          f"from EDGECTL_POLICY_OBS_SIZE in {POLICY_HEADER}")
    if x.nbytes > _MAX_OBS_BYTES:
        raise ExportError(f"run_pil: {x.shape[0]} observations take {x.nbytes} B of flash, over the "
                          f"{_MAX_OBS_BYTES} B the harness allows; pass fewer observations")
    if not 0 <= mark_index < x.shape[0]:
        raise ExportError(f"run_pil: mark_index {mark_index} is outside the {x.shape[0]} observations")

    workdir = Path(workdir)
    src, obj = workdir / "src", workdir / "obj"
    for d in (src, obj):  # stale sources or .ci files from an earlier run would be picked up
        if d.exists():
            shutil.rmtree(d)
    for d in (src, obj / "policy", obj / "harness"):
        d.mkdir(parents=True)
    for name, text in files.items():
        (src / name).write_text(text, encoding="utf-8")
    (src / "pil_data.c").write_text(_pil_data(x, mark_index, paint=True), encoding="utf-8")
    (src / "pil_data_count.c").write_text(_pil_data(x[mark_index:mark_index + 1], 0, paint=False), encoding="utf-8")

    # Two firmwares from the same objects: pil.elf runs every observation; pil_count.elf only the
    # timed one, so its instruction trace stays short. The policy's code is byte-identical in both.
    jobs = [(src / n, obj / "policy", [opt, "-fstack-usage", "-fcallgraph-info=su", f"-I{src}"], "policy source")
            for n in sorted(files) if n.endswith(".c")]
    step_kind = ["-DPIL_STEP_RETURNS_INT"] if returns_int else []
    jobs += [(HARNESS_DIR / n, obj / "harness", [HARNESS_OPT, f"-I{HARNESS_DIR}", f"-I{src}", *step_kind],
              "PIL harness, compiled against the policy header") for n in HARNESS_SOURCES]
    jobs += [(src / n, obj / "harness", [HARNESS_OPT], "PIL data") for n in ("pil_data.c", "pil_data_count.c")]
    with ThreadPoolExecutor(max_workers=min(8, len(jobs))) as pool:
        objs = _first_error([pool.submit(_compile, *j[:3], workdir, timeout, what=j[3]) for j in jobs])
        common, (data_obj, count_obj) = objs[:-2], objs[-2:]
        builds = [(workdir / "pil.elf", data_obj, None)]
        if count_instructions:
            builds.append((workdir / "pil_count.elf", count_obj, workdir / "trace.log"))
        elfs = _first_error([pool.submit(_link, common + [o], elf, workdir, timeout) for elf, o, _ in builds])
        runs = _first_error([pool.submit(_qemu, elf, workdir, timeout, trace) for elf, (_, _, trace) in zip(elfs, builds)])
    elf, (out, _) = elfs[0], runs[0]
    seconds = sum(sec for _, sec in runs)
    actions, status, stack_used, stack_painted = _parse_output(out, x.shape[0], action_size, elf)
    if stack_used >= stack_painted:
        raise ExportError(f"{elf.name}: the policy's stack reached the end of the {stack_painted} B of free RAM "
                          "below sp (stack overflow into .bss/.data); the actions are not trustworthy")

    count = None
    if count_instructions:
        count_elf, trace = elfs[1], builds[1][2]
        act_c, _, _, _ = _parse_output(runs[1][0], 1, action_size, count_elf)
        if act_c.view(np.uint32).tobytes() != actions[mark_index:mark_index + 1].view(np.uint32).tobytes():
            raise ExportError(f"{count_elf.name}: action for observation {mark_index} differs from {elf.name}'s "
                              f"({act_c[0].tolist()} vs {actions[mark_index].tolist()}): the policy is not deterministic")
        syms = _symbols(count_elf, workdir, timeout)
        count = count_trace(trace.read_text(encoding="utf-8", errors="replace"), begin=syms["pil_mark_begin"][0],
                            end=syms["pil_mark_end"][0], caller=syms["pil_timed_step"], log_name=str(trace))

    fp = _footprint(workdir / "pil.map", obj / "policy", stack_used)
    return PilResult(actions=actions, instructions_per_inference=count, flash_bytes=fp.flash, ram_bytes=fp.ram,
                     elf=elf, qemu_seconds=seconds, mark_index=mark_index, status=status, footprint=fp)


def check_mcu_budget(flash_bytes: int, ram_bytes: int, platform) -> None:
    """Raise ExportError when the policy's flash/RAM exceed the platform's mcu budgets.

    platform: an edgectl.platforms.Platform; reads mcu.policy_flash_budget, mcu.policy_ram_budget,
    and the totals mcu.flash (less mcu.firmware_flash_offset) and mcu.ram.
    """
    limits = [
        ("flash", flash_bytes, "mcu.policy_flash_budget", platform.get("mcu.policy_flash_budget")),
        ("flash", flash_bytes, "mcu.flash - mcu.firmware_flash_offset",
         platform.get("mcu.flash") - platform.get("mcu.firmware_flash_offset")),
        ("RAM", ram_bytes, "mcu.policy_ram_budget", platform.get("mcu.policy_ram_budget")),
        ("RAM", ram_bytes, "mcu.ram", platform.get("mcu.ram")),
    ]
    over = [f"policy {kind} {used} B exceeds {name} = {limit} B (by {used - limit} B)"
            for kind, used, name, limit in limits if used > limit]
    if over:
        raise ExportError(f"{Path(platform.path).name} ({platform.name}): " + "; ".join(over))


def count_trace(log: str, *, begin: int, end: int, caller: tuple[int, int], log_name: str = "trace") -> int:
    """Instructions executed between the one call of the `begin` marker and the next `end` marker.

    log: QEMU `-d exec,nochain` output with one instruction per block. Excluded: the markers'
    own instructions and those of `caller` = (address, size), the function holding the
    bracket (its `bl` to the policy and to the end marker), so what remains is the policy call.
    """
    pcs: list[int] = []
    for line in log.splitlines():
        if line.startswith("Trace "):
            pcs.append(int(line.split("[", 1)[1].split("/")[1], 16))
        elif line.startswith("Stopped execution of TB chain before"):
            # QEMU logged this block, then left it before its first instruction (an exit
            # request): it runs again later and is logged again, so drop this entry.
            pc = int(line.split("[", 1)[1].split("]")[0], 16)
            if not pcs or pcs[-1] != pc:
                raise ExportError(f"{log_name}: 'Stopped execution' for {pc:#x} does not follow its Trace line")
            pcs.pop()
    starts = [i for i, pc in enumerate(pcs) if pc == begin]
    if len(starts) != 1:
        raise ExportError(f"{log_name}: pil_mark_begin ({begin:#x}) executed {len(starts)} times, expected once")
    try:
        stop = pcs.index(end, starts[0])
    except ValueError:
        raise ExportError(f"{log_name}: pil_mark_end ({end:#x}) never executed after pil_mark_begin") from None
    lo, hi = caller[0], caller[0] + caller[1]
    return sum(1 for pc in pcs[starts[0] + 1:stop] if not lo <= pc < hi)


# --- helpers -------------------------------------------------------------------------------

def _first_error(futures: list) -> list:
    """Results in submission order; the first failure (in that order) is the one raised."""
    for f in futures:
        f.exception()  # wait for all: no tool left running behind the error
    return [f.result() for f in futures]


def _tool_output(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def _validate_files(files: dict[str, str]) -> tuple[int, int, bool]:
    """Check the file names; read OBS_SIZE, ACTION_SIZE and whether the step returns int from the header."""
    for name in files:
        if not _NAME_RE.fullmatch(name):
            raise ExportError(f"run_pil: file name {name!r}: expected a plain name ending in .c or .h")
        if name in _RESERVED:
            raise ExportError(f"run_pil: file name {name!r} clashes with a PIL harness file ({', '.join(sorted(_RESERVED))})")
    if POLICY_HEADER not in files:
        raise ExportError(f"run_pil: files has no {POLICY_HEADER} (got {sorted(files)})")
    if not any(n.endswith(".c") for n in files):
        raise ExportError(f"run_pil: files has no .c source (got {sorted(files)})")
    sizes = []
    for macro in ("EDGECTL_POLICY_OBS_SIZE", "EDGECTL_POLICY_ACTION_SIZE"):
        m = re.search(rf"^\s*#\s*define\s+{macro}\s+\(?\s*(\d+)[uU]?\s*\)?\s*(?:/[*/].*)?$", files[POLICY_HEADER], re.M)
        if not m or int(m.group(1)) < 1:
            raise ExportError(f"run_pil: {POLICY_HEADER} has no '#define {macro} <positive integer>'")
        sizes.append(int(m.group(1)))
    proto = re.search(r"\b(void|int)\s+edgectl_policy_step\s*\(", files[POLICY_HEADER])
    if not proto:
        raise ExportError(f"run_pil: {POLICY_HEADER} declares no 'void|int edgectl_policy_step(...)'")
    return sizes[0], sizes[1], proto.group(1) == "int"


def _pil_data(x: np.ndarray, mark_index: int, *, paint: bool) -> str:
    bits = x.view(np.uint32)
    rows = ",\n".join("    " + ", ".join(f"0x{int(b):08x}u" for b in row) for row in bits)
    # paint: watch all free RAM below sp; 0 in the counting build keeps its trace short.
    return ("/* Generated by export/stm32.py: observations as IEEE-754 float32 bit patterns. */\n"
            "#include <stdint.h>\n"
            f"const uint32_t pil_obs_bits[] = {{\n{rows}\n}};\n"
            f"const uint32_t pil_n_obs = {bits.shape[0]}u;\n"
            f"const uint32_t pil_obs_size = {bits.shape[1]}u;\n"
            f"const uint32_t pil_mark_index = {mark_index}u;\n"
            f"const uint32_t pil_stack_paint_bytes = {0xFFFFFFFF if paint else 0}u;\n")


def _run(cmd: list[str], cwd: Path, timeout: float, what: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ExportError(f"{what}: {cmd[0]} did not finish within {timeout} s") from None
    except OSError as e:
        raise TargetUnavailable(f"{what}: cannot run {cmd[0]} ({e.strerror}); install with: {APT_INSTALL}") from None


def _compile(source: Path, out_dir: Path, extra: list[str], workdir: Path, timeout: float, *, what: str) -> Path:
    out = out_dir / (source.stem + ".o")
    cmd = [GCC, *CFLAGS, *extra, "-c", str(source), "-o", str(out)]
    r = _run(cmd, workdir, timeout, f"{source.name} ({what})")
    if r.returncode != 0:
        raise ExportError(f"{GCC} failed on {source.name} ({what}, {' '.join(extra[:1])} -Werror), "
                          f"exit {r.returncode}:\n{_tail(r.stderr)}")
    return out


def _link(objs: list[Path], elf: Path, workdir: Path, timeout: float) -> Path:
    mapfile = elf.with_suffix(".map")
    # Relative paths: the map file then names policy objects as obj/policy/..., see _footprint.
    rel = [str(o.relative_to(workdir)) for o in objs]
    cmd = [GCC, *CFLAGS, HARNESS_OPT, *LDFLAGS, f"-T{HARNESS_DIR / 'linker.ld'}", f"-Wl,-Map={mapfile.name}",
           *rel, "-lm", "-o", elf.name]
    r = _run(cmd, workdir, timeout, f"link {elf.name}")
    if r.returncode != 0:
        raise ExportError(f"{GCC} failed to link {elf.name}, exit {r.returncode}:\n{_tail(r.stderr)}")
    return elf


def _qemu_version() -> tuple[int, int]:
    m = re.search(r"version (\d+)\.(\d+)", _tool_output([QEMU, "--version"]))
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _qemu(elf: Path, workdir: Path, timeout: float, trace: Path | None = None) -> tuple[str, float]:
    cmd = [QEMU, "-M", MACHINE, "-nographic", "-semihosting-config", "enable=on,target=native", "-kernel", elf.name]
    if trace is not None:
        trace.unlink(missing_ok=True)  # never read a stale log if QEMU fails to write one
        # QEMU 8.1 renamed -singlestep; both make every translation block one instruction.
        one_insn = ["-accel", "tcg,one-insn-per-tb=on"] if _qemu_version() >= (8, 1) else ["-singlestep"]
        cmd += [*one_insn, "-d", "exec,nochain", "-D", str(trace.relative_to(workdir))]
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, cwd=workdir, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        tail = _tail((e.stderr or b"").decode("utf-8", "replace"))
        raise ExportError(f"{QEMU} running {elf.name} did not exit within {timeout} s; semihosting output tail:\n{tail}") from None
    except OSError as e:
        raise TargetUnavailable(f"cannot run {QEMU} ({e.strerror}); install with: {APT_INSTALL}") from None
    seconds = time.perf_counter() - t0
    out = r.stderr.decode("utf-8", "replace") + r.stdout.decode("utf-8", "replace")
    if r.returncode != 0:
        why = _EXIT_CODES.get(r.returncode, "see the output")
        raise ExportError(f"{QEMU} running {elf.name} exited with status {r.returncode} ({why}); "
                          f"semihosting output tail:\n{_tail(out)}")
    return out, seconds


def _parse_output(out: str, n: int, action_size: int, elf: Path) -> tuple[np.ndarray, np.ndarray, int, int]:
    bits = np.zeros((n, action_size), dtype=np.uint32)
    status = np.zeros(n, dtype=np.uint32)
    seen, stack, ended = 0, None, False
    try:
        for line in out.splitlines():
            f = line.split()
            if f[:1] == ["A"]:
                if int(f[1], 16) != seen or len(f) != 3 + action_size:
                    raise ValueError(f"bad action line {line!r}")
                status[seen] = int(f[2], 16)
                bits[seen] = [int(w, 16) for w in f[3:]]
                seen += 1
            elif f[:1] == ["S"]:
                stack = (int(f[1], 16), int(f[2], 16))
            elif line.strip() == "PIL END":
                ended = True
    except (ValueError, IndexError) as e:
        raise ExportError(f"{elf.name}: unreadable PIL output ({e}); tail:\n{_tail(out)}") from None
    if seen != n or stack is None or not ended:
        raise ExportError(f"{elf.name}: PIL output has {seen} of {n} action lines"
                          f"{'' if ended else ' and no PIL END'}; tail:\n{_tail(out)}")
    return bits.view(np.float32), status.view(np.int32), stack[0], stack[1]


def _symbols(elf: Path, workdir: Path, timeout: float) -> dict[str, tuple[int, int]]:
    r = _run([NM, "-S", "--defined-only", elf.name], workdir, timeout, f"symbols of {elf.name}")
    syms = {}
    for line in r.stdout.splitlines():
        f = line.split()
        if len(f) == 4:
            syms[f[3]] = (int(f[0], 16) & ~1, int(f[1], 16))  # bit 0 is the Thumb flag
    for need in ("pil_mark_begin", "pil_mark_end", "pil_timed_step"):
        if need not in syms:
            raise ExportError(f"{elf.name}: symbol {need} not found by {NM}")
    return syms


# Output sections of linker.ld and where their contents live.
_FLASH_SECTIONS = {".text": "text", ".rodata": "rodata", ".ARM.exidx": "rodata", ".ARM.extab": "rodata"}
_IGNORED = re.compile(r"^\.(comment|ARM\.attributes|debug.*|note.*|stab.*)$")
_MAP_INPUT = re.compile(r"^ (\S+)\s+0x([0-9a-fA-F]+)\s+0x([0-9a-fA-F]+)\s+(.+)$")
_MAP_CONT = re.compile(r"^\s+0x([0-9a-fA-F]+)\s+0x([0-9a-fA-F]+)\s+(.+)$")


def _footprint(mapfile: Path, policy_obj_dir: Path, stack_measured: int) -> Footprint:
    sizes = {"text": 0, "rodata": 0, "data": 0, "bss": 0}
    members: set[str] = set()
    policy_prefix = "obj/policy/"
    text = mapfile.read_text(encoding="utf-8", errors="replace")
    lines = text.split("Linker script and memory map", 1)[-1].splitlines()
    out_sec, pending = None, None
    for line in lines:
        if line and not line[0].isspace():
            out_sec, pending = line.split()[0], None
            continue
        m = _MAP_INPUT.match(line)
        if m:
            name, size, owner = m.group(1), int(m.group(3), 16), m.group(4).strip()
        elif pending and (c := _MAP_CONT.match(line)):
            name, size, owner = pending, int(c.group(2), 16), c.group(3).strip()
        else:
            pending = line.strip() if re.match(r"^ \S+\s*$", line) and not line.startswith(" *") else None
            continue
        pending = None
        if name.startswith("*") or size == 0:
            continue
        lib = re.search(r"([^/]+\.a)\((.+)\)$", owner)
        if not (owner.startswith(policy_prefix) or lib):
            continue
        if lib:
            members.add(f"{lib.group(1)}({lib.group(2)})")
        if out_sec in _FLASH_SECTIONS:
            sizes[_FLASH_SECTIONS[out_sec]] += size
        elif out_sec in (".data", ".bss"):
            sizes[out_sec[1:]] += size
        elif out_sec is not None and not _IGNORED.match(out_sec):
            raise ExportError(f"{mapfile.name}: {owner} puts {size} B in output section {out_sec}, which the "
                              "PIL footprint does not know how to count; extend export/stm32/linker.ld")
    static, unknown = _static_stack(policy_obj_dir)
    return Footprint(text=sizes["text"], rodata=sizes["rodata"], data=sizes["data"], bss=sizes["bss"],
                     stack_static=static, stack_measured=stack_measured, stack_unknown=unknown,
                     library_members=tuple(sorted(members)))


_CI_NODE = re.compile(r'node: \{ title: "([^"]+)" label: "([^"]*)"')
_CI_EDGE = re.compile(r'edge: \{ sourcename: "([^"]+)" targetname: "([^"]+)"')
_CI_STACK = re.compile(r"\\n(\d+) bytes \(([a-z,]+)\)")


def _static_stack(policy_obj_dir: Path) -> tuple[int, tuple[str, ...]]:
    """Deepest stack of a call chain from edgectl_policy_step, from GCC's -fcallgraph-info=su files."""
    frame: dict[str, int] = {}
    calls: dict[str, set[str]] = {}
    unknown: set[str] = set()
    for ci in sorted(policy_obj_dir.glob("*.ci")):
        text = ci.read_text(encoding="utf-8", errors="replace")
        for title, label in _CI_NODE.findall(text):
            m = _CI_STACK.search(label)
            if m:
                frame[title] = int(m.group(1))
                if m.group(2) == "dynamic":  # alloca/VLA with no bound: GCC's figure is a minimum
                    unknown.add(f"{title} (unbounded dynamic frame)")
        for src, dst in _CI_EDGE.findall(text):
            calls.setdefault(src, set()).add(dst)
    depth: dict[str, int] = {}

    def deepest(fn: str, chain: tuple[str, ...]) -> int:
        if fn in chain:
            raise ExportError(f"policy call graph is recursive ({' -> '.join(chain + (fn,))}): no static stack bound")
        if fn not in depth:
            if fn not in frame:
                unknown.add(fn)
            depth[fn] = frame.get(fn, 0) + max((deepest(c, chain + (fn,)) for c in calls.get(fn, ())), default=0)
        return depth[fn]

    # A step GCC has no figure for (written in asm) counts 0 here and shows in stack_unknown.
    return deepest("edgectl_policy_step", ()), tuple(sorted(unknown))
