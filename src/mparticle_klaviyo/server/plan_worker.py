"""A planning worker process: ``python -m mparticle_klaviyo.server.plan_worker``, started by ``serve``.

A terminal's Ctrl-C reaches the whole process group, and systemd's SIGTERM every process of the
unit: ``serve`` then stops first, answering what it holds (with its workers' help), and closes
their stdin, which is when a worker exits (``plan_calls``); if ``serve`` dies instead, the
worker's stdin ends all the same. So both signals are ignored here, before anything is imported.
"""

import signal

signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)


def main() -> None:
    """Answer plan calls until stdin closes."""
    from mparticle_klaviyo.server.plan_calls import run  # after the signals: see the module's text

    run()


if __name__ == "__main__":
    main()
