"""The training loop, the train commands on a tiny synthetic dataset, resume and DistributedDataParallel."""

import csv
import json
import socket

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
import torch
from torch import nn

from cellcount_core.models.model_files import load_model
from cellcount_core.images.synthetic import synthetic_cells
from training.batches import TensorBatches
from training.cli import main
from training.datasets import stable_fraction
from training.loop import TrainConfig, train


def pixels(batch_size):
    """Eight 8x8 images whose target is their own sign (learnable by a 1x1 convolution), in batches."""
    images = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    return TensorBatches({"image": images, "mask": (images > 0).float()}, batch_size)


def bce(logits, batch):
    return nn.functional.binary_cross_entropy_with_logits(logits, batch["mask"])


def test_plateau_lowers_the_rate_and_early_stopping_ends_training(tmp_path):
    config = TrainConfig(out_dir=tmp_path, epochs=10, lr=0.01, lr_patience=0, early_stop=2)
    result = train(nn.Conv2d(1, 1, 1), pixels(4), bce, config, validate=lambda model, device: {"val_loss": 1.0})
    assert [row["epoch"] for row in result.history] == [0, 1, 2]
    assert [row["lr"] for row in result.history] == pytest.approx([0.01, 0.007, 0.0049])
    assert result.best_epoch == 0 and result.stop_reason.startswith("early stop")
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_training_lowers_the_loss_and_is_seeded(tmp_path):
    def run(folder):
        torch.manual_seed(0)
        config = TrainConfig(out_dir=folder, epochs=5, lr=0.2, monitor="train_loss", plot=False)
        return train(nn.Conv2d(1, 1, 1), pixels(4), bce, config)

    first, second = run(tmp_path / "a"), run(tmp_path / "b")
    assert first.history[-1]["train_loss"] < 0.5 * first.history[0]["train_loss"]
    assert [r["train_loss"] for r in first.history] == [r["train_loss"] for r in second.history]


def test_a_weight_average_is_what_is_validated_and_kept(tmp_path):
    def run(folder, epochs, ema, resume=False):
        torch.manual_seed(0)
        config = TrainConfig(out_dir=folder, epochs=epochs, lr=0.2, steps_per_epoch=1, monitor="train_loss",
                             plot=False, ema=ema, resume=resume)
        return train(nn.Conv2d(1, 1, 1), pixels(4), bce, config,
                     validate=lambda model, device: {"weight": float(model.weight.sum())})

    one_step, plain = run(tmp_path / "one", 1, None), run(tmp_path / "plain", 4, None)
    averaged = run(tmp_path / "averaged", 4, 1 - 1e-9)  # starts at the first step's weights and barely moves
    for name, value in one_step.best_state.items():
        torch.testing.assert_close(averaged.best_state[name], value)
    assert averaged.history[-1]["weight"] == pytest.approx(float(one_step.best_state["weight"].sum()))
    assert plain.history[-1]["weight"] != pytest.approx(averaged.history[-1]["weight"], abs=1e-3)
    assert "ema" in torch.load(tmp_path / "averaged" / "checkpoint.pt", weights_only=True)
    run(tmp_path / "resumed", 2, 0.5)
    resumed, whole = run(tmp_path / "resumed", 4, 0.5, resume=True), run(tmp_path / "whole", 4, 0.5)
    assert [row["weight"] for row in resumed.history] == pytest.approx([row["weight"] for row in whole.history])
    with pytest.raises(ValueError, match="between 0 and 1"):
        run(tmp_path / "wrong", 1, 1.5)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """Six 64x64 synthetic images with instance labels, in the pairs layout; at least one is in validation."""
    root = tmp_path_factory.mktemp("pairs")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    for seed in range(6):
        cells = synthetic_cells((64, 64), 6, (8, 12), dtype="uint8", seed=seed)
        iio.imwrite(root / "images" / f"cells{seed}.png", cells.image)
        tifffile.imwrite(root / "masks" / f"cells{seed}.tif", cells.labels.astype(np.uint16))
    assert any(stable_fraction(f"cells{seed}") < 0.5 for seed in range(6))
    return f"pairs={root / 'images'}:{root / 'masks'}"


def _command(kind, pairs, out, epochs, *extra):
    return [kind, "--data", pairs, "--validation-fraction", "0.5", "--out", str(out), "--name", "tiny",
            "--param", "base_filters=4", "--param", "depth=2", "--epochs", str(epochs), "--steps-per-epoch", "2",
            "--batch-size", "2", "--crop-size", "32", "--no-score", *extra]


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_train_segmenter_writes_checkpoint_metrics_and_model_then_resumes(pairs, tmp_path):
    assert main(_command("train-segmenter", pairs, tmp_path, 1, "--architecture", "small_unet",
                         "--photometric", "texture_p=0", "--photometric", "debris=2")) == 0
    first = _rows(tmp_path / "metrics.csv")
    assert [row["epoch"] for row in first] == ["0"] and float(first[0]["val_dice"]) >= 0
    model, card = load_model(tmp_path / "tiny")
    assert card.kind == "segmenter" and card.architecture == "small_unet"
    photometric = card.training["augmentation"]["photometric"]
    assert (photometric["texture_p"], photometric["debris"], photometric["gamma_p"]) == (0.0, 2, 0.3)
    assert card.training["command"].startswith("cellcount-train train-segmenter --data pairs=")
    assert card.training["split"]["validation_images"] >= 1 and card.diameter_range[0] > 0
    # ready for inference as the bundled cards: cell-size band and noise floor
    assert card.diameter_band == [8.0, 24.0] and card.normalization["min_range_over_noise"] == 40.0
    assert card.training["augmentation"]["crops"]["min_range_over_noise"] == 40.0  # empty crops normalized so too

    main(_command("train-segmenter", pairs, tmp_path, 2, "--architecture", "small_unet", "--resume"))
    second = _rows(tmp_path / "metrics.csv")
    assert [row["epoch"] for row in second] == ["0", "1"] and second[0] == first[0]
    assert (tmp_path / "checkpoint.pt").is_file() and (tmp_path / "curves.png").is_file()


@pytest.mark.parametrize("options, message", [(["--diameter-band", "24", "8"], "--diameter-band 24 8"),
                                              (["--min-range-over-noise", "-1"], "--min-range-over-noise -1")])
def test_wrong_inference_settings_name_themselves(pairs, tmp_path, options, message):
    with pytest.raises(SystemExit, match=message):
        main(_command("train-counter", pairs, tmp_path, 1, "--architecture", "density_counter", *options))


@pytest.mark.parametrize("option", ["sparkle_p=1", "texture_p", "debris=many"])
def test_a_wrong_photometric_option_names_itself(pairs, tmp_path, option):
    with pytest.raises(SystemExit, match=f"--photometric '{option}'"):
        main(_command("train-segmenter", pairs, tmp_path, 1, "--architecture", "small_unet", "--photometric", option))


def test_init_from_starts_at_a_model_and_refuses_another_architecture(pairs, tmp_path):
    main(_command("train-segmenter", pairs, tmp_path / "first", 1, "--architecture", "small_unet"))
    start, _ = load_model(tmp_path / "first" / "tiny")
    main(_command("train-segmenter", pairs, tmp_path / "second", 1, "--architecture", "small_unet", "--lr", "0",
                  "--init-from", str(tmp_path / "first" / "tiny")))
    continued, card = load_model(tmp_path / "second" / "tiny")
    kernels = [name for name, tensor in start.state_dict().items() if tensor.dim() == 4]
    assert kernels
    for name in kernels:  # lr 0: the convolutions keep the weights it started from (BatchNorm statistics move)
        torch.testing.assert_close(continued.state_dict()[name], start.state_dict()[name])
    assert "--init-from" in card.training["command"]
    with pytest.raises(ValueError, match="same --architecture and --param"):
        main(_command("train-segmenter", pairs, tmp_path / "third", 1, "--architecture", "c_resunet",
                      "--init-from", str(tmp_path / "first" / "tiny")))


def test_transfer_from_starts_a_counter_at_a_segmenters_unet(pairs, tmp_path):
    main(_command("train-segmenter", pairs, tmp_path / "segmenter", 1, "--architecture", "small_unet"))
    segmenter, _ = load_model(tmp_path / "segmenter" / "tiny")
    main(_command("train-counter", pairs, tmp_path / "counter", 1, "--architecture", "density_counter", "--lr", "0",
                  "--transfer-from", str(tmp_path / "segmenter" / "tiny")))
    counter, card = load_model(tmp_path / "counter" / "tiny")
    source, body = segmenter.state_dict(), counter.body.state_dict()
    torch.testing.assert_close(body["encoder.0.0.weight"], source["encoder.0.0.weight"])
    # small_unet's bridge has 5x5 kernels, the counter's 3x3: the centre is taken
    torch.testing.assert_close(body["bridge.1.0.weight"], source["bridge.1.0.weight"][:, :, 1:4, 1:4])
    assert "--transfer-from" in card.training["command"]
    with pytest.raises(ValueError, match="not both"):
        main(_command("train-counter", pairs, tmp_path / "both", 1, "--architecture", "density_counter",
                      "--transfer-from", str(tmp_path / "segmenter" / "tiny"),
                      "--init-from", str(tmp_path / "counter" / "tiny")))


def test_train_counter_density_and_mask_regressor(pairs, tmp_path):
    command = _command("train-counter", pairs, tmp_path / "density", 1, "--architecture", "density_counter",
                       "--diameter-band", "10", "30", "--min-range-over-noise", "0")
    main([item for item in command if item != "--no-score"])
    model, card = load_model(tmp_path / "density" / "tiny")
    assert card.kind == "counter" and card.input == "image" and card.input_size is None
    assert card.diameter_band == [10.0, 30.0] and "min_range_over_noise" not in card.normalization
    scores = card.metrics["validation"]["pairs"]["count"]["overall"]  # scored on the whole validation images
    assert scores["images"] >= 1 and scores["mape"] >= 0
    dcc = ["train-counter", "--data", pairs, "--validation-fraction", "0.5", "--out", str(tmp_path / "dcc"),
           "--name", "tiny", "--architecture", "dcc_counter", "--input", "mask", "--param", "input_size=[32, 32]",
           "--param", "dense_units=16", "--epochs", "1", "--no-score"]
    main(dcc)
    card = json.loads((tmp_path / "dcc" / "tiny.json").read_text())
    assert card["input"] == "mask" and card["input_size"] == [32, 32] and "val_mape" in card["metrics"]
    assert card["diameter_band"] is None  # a mask counter is never resized


def test_a_density_counter_gets_the_bundled_counters_band_by_default():
    from training.cli import build_parser

    command = ["train-counter", "--data", "x=y", "--out", "o", "--name", "n", "--architecture", "density_counter"]
    assert build_parser(command).parse_args(command).diameter_band == (8.0, 48.0)
    command[0] = "train-segmenter"
    assert build_parser(command).parse_args(command).diameter_band == (8.0, 24.0)


def test_counter_input_must_fit_the_architecture(pairs, tmp_path):
    with pytest.raises(ValueError, match="does not fit architecture 'dcc_counter'"):
        main(["train-counter", "--data", pairs, "--validation-fraction", "0.5", "--out", str(tmp_path),
              "--name", "tiny", "--architecture", "dcc_counter", "--input", "image", "--no-score"])


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ddp_worker(rank, port, folder):
    import os

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.manual_seed(rank)  # different initial weights: DDP must broadcast rank 0's
    model = nn.Conv2d(1, 1, 1)
    config = TrainConfig(out_dir=folder, epochs=2, lr=0.05, device="cpu", plot=False)
    result = train(model, pixels(2), bce, config, validate=lambda m, d: {"val_loss": float(m.weight.abs().sum())})
    torch.save({"weight": model.weight.detach().clone(), "epochs": len(result.history)},
               folder / f"rank{rank}.pt")


@pytest.mark.slow
def test_distributed_data_parallel_on_two_cpu_processes(tmp_path):
    torch.multiprocessing.spawn(_ddp_worker, args=(_free_port(), tmp_path), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(2)]
    assert ranks[0]["epochs"] == ranks[1]["epochs"] == 2
    torch.testing.assert_close(ranks[0]["weight"], ranks[1]["weight"])
    assert len(_rows(tmp_path / "metrics.csv")) == 2
