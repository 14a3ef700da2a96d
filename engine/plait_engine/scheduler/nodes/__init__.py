"""One handler per node kind, behind the `Graph` / `NodeHandler` protocols of `base`."""
