"""Over-the-air flashing of a Crazyflie firmware image with cflib's Cloader, read back and compared.

    flash("cfsim://crazyflie/0", "build/cf2.bin")            # or bytes, or an app folder
    flash("radio://0/80/2M/E7E7E7E7E7", app_dir)           # warm boot into the bootloader first

One attempt: open the link, warm-boot into the bootloader, ask the bootloader for its geometry
(GET_INFO), load the image page by page into its RAM buffer and write it to flash one buffer-full
at a time (Cloader.upload_buffer / write_flash, the same sequence as cflib's Bootloader), then read
every page back (Cloader.read_flash) and compare. A write that is not acknowledged, a page that does
not read back, or a byte that differs raises ``FlashError`` naming the URI and the page; nothing is
reported as flashed unless the bootloader acknowledged every write and (with verify) every byte
read back equal. ``retries`` more attempts are made on a fresh link, from the first page.

Warm boot: over radio, cflib's Cloader.reset_to_bootloader (it moves to the bootloader's radio
address); over other links (cfsim://, udp://) the same nRF51 commands (RESET_INIT, RESET to the
bootloader) on the open link. Hardware note: the radio path is cflib's own and is not exercised by
the tests here, which run against the simulated bootloader.
"""
from __future__ import annotations

import hashlib
import logging
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from .bootloader import (CMD_GET_INFO, CMD_READ_BUFFER, CMD_RESET, CMD_RESET_INIT, TARGET_NRF51,
                         TARGET_STM32, WRITE_ERRORS)

log = logging.getLogger(__name__)


class FlashError(RuntimeError):
    """Flashing failed; the message names the URI and, where known, the page."""

    def __init__(self, message: str, *, page: int | None = None, retry: bool = True):
        super().__init__(message)
        self.page = page
        self.retry = retry  # False: another attempt cannot help (no link driver or radio dongle at all)


@dataclass(frozen=True)
class FlashReport:
    uri: str
    source: str  # file path or "<bytes>"
    bytes: int
    pages: int
    start_page: int
    page_size: int
    seconds: float
    verified: bool
    attempts: int
    sha256: str
    booted: bool  # reset back to the firmware afterwards

    def __str__(self) -> str:
        check = "verified by read-back" if self.verified else "NOT verified"
        return (f"{self.uri}: flashed {self.bytes} bytes ({self.pages} pages of {self.page_size} B from page "
                f"{self.start_page}) in {self.seconds:.1f} s, {check}, attempt {self.attempts}, sha256 {self.sha256[:16]}")


def load_image(image: bytes | bytearray | str | Path) -> tuple[bytes, str]:
    """Image bytes and a description. A folder is an app folder: its build/cf2.bin (what
    ``edgectl build-firmware`` leaves) or a single build/*.bin."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        data, source = bytes(image), "<bytes>"
    else:
        path = Path(image).expanduser()
        if path.is_dir():
            preferred = [p for p in (path / "build" / "cf2.bin", path / "cf2.bin") if p.is_file()]
            found = preferred[:1] or sorted((path / "build").glob("*.bin"))
            if len(found) != 1:
                raise FlashError(f"{path}: expected one firmware image, build/cf2.bin (run `edgectl build-firmware`)"
                                 + (f"; found {[str(p) for p in found]}" if found else ", found none"))
            path = found[0]
        if not path.is_file():
            raise FlashError(f"{path}: no such firmware image")
        data, source = path.read_bytes(), str(path)
    if not data:
        raise FlashError(f"{source}: the firmware image is empty")
    return data, source


class _BoundedLink:
    """Caps every wait for a reply. cflib's Cloader waits up to 2.5 s per write and 10 s for
    GET_INFO, right for a radio and a flash erase; a simulated bootloader answers in microseconds,
    so tests cap waits to fail fast on a lost link."""

    def __init__(self, link, cap: float):
        self._link, self._cap = link, cap

    def send_packet(self, pk):
        return self._link.send_packet(pk)

    def receive_packet(self, wait=0):
        if wait == 0:
            return self._link.receive_packet(0)
        return self._link.receive_packet(self._cap if wait < 0 else min(wait, self._cap))

    def close(self):
        return self._link.close()


def _raw(header: int, data) -> "object":
    from cflib.crtp.crtpstack import CRTPPacket

    return CRTPPacket(header, list(data))


def _wait_reply(link, match, timeout: float):
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        pk = link.receive_packet(min(left, 0.5))
        if pk is not None and pk.header == 0xFF and tuple(pk.data[:len(match)]) == match:
            return pk


def _warm_boot(loader, uri: str, timeout: float):
    """Into the bootloader, over the link the loader holds (or cflib's radio path)."""
    from cflib.bootloader.boottypes import TargetTypes

    from edgectl.runtime.uri import parse_uri

    if parse_uri(uri).scheme == "radio://":  # cflib's own radio path resets into the bootloader
        if not loader.reset_to_bootloader(TargetTypes.NRF51):
            raise FlashError(f"{uri}: the Crazyflie did not answer the reset-to-bootloader request")
        return
    loader.link.send_packet(_raw(0xFF, (TARGET_NRF51, CMD_RESET_INIT)))
    _wait_reply(loader.link, (TARGET_NRF51, CMD_RESET_INIT), min(timeout, 1.0))  # older nRF firmware: no echo
    loader.link.send_packet(_raw(0xFF, (TARGET_NRF51, CMD_RESET, 0)))


def _flash_once(uri: str, data: bytes, *, verify: bool, reply_timeout: float | None, connect_timeout: float,
                warm_boot: bool, boot_firmware: bool, progress, at: dict) -> tuple[int, int, int, bool]:
    from cflib.bootloader.cloader import Cloader

    loader = Cloader(uri)
    try:
        loader.open_bootloader_uri(uri)
    except Exception as e:
        raise FlashError(f"{uri}: cannot open the link: {e}", retry=False) from e
    if loader.link is None:
        raise FlashError(f"{uri}: no cflib link driver for this URI")
    try:
        if reply_timeout is not None:
            loader.link = _BoundedLink(loader.link, reply_timeout)
        if warm_boot:
            _warm_boot(loader, uri, connect_timeout)
        # Our own bounded probe first: Cloader's GET_INFO loop insists for 10 s.
        probe = (TARGET_STM32, CMD_GET_INFO)
        deadline = time.monotonic() + connect_timeout
        while _wait_reply_once(loader.link, probe, deadline) is None:
            if time.monotonic() >= deadline:
                raise FlashError(f"{uri}: no bootloader answered within {connect_timeout:.1f} s "
                                 "(is the Crazyflie on, and in bootloader mode or reachable for a warm boot?)")
        if not loader.check_link_and_get_info(TARGET_STM32):
            raise FlashError(f"{uri}: the bootloader stopped answering GET_INFO")
        target = loader.targets[TARGET_STM32]
        page_size, buffer_pages, start = target.page_size, target.buffer_pages, target.start_page
        capacity = (target.flash_pages - start) * page_size
        if len(data) > capacity:
            raise FlashError(f"{uri}: the image is {len(data)} bytes, the firmware area holds {capacity}")
        n_pages = (len(data) + page_size - 1) // page_size
        pending = 0
        for i in range(n_pages):
            at["page"], at["stage"] = start + i, "loading"
            chunk = data[i * page_size:(i + 1) * page_size]
            loader.upload_buffer(target.addr, pending, 0, chunk)
            _buffer_barrier(loader.link, uri, pending, chunk, start + i, reply_timeout or 1.0)
            pending += 1
            if pending == buffer_pages or i == n_pages - 1:
                first = start + i - (pending - 1)
                if not loader.write_flash(target.addr, 0, first, pending):
                    code = loader.error_code
                    why = ("no reply from the bootloader (link lost?)" if code == -1
                           else f"bootloader error {code}: {WRITE_ERRORS.get(code, 'unknown')}")
                    raise FlashError(f"{uri}: writing flash pages {first}-{first + pending - 1} failed: {why}",
                                     page=first)
                if progress:
                    progress("write", i + 1, n_pages)
                pending = 0
        if verify:
            for i in range(n_pages):
                page = start + i
                at["page"], at["stage"] = page, "reading back"
                try:
                    got = loader.read_flash(TARGET_STM32, page)
                except Exception as e:  # a stray short packet makes Cloader's unpack fail
                    raise FlashError(f"{uri}: read-back of flash page {page} failed: {e}", page=page) from e
                want = data[i * page_size:(i + 1) * page_size]
                if got is None:
                    raise FlashError(f"{uri}: read-back of flash page {page} failed: no reply (link lost?)", page=page)
                if bytes(got[:len(want)]) != want:
                    off = next(k for k in range(len(want)) if k >= len(got) or got[k] != want[k])
                    raise FlashError(f"{uri}: flash page {page} differs from the image at byte {off} "
                                     f"(image offset {i * page_size + off})", page=page)
                if progress:
                    progress("verify", i + 1, n_pages)
        booted = False
        if boot_firmware:
            from cflib.bootloader.boottypes import TargetTypes
            booted = bool(loader.reset_to_firmware(TargetTypes.NRF51))
        return n_pages, start, page_size, booted
    finally:
        try:
            loader.close()
        except Exception:  # noqa: BLE001  closing a loader on a dead link must not hide the flash's outcome
            pass


def _buffer_barrier(link, uri: str, buffer_page: int, chunk: bytes, page: int, timeout: float):
    """One round trip after each uploaded page: LOAD_BUFFER has no reply, so without it a UDP
    link bursts ~40 packets per page into the peer's socket buffer and loses some (the read-back
    would catch it, but every attempt would fail the same way). Also checks the page's first bytes
    in the bootloader's RAM buffer."""
    request = (TARGET_STM32, CMD_READ_BUFFER) + tuple(struct.pack("<HH", buffer_page, 0))
    for _ in range(3):
        link.send_packet(_raw(0xFF, request))
        reply = _wait_reply(link, request, timeout)
        if reply is not None:
            head = bytes(reply.data[6:6 + min(len(chunk), 25)])
            if head != chunk[:len(head)]:
                raise FlashError(f"{uri}: page {page} arrived corrupted in the bootloader's buffer "
                                 "(packets lost on the link)", page=page)
            return
    raise FlashError(f"{uri}: no reply while loading page {page} into the bootloader (link lost?)", page=page)


def _wait_reply_once(link, match, deadline):
    link.send_packet(_raw(0xFF, match))
    return _wait_reply(link, match, max(0.0, min(0.5, deadline - time.monotonic())))


def flash(uri: str, image: bytes | str | Path, *, verify: bool = True, retries: int = 1,
          reply_timeout: float | None = None, connect_timeout: float = 5.0, warm_boot: bool = True,
          boot_firmware: bool = True, progress=None) -> FlashReport:
    """Write ``image`` (bytes, a .bin file, or an app folder with build/cf2.bin) to the Crazyflie
    at ``uri`` and return a FlashReport; raise FlashError naming the page if every attempt fails.

    reply_timeout: cap on each wait for a bootloader reply (None: cflib's, 1-2.5 s, which real flash
    erases need); connect_timeout: how long a bootloader may take to first answer;
    warm_boot: reset into the bootloader first (False: it is already running);
    boot_firmware: reset into the new firmware afterwards; progress(stage, done, total).
    """
    from .transports import ensure_drivers

    data, source = load_image(image)
    ensure_drivers(uri)
    t0 = time.monotonic()
    attempts = retries + 1
    for attempt in range(1, attempts + 1):
        at = {"page": None, "stage": "connecting"}  # where an unexpected driver error hit
        try:
            pages, start, page_size, booted = _flash_once(
                uri, data, verify=verify, reply_timeout=reply_timeout, connect_timeout=connect_timeout,
                warm_boot=warm_boot, boot_firmware=boot_firmware, progress=progress, at=at)
        except Exception as e:
            if not isinstance(e, FlashError):  # a driver error (radio unplugged, socket closed)
                where = f"{at['stage']} page {at['page']}" if at["page"] is not None else at["stage"]
                e = FlashError(f"{uri}: {where} failed: {type(e).__name__}: {e}", page=at["page"])
            if attempt == attempts or not getattr(e, "retry", True):
                if attempt > 1:
                    raise FlashError(f"{e} (after {attempt} attempts)", page=e.page) from e
                raise e
            log.warning("flash attempt %d of %d failed: %s", attempt, attempts, e)
            continue
        return FlashReport(uri=uri, source=source, bytes=len(data), pages=pages, start_page=start,
                           page_size=page_size, seconds=time.monotonic() - t0, verified=verify,
                           attempts=attempt, sha256=hashlib.sha256(data).hexdigest(), booted=booted)
    raise AssertionError("unreachable")
