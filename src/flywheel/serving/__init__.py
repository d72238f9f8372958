"""Online serving: the FastAPI prediction service, its champion loader, online features and the log."""
