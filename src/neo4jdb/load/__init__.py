"""Loading a dataset into Neo4j, one module per job: records, unwind, bulk_import, ensure (the entry)."""
