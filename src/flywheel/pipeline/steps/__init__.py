"""One module per pipeline step; each exposes ``run(ctx, **inputs) -> outputs`` (strings: URIs, ids)."""
