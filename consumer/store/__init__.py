"""The relational lineage store: rows, engine, session scope and migrations."""
