"""Tools for rehearsing failures: a TCP fault proxy to put between streamer and its servers.

    from streamer.testing import FaultProxy

    async with FaultProxy(upstream_port=8554) as proxy:
        ...                     # point streamer at 127.0.0.1:<proxy.port>
        await proxy.freeze(5)   # and watch it ride out a frozen camera

asyncio and the standard library only. See docs/testing.md.
"""

from .faults import ProxyStats
from .proxy import FaultProxy, LoopbackOnlyError, ProxyThread

__all__ = ["FaultProxy", "LoopbackOnlyError", "ProxyStats", "ProxyThread"]
