"""``python -m mparticle_klaviyo`` runs the command line."""

from mparticle_klaviyo.cli import main

main()
