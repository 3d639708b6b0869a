"""Packaging for the shotgunEvents daemon (console command: shotgunEventDaemon)."""

from setuptools import find_packages, setup

setup(
    name="shotgun-events",
    version="1.0.0.dev0",
    description=(
        "Event daemon for Flow Production Tracking (ShotGrid): a drop-in successor "
        "to the classic shotgunEvents daemon, with a local site emulator."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.9",
    package_dir={"": "src"},
    packages=find_packages("src"),
    include_package_data=True,
    install_requires=[
        "shotgun_api3>=3.4",
        "python-daemon>=2.3",
        "lockfile>=0.12",
        "prometheus_client>=0.12",
    ],
    entry_points={
        "console_scripts": ["shotgunEventDaemon = shotgun_events.cli:main"],
        "pytest11": ["shotgun_events_emulator = shotgun_events.emulator.pytest_plugin"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Operating System :: POSIX",
    ],
)
