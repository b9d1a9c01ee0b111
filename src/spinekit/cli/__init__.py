"""Command-line interface: thin typer commands over typed API functions."""
