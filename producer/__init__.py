"""The SDK that runs inside training code: decorators, run contexts, the emitter, the spool.

Its public names are re-exported by :mod:`metatrail` (``from metatrail import track``);
import from there. The modules depend in one direction (``tests/test_producer_layers.py``
holds it, lazy and type-only imports included): ``context`` (per-call state: run,
execution, trigger) at the bottom, then the wire format (``build``, ``wire``) and the
emitter, then ``recorder``, then ``calls`` (the steps of one tracked call), ``track`` /
``track_gen`` / ``runs`` / ``log``, with ``steps`` (orchestration) and ``keras`` on top.
No module reaches into another's private names; each resets its own state in a forked
child with its own ``os.register_at_fork`` hook. Nothing here imports
``metatrail.consumer`` at module level: the embedded transport is the one place that joins
them, lazily.
"""
