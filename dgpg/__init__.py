"""dgpg: Descent-Guided Policy Gradient and the HeteroCloud scheduling environment."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dgpg")
except PackageNotFoundError:  # run from a source tree that is not installed
    __version__ = "0+unknown"
