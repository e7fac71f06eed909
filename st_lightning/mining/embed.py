"""Normalized embeddings of many texts: longest first on the encoder's fast path, cached on
disk, and sharded over the processes of a torchrun launch."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from st_lightning.encoders import SentenceEncoder
from st_lightning.mining.progress import progress
from st_lightning.utils.precision import cpu_has_fast_bf16

log = logging.getLogger(__name__)

Precision = Literal["float32", "bfloat16", "auto"]


def resolve_precision(precision: Precision, device: torch.device) -> Literal["float32", "bfloat16"]:
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if device.type == "cpu" and cpu_has_fast_bf16() else "float32"


def model_fingerprint(encoder: SentenceEncoder) -> str:
    """A digest of what decides an encoder's embeddings: its weights (shapes, and a sample of
    values and the sum of each tensor), pooling, dense layers, normalization, lower-casing and
    maximum length. Two fine-tuned copies of one base model get different digests."""
    h = hashlib.sha256()
    h.update(
        repr(
            (
                type(encoder.transformer).__name__,
                encoder.max_seq_length,
                encoder.do_lower_case,
                encoder.normalize,
                encoder.pooling.config(),
            )
        ).encode()
    )
    with torch.no_grad():
        for name, tensor in encoder.state_dict().items():
            flat = tensor.detach().reshape(-1).float().cpu()
            h.update(f"{name}{tuple(tensor.shape)}{flat.double().sum().item():.10e}".encode())
            h.update(flat[:1024].numpy().tobytes())
            h.update(flat[-1024:].numpy().tobytes())
    return h.hexdigest()


def texts_digest(texts: list[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()


def cache_key(fingerprint: str, prompt: str, precision: str, texts: list[str]) -> str:
    h = hashlib.sha256(repr((fingerprint, prompt, precision)).encode())
    h.update(texts_digest(texts).encode())
    return h.hexdigest()[:32]


def world() -> tuple[int, int]:
    """(rank, world size) of the running process group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def embed_texts(
    encoder: SentenceEncoder,
    texts: list[str],
    *,
    prompt: str = "",
    batch_size: int = 64,
    precision: Precision = "float32",
    cache_folder: str | os.PathLike | None = None,
    desc: str = "Embedding",
    show_progress: bool = True,
) -> Tensor:
    """L2-normalized float32 embeddings (len(texts), dim) in the order of `texts`.

    Texts are embedded longest first (little padding, and the unpadded forward of BERT-family
    backbones computes real tokens only). With `cache_folder`, the result is stored as
    `<desc>_<key>.npy`, where the key digests the model (weights, pooling, maximum length),
    the prompt, the precision and every text: a changed model or corpus never reads a stale
    file. Under torchrun each process embeds every world-size-th text of the length order and
    all processes receive the whole result, which equals one process's.
    """
    dtype = resolve_precision(precision, encoder.device)
    path = None
    if cache_folder is not None:
        key = cache_key(model_fingerprint(encoder), prompt, dtype, texts)
        path = Path(cache_folder) / f"{desc.lower().replace(' ', '_')}_{key}.npy"
        if path.is_file():
            log.info("Loaded %d cached embeddings from %s", len(texts), path)
            return torch.from_numpy(np.load(path))
    rank, size = world()
    order = np.argsort([-len(t) for t in texts], kind="stable")
    mine = order[rank::size]
    chunks = []
    bar = progress(len(texts), desc, show_progress and rank == 0)
    step = max(batch_size, 4096)
    for start in range(0, len(mine), step):
        part = [texts[i] for i in mine[start : start + step]]
        emb = encoder.encode(
            part,
            batch_size=batch_size,
            prompt=prompt,
            convert_to="tensor",
            normalize_embeddings=True,
            precision=dtype,
        )
        chunks.append(torch.as_tensor(emb).float().cpu())
        bar.update(len(part) * size)
    bar.close()
    dim = encoder.embedding_dimension
    local = torch.cat(chunks) if chunks else torch.empty((0, dim))
    out = torch.empty((len(texts), dim))
    if size == 1:
        out[torch.as_tensor(mine)] = local
    else:
        gathered = _all_gather_rows(local, len(order[0::size]))
        for r, rows in enumerate(gathered):
            idx = order[r::size]
            out[torch.as_tensor(idx)] = rows[: len(idx)]
    if path is not None and rank == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
        np.save(tmp, out.numpy())
        tmp.replace(path)
    return out


def _all_gather_rows(local: Tensor, rows: int) -> list[Tensor]:
    padded = torch.zeros((rows, local.shape[1]), dtype=local.dtype)
    padded[: len(local)] = local
    backend_device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    padded = padded.to(backend_device)
    gathered = [torch.empty_like(padded) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, padded)
    return [g.cpu() for g in gathered]
