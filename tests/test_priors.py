"""The one rule that resolves --prior: family name, model folder, hub id; and what it refuses."""

import json
import shutil

import pytest
import torch

import restore.priors as priors
from restore.errors import RestoreError
from restore.priors import load_prior
from restore.priors.ddpm import DDPMPrior


def _flat_copy(ddpm_dir, dest):
    """The older hub layout: the UNet's files beside scheduler_config.json at the top."""
    dest.mkdir()
    for f in (ddpm_dir / "unet").iterdir():
        shutil.copy(f, dest / f.name)
    shutil.copy(ddpm_dir / "scheduler" / "scheduler_config.json", dest / "scheduler_config.json")
    return dest


def test_a_folder_loads_in_either_layout_with_the_same_weights(ddpm_dir, tmp_path):
    nested = load_prior(str(ddpm_dir))
    flat = load_prior(str(_flat_copy(ddpm_dir, tmp_path / "flat")))
    assert isinstance(nested, DDPMPrior) and nested.source == str(ddpm_dir)
    assert nested.image_shape == flat.image_shape == (1, 8, 8)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(nested.x0_hat(x, 5), flat.x0_hat(x, 5))


def test_family_name_means_the_shipped_default(ddpm_dir, monkeypatch, tmp_path):
    monkeypatch.setattr(priors, "WEIGHTS", tmp_path)
    with pytest.raises(RestoreError, match="shipped ddpm prior is missing"):
        load_prior("ddpm")
    shutil.copytree(ddpm_dir, tmp_path / priors.SHIPPED["ddpm"])
    assert load_prior("ddpm").image_shape == (1, 8, 8)


def test_hub_ids_download_json_and_safetensors_only(ddpm_dir, monkeypatch):
    import huggingface_hub

    calls = []

    def fake_snapshot_download(repo_id, allow_patterns=None, **kwargs):
        calls.append((repo_id, allow_patterns))
        return str(ddpm_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    prior = load_prior("google/ddpm-cifar10-32")
    assert prior.source == "google/ddpm-cifar10-32" and prior.image_shape == (1, 8, 8)
    (repo_id, patterns), = calls
    assert repo_id == "google/ddpm-cifar10-32" and sorted(patterns) == ["*.json", "*.safetensors"]


def test_unknown_hub_id_offline_is_one_line(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # so the id is not also a local path
    with pytest.raises(RestoreError) as info:
        load_prior("restore-tests/no-such-model-here")
    message = str(info.value)
    assert "cannot fetch prior 'restore-tests/no-such-model-here'" in message and "\n" not in message


@pytest.mark.parametrize("name", ["model.bin", "model.pt", "weights.ckpt", "x.pkl"])
def test_pickle_files_are_refused_without_being_read(tmp_path, name):
    path = tmp_path / name
    # A real pickle whose loading would raise: it must never be unpickled.
    path.write_bytes(b"\x80\x04cbuiltins\nexec\n.")
    with pytest.raises(RestoreError, match="pickled checkpoint, which restore never loads"):
        load_prior(str(path))


def test_folders_of_other_families_and_non_models(tmp_path, monkeypatch):
    other = tmp_path / "other-run"
    other.mkdir()
    (other / "run.json").write_text(json.dumps({"family": "autoregressive-transformer"}))
    with pytest.raises(RestoreError, match="unknown family 'autoregressive-transformer'"):
        load_prior(str(other))
    vae = tmp_path / "vae-run"
    vae.mkdir()
    (vae / "run.json").write_text(json.dumps({"family": "vae"}))  # no architecture: not one of our VAE folders
    with pytest.raises(RestoreError, match="is not a restore.vae model description"):
        load_prior(str(vae))
    with pytest.raises(RestoreError, match="not a model folder"):
        load_prior(str(tmp_path))
    with monkeypatch.context() as patch:
        patch.setattr(priors, "SHIPPED", {k: v for k, v in priors.SHIPPED.items() if k != "pixelcnn"})
        with pytest.raises(RestoreError, match="no pixelcnn prior ships with this installation yet"):
            load_prior("pixelcnn")
    with pytest.raises(RestoreError, match="unknown prior"):
        load_prior("not a name!")


def test_training_run_without_export_is_explained(ddpm_dir, tmp_path):
    run = tmp_path / "run"
    (run / "checkpoint").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"family": "ddpm"}))
    with pytest.raises(RestoreError, match="no exported model yet"):
        load_prior(str(run))


def test_info_reports_shape_and_training_data(ddpm_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(ddpm_dir, run)
    (run / "run.json").write_text(json.dumps({"family": "ddpm", "data": "mnist", "steps": 7}))
    info = load_prior(str(run)).info()
    assert info["family"] == "ddpm" and info["image_size"] == [8, 8] and info["channels"] == 1
    assert info["training_data"] == "mnist" and info["timesteps"] == 20 and info["parameters"] > 0


def test_every_prior_says_what_it_offers():
    """One Prior interface: what each shipped family offers solvers, read from the methods it has."""
    from restore.priors import load_prior
    from restore.priors.base import Prior

    expected = {"ddpm": {"tweedie"}, "gaussian": {"tweedie", "density", "exact_samples"}, "vae": {"decode"},
                "gan": {"decode"}, "flow": {"decode", "density", "score"}, "pixelcnn": {"conditionals", "density"},
                "gmm-photo-gray": {"tweedie", "patches", "exact_samples"}}
    for name, offers in expected.items():
        prior = load_prior(name)
        assert isinstance(prior, Prior) and prior.offers == offers, name
        assert prior.source == name and prior.family in name
