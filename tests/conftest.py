import pytest

from restore.data import default_data_root


@pytest.fixture(scope="session")
def mnist_available():
    """Skip (with the reason) when the MNIST files are not where restore.data looks for them."""
    raw = default_data_root() / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    if not raw.exists():
        pytest.skip(f"MNIST not found at {raw} (set RESTORE_DATA)")
