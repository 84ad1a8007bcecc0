"""turnout-serve: an MLflow model server with Prometheus metrics, drift and feedback."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("turnout")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
