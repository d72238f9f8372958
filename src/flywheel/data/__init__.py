"""Raw data: table specs, batches (the use case's generator makes them), ingestion of real exports,
validation, and the Parquet lake with its manifest."""
