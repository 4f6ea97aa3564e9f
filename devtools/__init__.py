"""Developer tools for pg-jobmon: the embedded test server, the demo. Not shipped."""
