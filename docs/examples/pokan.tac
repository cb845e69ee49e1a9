"""A Twisted application: a pokan node next to a small web site.

Run it in the foreground with::

    twistd -ny docs/examples/pokan.tac

Settings come from the environment (all optional):

    POKAN_ADDRESS   IP address of this node          (default 127.0.0.1)
    POKAN_PORT      its TCP and UDP port             (default 5555)
    POKAN_SEEDS     comma-separated HOST:PORT seeds  (default: none, act as seed)
    POKAN_INTERVAL  seconds between gossip rounds    (default 1)
    WEB_PORT        port of the web site             (default 8080)

The site answers ``GET /`` with what this node knows of the cluster, one line
per node: its id, status and keys.
"""

import os

from twisted.application import service, strports
from twisted.logger import Logger
from twisted.web import resource, server

from pokan import Server

address = os.environ.get("POKAN_ADDRESS", "127.0.0.1")
port = int(os.environ.get("POKAN_PORT", "5555"))
seeds = os.environ.get("POKAN_SEEDS") or None
interval = float(os.environ.get("POKAN_INTERVAL", "1"))
web_port = int(os.environ.get("WEB_PORT", "8080"))
log = Logger(namespace="pokan.tac")

# the pokan node: configured, handlers registered, keys stored, before it starts
node = Server(
    address, tcp_port=port, udp_port=port, gossip_with=seeds, gossip_interval=interval
)
node.setName("pokan")
node.store("role", "web")
node.store("url", f"http://{address}:{web_port}/")


@node.on("new_key")
def joined(key, value, peer):
    if key == "role" and peer.id != node.id:
        log.info("{peer} joined with role {role}", peer=peer.id, role=value)


class ClusterPage(resource.Resource):
    """GET /: one line per node this node knows, itself first."""

    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        lines = [
            f"{peer.id} {peer.status} {peer.items()!r}"
            for peer in [node.me, *node.peers()]
        ]
        return "\n".join(lines).encode() + b"\n"


site = strports.service(
    f"tcp:{web_port}:interface={address}", server.Site(ClusterPage())
)
site.setName("web")

# both in one MultiService, as any Twisted program would hold its services
services = service.MultiService()
node.setServiceParent(services)
site.setServiceParent(services)

application = service.Application("pokan-web")
services.setServiceParent(application)
