"""Pure mapping: a normalised mParticle batch plus connection settings -> Klaviyo events."""
