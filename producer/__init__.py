"""The SDK that runs inside training code: decorators, run contexts, the emitter, the spool.

Its public names are re-exported by :mod:`metatrail` (``from metatrail import track``);
import from there. The modules depend in one direction: ``context`` (per-call state) at
the bottom, then the wire format and ``recorder``, then ``track``/``runs``/``log``, with
``steps`` (orchestration) and ``keras`` on top. Nothing here imports ``metatrail.consumer``
at module level: the embedded transport is the one place that joins them, lazily.
"""
