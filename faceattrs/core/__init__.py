"""What every stage shares: the params schema, input errors, atomic writes, parallel map, provenance."""
