"""A stand-in for the `torch` package, for TorchServe workers that serve ONNX models.

TorchServe 0.12's Python worker imports torch at the top of its message handler only for
`isinstance(x, torch.Tensor)` and `torch.save`; PyPI's torch for x86_64 is the CUDA build
(500 MB plus nvidia packages, no CPU wheel). With this folder on PYTHONPATH the worker runs
without it. Nothing here computes: a handler that needed real torch would fail loudly.
"""


class Tensor:  # never instantiated: isinstance() checks are always False
    pass


def save(*args, **kwargs):
    raise RuntimeError("torch is not installed: this TorchServe serves ONNX models only")


class cuda:  # noqa: N801 - mirrors torch.cuda
    @staticmethod
    def is_available():
        return False

    @staticmethod
    def device_count():
        return 0


__version__ = "0.0.0+tradeserve-stub"
