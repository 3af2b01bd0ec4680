"""``filtkit train``, ``evaluate`` and ``predict``, run in-process through ``cli.main``."""

import imageio.v3 as iio
import numpy as np
import pytest

from filtkit import cli, cnn
from filtkit._files import file_mode
from filtkit.cnn import data


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A LeNet-5 trained for six epochs on the embedded digits by `filtkit train`."""
    out = tmp_path_factory.mktemp("train") / "digits.npz"
    code = cli.main(["train", "--arch", "lenet5", "--epochs", "6", "--batch-size", "32",
                     "--lr", "0.003", "--seed", "3", "--out", str(out)])
    assert code == 0
    return out


def test_train_writes_model_and_pictures(trained, capsys):
    assert trained.exists()
    for suffix in ("-curves.png", "-kernels.png"):
        png = trained.parent / (trained.stem + suffix)
        img = iio.imread(png)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
        assert img[..., :3].std() > 10  # a drawing, not a blank page
    model = cnn.load(trained)
    assert model.input_shape == (1, 8, 8)
    assert [type(layer).__name__ for layer in model.layers][:3] == ["Conv2D", "ReLU",
                                                                    "MaxPool2D"]
    assert model.optimizer is not None and model.optimizer.name == "adam"
    names = sorted(p.name for p in trained.parent.iterdir())  # nothing else, no temporaries
    assert names == ["digits-curves.png", "digits-kernels.png", "digits.npz"]
    for name in names:  # the usual permissions, not mkstemp's 0o600
        assert (trained.parent / name).stat().st_mode & 0o777 == file_mode()


def test_evaluate_prints_accuracy_last(trained, tmp_path, capsys):
    X, y = data.load_digits()
    images = np.rint(X[:300, 0] * 255).astype(np.uint8)
    data.save_idx(tmp_path / "img.idx", images)
    data.save_idx(tmp_path / "lab.idx.gz", y[:300].astype(np.uint8))
    capsys.readouterr()
    assert cli.main(["evaluate", str(trained), "--images", str(tmp_path / "img.idx"),
                     "--labels", str(tmp_path / "lab.idx.gz")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("accuracy: ") and len(lines[-1]) == len("accuracy: 0.0000")
    expected = cnn.load(trained).evaluate(images[:, None] / np.float32(255), y[:300])
    assert float(lines[-1].split()[1]) == pytest.approx(expected["accuracy"], abs=5e-5)
    assert expected["accuracy"] > 0.5  # six epochs learn something


def test_predict_classifies_image_files(trained, tmp_path, capsys):
    X, _ = data.load_digits()
    model = cnn.load(trained)
    paths = []
    for i in range(4):
        path = tmp_path / f"digit{i}.png"
        iio.imwrite(path, np.rint(X[i, 0] * 255).astype(np.uint8))
        paths.append(str(path))
    capsys.readouterr()
    assert cli.main(["predict", str(trained), *paths]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4
    expected = model.predict(np.stack([iio.imread(p) / 255.0 for p in paths])[:, None])
    for line, path, k in zip(lines, paths, expected):
        assert line.startswith(f"{path}: {k} (p=")


@pytest.mark.parametrize("argv, message", [
    (["train", "--images", "only-images.gz", "--out", "m.npz"], "both --images and --labels"),
    (["train", "--epochs", "0", "--out", "m.npz"], "--epochs"),
    (["train", "--out", "/no/such/folder/m.npz"], "does not exist"),
    (["train", "--val-fraction", "1.5", "--out", "m.npz"], "val_fraction"),
    (["evaluate", "missing.npz", "--images", "a", "--labels", "b"], "does not exist"),
    (["predict", "missing.npz", "x.png"], "does not exist"),
])
def test_bad_input_one_line_exit_2(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("filtkit: error:") and message in err
    assert not list(tmp_path.iterdir())


def test_evaluate_rejects_a_foreign_file(tmp_path, capsys):
    bogus = tmp_path / "bogus.npz"
    bogus.write_bytes(b"not a model at all")
    assert cli.main(["evaluate", str(bogus), "--images", "a", "--labels", "b"]) == 2
    assert "not a filtkit model file" in capsys.readouterr().err
