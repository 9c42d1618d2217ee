"""``python -m metatrail``: the same command line as the ``metatrail`` script."""

from metatrail.consumer.cli import entrypoint

entrypoint()
