"""``python -m tiktok_organic_dagster.sandbox``."""

from . import main

raise SystemExit(main())
