"""Import ML Metadata (MLMD) stores: TFX and Kubeflow Pipelines history as metatrail events.

``import_mlmd(location, engine)`` reads a SQLite file or a MySQL/PostgreSQL database of
schema version 6 to 10 with plain SQL and applies it through the one apply path; the
filter language answers MLMD's ``filter_query`` syntax on what it imported
(:mod:`metatrail.consumer.query.mlmd_syntax`).
"""

from metatrail.consumer.mlmd.importer import ImportReport, import_mlmd
from metatrail.consumer.mlmd.source import MlmdSource, open_source

__all__ = ["ImportReport", "MlmdSource", "import_mlmd", "open_source"]
