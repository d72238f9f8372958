"""Features and labels: SQL feature snapshots (the offline store), labels, the point-in-time
training set with its time split, and the Feast repository with its online store."""
