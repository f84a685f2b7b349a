"""How a model's layers are shared between this process and its RPC workers (no worker needed:
the split is computed from what the servers report), and the YAML and flags that say so."""

from __future__ import annotations

import pytest

from localai.backends.llama import _split, rpc_workers
from localai.bindings import llama as L
from localai.config import parse_model_config
from localai.errors import ConfigError
from localai.settings import Settings, add_arguments, from_arguments


def server(endpoint: str, free_gb: float, devices: int = 1) -> L.RpcServer:
    return L.RpcServer(endpoint, devices, int(free_gb * 2**30), int(2 * free_gb * 2**30))


def config(**fields):
    return parse_model_config({"name": "m", "parameters": {"model": "x.gguf"}, **fields})


def test_yaml_fields_parse_as_localai_writes_them():
    c = config(rpc_workers="10.0.0.2:50052, 10.0.0.3:50052", tensor_split="1,2,1", gpu_layers=12)
    assert c.rpc_workers == ["10.0.0.2:50052", "10.0.0.3:50052"]
    assert c.tensor_split == [1.0, 2.0, 1.0] and c.gpu_layers == 12
    assert config(rpc_workers=["a:1"], tensor_split=[1, 3]).tensor_split == [1.0, 3.0]
    with pytest.raises(ConfigError, match="tensor_split"):
        config(tensor_split="1,lots")
    with pytest.raises(ConfigError, match="gpu_layers"):
        config(gpu_layers=-2)


def test_the_yaml_overrides_the_server_flag(monkeypatch):
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser, env={"LLAMACPP_GRPC_SERVERS": "h1:1,h2:2"})
    settings = from_arguments(parser.parse_args([]))
    assert settings.rpc_workers == ["h1:1", "h2:2"]  # LocalAI's environment variable
    assert rpc_workers(config(), settings) == ["h1:1", "h2:2"]
    assert rpc_workers(config(rpc_workers=["y:3"]), settings) == ["y:3"]
    assert rpc_workers(config(), Settings()) == []


def test_tensor_split_gives_this_process_the_first_share(smollm_path):
    servers = [server("a:1", 8), server("b:2", 8)]
    split = _split(config(tensor_split=[1, 1, 2]), servers, smollm_path)
    # SmolLM2-135M: 30 blocks + the output layer; 3 of 4 shares on the workers
    assert split.endpoints == ("a:1", "b:2") and split.gpu_layers == round(31 * 0.75)
    assert split.tensor_split == (1.0, 2.0)
    assert _split(config(tensor_split=[0, 1, 1]), servers, smollm_path).gpu_layers == -1  # all on the workers
    with pytest.raises(ConfigError, match="needs 3 weights"):
        _split(config(tensor_split=[1, 1]), servers, smollm_path)


def test_without_tensor_split_free_memory_decides(smollm_path, monkeypatch):
    import localai.backends.llama as backend

    monkeypatch.setattr(backend, "_available_ram", lambda: 8 * 2**30)
    split = _split(config(), [server("a:1", 8), server("b:2", 16, devices=2)], smollm_path)
    assert split.gpu_layers == round(31 * 24 / 32)
    assert split.tensor_split == (8 * 2**30, 8 * 2**30, 8 * 2**30)  # a worker's share spread over its devices
    assert _split(config(gpu_layers=5), [server("a:1", 8)], smollm_path).gpu_layers == 5
