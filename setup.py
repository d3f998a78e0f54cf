"""fxpq: mixed low-precision dynamic fixed-point quantization (FxP-QNet) for microcontrollers."""

from setuptools import find_packages, setup

setup(
    name="fxpq",
    version="0.1.0",
    description="FxP-QNet dynamic fixed-point quantization for Keras, exported to TFLite Micro",
    packages=find_packages(include=["fxpq_keras", "fxpq_keras.*"]),
    package_data={"fxpq_keras": ["instructions.json"]},  # the instruction estimate's coefficients
    python_requires=">=3.10,<3.13",
    install_requires=[
        "tensorflow-cpu>=2.21,<2.22",
        "tf-keras>=2.21,<2.22",
        "tensorflow-model-optimization>=0.8.1,<0.9",
        "numpy>=1.26,<2.5",
        "flatbuffers>=24.3",
        "matplotlib>=3.8,<4",
    ],
    extras_require={
        "dev": [
            "pytest>=8,<10",
            "pytest-xdist>=3.5,<4",
            "hypothesis>=6.100,<7",
            "ruff>=0.6",
            "pdoc>=15,<17",  # scripts/api_docs.py: the API reference
            "mlxtend>=0.23,<0.26",
            "scikit-learn>=1.4,<2",
            "scikit-image>=0.24,<0.27",
            "ai-edge-litert>=1.2,<3",
            "tflite-micro>=0.dev20250101",
        ],
    },
    entry_points={"console_scripts": ["fxpq=fxpq_keras.cli:main"]},
)
