"""The Keras 3 callback's modules; the public names are in :mod:`metatrail.keras`."""
