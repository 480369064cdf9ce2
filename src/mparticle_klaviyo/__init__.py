"""mparticle-klaviyo: a self-hosted mParticle -> Klaviyo Event integration."""

from importlib.metadata import PackageNotFoundError, version

try:
    # pyproject.toml's [project] version is the one source; installed metadata carries it.
    __version__ = version("mparticle-klaviyo")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
