"""sn9cloud: optical-to-SAR registration producing SpaceNet 9 offset maps."""

__version__ = "0.1.0"
#: Bumped whenever a change can alter an offset map; part of every result's identity.
ALGORITHM_VERSION = "sn9cloud-engine-1"
