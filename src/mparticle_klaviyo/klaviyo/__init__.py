"""Output side: Klaviyo requests, limits, payload builders, client and emulator."""
