"""Keep a TikTok account's organic data in Delta Lake with Dagster."""
