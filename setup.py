"""Installable package for ldiff: diffusion-based MS lesion filling and synthesis."""
from setuptools import find_packages, setup

setup(
    name="ldiff",
    version="0.1.0",
    description="Self-configuring diffusion models that fill and synthesise MS white-matter lesions in brain MRI",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    license="Apache-2.0",
    packages=find_packages(include=["ldiff", "ldiff.*"]),
    include_package_data=True,
    package_data={"ldiff": ["evaluation/weights/*.npz", "demo_models/**/*"]},
    # torch is deliberately unpinned: users bring the build that matches their CUDA.
    install_requires=[
        "torch>=2.1",
        "SimpleITK>=2.2",
        "batchgenerators>=0.25",
        "numpy>=1.24",
        "scipy>=1.10",
        "scikit-image>=0.21",
        "tqdm>=4.60",
        "nilearn>=0.10",
        "nibabel>=4",
        "matplotlib>=3.6",
        "threadpoolctl>=3",
    ],
    # thickness: ANTs DiReCT for ldiff_evaluate_thickness; antspyx pins numpy < 2.4 and scipy < 1.16,
    # which ldiff works with, so it stays an extra and the core install keeps the newest versions.
    extras_require={"test": ["pytest>=7"], "thickness": ["antspyx>=0.5"]},
    entry_points={
        "console_scripts": [
            "ldiff_make_example=ldiff.cli.make_example:main",
            "ldiff_plan_and_preprocess=ldiff.cli.plan_and_preprocess:main",
            "ldiff_train=ldiff.training.command:main",
            "ldiff_predict=ldiff.cli.predict:main",
            "ldiff_make_lesion_masks=ldiff.cli.make_lesion_masks:main",
            "ldiff_fill_classic=ldiff.cli.fill_classic:main",
            "ldiff_evaluate=ldiff.cli.evaluate:main",
            "ldiff_benchmark=ldiff.cli.benchmark:main",
            "ldiff_select_channels=ldiff.cli.select_channels:main",
            "ldiff_evaluate_thickness=ldiff.cli.evaluate_thickness:main",
            "ldiff_reader_study=ldiff.cli.reader_study:main",
            "ldiff_convert=ldiff.cli.convert:main",
            "ldiff_synthesize_dataset=ldiff.cli.synthesize_dataset:main",
        ]
    },
)
