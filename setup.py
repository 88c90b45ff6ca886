from setuptools import find_packages, setup

setup(
    name="accessd",
    version="0.1.0",
    description="A Mesos framework that runs the access layer of a data-science pipeline",
    python_requires=">=3.11",
    packages=find_packages(
        include=["accessd*", "scheduler*", "executor*", "services*", "api*", "localmesos*", "lb*"]
    ),
    package_data={"api": ["static/*"], "localmesos": ["*.txt"]},
    install_requires=[
        "pymesos==0.3.15",  # needs http-parser built by tools/install.sh on Python 3.11
        "addict>=2.4",
        "falcon>=4.0",
        "gunicorn>=22",
        "cassandra-driver>=3.29",
        "requests>=2.31",
        "numpy>=1.26",
        "matplotlib>=3.8",
        # /metrics of the services and the API: Prometheus exposition by the official client
        # instead of our own text writer.
        "prometheus-client>=0.20",
        # the time-series service encodes its JSON arrays with it: ~3x faster than the
        # hand-written %-format it replaced (bench/services.py range query); wheels for 3.11
        "orjson>=3.9",
        # LIKE/UNLIKE constraint regexes run against every offer: RE2 matches in linear time,
        # so no pattern can stall placement (scheduler/constraint_regex.py); wheels for 3.11
        "google-re2>=1.1",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-timeout>=2.3",
            # `pytest --reverse`: runs the suite backwards, so a test that leans on what an
            # earlier one left behind fails (the order guard in tests/test_order_guard.py)
            "pytest-reverse>=1.9",
            # `make test` runs the suite in 2 worker processes (--dist loadfile: a module's
            # tests, and its module-scoped stacks, stay in one worker)
            "pytest-xdist>=3.5",
            "hypothesis>=6.100",
            "ruff>=0.5",
            # Drives Debian's Chromium over the DevTools protocol for the status-page tests;
            # its wheel ships its driver, and no browser is downloaded (we point it at
            # /usr/bin/chromium). A well-kept library instead of our own CDP client.
            "playwright>=1.40",
            # The bounded fuzz test over /v2/openapi.json (tests/api/test_openapi_fuzz.py):
            # requests generated from the document's schemas, answers checked against them.
            # hypothesis-jsonschema 0.23 no longer runs on current Hypothesis; schemathesis
            # carries its own generator.
            "schemathesis>=4.30",
            "jsonschema>=4.20",
            # Validates each access service's /openapi.json (tests/services/test_openapi.py)
            "openapi-spec-validator>=0.7",
            # examples/notebooks/client.ipynb is executed by a real kernel in the tests
            "nbclient>=0.10",
            "nbformat>=5.9",
            "ipykernel>=6.29",
        ],
    },
    entry_points={"console_scripts": ["accessd=accessd.cli:main"]},
)
