"""Where the hardware-in-the-loop suite points: `--hil URI`, else the environment, else simulated vehicles.

    python3 -m pytest -q -m hil hil_tests                                      # simulated vehicles
    python3 -m pytest -q -m hil hil_tests --hil radio://0/80/2M/E7E7E7E7E7      # a Crazyflie
    python3 -m pytest -q -m hil hil_tests --hil udpin:0.0.0.0:14540             # a MAVLink vehicle / SITL
    python3 -m pytest -q -m hil hil_tests --hil rccar:/dev/ttyACM0              # an RC car MCU (serial)

The URI's scheme says which vehicle it is: radio://, usb://, udp://, sim:// are Crazyflies (cflib URIs);
udpin:, udpout:, udp:, tcp:, tcpin: and serial devices (/dev/...) are MAVLink; rccar:PORT (a serial device
or a pyserial URL such as socket://HOST:PORT) is an RC car. The other vehicles' tests then run against
their simulations. Fallbacks: EDGECTL_CF_URI, EDGECTL_MAVLINK_URL (and the rc car's
EDGECTL_RCCAR_PORT). Tests that spin motors on real hardware also need EDGECTL_HIL_ALLOW_FLIGHT=1 (a
Crazyflie flashed with the hover bundle's app, `edgectl export --target crazyflie`, room to fly).
"""
from __future__ import annotations

import os

import pytest

CRAZYFLIE_SCHEMES = ("radio", "usb", "udp", "sim")


def pytest_addoption(parser):
    parser.addoption("--hil", action="store", default=None, metavar="URI",
                     help="run the HIL suite against this vehicle (cflib URI or MAVLink URL); default: simulated vehicles")


def kind_of(uri: str) -> str:
    if uri.startswith("rccar:"):
        return "rccar"
    if "://" in uri and uri.split("://", 1)[0] in CRAZYFLIE_SCHEMES:
        return "crazyflie"
    if uri.split(":", 1)[0] in ("udpin", "udpout", "udp", "tcp", "tcpin") or uri.startswith("/dev/"):
        return "mavlink"
    raise pytest.UsageError(f"--hil {uri}: not a Crazyflie URI (radio://, usb://, udp://) or a MAVLink URL "
                            "(udpin:HOST:PORT, udpout:..., tcp:..., /dev/ttyACM0) or an RC car (rccar:/dev/ttyACM0)")


def hil_uri(config, kind: str) -> str | None:
    """The real vehicle of this kind to test, or None for its simulation."""
    uri = config.getoption("--hil")
    if uri and kind_of(uri) == kind:
        return uri[len("rccar:"):] if kind == "rccar" else uri
    return os.environ.get({"crazyflie": "EDGECTL_CF_URI", "mavlink": "EDGECTL_MAVLINK_URL",
                           "rccar": "EDGECTL_RCCAR_PORT"}[kind]) or None


def flight_allowed() -> bool:
    return os.environ.get("EDGECTL_HIL_ALLOW_FLIGHT") == "1"


@pytest.fixture(scope="session")
def cf_uri(pytestconfig):
    return hil_uri(pytestconfig, "crazyflie")


@pytest.fixture(scope="session")
def mavlink_url(pytestconfig):
    return hil_uri(pytestconfig, "mavlink")


@pytest.fixture(scope="session")
def rccar_port(pytestconfig):
    return hil_uri(pytestconfig, "rccar")
