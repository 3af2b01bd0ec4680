"""filtkit.cnn: small convolutional networks with PyTorch's names and numerics.

Layers (NCHW, float32 by default) run their forward and backward passes on
the same backend functions as :mod:`filtkit.signal`; ``Sequential`` models
train with ``fit``, report with ``evaluate``/``predict`` and round-trip
through ``save``/:func:`load`.  ``model.to("cuda")`` runs all of it on an
NVIDIA GPU (the backend functions' CUDA twins), ``model.to("cpu")`` brings
it back.

Examples
--------
>>> from filtkit import cnn
>>> X, y = cnn.data.load_digits()
>>> model = cnn.lenet5(input_size=8, seed=0)
>>> history = model.fit(X[:256], y[:256], epochs=1, batch_size=64, seed=0, progress=False)
>>> sorted(history)
['accuracy', 'loss']
"""

from . import data, functional, losses, optim
from .layers import (
    AvgPool2D,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    Layer,
    LeakyReLU,
    MaxPool2D,
    ReLU,
    Sigmoid,
    Tanh,
)
from .losses import CrossEntropyLoss, MSELoss
from .model import ARCHITECTURES, DivergenceError, Sequential, convnet, lenet5, load
from .optim import SGD, Adam
from .parameter import Parameter

__all__ = [
    "ARCHITECTURES", "Adam", "AvgPool2D", "Conv2D", "CrossEntropyLoss", "Dense",
    "DivergenceError", "Dropout", "Flatten", "Layer", "LeakyReLU", "MSELoss", "MaxPool2D",
    "Parameter", "ReLU", "SGD", "Sequential", "Sigmoid", "Tanh", "convnet", "data",
    "functional", "lenet5", "load", "losses", "optim",
]
