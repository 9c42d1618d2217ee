"""metatrail's service side: apply events to the lineage store, query it, drive steps."""
