"""One URI parser (edgectl/runtime/uri.py): every adapter's schemes, one meaning per scheme, listed in
`edgectl run --help`, and no other code reading a URI's scheme by hand."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgectl import cli
from edgectl.runtime.uri import ADAPTERS, UriError, parse_uri

ROOT = Path(__file__).resolve().parents[1]
SCHEMES = sorted({s for a in ADAPTERS.values() for s in a.schemes})


def test_run_help_lists_every_scheme_it_accepts():
    res = CliRunner().invoke(cli.app, ["run", "--help"], env={"COLUMNS": "400"})
    assert res.exit_code == 0
    text = re.sub(r"\s+", " ", res.output)
    missing = [s for s in SCHEMES if s not in text]
    assert not missing, f"edgectl run --help does not list {missing}"


def test_a_scheme_names_one_kind_of_vehicle():
    owners: dict[str, list[str]] = {}
    for a in ADAPTERS.values():
        for s in a.schemes:
            owners.setdefault(s, []).append(a.name)
    shared = {s: o for s, o in owners.items() if len(o) > 1}
    # a serial device is a path, not a scheme: the bundle's vehicle decides (autopilot or car)
    assert shared == {"/dev/": ["mavlink", "serial"]}


@pytest.mark.parametrize("uri,adapter,rest", [
    ("sim://", "sim", ""), ("sim://0,0,0.5", "sim", "0,0,0.5"), ("sim://7", "sim", "7"),
    ("cfsim://crazyflie/0", "crazyflie", "crazyflie/0"), ("udp://127.0.0.1:19850", "crazyflie", "127.0.0.1:19850"),
    ("radio://0/80/2M/E7E7E7E7E7", "crazyflie", "0/80/2M/E7E7E7E7E7"), ("usb://0", "crazyflie", "0"),
    ("udp:127.0.0.1:14550", "mavlink", "127.0.0.1:14550"), ("udpout:127.0.0.1:14550", "mavlink", "127.0.0.1:14550"),
    ("udpin:0.0.0.0:14540", "mavlink", "0.0.0.0:14540"), ("tcp:127.0.0.1:5760", "mavlink", "127.0.0.1:5760"),
    ("tcpin:0.0.0.0:5760", "mavlink", "0.0.0.0:5760"), ("socket://127.0.0.1:5760", "serial", "127.0.0.1:5760"),
    ("rfc2217://host:1", "serial", "host:1"), ("loop://", "serial", "")])
def test_parse_uri_names_the_adapter(uri, adapter, rest):
    p = parse_uri(uri)
    assert p.adapters == (adapter,) and p.rest == rest


def test_a_serial_device_goes_where_the_bundle_flies():
    p = parse_uri("/dev/ttyACM0")
    assert p.for_vehicle(("sim", "mavlink", "crazyflie"), "a quadrotor") == "mavlink"
    assert p.for_vehicle(("sim", "serial"), "an rc-car bundle") == "serial"
    with pytest.raises(UriError, match=r"an avoid bundle flies on sim:// \(in process\) or a Crazyflie"):
        p.for_vehicle(("sim", "crazyflie"), "an avoid bundle")


@pytest.mark.parametrize("uri,says", [("sim://crazyflie/0", "cfsim://crazyflie/0"), ("foo://x", "unknown link"),
                                      ("", "empty"), (" sim://", "padded"), ("udp//x", "unknown link")])
def test_bad_uris_are_named(uri, says):
    with pytest.raises(UriError, match=re.escape(says)):
        parse_uri(uri)


def test_the_cflib_driver_serves_the_declared_scheme():
    from firmware_bridge.crazyflie import transports

    assert transports.SCHEME in ADAPTERS["crazyflie"].schemes and transports.SCHEME != "sim://"


def test_no_other_flight_code_reads_a_scheme_by_hand():
    """The link code asks parse_uri; a stray uri.startswith("udp://") would give a scheme a second meaning."""
    pat = re.compile(r"""uri\s*(?:\.startswith\(|\.split\(\s*["']:|[!=]=\s*["'](?:sim|radio|usb|udp|tcp))""")
    hits = []
    for top in ("edgectl/runtime", "edgectl/cli", "firmware_bridge/crazyflie", "firmware_bridge/mavlink",
                "firmware_bridge/rccar"):
        for path in sorted((ROOT / top).rglob("*.py")):
            if path.name == "uri.py" or path.name == "transports.py":  # the parser; cfsim://'s own cflib driver
                continue
            for i, line in enumerate(path.read_text().splitlines(), 1):
                if pat.search(line):
                    hits.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not hits, "\n".join(hits)
