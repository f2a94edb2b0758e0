"""The simulated Crazyflie's UDP server (cflib's UdpDriver wire format, ``udp://host:port``).

One CRTP packet per datagram, the header byte first, no framing or checksum (cflib crtp/udpdriver.py). Every
client address is its own link; replies go back to the sender.
"""
from __future__ import annotations

import select
import socket
import threading
import time
from collections import OrderedDict


class UdpServer:
    """Serves ``sim`` (a sim_vehicle.CrazyflieSim) at udp://host:port."""

    MAX_CLIENTS = 64  # each reconnect of a cflib UdpDriver comes from a new port

    def __init__(self, sim, host: str = "127.0.0.1", port: int = 19850):
        self.sim = sim
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.bind((host, port))
        except OSError as e:
            self.sock.close()
            raise OSError(f"udp://{host}:{port}: cannot serve the simulated Crazyflie: {e}") from None
        self.sock.setblocking(False)
        # Bursts (a bootloader upload, a TOC download) outrun a Python reader; a bigger buffer
        # loses fewer (the kernel caps it at net.core.rmem_max).
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.host, self.port = self.sock.getsockname()
        self._links: OrderedDict = OrderedDict()  # client address -> the vehicle's SimLink
        self._running = True
        self._thread = threading.Thread(target=self._run, name=f"crazyflie-sim-udp-{self.port}", daemon=True)
        self._thread.start()

    @property
    def uri(self) -> str:
        return f"udp://{self.host}:{self.port}"

    def _link(self, addr):
        link = self._links.get(addr)
        if link is None or not link.open:
            sock = self.sock
            link = self.sim.open_link(lambda raw, a=addr: sock.sendto(raw, a), name=f"udp {addr[0]}:{addr[1]}")
            self._links[addr] = link
            while len(self._links) > self.MAX_CLIENTS:
                _, old = self._links.popitem(last=False)
                old.close()
        return link

    def poll(self) -> None:
        """Take in every datagram waiting now. While the vehicle runs in real time its physics thread
        calls this before every tick, as a radio interrupt would: a reader thread starved of CPU on a
        loaded host let vehicle time run on past setpoints already in the socket, and the on-board app's
        link watchdog read that as a lost link."""
        while self._running:
            try:
                data, addr = self.sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                if not self._running:
                    return
                continue  # e.g. ICMP port unreachable from a client that went away
            if data:
                self._link(addr).send(data)

    def _run(self):
        """The reader while no physics thread polls (connecting before start(), realtime=False)."""
        while self._running:
            if self.sim.polls_transports:
                time.sleep(0.05)
                continue
            try:
                if not select.select([self.sock], [], [], 0.2)[0]:
                    continue
            except (OSError, ValueError):
                if not self._running:
                    return
                continue
            self.poll()

    def close(self):
        self._running = False
        self._thread.join(timeout=1.0)
        self.sock.close()
        for link in list(self._links.values()):
            link.close()
        self._links.clear()
