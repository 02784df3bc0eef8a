"""Tests for normlab.data: builders, registry, errors, deterministic batching."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import normlab.data as nd
from normlab.data import digits_builder, registry, tfds_utils
from normlab.data.dataset import DatasetInfo

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="module")
def mnist1d(data_dir):
    return {s: nd.load("mnist1d", s, data_dir=data_dir) for s in ("train", "test")}


@pytest.fixture(scope="module")
def digits(data_dir):
    return {s: nd.load("digits", s, data_dir=data_dir) for s in ("train", "test")}


# --- builders -----------------------------------------------------------------


def test_mnist1d_shapes(mnist1d):
    for split, n in (("train", 4000), ("test", 1000)):
        ds = mnist1d[split]
        assert ds.x.shape == (n, 40, 1) and ds.x.dtype == np.float32
        assert ds.y.shape == (n,) and ds.y.dtype == np.int32
        assert ds.num_classes == 10 and ds.name == "mnist1d" and len(ds) == n
        assert ds.y.min() >= 0 and ds.y.max() < 10 and len(np.unique(ds.y)) == 10
        assert np.isfinite(ds.x).all()
    # Pinned: mnist1d's own order with its default seed 42.
    np.testing.assert_array_equal(mnist1d["train"].y[:10], [2, 6, 4, 5, 6, 6, 6, 0, 3, 1])


def test_mnist1d_does_not_touch_global_rng():
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    from normlab.data import mnist1d_builder

    mnist1d_builder.generate_arrays()
    assert np.random.rand() == expected


def test_digits_shapes(digits):
    for split, n in (("train", 1437), ("test", 360)):
        ds = digits[split]
        assert ds.x.shape == (n, 8, 8, 1) and ds.x.dtype == np.float32
        assert ds.y.shape == (n,) and ds.y.dtype == np.int32
        assert ds.x.min() >= 0.0 and ds.x.max() <= 1.0 and ds.x.max() == 1.0
        assert ds.y.min() >= 0 and ds.y.max() < 10


def test_digits_matches_sklearn_split(digits):
    from sklearn.datasets import load_digits

    raw = load_digits()
    perm = np.random.default_rng(0).permutation(1797)
    np.testing.assert_array_equal(digits["test"].y, raw.target[perm[1437:]])
    np.testing.assert_allclose(digits["train"].x[..., 0], raw.images[perm[:1437]] / 16.0)


def test_two_loads_equal_across_dirs(digits, tmp_path):
    other = nd.load("digits", "train", data_dir=str(tmp_path))
    np.testing.assert_array_equal(other.x, digits["train"].x)
    np.testing.assert_array_equal(other.y, digits["train"].y)


def test_dataset_is_read_only(digits):
    with pytest.raises(ValueError):
        digits["train"].x[0, 0, 0, 0] = 1.0


def test_prepared_only_once(tmp_path, monkeypatch):
    nd.load("digits", "test", data_dir=str(tmp_path))
    info_file = tmp_path / "normlab_digits" / "1.0.0" / "dataset_info.json"
    mtime = info_file.stat().st_mtime_ns

    def fail():
        raise AssertionError("regenerated a prepared dataset")

    monkeypatch.setattr(digits_builder, "generate_arrays", fail)
    ds = nd.load("digits", "test", data_dir=str(tmp_path))
    assert len(ds) == 360
    assert info_file.stat().st_mtime_ns == mtime


def test_decoded_split_cached_beside_records(tmp_path, monkeypatch):
    from normlab.data import tfds_utils
    first = nd.load("digits", "test", data_dir=str(tmp_path))
    assert (tmp_path / "normlab_digits" / "1.0.0" / "test.npz").is_file()
    monkeypatch.setattr(tfds_utils, "read_all", lambda *a: (_ for _ in ()).throw(AssertionError("decoded again")))
    again = nd.load("digits", "test", data_dir=str(tmp_path))
    np.testing.assert_array_equal(again.x, first.x)
    np.testing.assert_array_equal(again.y, first.y)
    assert again.x.dtype == np.float32 and again.y.dtype == np.int32


def test_default_data_dir_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("NORMLAB_DATA_DIR", str(tmp_path))
    assert nd.resolve_data_dir() == str(tmp_path)
    monkeypatch.delenv("NORMLAB_DATA_DIR")
    assert nd.resolve_data_dir().endswith(os.path.join(".cache", "normlab", "tfds"))


@pytest.mark.slow  # multi-process (~3 s)
def test_concurrent_preparation_generates_once(tmp_path):
    """Two processes racing on an empty dir: both load, exactly one generates."""
    script = textwrap.dedent(
        f"""
        import sys
        from normlab.data import digits_builder, load
        original = digits_builder.generate_arrays
        def counted():
            print("GENERATED", file=sys.stderr)  # stdout is silenced while preparing
            return original()
        digits_builder.generate_arrays = counted
        print(len(load("digits", "train", data_dir={str(tmp_path)!r})))
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         cwd=REPO_ROOT)  # `python -c` puts the working directory on sys.path
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert out.strip().endswith("1437")
    assert sum(err.count("GENERATED") for _, err in outs) == 1


# --- registry and errors ------------------------------------------------------


def test_dataset_info_without_loading():
    assert nd.get_dataset_info("mnist1d").input_shape == (40, 1)
    assert nd.get_dataset_info("digits").input_shape == (8, 8, 1)
    assert nd.get_dataset_info("cifar100").num_classes == 100
    assert nd.get_dataset_info("imagenet2012").input_shape == (224, 224, 3)
    assert set(nd.DATASET_NAMES) == set(registry._ALL_DATASETS)
    assert {"mnist1d", "digits", "cifar10", "cifar100", "imagenet2012"} <= set(nd.DATASET_NAMES)


def test_unknown_name_lists_choices(tmp_path):
    for call in (lambda: nd.get_dataset_info("cifar11"), lambda: nd.load("cifar11", "train", data_dir=tmp_path)):
        with pytest.raises(ValueError) as err:
            call()
        msg = str(err.value)
        assert "'cifar11'" in msg and "\n" not in msg
        assert all(name in msg for name in nd.DATASET_NAMES)


def test_unknown_split_lists_choices(tmp_path):
    with pytest.raises(ValueError, match="valid choices: train, test"):
        nd.load("digits", "validation", data_dir=tmp_path)


@pytest.mark.parametrize("name", ["cifar10", "imagenet2012"])
def test_missing_standard_dataset(tmp_path, name):
    with pytest.raises(nd.DatasetNotPreparedError) as err:
        nd.load(name, "train", data_dir=tmp_path)
    msg = str(err.value)
    assert isinstance(err.value, ValueError)
    assert "\n" not in msg and "tfds build" in msg and str(tmp_path) in msg and name in msg
    assert not any(tmp_path.iterdir())  # nothing downloaded or created


# --- standard TFDS path, exercised with tiny fake datasets ------------------

with tfds_utils.quiet() as tfds:

    class _FakeImages(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        """A tiny image-classification builder: subclasses set IMAGE (a tfds Image feature) and NUM_CLASSES."""

        VERSION = tfds.core.Version("1.0.0")
        code_path = None

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict(
                    {"image": self.IMAGE, "label": tfds.features.ClassLabel(num_classes=self.NUM_CLASSES)}
                ),
                disable_shuffling=True,
            )

    class NormlabTestFakeCifar(_FakeImages):
        """20 random 32x32 RGB PNGs, standing in for a user-prepared cifar10."""

        IMAGE, NUM_CLASSES = tfds.features.Image(shape=(32, 32, 3)), 10

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(20)}

        def _generate_examples(self, n):
            from PIL import Image

            rng = np.random.default_rng(0)
            for i in range(n):
                yield i, {"image": Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)), "label": i % 10}

    class NormlabTestFakeImagenet(_FakeImages):
        """7 JPEGs of varying sizes, standing in for imagenet2012."""

        IMAGE, NUM_CLASSES = tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"), 5

        def _split_generators(self, dl_manager):
            return {"validation": self._generate_examples()}

        def _generate_examples(self):
            from PIL import Image

            rng = np.random.default_rng(0)
            for i, (h, w) in enumerate([(40, 60), (64, 64), (90, 30), (20, 20), (33, 47), (50, 80), (16, 24)]):
                yield i, {"image": Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)), "label": i % 5}


def test_standard_in_memory_loader(tmp_path, monkeypatch):
    tfds_utils.prepare(NormlabTestFakeCifar, str(tmp_path))
    info = DatasetInfo("fake_cifar", (32, 32, 3), 10, ("train",), "tfds", "normlab_test_fake_cifar",
                       mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    monkeypatch.setitem(registry._ALL_DATASETS, "fake_cifar", info)
    ds = nd.load("fake_cifar", "train", data_dir=tmp_path)
    assert ds.x.shape == (20, 32, 32, 3) and ds.x.dtype == np.uint8  # kept uint8 in memory
    np.testing.assert_array_equal(ds.y, np.arange(20) % 10)
    batch = nd.get_batch(ds, np.array([3, 1]))
    assert batch["x"].dtype == np.float32 and 0.0 <= batch["x"].min() and batch["x"].max() <= 1.0
    np.testing.assert_allclose(batch["x"], ds.x[[3, 1]] / 255.0, atol=1e-6)
    normed = nd.get_batch(ds, np.array([3, 1]), normalize_inputs=True)["x"]
    np.testing.assert_allclose(normed, (batch["x"] - 0.5) / 0.25, atol=1e-5)


def test_standard_lazy_loader(tmp_path, monkeypatch):
    tfds_utils.prepare(NormlabTestFakeImagenet, str(tmp_path))
    info = DatasetInfo("fake_imagenet", (16, 16, 3), 5, ("validation",), "tfds_lazy", "normlab_test_fake_imagenet")
    monkeypatch.setitem(registry._ALL_DATASETS, "fake_imagenet", info)
    ds = nd.load("fake_imagenet", "validation", data_dir=tmp_path)
    assert len(ds) == 7 and ds.x.shape == (7, 16, 16, 3) and ds.input_shape == (16, 16, 3)
    batches = list(nd.eval_batches(ds, 4))
    assert [b["x"].shape for b in batches] == [(4, 16, 16, 3)] * 2
    np.testing.assert_array_equal(np.concatenate([b["y"] for b in batches])[:7], np.arange(7) % 5)
    assert np.concatenate([b["mask"] for b in batches]).tolist() == [1.0] * 7 + [0.0]
    train = nd.train_batch(ds, 3, seed=0, step=1)
    assert train["x"].shape == (3, 16, 16, 3) and train["x"].dtype == np.float32


# --- batching -----------------------------------------------------------------


def test_batch_indices_deterministic_and_seeded():
    a = nd.batch_indices(1000, 32, seed=3, step=17)
    b = nd.batch_indices(1000, 32, seed=3, step=17)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (32,)
    assert not np.array_equal(a, nd.batch_indices(1000, 32, seed=4, step=17))
    assert not np.array_equal(a, nd.batch_indices(1000, 32, seed=3, step=18))


def test_every_example_once_per_epoch():
    n, bs = 1000, 32
    spe = nd.steps_per_epoch(n, bs)
    assert spe == 31
    for epoch in range(2):
        idx = np.concatenate([nd.batch_indices(n, bs, 0, epoch * spe + s) for s in range(spe)])
        assert len(np.unique(idx)) == spe * bs and idx.min() >= 0 and idx.max() < n
    first = np.concatenate([nd.batch_indices(n, bs, 0, s) for s in range(spe)])
    second = np.concatenate([nd.batch_indices(n, bs, 0, spe + s) for s in range(spe)])
    assert not np.array_equal(first, second)  # reshuffled each epoch


def test_batch_indices_rejects_bad_args():
    with pytest.raises(ValueError):
        nd.batch_indices(10, 11, 0, 0)
    with pytest.raises(ValueError):
        nd.batch_indices(10, 2, -1, 0)


def test_get_batch(mnist1d):
    ds = mnist1d["train"]
    idx = nd.batch_indices(len(ds), 64, seed=0, step=5)
    batch = nd.get_batch(ds, idx)
    assert batch["x"].shape == (64, 40, 1) and batch["x"].dtype == np.float32
    assert batch["y"].shape == (64,) and batch["y"].dtype == np.int32
    np.testing.assert_array_equal(batch["x"], ds.x[idx])
    np.testing.assert_array_equal(batch["y"], ds.y[idx])
    again = nd.train_batch(ds, 64, seed=0, step=5)
    np.testing.assert_array_equal(again["x"], batch["x"])


def test_eval_batches_cover_each_example_once(digits):
    ds = digits["test"]  # 360 examples -> 7 batches of 64, last has 40 real rows
    batches = list(nd.eval_batches(ds, 64))
    assert len(batches) == nd.num_eval_batches(len(ds), 64) == 6
    for b in batches:
        assert b["x"].shape == (64, 8, 8, 1) and b["y"].shape == (64,) and b["mask"].shape == (64,)
        assert b["mask"].dtype == np.float32
    mask = np.concatenate([b["mask"] for b in batches])
    assert mask.sum() == len(ds) and set(np.unique(mask)) == {0.0, 1.0}
    real = mask == 1.0
    np.testing.assert_array_equal(np.concatenate([b["y"] for b in batches])[real], ds.y)
    np.testing.assert_array_equal(np.concatenate([b["x"] for b in batches])[real], ds.x)


def test_augmentation_deterministic_and_shape_preserving():
    x = np.random.default_rng(0).random((16, 32, 32, 3), dtype=np.float32)
    a = nd.random_crop_flip(x, seed=1, step=2)
    assert a.shape == x.shape and a.dtype == x.dtype
    np.testing.assert_array_equal(a, nd.random_crop_flip(x, seed=1, step=2))
    assert not np.array_equal(a, nd.random_crop_flip(x, seed=1, step=3))
    # No padding and no flip is the identity.
    np.testing.assert_array_equal(nd.random_crop_flip(x, 1, 2, pad=0, flip=False), x)
    # Each output is a shifted window of the zero-padded input, possibly flipped.
    padded = np.pad(x, ((0, 0), (4, 4), (4, 4), (0, 0)))
    for i in range(len(x)):
        windows = [padded[i, dy : dy + 32, dx : dx + 32] for dy in range(9) for dx in range(9)]
        assert any(np.array_equal(a[i], w) or np.array_equal(a[i], w[:, ::-1]) for w in windows)
