from setuptools import find_packages, setup

setup(
    name="tiktok_organic_dagster",
    version="0.1.0",
    description="Keeps a TikTok account's organic data (profile, videos, counters) in Delta Lake with Dagster.",
    packages=find_packages(exclude=["tiktok_organic_dagster_tests", "benchmarks"]),
    python_requires=">=3.10",
    install_requires=[
        "dagster==1.13.*",
        "dagster-webserver==1.13.*",
        # the Postgres instance every distributed deployment uses (0.29.x pairs with dagster 1.13.x); the
        # daemon, the webserver and every run worker load the instance, so it belongs in the code's image
        "dagster-postgres==0.29.*",
        "requests>=2.31",
        "pandas>=2.2",
        "deltalake[pandas,pyarrow]>=1.6,<1.7",
        "pyyaml>=6",
        "croniter>=2",  # cron validation and periods (Dagster's own helpers are private)
        # Token store on S3/GCS/Azure: the Python binding of the Rust object_store behind deltalake. One library
        # gives all three clouds the same conditional puts (create-if-absent, If-Match/generation) and reads the
        # same AWS_*/GOOGLE_*/AZURE_* variables as the Delta root; boto3 would cover S3 only.
        "obstore>=0.12,<0.13",
        "cryptography>=42",  # Fernet: token store entries encrypted at rest with TIKTOK_TOKEN_STORE_KEY
    ],
    extras_require={
        "dev": [
            "pytest>=8",
            # the suite waits on subprocesses, servers and a minute-boundary schedule tick far more than it
            # computes: two workers overlap those waits (make test under 6 minutes on 2 cores)
            "pytest-xdist>=3.5",
            "responses>=0.25",
            "moto[server]>=5.1",
            "boto3>=1.34",
            "ruff>=0.6",
            "mypy>=1.11",
            "types-requests",
            "types-PyYAML",
            "types-croniter",
            "dagster-dg-cli==1.13.*",
        ],
    },
    entry_points={
        "console_scripts": [
            "tiktok-organic-authorize=tiktok_organic_dagster.cli.authorize:main",
            "tiktok-organic-accounts=tiktok_organic_dagster.cli.accounts:main",
            "tiktok-organic-sandbox=tiktok_organic_dagster.sandbox:main",
        ],
        # `dg list components` / `dg scaffold defs tiktok_organic_dagster.TikTokOrganicComponent`
        "dagster_dg_cli.registry_modules": ["tiktok_organic_dagster = tiktok_organic_dagster"],
    },
)
