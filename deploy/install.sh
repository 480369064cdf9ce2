#!/bin/sh
# Installs mparticle-klaviyo, not editable, into the environment of PYTHON (a venv's python):
# first the hash-checked runtime lock, then the project itself built with the locked setuptools
# and wheel (--no-build-isolation), so nothing that the lock does not name is downloaded.
# deploy/Dockerfile runs this very script, and tests/test_release.py runs it in a fresh venv.
#
# Usage: deploy/install.sh PYTHON      e.g. deploy/install.sh /opt/mparticle-klaviyo/bin/python
set -eu

python="${1:?usage: deploy/install.sh PYTHON}"
root="$(cd "$(dirname "$0")/.." && pwd)"

"$python" -m pip install --quiet --require-hashes -r "$root/requirements/runtime.lock"
"$python" -m pip install --quiet --no-deps --no-build-isolation "$root"
