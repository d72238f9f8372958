"""Raw data: theLook table schemas, the synthetic generator and new batches over time, ingestion of
real exports, validation, and the Parquet lake with its manifest."""
