"""Local application API of the node daemon: protocol, service interface, server."""
