"""mparticle-klaviyo: a self-hosted mParticle -> Klaviyo Event integration."""

__version__ = "0.1.0"
