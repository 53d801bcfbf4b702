"""movielens-bandits: a TFX pipeline for a TF-Agents contextual-bandit recommender.

Dependencies are pinned in requirements/pipeline.lock (installed by
scripts/bootstrap.sh); install_requires names only the direct ones, loosely,
so the lock stays the single source of exact versions.
"""

import setuptools

setuptools.setup(
    name="movielens-bandits",
    version="0.1.0",
    python_requires=">=3.10,<3.11",
    packages=setuptools.find_packages(
        include=["bandit_core*", "simulation*", "custom_components*", "serving*", "tfx_pipeline*"]
    ),
    package_data={"tfx_pipeline.local": ["emulator_launcher.py"]},
    install_requires=[
        "tfx[kfp]>=1.15,<1.16",
        "tensorflow>=2.15,<2.16",
        "tf-agents==0.19.0",
        "tensorflow-probability>=0.23,<0.24",
        "apache-beam[gcp]>=2.59,<3",
        "google-cloud-bigquery>=3",
        "google-cloud-bigquery-storage>=2",
        "google-cloud-aiplatform>=1.60",
    ],
    entry_points={"console_scripts": ["mlbandits=tfx_pipeline.cli:console_main"]},
)
