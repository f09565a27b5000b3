import pytest
import torch

from soundlm.devices import default_device


def test_a_named_device_is_used_as_named():
    assert default_device("cpu") == torch.device("cpu")
    assert default_device(torch.device("cpu")) == torch.device("cpu")
    assert default_device("cuda:1") == torch.device("cuda", 1)  # naming a device needs no GPU


def test_no_device_means_cuda_when_present(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_device() == torch.device("cpu") and default_device("") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_device(None) == torch.device("cuda")


def test_a_bad_device_name_is_refused():
    with pytest.raises(RuntimeError, match="gpu"):
        default_device("gpu")
