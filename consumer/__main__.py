from consumer.cli import entrypoint

entrypoint()
