"""dgpg: Descent-Guided Policy Gradient for cooperative multi-agent RL, with domains as plug-ins
(`dgpg.domains`; `dgpg domains` lists the installed ones)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dgpg")
except PackageNotFoundError:  # run from a source tree that is not installed
    __version__ = "0+unknown"
