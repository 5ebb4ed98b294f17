from setuptools import find_packages, setup

setup(
    name="mailroom",
    version="0.1.0",
    description="HTTP ingest: collections of payloads in, S3 objects out, through bounded actors.",
    python_requires=">=3.11",
    packages=find_packages(include=["actors", "config", "mailroom", "store", "web"]),
    install_requires=[
        "pykka>=4.1,<5",
        "falcon>=4.0,<5",
        "waitress>=3.0.1,<4",
        "granian>=2.8,<3",
        "boto3>=1.36,<2",
        "orjson>=3.10,<4",
        "prometheus_client>=0.20,<1",
        "python-json-logger>=3.1,<5",
        "tqdm>=4.66,<5",
    ],
    extras_require={
        # The in-process S3-compatible store used when S3_BUCKET is unset (make run).
        "embedded": ["moto[s3,server]>=5.0,<6"],
        "dev": [
            "moto[s3,server]>=5.0,<6",
            "pytest>=8,<10",
            "hypothesis>=6.100,<7",
            "jsonschema>=4.20,<5",
            "openapi-spec-validator>=0.7,<1",
            "requests>=2.31,<3",
            "ruff>=0.6",
        ],
    },
    entry_points={"console_scripts": ["mailroom=mailroom.cli:main"]},
)
