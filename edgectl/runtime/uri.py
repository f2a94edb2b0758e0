"""The one URI parser of `edgectl run --uri`, and the schemes each vehicle adapter owns.

Every adapter declares its schemes in ADAPTERS (what it is, the forms it takes, an example); `parse_uri` is the
only code that looks at a URI's syntax, and each flight path asks `parse_uri(uri).adapter` which adapter it got.
One scheme means one kind of vehicle:

  sim://         the bundle's own task simulated in this process (hover/figure8: sim://x,y,z start; avoid:
                 sim://SEED obstacle field; race: the car on its track)
  cfsim://NAME   a simulated Crazyflie in this process, reached through cflib (firmware_bridge/crazyflie/transports.py)
  radio:// usb:// udp://HOST:PORT   a Crazyflie through cflib (udp://: `edgectl sim-vehicle crazyflie`)
  udpout: udpin: udp: tcp: tcpin:   a MAVLink autopilot (pymavlink connection strings, no //)
  socket:// rfc2217:// loop://      a serial car through pyserial (socket://: `edgectl sim-vehicle rc-car`)
  /dev/...       a serial device: a MAVLink autopilot on a quadrotor bundle, a car on an rc-car bundle
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Adapter:
    name: str
    what: str
    label: str                 # how a message names it: what it is, its forms in short
    schemes: tuple[str, ...]   # "sim://", "udpout:", "/dev/" (a path prefix)
    examples: tuple[str, ...]


ADAPTERS: dict[str, Adapter] = {a.name: a for a in (
    Adapter("sim", "the bundle's task simulated in this process", "sim:// (in process)", ("sim://",),
            ("sim://", "sim://0,0,0.5 (hover: start)", "sim://7 (avoid: scene seed)")),
    Adapter("crazyflie", "a Crazyflie through cflib: its flashed edgectl app flies the policy on board",
            "a Crazyflie (radio://, usb://, udp://HOST:PORT, cfsim://NAME)",
            ("radio://", "usb://", "udp://", "cfsim://"),
            ("radio://0/80/2M/E7E7E7E7E7", "usb://0", "udp://127.0.0.1:19850 (edgectl sim-vehicle crazyflie)",
             "cfsim://NAME (a simulated Crazyflie in this process)")),
    Adapter("mavlink", "a MAVLink autopilot (PX4, ArduPilot) through pymavlink",
            "a MAVLink autopilot (udpout:, udpin:, udp:, tcp:, tcpin:HOST:PORT, or a serial device /dev/...)",
            ("udpout:", "udpin:", "udp:", "tcp:", "tcpin:", "/dev/"),
            ("udpout:127.0.0.1:14550 (edgectl sim-vehicle mavlink)", "udpin:0.0.0.0:14540", "tcp:127.0.0.1:5760",
             "/dev/ttyACM0")),
    Adapter("serial", "a serial car speaking firmware_bridge/rccar/PROTOCOL.md through pyserial",
            "a serial car (/dev/..., socket://HOST:PORT, rfc2217://HOST:PORT, loop://)",
            ("socket://", "rfc2217://", "loop://", "/dev/"),
            ("/dev/ttyACM0", "/dev/pts/N (edgectl sim-vehicle rc-car)",
             "socket://127.0.0.1:5760 (edgectl sim-vehicle rc-car --uri tcp://127.0.0.1:5760)")),
)}


class UriError(ValueError):
    pass


@dataclass(frozen=True)
class LinkUri:
    raw: str
    scheme: str                 # as declared in ADAPTERS ("sim://", "udpout:", "/dev/")
    adapters: tuple[str, ...]   # who accepts it ("/dev/": mavlink and serial; the bundle's vehicle decides)
    rest: str                   # what follows the scheme ("/dev/": the whole path)

    def for_vehicle(self, accepted: tuple[str, ...], what: str) -> str:
        """The one adapter among `accepted` that takes this URI, or a UriError naming the forms `what` flies."""
        for a in self.adapters:
            if a in accepted:
                return a
        raise UriError(f"--uri {self.raw}: {what} flies on {forms(accepted)}")


def forms(adapters: tuple[str, ...]) -> str:
    """'sim:// (in process) or a serial car (...)': the adapters' URI forms in short, for messages."""
    return " or ".join(ADAPTERS[a].label for a in adapters)


def _numbers(rest: str) -> bool:
    try:
        return not rest or all(float(v) == float(v) for v in rest.split(","))
    except ValueError:
        return False


def parse_uri(uri: str) -> LinkUri:
    """Which scheme (and so which adapters) a --uri names; a UriError for one no adapter declares."""
    if not isinstance(uri, str) or not uri or uri != uri.strip():
        raise UriError(f"--uri {uri!r}: empty or padded with spaces")
    if uri.startswith("sim://") and not _numbers(uri[len("sim://"):]):
        # sim://NAME: the in-process simulated Crazyflie had this scheme before it had its own
        raise UriError(f"--uri {uri}: sim:// is the bundle's task simulated in this process (sim://, sim://x,y,z, "
                       f"sim://SEED); a simulated Crazyflie in this process is cfsim://{uri[len('sim://'):]}")
    hits = [(s, a.name) for a in ADAPTERS.values() for s in a.schemes if uri.startswith(s)]
    if not hits:
        every = sorted({s for a in ADAPTERS.values() for s in a.schemes})
        raise UriError(f"--uri {uri}: unknown link; schemes: {', '.join(every)} (edgectl run --help lists every form)")
    scheme = max((s for s, _ in hits), key=len)  # udpout: before udp:
    return LinkUri(uri, scheme, tuple(n for s, n in hits if s == scheme),
                   uri if scheme == "/dev/" else uri[len(scheme):])


def help_table() -> str:
    """Every scheme every adapter accepts, for `edgectl run --help`."""
    return "\n\n".join(f"{a.name}: {a.what}: {', '.join(a.examples)}" for a in ADAPTERS.values())
